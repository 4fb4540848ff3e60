"""Evaluate a MoA configuration against its own proposers (``moa eval``).

A way in, like the CLI: the core never imports it. The pieces:

- :func:`run_exact`: exact-answer questions graded by :func:`grade_exact`
  (numbers: the last number of the response; text: a whole word,
  case-insensitive), with ``compare=True`` each proposer alone and a
  majority ``vote`` of MoA's first layer.
- :func:`load_exact`, :func:`builtin_suite`: the inputs.
- Results are saved per (system, item) in ``results.jsonl`` and summarised in
  ``summary.json`` (see :mod:`langgraph_moa.eval.report`); a run with the same
  output directory resumes.

See docs/evaluation.md.
"""

from langgraph_moa.eval.exact import EvalResult, run_exact
from langgraph_moa.eval.grading import extract_answer, grade_exact
from langgraph_moa.eval.items import BUILTIN_SUITES, EvalInputError, ExactItem, builtin_suite, load_exact
from langgraph_moa.eval.systems import System, comparison_systems

__all__ = [
    "BUILTIN_SUITES",
    "EvalInputError",
    "EvalResult",
    "ExactItem",
    "System",
    "builtin_suite",
    "comparison_systems",
    "extract_answer",
    "grade_exact",
    "load_exact",
    "run_exact",
]
