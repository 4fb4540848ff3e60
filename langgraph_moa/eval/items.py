"""Evaluation inputs: reading JSONL/JSON files with errors that name the file and line.

An exact-answer file is JSON Lines, one item per line::

    {"id": "q1", "question": "What is 2 + 3?", "answer": "5"}

``id`` is optional (the line number is used); ``answer`` may be a string or a
number. Blank lines are skipped. The built-in suites (:data:`BUILTIN_SUITES`)
ship inside the package.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langgraph_moa.errors import MoAError

DATA = Path(__file__).parent / "data"
BUILTIN_SUITES = {"arithmetic": DATA / "arithmetic.jsonl"}
"""Built-in exact-answer suites by name (see :mod:`langgraph_moa.eval.builtin` for how they are made)."""


class EvalInputError(MoAError):
    """An evaluation input file is unreadable or malformed; the message names the file and line."""


@dataclass(frozen=True)
class ExactItem:
    """One exact-answer question."""

    id: str
    question: str
    answer: str


def read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for every non-blank line of a JSONL file.

    Raises:
        EvalInputError: the file is missing, or a line is not a JSON object.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise EvalInputError(f"cannot read {path}: {exc.strerror or exc}") from None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EvalInputError(f"{path}:{number}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(value, dict):
            raise EvalInputError(f"{path}:{number}: expected a JSON object, got {type(value).__name__}")
        yield number, value


def read_json(path: Path) -> Any:
    """The JSON value of a file.

    Raises:
        EvalInputError: the file is missing or not JSON (naming the line).
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise EvalInputError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise EvalInputError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg} at column {exc.colno})") from None


def field(path: Path, number: int, obj: dict[str, Any], name: str, kinds: tuple[type, ...] = (str,)) -> Any:
    """``obj[name]``, checked to be one of ``kinds`` and not blank.

    Raises:
        EvalInputError: naming the file, line and field.
    """
    if name not in obj:
        raise EvalInputError(f"{path}:{number}: missing field {name!r} (fields: {', '.join(sorted(obj)) or 'none'})")
    value = obj[name]
    if isinstance(value, bool) or not isinstance(value, kinds) or (isinstance(value, str) and not value.strip()):
        wanted = " or ".join(k.__name__ for k in kinds)
        raise EvalInputError(f"{path}:{number}: field {name!r} must be a non-empty {wanted}, got {value!r:.60}")
    return value


def load_exact(path: Path | str) -> list[ExactItem]:
    """Read an exact-answer JSONL file.

    Raises:
        EvalInputError: a malformed line, a missing field or a repeated id, naming the file and line.
    """
    path = Path(path)
    items: list[ExactItem] = []
    seen: dict[str, int] = {}
    for number, obj in read_jsonl(path):
        question = field(path, number, obj, "question")
        answer = field(path, number, obj, "answer", (str, int, float))
        item_id = str(field(path, number, obj, "id", (str, int))) if "id" in obj else str(number)
        if item_id in seen:
            raise EvalInputError(f"{path}:{number}: id {item_id!r} already used on line {seen[item_id]}")
        seen[item_id] = number
        items.append(ExactItem(id=item_id, question=question, answer=str(answer)))
    if not items:
        raise EvalInputError(f"{path}: no items")
    return items


def builtin_suite(name: str) -> list[ExactItem]:
    """The items of a built-in suite.

    Raises:
        EvalInputError: ``name`` is not a built-in suite; the message lists them.
    """
    if name not in BUILTIN_SUITES:
        raise EvalInputError(f"unknown built-in suite {name!r}; choose one of: {', '.join(BUILTIN_SUITES)}")
    return load_exact(BUILTIN_SUITES[name])
