"""A judge model: any ``provider:model`` (a local OpenAI-compatible server included), called at temperature 0.

The judge runs through the same graph as the systems (one layer: the model
answers directly), so keys, endpoints, retries and timeouts behave alike. Its
tokens and cost are saved with each result (``judge_usage``, ``judge_cost_usd``)
and are not counted in the judged system's cost.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from langgraph_moa.config import MoAConfig, ModelSpec
from langgraph_moa.usage import total_usage

from .runner import GraphRunner

JUDGE_MAX_TOKENS = 2048
"""FastChat's judge limit."""

_RATING = re.compile(r"\[\[(\d+\.?\d*)\]\]")
_RATING_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")
_VERDICT = re.compile(r"\[\[\s*(A|B|C|tie)\s*\]\]", re.IGNORECASE)


def judge_config(
    model: str,
    *,
    base_url: str | None = None,
    timeout: float = 300.0,
    max_tokens: int = JUDGE_MAX_TOKENS,
    seed: int | None = None,
) -> MoAConfig:
    """The configuration that calls ``model`` as a judge: one call, temperature 0.

    Args:
        model: ``provider:model``; a bare name with ``base_url`` means ``openai:<name>``.
        base_url: An OpenAI-compatible endpoint for the judge.
        timeout: Seconds per judge call.
        max_tokens: Completion limit of a judgment.
        seed: Sampling seed, where the provider supports one.
    """
    if base_url and ":" not in model:
        model = f"openai:{model}"
    spec = ModelSpec(model=model, base_url=base_url, temperature=0.0, seed=seed)
    return MoAConfig(
        layers=1, proposers=[spec], aggregator=spec, temperature=0.0, max_tokens=max_tokens, timeout=timeout
    )


@dataclass
class Judgment:
    """One judge call: its text and cost."""

    text: str
    usage: dict[str, int]
    cost_usd: float


async def ask_judge(runner: GraphRunner, config: MoAConfig, system_prompt: str, prompt: str) -> Judgment:
    """Send one judging prompt (FastChat puts the instructions in the system message)."""
    messages: list[Any] = [("system", system_prompt)] if system_prompt else []
    messages.append(("user", prompt))
    run = await runner.run(config, messages)
    return Judgment(text=run.answer, usage=total_usage(run.usage), cost_usd=run.cost_usd)


def parse_rating(text: str) -> float | None:
    """The rating of a single-answer judgment: ``[[n]]`` (else ``[n]``), as FastChat reads it; None if absent.

    Like FastChat, a number outside 1-10 is kept as it is (its ``show_result.py``
    averages every rating that is not -1, its mark for "no rating").
    """
    match = _RATING.search(text) or _RATING_BACKUP.search(text)
    return None if match is None else float(match.group(1))


def parse_verdict(text: str) -> str | None:
    """The verdict of a pairwise judgment: ``"A"``, ``"B"`` or ``"C"`` (a tie); None if absent or ambiguous."""
    found = {m.upper().replace("TIE", "C") for m in _VERDICT.findall(text)}
    return found.pop() if len(found) == 1 else None


def add_usage(*usages: dict[str, int]) -> dict[str, int]:
    """Sum token-usage dicts."""
    keys = ("input_tokens", "output_tokens", "total_tokens")
    return {k: sum(u.get(k, 0) for u in usages) for k in keys}
