"""Where the MoA graph goes after each node: its conditional edges.

- ``route_layer`` (after ``prepare`` and ``join_layer``) fans a proposer layer
  out as one LangGraph ``Send`` per proposer slot (all run in the same step, in
  parallel), with a ``Send`` to ``provisional`` beside the proposers of layers 2
  and up when ``MoAConfig.provisional_answers`` is on; after the last proposer
  layer it goes to ``review`` (with ``MoAConfig.review``) or the aggregator; with
  ``MoAConfig.staircase``, to ``staircase`` instead of the last proposer layer.
  When a cost-saving option has something to decide (:func:`steer_due`), it goes
  through ``steer`` first (:mod:`langgraph_moa.strategies`), which routes on with
  ``route_after_steer``.
- Each route has a label (:data:`NEXT_LAYER`, :data:`COST_OPTION`, ...), and each
  routing node a path map (:data:`ROUTES_AFTER_PREPARE`, :data:`ROUTES_AFTER_JOIN`,
  :data:`ROUTES_AFTER_STEER`) naming exactly where it can go: the labels are what
  LangGraph Studio draws on the edges.

The routing functions are pure: they read the turn's configuration from the
state (``moa_config``) and need no runtime, so ``update_state`` (LangGraph
Studio's "edit and fork"), which runs them without one, works at every checkpoint.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any, Literal

from langchain_core.runnables import RunnableConfig
from langgraph.types import Send

from langgraph_moa.cache import answer_settings
from langgraph_moa.config import MoAConfig
from langgraph_moa.context import turn_moa_config
from langgraph_moa.node_names import (
    AGGREGATOR_NODE,
    PROPOSER_NODE,
    PROVISIONAL_NODE,
    REVIEW_NODE,
    STAIRCASE_NODE,
    STEER_NODE,
)
from langgraph_moa.seeds import slot_seed
from langgraph_moa.state import MoAState, ProposerInput, ProvisionalInput, references_of


def steer_due(cfg: MoAConfig, upcoming: int) -> bool:
    """Whether a cost-saving option has something to decide before layer ``upcoming``.

    (``keep_top`` and ``early_stop`` after a proposer layer, ``max_cost_usd`` before
    a proposer layer or the aggregator alone; see :mod:`langgraph_moa.strategies`.)
    """
    finished = upcoming - 1
    proposer_layer_next = upcoming < cfg.layers
    return (
        (cfg.max_cost_usd is not None and (finished == 0 or proposer_layer_next))
        or (finished >= 1 and cfg.keep_top is not None)
        or (finished >= 1 and cfg.early_stop is not None and proposer_layer_next)
    )


NEXT_LAYER: Literal["next layer"] = "next layer"
"""The route to a proposer layer's fan-out (one ``Send`` per proposer; the label drawn on the edge to ``propose``)."""
PROVISIONAL_ANSWER: Literal["provisional answers on"] = "provisional answers on"
"""The route to ``provisional``, sent beside the proposers of layers 2 and up."""
COST_OPTION: Literal["cost-saving option on"] = "cost-saving option on"
"""The route to ``steer``: ``keep_top``, ``early_stop`` or ``max_cost_usd`` has something to decide."""
REVIEW: Literal["review on"] = "review on"
"""The route to ``review``, before the aggregator, with ``MoAConfig.review``."""
STAIRCASE: Literal["staircase on"] = "staircase on"
"""The route to ``staircase``: with ``MoAConfig.staircase``, the last proposer layer and the answer, pipelined."""
LAYERS_DONE: Literal["proposer layers done"] = "proposer layers done"
"""The route to ``aggregate``: no proposer layer is left (the last ran, early stop or the budget skipped
the rest, or ``layers=1``)."""

