"""Usage accounting: a call's usage record, and a turn's totals and cost.

Every model call a node makes leaves one :class:`~langgraph_moa.state.UsageRecord`
in the state's ``usage`` (:func:`usage_record`); the aggregator sums the turn's
into ``usage_summary`` (:func:`summarize_usage`): per layer, per model and in
total, with the cost estimate of :func:`~langgraph_moa.pricing.estimate_cost`.

A record replayed from the proposal cache carries the ``turn_id`` of the turn
that made the call (:func:`is_cached`): it is counted in ``cached_calls`` and
left out of the tokens and the cost, since it cost nothing now.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from langchain_core.messages import BaseMessage

from langgraph_moa.config import MoAConfig
from langgraph_moa.pricing import estimate_cost
from langgraph_moa.state import UsageRecord, UsageSummary


def usage_record(calls: Sequence[BaseMessage], layer: int, slot: int, model: str, role: Any) -> UsageRecord:
    """Usage of one proposer or aggregator, summed over the model calls it made."""
    metas = [m.usage_metadata for m in calls if getattr(m, "usage_metadata", None)]  # type: ignore[attr-defined]
    return UsageRecord(
        layer=layer,
        slot=slot,
        model=model,
        role=role,
        input_tokens=sum(int(meta.get("input_tokens", 0)) for meta in metas),
        output_tokens=sum(int(meta.get("output_tokens", 0)) for meta in metas),
        reported=bool(metas),
    )


def is_cached(record: UsageRecord, state: Mapping[str, Any]) -> bool:
    """Whether ``record`` was replayed from the proposal cache (made by an earlier turn)."""
    return record.get("turn_id", state.get("turn_id")) != state.get("turn_id")


def total_usage(records: list[UsageRecord]) -> dict[str, int]:
    """Sum prompt and completion tokens over ``records``."""
    inp = sum(r["input_tokens"] for r in records)
    out = sum(r["output_tokens"] for r in records)
    return {"input_tokens": inp, "output_tokens": out, "total_tokens": inp + out}


def usage_by(records: list[UsageRecord], key: Literal["layer", "model"]) -> dict[Any, dict[str, int]]:
    """Sum token usage grouped by layer or by model."""
    groups: dict[Any, list[UsageRecord]] = {}
    for r in records:
        groups.setdefault(r[key], []).append(r)
    return {k: total_usage(v) for k, v in groups.items()}


def summarize_usage(records: list[UsageRecord], cfg: MoAConfig, turn_id: str | None = None) -> UsageSummary:
    """Sum ``records`` per layer, per model and in total, and estimate their cost.

    Records made by another turn than ``turn_id`` (replayed from the proposal
    cache) are counted in ``cached_calls`` and left out of the tokens and cost.
    """
    turn = {"turn_id": turn_id}
    cached = [r for r in records if turn_id is not None and is_cached(r, turn)]
    records = [r for r in records if not (turn_id is not None and is_cached(r, turn))]
    cost = estimate_cost(records, cfg.prices)
    return UsageSummary(
        total=total_usage(records),
        by_layer={str(k): v for k, v in usage_by(records, "layer").items()},
        by_model=usage_by(records, "model"),
        cost_usd=round(float(cost["total_usd"]), 8),  # type: ignore[arg-type]
        unpriced_models=list(cost["unpriced"]),  # type: ignore[call-overload]
        unreported_calls=sum(1 for r in records if not r["reported"]),
        cached_calls=len(cached),
    )
