"""The ``steer`` node: the cost-saving options between proposer layers.

Each option is off by default (see ``docs/strategies.md``). When one is on, the
graph routes through ``steer`` after a proposer layer (and, with a budget,
before the first one)::

    prepare -> [steer] -> propose (x N) -> join_layer -> [steer] -> ... -> aggregate

``steer`` applies, in this order:

1. ``keep_top``: keep the best k proposals of the layer that just finished as
   references (:mod:`langgraph_moa.selection`); the others move to ``dropped``.
2. ``early_stop``: if that layer's proposals agree at least this much
   (:mod:`langgraph_moa.agreement`), skip the remaining proposer layers.
3. ``max_cost_usd``: if the next proposer layer and the aggregator after it
   would bring the run's estimated cost over the budget (:mod:`langgraph_moa.budget`),
   skip the remaining proposer layers. Before the first layer, a budget that
   cannot pay even for the aggregator alone stops the run before any call.

Skipping sets ``stopped_after`` (the aggregator then reads that layer's
references) and jumps ``layer`` to the aggregator's. Every action is recorded
in the state's ``decisions`` and sent on the ``custom`` stream as
``{"event": "strategy", "option": ..., "layer": ..., "action": ..., "reason": ...}``.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any

from langchain_core.messages import AnyMessage
from langchain_core.runnables import Runnable, RunnableConfig
from langgraph.config import get_stream_writer
from langgraph.runtime import Runtime
from langgraph.types import Overwrite

from langgraph_moa.agreement import agreement
from langgraph_moa.budget import CostEstimator
from langgraph_moa.calls import Answer, ModelCall, NodeBody, NodeUpdate, spec_key_variables, sync_and_async
from langgraph_moa.config import MoAConfig
from langgraph_moa.context import turn_moa_config
from langgraph_moa.errors import ConfigError
from langgraph_moa.node_names import STEER_NODE
from langgraph_moa.prompts import tool_turns_as_text
from langgraph_moa.providers import ModelResolver, describe_error
from langgraph_moa.selection import parse_ranking, rank_by_rule, ranking_messages
from langgraph_moa.state import Decision, MoAState, UsageRecord, references_of
from langgraph_moa.usage import is_cached, usage_record

Ranking = tuple[list[int], str, str, list[UsageRecord]]


def _rank(
    resolve: ModelResolver, cfg: MoAConfig, messages: Sequence[AnyMessage], texts: list[str], layer: int
) -> Generator[ModelCall, Answer, Ranking]:
    """Rank ``texts`` best first: ``(order, method, why it fell back, ranker usage)``.

    A node-body generator: it yields the ranker's model call, if there is a ranker.
    """
    k = cfg.keep_top or len(texts)
    spec = cfg.ranker
    if spec is None:
        return rank_by_rule(texts), "rule", "", []
    try:
        model = resolve(spec, cfg, streaming=False)
        answer, calls = yield ModelCall(model, ranking_messages(tool_turns_as_text(messages), texts), cfg.timeout)
    except Exception as exc:  # a failed judge is not a failed run: the rule ranks instead
        error_type, message = describe_error(exc, variables=spec_key_variables(spec))
        return rank_by_rule(texts), "rule_fallback", f"ranker {spec.model} failed: {error_type}: {message}", []
    usage = [usage_record(calls, layer, 0, spec.model, "ranker")]
    order = parse_ranking(answer.text, len(texts), k)
    if order is None:
        why = f"ranker {spec.model} named fewer than {k} of the {len(texts)} candidates: {answer.text[:120]!r}"
        return rank_by_rule(texts), "rule_fallback", why, usage
    return order, "ranker", "", usage


def make_steer(resolve: ModelResolver) -> Runnable[MoAState, NodeUpdate]:
    """Build the ``steer`` node (see the module docstring); it runs under ``invoke`` and ``ainvoke``."""

    def steer(state: MoAState, runtime: Runtime[MoAConfig], config: RunnableConfig) -> NodeBody:
        cfg = turn_moa_config(runtime, config, state.get("moa_config"))
        write = get_stream_writer()
        upcoming = state["layer"]
        finished = upcoming - 1
        proposals = list(state.get("proposals", []))
        layer_proposals = [p for p in proposals if p["layer"] == finished]
        decisions: list[Decision] = []
        update: dict[str, Any] = {}

        def decide(option: str, action: str, reason: str, **detail: Any) -> None:
            decisions.append(Decision(option=option, layer=finished, action=action, reason=reason, detail=detail))
            write({"event": "strategy", "option": option, "layer": finished, "action": action, "reason": reason})

        def skip_rest(option: str, reason: str, **detail: Any) -> None:
            skipped = list(range(upcoming, cfg.layers))
            decide(option, "skipped_layers", reason, skipped_layers=skipped, **detail)
            update.update({"layer": cfg.layers, "stopped_after": finished})

        new_usage: list[UsageRecord] = []
        if finished >= 1 and cfg.keep_top is not None:
            k = cfg.keep_top
            if len(layer_proposals) <= k:
                decide("keep_top", "kept", f"{len(layer_proposals)} proposal(s), keep_top={k}: all kept")
            else:
                texts = [p["content"] for p in layer_proposals]
                order, method, why, new_usage = yield from _rank(resolve, cfg, state["messages"], texts, finished)
                keep = sorted(order[:k])
                kept = [layer_proposals[i] for i in keep]
                dropped = [p for i, p in enumerate(layer_proposals) if i not in keep]
                others = [p for p in proposals if p["layer"] != finished]
                update["proposals"] = Overwrite([*others, *kept])
                update["dropped"] = dropped
                reason = f"kept {k} of {len(texts)} proposals, ranked by " + (
                    f"{cfg.ranker.model}" if method == "ranker" and cfg.ranker else "the rule"
                )
                if why:
                    reason += f" (fallback: {why})"
                decide(
                    "keep_top",
                    "kept",
                    reason,
                    method=method,
                    kept_slots=[p["slot"] for p in kept],
                    dropped_slots=[p["slot"] for p in dropped],
                    ranking_slots=[layer_proposals[i]["slot"] for i in order],
                )

        if finished >= 1 and cfg.early_stop is not None and upcoming < cfg.layers:
            texts = [p["content"] for p in layer_proposals]
            if len(texts) < 2:
                decide("early_stop", "continued", f"{len(texts)} proposal(s): nothing to compare")
            else:
                value, measure = agreement(texts)
                detail = {"agreement": round(value, 4), "measure": measure, "threshold": cfg.early_stop}
                if value >= cfg.early_stop:
                    skip_rest(
                        "early_stop",
                        f"layer {finished} agrees {value:.2f} >= {cfg.early_stop} ({measure}): "
                        f"skipping proposer layer(s) {upcoming}-{cfg.layers - 1}",
                        **detail,
                    )
                else:
                    decide(
                        "early_stop", "continued", f"layer {finished} agrees {value:.2f} < {cfg.early_stop}", **detail
                    )

        if cfg.max_cost_usd is not None and "stopped_after" not in update:
            budget = cfg.max_cost_usd
            usage = [r for r in state.get("usage", []) if not is_cached(r, state)] + new_usage
            est = CostEstimator(cfg, state["messages"], usage, proposals)
            if finished == 0:
                alone = est.aggregator_on([])
                if alone > budget:
                    raise ConfigError(
                        f"max_cost_usd={budget} cannot pay for the aggregator alone: {cfg.aggregator.model} is "
                        f"estimated at ${alone:.6f} ({est.prompt:.0f} prompt tokens, up to "
                        f"{est.completion(cfg.aggregator):.0f} completion tokens); raise max_cost_usd, lower "
                        "max_tokens or choose a cheaper aggregator"
                    )
            if upcoming < cfg.layers:
                specs = cfg.proposers_for(upcoming)
                if "proposals" in update:  # the references keep_top just chose
                    references = [p["content"] for p in update["proposals"].value if p["layer"] == finished]
                else:
                    references = references_of(state, finished)
                layer_cost = est.proposer_layer(specs, references)
                after = est.aggregator_after(specs, cfg.keep_top)
                total = est.spent + layer_cost + after
                detail = {
                    "spent_usd": round(est.spent, 8),
                    "layer_usd": round(layer_cost, 8),
                    "aggregator_usd": round(after, 8),
                    "budget_usd": budget,
                }
                if total > budget:
                    skip_rest(
                        "max_cost_usd",
                        f"layer {upcoming} would bring the estimate to ${total:.6f} > budget ${budget}: aggregating now",
                        **detail,
                    )
                else:
                    decide(
                        "max_cost_usd", "continued", f"layer {upcoming}: estimate ${total:.6f} <= ${budget}", **detail
                    )

        if new_usage:
            update["usage"] = new_usage
        return {**update, "decisions": decisions}

    return sync_and_async(STEER_NODE, steer)
