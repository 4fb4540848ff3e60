"""Grading without a judge: is a response's answer the expected one?

The rule (:func:`grade_exact`):

- A numeric expected answer (``"42"``, ``"-3.5"``, ``"1,200"``) matches when the
  **last number** in the response equals it (commas between digits are ignored,
  ``12.0`` equals ``12``). "The answer is 7, not 5" therefore counts as 5:
  put the answer last.
- A text expected answer (``"Paris"``) matches when it occurs in the response
  as a **whole word** (or phrase), case-insensitive: ``"paris."`` matches,
  ``"Parisian"`` does not.

Replace the rule by passing your own ``grade(response, answer) -> bool`` (and,
for the majority vote, ``extract(response, answer) -> str | None``) to
:func:`~langgraph_moa.eval.run_exact`, or ``--grader module:function`` on the
command line.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Sequence

Grader = Callable[[str, str], bool]
"""``grade(response, expected_answer) -> bool``."""
Extractor = Callable[[str, str], "str | None"]
"""``extract(response, expected_answer) -> the response's answer, normalised, or None``."""

_NUMBER = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|-?\.\d+")


def _as_number(text: str) -> float | None:
    try:
        return float(text.replace(",", "").strip())
    except ValueError:
        return None


def is_numeric(answer: str) -> bool:
    """Whether an expected answer is graded as a number."""
    return _as_number(answer) is not None


def last_number(response: str) -> float | None:
    """The last number written in ``response`` (``"1,200"`` is 1200), or None."""
    found = []
    for match in _NUMBER.finditer(response):
        text = match.group()
        if text.startswith("-") and match.start() > 0 and response[match.start() - 1].isalnum():
            text = text[1:]  # "10-3" is 10 and 3, not 10 and -3
        found.append(text)
    for text in reversed(found):
        value = _as_number(text)
        if value is not None:
            return value
    return None


def _format(value: float) -> str:
    return f"{value:g}" if abs(value) < 1e15 else repr(value)


def extract_answer(response: str, answer: str) -> str | None:
    """The response's answer in the form the rule compares, for voting.

    Numeric ``answer``: the last number of the response (formatted ``%g``).
    Text ``answer``: the expected answer, lower-cased, if it occurs as a whole
    word; otherwise the response's last word, lower-cased.
    """
    if is_numeric(answer):
        value = last_number(response)
        return None if value is None else _format(value)
    if _word_match(response, answer):
        return answer.strip().lower()
    words = re.findall(r"\w+", response.lower())
    return words[-1] if words else None


def _word_match(response: str, answer: str) -> bool:
    pattern = r"(?<!\w)" + r"\s+".join(re.escape(w) for w in answer.split()) + r"(?!\w)"
    return re.search(pattern, response, flags=re.IGNORECASE) is not None


def grade_exact(response: str, answer: str) -> bool:
    """Whether ``response`` gives ``answer``: numbers by the last number, text as a whole word.

    Args:
        response: The model's answer.
        answer: The expected answer.

    Example:
        ```python
        grade_exact("3 + 4 = 7, so 7 apples.", "7")  # True
        grade_exact("It is Paris.", "paris")  # True
        grade_exact("Parisian", "Paris")  # False
        ```
    """
    if not answer.strip():
        return False
    expected = _as_number(answer)
    if expected is not None:
        got = last_number(response)
        return got is not None and abs(got - expected) <= 1e-9 * max(1.0, abs(expected))
    return _word_match(response, answer)


def majority(responses: Sequence[str], answer: str, extract: Extractor = extract_answer) -> int | None:
    """Index of the response whose extracted answer most responses share (ties: the earliest).

    Returns None when no response has an extractable answer.
    """
    extracted = [extract(r, answer) for r in responses]
    counts: dict[str, int] = {}
    for value in extracted:
        if value is not None:
            counts[value] = counts.get(value, 0) + 1
    if not counts:
        return None
    best = max(counts.values())
    for index, value in enumerate(extracted):
        if value is not None and counts[value] == best:
            return index
    return None  # pragma: no cover - unreachable


def load_grader(target: str) -> Grader:
    """Import ``module:function`` (a ``grade(response, answer) -> bool``).

    Raises:
        ValueError: the target cannot be imported or is not callable.
    """
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"grader {target!r} must be written 'module:function', e.g. 'mygrading:grade'")
    try:
        function = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot load grader {target!r}: {exc}") from None
    if not callable(function):
        raise ValueError(f"grader {target!r} is not a function")
    return function
