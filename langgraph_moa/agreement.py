"""How much a layer's proposals agree: the cheap measure behind ``early_stop``.

No model is called. Each proposal is reduced to its final answer:

- the text after its last ``Answer:`` / ``Final answer:`` / ``The answer is:``
  marker, if it has one; otherwise the whole text;
- normalised: lower case, punctuation removed, whitespace collapsed.

If every final answer is short (at most :data:`SHORT_ANSWER_WORDS` words),
agreement is the share of proposals that give the most common answer
(``"Paris"``, ``"paris."`` and ``"Answer: Paris"`` agree). Otherwise it is the
mean pairwise text similarity, ``difflib.SequenceMatcher.ratio`` (1.0 for equal
texts; two paraphrases of the same content score lower than their meaning
suggests, so a threshold around 0.8-0.9 stops only on near-identical answers).
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from collections.abc import Sequence
from itertools import combinations
from typing import Literal

SHORT_ANSWER_WORDS = 8
"""Final answers of at most this many words are compared for equality."""

_MAX_CHARS = 4000  # similarity reads at most this much of each text (the measure stays cheap)
_MARKER = re.compile(r"(?:final answer|answer)\s*(?:is)?\s*[:=]\s*(.+)", re.IGNORECASE)
_PUNCT = re.compile(r"[^\w\s]")


def final_answer(text: str) -> str | None:
    """The text after the last ``Answer:`` marker (case-insensitive), or None."""
    found = _MARKER.findall(text)
    return found[-1].strip() if found else None


def normalise(text: str) -> str:
    """Lower case, punctuation removed, whitespace collapsed."""
    return " ".join(_PUNCT.sub(" ", text.lower()).split())


def similarity(a: str, b: str) -> float:
    """Text similarity of two answers in [0, 1] (difflib ratio of the normalised texts)."""
    return difflib.SequenceMatcher(None, normalise(a)[:_MAX_CHARS], normalise(b)[:_MAX_CHARS]).ratio()


def agreement(texts: Sequence[str]) -> tuple[float, Literal["short_answers", "similarity"]]:
    """How much ``texts`` agree, in [0, 1], and which measure said so.

    Returns ``(1.0, "short_answers")`` for fewer than two texts; callers that
    need two opinions check the count themselves.
    """
    if len(texts) < 2:
        return 1.0, "short_answers"
    answers = [final_answer(t) or t for t in texts]
    normalised = [normalise(a) for a in answers]
    if all(len(a.split()) <= SHORT_ANSWER_WORDS for a in normalised):
        top = Counter(normalised).most_common(1)[0][1]
        return top / len(normalised), "short_answers"
    pairs = list(combinations(answers, 2))
    return sum(similarity(a, b) for a, b in pairs) / len(pairs), "similarity"
