"""Token prices and cost estimates.

Prices are US dollars per million tokens, keyed by the full ``"provider:model"``
string. The table holds approximate list prices; they were not checked against
the providers' current price pages and they change, so treat the estimate as an
estimate and override any entry through ``MoAConfig(prices={...})``. Models missing from the table (local servers, for
example) cost nothing in the estimate and are listed as unpriced.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pydantic import BaseModel, ConfigDict, Field

from langgraph_moa.state import UsageRecord
from langgraph_moa.strict_types import Number


class ModelPrice(BaseModel):
    """Price of one model in US dollars per million tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: Number = Field(ge=0, description="Dollars per million prompt tokens.")
    output: Number = Field(ge=0, description="Dollars per million completion tokens.")


def _p(inp: float, out: float | None = None) -> ModelPrice:
    return ModelPrice(input=inp, output=inp if out is None else out)


DEFAULT_PRICES: dict[str, ModelPrice] = {
    # Together AI serverless list prices (input = output for these models).
    "together:Qwen/Qwen1.5-110B-Chat": _p(1.80),
    "together:Qwen/Qwen1.5-72B-Chat": _p(0.90),
    "together:microsoft/WizardLM-2-8x22B": _p(1.20),
    "together:meta-llama/Llama-3-70b-chat-hf": _p(0.90),
    "together:mistralai/Mixtral-8x22B-Instruct-v0.1": _p(1.20),
    "together:databricks/dbrx-instruct": _p(1.20),
    "together:meta-llama/Llama-3.3-70B-Instruct-Turbo": _p(0.88),
    "together:Qwen/Qwen2.5-72B-Instruct-Turbo": _p(1.20),
    "together:Qwen/Qwen2.5-Coder-32B-Instruct": _p(0.80),
    "together:deepseek-ai/DeepSeek-V3": _p(1.25),
    # OpenAI list prices.
    "openai:gpt-4o": _p(2.50, 10.00),
    "openai:gpt-4o-2024-05-13": _p(5.00, 15.00),
    "openai:gpt-4o-mini": _p(0.15, 0.60),
}
"""Built-in price table; ``MoAConfig.prices`` entries take precedence."""


def estimate_cost(records: Iterable[UsageRecord], prices: Mapping[str, ModelPrice] | None = None) -> dict[str, object]:
    """Estimate the dollar cost of the calls in ``records``.

    Args:
        records: Usage records, as kept in the graph state's ``usage`` key.
        prices: Extra or overriding prices, merged over :data:`DEFAULT_PRICES`.

    Returns:
        ``{"total_usd": float, "by_model": {model: usd}, "unpriced": [model, ...]}``.
    """
    table = {**DEFAULT_PRICES, **(prices or {})}
    by_model: dict[str, float] = {}
    unpriced: list[str] = []
    for rec in records:
        price = table.get(rec["model"])
        if price is None:
            if rec["model"] not in unpriced:
                unpriced.append(rec["model"])
            continue
        usd = (rec["input_tokens"] * price.input + rec["output_tokens"] * price.output) / 1e6
        by_model[rec["model"]] = by_model.get(rec["model"], 0.0) + usd
    return {"total_usd": sum(by_model.values()), "by_model": by_model, "unpriced": unpriced}
