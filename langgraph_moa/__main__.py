"""``python -m langgraph_moa`` runs the ``moa`` command."""

from langgraph_moa.cli import main

main()
