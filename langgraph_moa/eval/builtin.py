"""How the built-in exact-answer suites are made.

``arithmetic``: short arithmetic word problems (one or two steps with small
whole numbers), generated with a fixed seed and shipped as
``langgraph_moa/eval/data/arithmetic.jsonl``, so every run uses exactly the same
items. Regenerate (it writes the same file) with::

    python -m langgraph_moa.eval.builtin
"""

from __future__ import annotations

import json
import random
from pathlib import Path

ARITHMETIC_SEED = 20240607
ARITHMETIC_SIZE = 200

_NAMES = ["Ana", "Ben", "Chloe", "Dev", "Emma", "Farid", "Grace", "Hugo", "Ines", "Jonas", "Kemi", "Liam"]
_THINGS = ["apples", "books", "coins", "marbles", "pencils", "stickers", "cookies", "cards", "shells", "stamps"]


def _problem(rng: random.Random) -> tuple[str, int]:
    name, other = rng.sample(_NAMES, 2)
    thing = rng.choice(_THINGS)
    kind = rng.choice(["add", "sub", "mul", "div", "add_sub", "mul_add"])
    if kind == "add":
        a, b = rng.randint(2, 60), rng.randint(2, 60)
        return f"{name} has {a} {thing} and gets {b} more from {other}. How many {thing} does {name} have now?", a + b
    if kind == "sub":
        a = rng.randint(10, 90)
        b = rng.randint(1, a - 1)
        return (
            f"{name} has {a} {thing} and gives {b} of them to {other}. How many {thing} does {name} have left?",
            a - b,
        )
    if kind == "mul":
        a, b = rng.randint(2, 12), rng.randint(2, 12)
        return f"{name} has {a} boxes with {b} {thing} in each box. How many {thing} does {name} have?", a * b
    if kind == "div":
        b, q = rng.randint(2, 9), rng.randint(2, 12)
        return (
            f"{name} shares {b * q} {thing} equally among {b} friends. How many {thing} does each friend get?",
            q,
        )
    if kind == "add_sub":
        a, b = rng.randint(5, 40), rng.randint(2, 30)
        c = rng.randint(1, a + b - 1)
        return (
            f"{name} has {a} {thing}, buys {b} more, then gives {c} to {other}. How many {thing} does {name} have now?",
            a + b - c,
        )
    a, b, c = rng.randint(2, 9), rng.randint(2, 9), rng.randint(1, 20)
    return (
        f"{name} buys {a} packs of {b} {thing} and already had {c}. How many {thing} does {name} have in total?",
        a * b + c,
    )


def arithmetic_items(size: int = ARITHMETIC_SIZE, seed: int = ARITHMETIC_SEED) -> list[dict[str, str]]:
    """The arithmetic suite as ``{"id", "question", "answer"}`` dicts."""
    rng = random.Random(seed)
    items = []
    for index in range(1, size + 1):
        question, answer = _problem(rng)
        items.append({"id": f"arith-{index:03d}", "question": question, "answer": str(answer)})
    return items


def write_arithmetic(path: Path) -> None:
    """Write the arithmetic suite as JSONL to ``path``."""
    path.write_text("".join(json.dumps(item) + "\n" for item in arithmetic_items()), encoding="utf-8")


if __name__ == "__main__":  # pragma: no cover
    from langgraph_moa.eval.items import BUILTIN_SUITES

    write_arithmetic(BUILTIN_SUITES["arithmetic"])
    print(BUILTIN_SUITES["arithmetic"])
