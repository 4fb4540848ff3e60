"""Which proposals of a layer become references: the rankings behind ``keep_top``.

Two rankings, best first:

- :func:`rank_by_rule`, no model call. Failed proposers never reach it (they
  are not proposals). Proposals are ordered by *consensus*, their mean text
  similarity to the layer's other proposals (:func:`~langgraph_moa.agreement.similarity`),
  so outliers come last, as in the robustness work on MoA that drops outlier
  proposals. Walking that order, a proposal that is a near-duplicate
  (similarity >= :data:`NEAR_DUPLICATE`) of one already ranked moves to the end:
  the top ``k`` are the most agreed-upon *distinct* answers.
- a judge model (``MoAConfig.ranker``) asked with :func:`ranking_messages` to
  list the proposals best first; :func:`parse_ranking` reads its reply. A reply
  that does not name at least ``k`` proposals is unparseable: the caller falls
  back to the rule and records why.

The kept proposals stay in proposer order as references.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from langchain_core.messages import AnyMessage, HumanMessage, SystemMessage

from langgraph_moa.agreement import similarity

NEAR_DUPLICATE = 0.9
"""Similarity at or above which two proposals count as near-duplicates."""

RANKING_PROMPT = (
    "You are judging candidate responses to the user's latest message. Rank them from best to worst "
    "for accuracy, helpfulness and completeness. Reply with the candidate numbers only, best first, "
    "separated by commas (for example: 3, 1, 2)."
)
"""System prompt of the ranker (the judge model of ``keep_top``)."""


def rank_by_rule(texts: Sequence[str]) -> list[int]:
    """Indexes of ``texts`` best first: by consensus, near-duplicates of better ones last."""
    n = len(texts)
    if n < 2:
        return list(range(n))
    sim = [[1.0 if i == j else 0.0 for j in range(n)] for i in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            sim[i][j] = sim[j][i] = similarity(texts[i], texts[j])
    consensus = [sum(sim[i][j] for j in range(n) if j != i) / (n - 1) for i in range(n)]
    by_consensus = sorted(range(n), key=lambda i: (-consensus[i], i))
    distinct: list[int] = []
    duplicates: list[int] = []
    for i in by_consensus:
        (duplicates if any(sim[i][j] >= NEAR_DUPLICATE for j in distinct) else distinct).append(i)
    return distinct + duplicates


def ranking_messages(history: Sequence[AnyMessage], texts: Sequence[str]) -> list[AnyMessage]:
    """The ranker's prompt: the conversation, then the numbered candidates to rank."""
    candidates = "\n\n".join(f"[{i}]\n{text}" for i, text in enumerate(texts, start=1))
    return [
        SystemMessage(content=RANKING_PROMPT),
        *[m for m in history if not isinstance(m, SystemMessage)],
        HumanMessage(content=f"Candidate responses to rank:\n\n{candidates}\n\nRanking (numbers only, best first):"),
    ]


def parse_ranking(reply: str, n: int, k: int) -> list[int] | None:
    """Indexes (0-based) named by a ranker's ``reply``, best first; None if fewer than ``k``.

    Numbers outside 1..n and repeats are ignored; candidates the reply left out
    follow in proposer order.
    """
    named: list[int] = []
    for token in re.findall(r"\d+", reply):
        index = int(token) - 1
        if 0 <= index < n and index not in named:
            named.append(index)
    if len(named) < min(k, n):
        return None
    return named + [i for i in range(n) if i not in named]
