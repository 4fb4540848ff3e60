"""Cost estimates for ``max_cost_usd``: what the next layer and the aggregator would cost.

No tokenizer is loaded: a conversation counts what LangChain's
``count_tokens_approximately`` gives (four characters a token, plus each
message's role, name, tool calls and images), and a plain text (a reference)
``ceil(characters / 4)`` tokens, about right for English with most tokenizers.
Both are scaled by what the turn has shown: once
proposals have come back with reported usage, by their reported completion
tokens over their estimated ones. The estimate uses what the turn has shown so
far:

- spent: the cost of this turn's calls from their reported usage and the price
  table (:mod:`langgraph_moa.pricing`; unpriced models are free);
- a call's prompt: the conversation plus the references it will read (the
  previous layer's actual answers for the next proposer layer; the next layer's
  expected answers for the aggregator);
- a call's completion: the mean completion tokens of the turn's calls so far,
  or the model's ``max_tokens`` before any call reported usage (the worst case).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from langchain_core.messages import AnyMessage
from langchain_core.messages.utils import count_tokens_approximately

from langgraph_moa.config import MoAConfig, ModelSpec
from langgraph_moa.pricing import DEFAULT_PRICES, estimate_cost
from langgraph_moa.state import Proposal, UsageRecord


def text_tokens(text: str) -> int:
    """Estimated tokens of ``text``: ``ceil(len / 4)``."""
    return math.ceil(len(text) / 4)


def messages_tokens(messages: Sequence[AnyMessage]) -> int:
    """Estimated prompt tokens of ``messages``: ``count_tokens_approximately`` (text, roles, tool calls, images)."""
    return count_tokens_approximately(messages)


class CostEstimator:
    """Estimates the cost of the calls a run has not made yet.

    Args:
        cfg: The run's configuration (prices, max_tokens, the aggregation prompt).
        messages: The conversation the calls will read.
        usage: This turn's usage records so far (replayed cached calls left out).
        proposals: This turn's proposals so far; with their usage they calibrate
            the characters-per-token estimate.
    """

    def __init__(
        self,
        cfg: MoAConfig,
        messages: Sequence[AnyMessage],
        usage: Sequence[UsageRecord],
        proposals: Sequence[Proposal] = (),
    ) -> None:
        self.cfg = cfg
        self.prices = {**DEFAULT_PRICES, **cfg.prices}
        texts = {(p["layer"], p["slot"]): p["content"] for p in proposals}
        seen = [
            (r["output_tokens"], text_tokens(texts[r["layer"], r["slot"]]))
            for r in usage
            if r["role"] == "proposer" and r["reported"] and r["output_tokens"] > 0 and (r["layer"], r["slot"]) in texts
        ]
        self.scale = sum(n for n, _ in seen) / sum(e for _, e in seen) if seen else 1.0
        """Reported tokens per estimated token, from this turn's proposals (1.0 before any)."""
        self.prompt = self.tokens_of_messages(messages)
        self.spent = float(estimate_cost(usage, cfg.prices)["total_usd"])  # type: ignore[arg-type]
        reported = [r["output_tokens"] for r in usage if r["reported"] and r["output_tokens"] > 0]
        self.mean_output = sum(reported) / len(reported) if reported else None

    def tokens_of_messages(self, messages: Sequence[AnyMessage]) -> float:
        """Estimated prompt tokens of ``messages``, calibrated."""
        return messages_tokens(messages) * self.scale

    def tokens_of(self, text: str) -> float:
        """Estimated tokens of ``text``, calibrated."""
        return text_tokens(text) * self.scale

    def completion(self, spec: ModelSpec) -> float:
        """Expected completion tokens of one call to ``spec``."""
        limit = spec.max_tokens if spec.max_tokens is not None else self.cfg.max_tokens
        return min(limit, self.mean_output) if self.mean_output is not None else limit

    def call(self, spec: ModelSpec, reference_tokens: float) -> float:
        """Estimated dollars of one call to ``spec`` reading references of ``reference_tokens``."""
        price = self.prices.get(spec.model)
        if price is None:
            return 0.0
        prompt = self.prompt + (
            reference_tokens + self.tokens_of(self.cfg.aggregation_prompt) if reference_tokens else 0
        )
        return (prompt * price.input + self.completion(spec) * price.output) / 1e6

    def proposer_layer(self, specs: Sequence[ModelSpec], references: Sequence[str]) -> float:
        """Estimated dollars of a proposer layer reading ``references``."""
        tokens = sum(self.tokens_of(r) for r in references)
        return sum(self.call(spec, tokens) for spec in specs)

    def aggregator_after(self, specs: Sequence[ModelSpec], kept: int | None = None) -> float:
        """Estimated dollars of the aggregator reading the answers of a layer of ``specs``.

        ``kept`` limits the references to that many (``keep_top``).
        """
        answers = sorted((self.completion(s) for s in specs), reverse=True)[: kept if kept else len(specs)]
        return self.aggregation(answers)

    def aggregator_on(self, references: Sequence[str]) -> float:
        """Estimated dollars of the aggregator reading ``references`` (answers already written)."""
        return self.aggregation([self.tokens_of(r) for r in references])

    def aggregation(self, reference_tokens: Sequence[float]) -> float:
        """Estimated dollars of the aggregation of references of these sizes.

        With ``aggregation_window``, every pass counts: each reads the previous
        pass's synthesis (an aggregator completion) and the next references.
        """
        window = self.cfg.aggregation_window
        if not window or len(reference_tokens) <= window:
            return self.call(self.cfg.aggregator, sum(reference_tokens))
        synthesis = self.completion(self.cfg.aggregator)
        total = self.call(self.cfg.aggregator, sum(reference_tokens[:window]))
        rest = list(reference_tokens[window:])
        while rest:
            chunk, rest = rest[: window - 1], rest[window - 1 :]
            total += self.call(self.cfg.aggregator, synthesis + sum(chunk))
        return total
