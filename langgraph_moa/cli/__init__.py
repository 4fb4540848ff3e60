"""The ``moa`` command: ask one question, or chat with a persistent history.

``moa ask PROMPT`` streams the final answer to stdout and layer progress to
stderr; ``--json`` prints one JSON object instead. ``moa chat`` keeps each
``--thread``'s history in a SQLite checkpoint, so a chat continues after the
process exits; a second ``moa chat`` on a thread that one already holds is
refused, so no turn of either is lost. ``moa presets`` lists the presets. The
exit status is 0 on success, 1 when the run fails, 2 for bad options; the
reason is one line on stderr.

Exit status: 0 on success; 1 when the run fails (a layer or the aggregator
failed, a key is missing, the local model cannot start); 2 for a bad option or
configuration (checked before any model server starts or any model is called);
130 when interrupted (Ctrl-C). Every error is one line on stderr that starts
with ``error:``.

The package holds one module per concern: :mod:`~langgraph_moa.cli.app` (the
command group, its one-line errors, ``moa presets`` and ``--version``),
:mod:`~langgraph_moa.cli.ask`, :mod:`~langgraph_moa.cli.chat` and
:mod:`~langgraph_moa.cli.serve` (one command each),
:mod:`~langgraph_moa.cli.progress` (the progress lines on stderr),
:mod:`~langgraph_moa.cli.running` (running a turn and reporting its failure)
and :mod:`~langgraph_moa.cli.interrupt` (Ctrl-C). The options the commands
share come from :mod:`langgraph_moa.cli_options`.
"""

from langgraph_moa.cli.app import app, main

__all__ = ["app", "main"]