ROUTES_AFTER_PREPARE: dict[Hashable, str] = {
    NEXT_LAYER: PROPOSER_NODE,
    COST_OPTION: STEER_NODE,
    LAYERS_DONE: AGGREGATOR_NODE,
    STAIRCASE: STAIRCASE_NODE,
}
"""Where ``prepare`` can go, by route (the graph's ``path_map``, so the drawing shows exactly these): the
first proposer layer, ``steer`` (``max_cost_usd`` checks the estimate first) or, with ``layers=1``, the
aggregator. Never ``provisional`` (it starts at layer 2) nor ``review`` (there are no proposals to review)."""
ROUTES_AFTER_JOIN: dict[Hashable, str] = {
    NEXT_LAYER: PROPOSER_NODE,
    PROVISIONAL_ANSWER: PROVISIONAL_NODE,
    COST_OPTION: STEER_NODE,
    REVIEW: REVIEW_NODE,
    LAYERS_DONE: AGGREGATOR_NODE,
    STAIRCASE: STAIRCASE_NODE,
}
"""Where ``join_layer`` can go, by route."""
ROUTES_AFTER_STEER: dict[Hashable, str] = {
    NEXT_LAYER: PROPOSER_NODE,
    PROVISIONAL_ANSWER: PROVISIONAL_NODE,
    REVIEW: REVIEW_NODE,
    LAYERS_DONE: AGGREGATOR_NODE,
    STAIRCASE: STAIRCASE_NODE,
}
"""Where ``steer`` can go, by route (never to itself)."""


def route_layer(
    state: MoAState, config: RunnableConfig
) -> list[Send] | Literal["cost-saving option on", "review on", "proposer layers done", "staircase on"]:
    """Fan out the next proposer layer; after the last one, go to review or the aggregator.

    When a cost-saving option is on, go to ``steer`` first (it routes on with
    :func:`route_after_steer`). Returns ``Send`` s to ``propose`` (and to
    ``provisional``), or a route of :data:`ROUTES_AFTER_JOIN`. The
    configuration is the turn's, read from the state (``moa_config``): the
    routing needs no runtime, so ``update_state`` (LangGraph Studio's "edit and
    fork"), which runs it without one, works at every checkpoint.
    """
    cfg = turn_moa_config(None, config, state.get("moa_config"))
    if steer_due(cfg, state["layer"]):
        return COST_OPTION
    return _next_layer(state, cfg)


def route_after_steer(
    state: MoAState, config: RunnableConfig
) -> list[Send] | Literal["review on", "proposer layers done", "staircase on"]:
    """Route on after ``steer``: the next proposer layer, review or the aggregator (:data:`ROUTES_AFTER_STEER`)."""
    return _next_layer(state, turn_moa_config(None, config, state.get("moa_config")))


def _next_layer(
    state: MoAState, cfg: MoAConfig
) -> list[Send] | Literal["review on", "proposer layers done", "staircase on"]:
    layer = state["layer"]
    if layer >= cfg.layers:
        return REVIEW if cfg.review and last_proposer_layer(state, cfg) > 0 else LAYERS_DONE
    if cfg.staircase and layer == cfg.layers - 1:
        return STAIRCASE
    references = references_of(state, layer - 1)
    sends = [
        Send(
            PROPOSER_NODE,
            ProposerInput(
                layer=layer,
                slot=slot,
                messages=state["messages"],
                references=references,
                config_fingerprint=state["config_fingerprint"],
                moa_config=state["moa_config"],
                # read by the proposal cache's key, which so keys on the seed the call uses
                settings=answer_settings(spec, cfg, seed=slot_seed(state.get("run_seed"), spec, layer, slot)),
                turn_id=state.get("turn_id", ""),
            ),
        )
        for slot, spec in enumerate(cfg.proposers_for(layer))
    ]
    if cfg.provisional_answers and layer >= 2:  # see provisional.py
        built_from = [p["model"] for p in state.get("proposals", []) if p["layer"] == layer - 1]
        payload = ProvisionalInput(
            layer=layer - 1,
            messages=state["messages"],
            references=references,
            built_from=built_from,
            config_fingerprint=state["config_fingerprint"],
            moa_config=state["moa_config"],
        )
        sends.append(Send(PROVISIONAL_NODE, payload))
    return sends


def last_proposer_layer(state: Mapping[str, Any], cfg: MoAConfig) -> int:
    """The proposer layer whose answers the aggregator reads.

    The last one, or the one after which early stop or the budget skipped the
    rest (``stopped_after``; 0 when no proposer layer ran).
    """
    stopped = state.get("stopped_after")
    return cfg.layers - 1 if stopped is None else int(stopped)
