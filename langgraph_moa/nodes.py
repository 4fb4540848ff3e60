"""The nodes of the MoA graph and its routing.

- ``prepare`` starts a turn: it takes the run's configuration (the thread's
  last one when the run names none) and stores it in the state for the rest of
  the turn, checks the input, every model's provider and API key (before any
  call), and clears the previous turn's proposals, failures and usage, so
  references never leak between turns.
- ``route_layer`` fans a proposer layer out as one LangGraph ``Send`` per
  proposer slot (all run in the same step, in parallel), or routes to the
  aggregator after the last proposer layer; when a cost-saving option is on, it
  goes through ``steer`` first (:mod:`langgraph_moa.strategies`), which routes on
  with ``route_after_steer``.
- ``propose`` calls one proposer. Provider errors and timeouts become a recorded
  :class:`~langgraph_moa.state.Failure` instead of a failed run, so one bad
  provider never cancels its siblings: ``propose`` raises
  :class:`~langgraph_moa.cache.ProposerFailed` (which the proposal cache never
  keeps) and the node's error handler records it.
- ``join_layer`` closes a layer: it needs ``min_proposals`` successes, otherwise
  it raises :class:`~langgraph_moa.errors.LayerFailedError` naming every failure.
- ``review`` (only when ``MoAConfig.review`` is set) pauses the run with a
  LangGraph ``interrupt`` before the aggregation, showing the last layer's
  proposals; the value it is resumed with keeps, edits or drops them.
- ``aggregate`` writes the final answer from the last layer's references; its
  tokens are the only ones on the ``messages`` stream. With
  ``MoAConfig.aggregator_tools`` it may answer with tool calls instead; with
  ``MoAConfig.aggregation_window`` it reads many references in passes
  (Self-MoA-Seq), of which only the last streams.

Every node runs in both modes: ``graph.invoke``/``stream`` and
``graph.ainvoke``/``astream``. The nodes without I/O are plain functions;
``propose`` and ``aggregate`` have one body each, written as a generator that
yields its model call (``answer, calls = yield ModelCall(...)``); a sync driver
makes that call with ``invoke`` (:func:`_call`), an async one with ``ainvoke``
(:func:`_acall`), and each hands the answer (or the error) back to the body.

Every node emits progress on the ``custom`` stream (``get_stream_writer``) as
dicts with an ``"event"`` key: ``run_started``, ``proposer_started``,
``proposer_done``, ``proposer_failed``, ``quorum_reached`` (with
``MoAConfig.straggler_timeout``: the layer has ``min_proposals`` and the
cut-off clock starts), ``layer_done`` (with ``cached``: proposals replayed from the
proposal cache), ``strategy`` (what ``steer`` decided), ``review_done``,
``aggregator_started``, ``aggregator_pass`` (an earlier pass of the aggregation
window).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Generator, Hashable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Any, Literal, NamedTuple, cast

from langchain_core.messages import AIMessage, AnyMessage, BaseMessage
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda
from langgraph.config import get_stream_writer
from langgraph.constants import CONFIG_KEY_CHECKPOINTER
from langgraph.runtime import Runtime, get_runtime
from langgraph.types import Overwrite, Send, interrupt

from langgraph_moa.aggregator_output import bind_aggregator, finish_answer
from langgraph_moa.cache import ProposerFailed, answer_settings
from langgraph_moa.config import MoAConfig, ModelSpec
from langgraph_moa.context import fingerprint, new_turn_moa_config, stored_config, turn_moa_config
from langgraph_moa.errors import AggregatorError, ConfigError, EmptyResponseError, LayerFailedError
from langgraph_moa.pricing import estimate_cost
from langgraph_moa.prompts import inject_references, tool_turns_as_text
from langgraph_moa.providers import ModelResolver, describe_error, redact
from langgraph_moa.providers.redacted_model import is_chat_model, redacted_message
from langgraph_moa.seeds import fresh_seed, slot_seed
from langgraph_moa.state import (
    Decision,
    Failure,
    MoAState,
    Proposal,
    ProposerInput,
    ProvisionalInput,
    UsageRecord,
    UsageSummary,
    total_usage,
    usage_by,
)
from langgraph_moa.stragglers import CutoffRegistry, LayerCutoff

PROPOSER_NODE = "propose"
JOIN_NODE = "join_layer"
AGGREGATOR_NODE = "aggregate"
PREPARE_NODE = "prepare"
PROVISIONAL_NODE = "provisional"
REVIEW_NODE = "review"
STEER_NODE: Literal["steer"] = "steer"
STAIRCASE_NODE: Literal["staircase"] = "staircase"  # the last proposer layer and the answer, pipelined: staircase.py


def is_aggregator_token(metadata: Mapping[str, Any]) -> bool:
    """Whether a ``stream_mode="messages"`` token comes from the final aggregator.

    That is, from the ``aggregate`` node, or from a model inside it (an agent or
    subgraph used as the aggregator, whose tokens carry its own node names).
    """
    if metadata.get("langgraph_node") in (AGGREGATOR_NODE, STAIRCASE_NODE):
        return True
    return str(metadata.get("langgraph_checkpoint_ns", "")).startswith(f"{AGGREGATOR_NODE}:")


def _turn_moa_config(
    runtime: Runtime[MoAConfig] | None, config: RunnableConfig, stored: Mapping[str, Any] | None
) -> MoAConfig:
    """The turn's configuration (stored by ``prepare``); see :func:`~langgraph_moa.context.turn_moa_config`."""
    return turn_moa_config(runtime, config, stored)


def references_of(state: MoAState, layer: int) -> list[str]:
    """The successful answers of proposer ``layer``, in slot order (empty for layer 0)."""
    return [p["content"] for p in state.get("proposals", []) if p["layer"] == layer]


def last_proposer_layer(state: Mapping[str, Any], cfg: MoAConfig) -> int:
    """The proposer layer whose answers the aggregator reads.

    The last one, or the one after which early stop or the budget skipped the
    rest (``stopped_after``; 0 when no proposer layer ran).
    """
    stopped = state.get("stopped_after")
    return cfg.layers - 1 if stopped is None else int(stopped)


def _usage_record(calls: Sequence[BaseMessage], layer: int, slot: int, model: str, role: Any) -> UsageRecord:
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


def _key_variables(spec: ModelSpec) -> list[str]:
    return [spec.api_key_env] if spec.api_key_env else []


def _redacted_text(answer: AIMessage, spec: ModelSpec) -> str:
    """The answer's text without secrets: see :func:`~langgraph_moa.providers.redact`."""
    return redact(answer.text, variables=_key_variables(spec), shapes=False)


def _redacted_answer(answer: AIMessage, spec: ModelSpec) -> AIMessage:
    """The aggregator's answer with secrets removed from its text (string content or text parts).

    The model's own output is redacted already (see
    :class:`~langgraph_moa.providers.redacted_model.RedactedChatModel`); an
    agent passed as a model is not, so its answer is redacted here.
    """
    return cast(AIMessage, redacted_message(answer, _key_variables(spec)))


_is_chat_model = is_chat_model


class ModelCall(NamedTuple):
    """One model call a node body yields.

    Its model, messages and timeout in seconds, and the straggler cut-off of its
    layer (async runs only: see :mod:`langgraph_moa.stragglers`).
    """

    model: Runnable
    messages: list[AnyMessage]
    timeout: float
    cutoff: LayerCutoff | None = None


Answer = tuple[AIMessage, list[AIMessage]]
"""``(answer, calls)``: the final answer, and every model reply the call made
(one for a chat model; an agent's whole loop, tool-calling turns included),
whose usage is summed."""

NodeBody = Generator[ModelCall, Answer, dict[str, Any]]
"""A node body that yields its model call and returns its state update."""

NodeUpdate = dict[str, Any]


def _call(call: ModelCall) -> Answer:
    """Call a chat model, or an agent that takes and returns ``{"messages": [...]}`` (sync).

    The timeout is the provider client's own (``init_chat_model(timeout=...)``):
    a blocking call cannot be interrupted from outside.
    """
    model, messages, _, _ = call
    result = model.invoke(messages if _is_chat_model(model) else {"messages": messages})
    return _answer_of(result, messages)


async def _acall(call: ModelCall) -> Answer:
    """Call a chat model, or an agent that takes and returns ``{"messages": [...]}`` (async)."""
    model, messages, timeout, cutoff = call
    guard: AbstractAsyncContextManager[Any] = cutoff.guard() if cutoff else nullcontext()
    async with guard, asyncio.timeout(timeout):
        result = await model.ainvoke(messages if _is_chat_model(model) else {"messages": messages})
    return _answer_of(result, messages)


def _answer_of(result: Any, messages: list[AnyMessage]) -> Answer:
    """The answer and the model replies of a call's ``result``."""
    calls: list[AIMessage]
    if isinstance(result, Mapping):
        if not isinstance(result.get("messages"), list) or not result["messages"]:
            raise TypeError(
                f"the runnable returned a mapping without a 'messages' list (keys: {sorted(result)[:8]}); "
                "a proposer runnable must return {'messages': [...]}, as create_agent does"
            )
        # an agent: its answer is its last message; the replies it added are its calls
        added = result["messages"][len(messages) :]
        calls = [m for m in added if isinstance(m, AIMessage)]
        last = result["messages"][-1]
        result = last if isinstance(last, AIMessage) else AIMessage(content=getattr(last, "text", ""))
    elif isinstance(result, AIMessage):
        calls = [result]
    else:
        result = AIMessage(content=getattr(result, "content", str(result)))
        calls = [result]
    if not result.text.strip() and not result.tool_calls:
        raise EmptyResponseError("the model returned no text")
    return result, calls


def _run(body: NodeBody) -> NodeUpdate:
    """Run a node body, making its model calls with :func:`_call`."""
    try:
        call = next(body)
        while True:
            try:
                answer = _call(call)
            except Exception as exc:  # the body decides: record a failure or raise
                call = body.throw(exc)
            else:
                call = body.send(answer)
    except StopIteration as done:
        return done.value
    finally:
        body.close()


async def _arun(body: NodeBody) -> NodeUpdate:
    """Run a node body, making its model calls with :func:`_acall` (cancellation propagates)."""
    try:
        call = next(body)
        while True:
            try:
                answer = await _acall(call)
            except Exception as exc:  # the body decides: record a failure or raise
                call = body.throw(exc)
            else:
                call = body.send(answer)
    except StopIteration as done:
        return done.value
    finally:
        body.close()


Body = Callable[[Any, Runtime[MoAConfig], RunnableConfig], NodeBody]


def _sync_and_async(name: str, body: Body) -> Runnable[Any, NodeUpdate]:
    """A node running ``body`` with sync calls under ``invoke`` and async calls under ``ainvoke``.

    ``RunnableLambda(func, afunc=...)`` is LangChain's public runnable with both
    paths; it passes the config, and the run's :class:`Runtime` is read with
    LangGraph's ``get_runtime``.
    """

    def sync(inp: Any, config: RunnableConfig) -> NodeUpdate:
        return _run(body(inp, get_runtime(MoAConfig), config))

    async def asynchronous(inp: Any, config: RunnableConfig) -> NodeUpdate:
        return await _arun(body(inp, get_runtime(MoAConfig), config))

    return RunnableLambda(sync, afunc=asynchronous, name=name)


Node = Callable[..., NodeUpdate]
"""A node without I/O: a plain function ``(state, runtime, config) -> update``, which
LangGraph runs under ``invoke`` and ``ainvoke``. (LangGraph's ``add_node`` overloads
have no protocol for a node taking both ``runtime`` and ``config``.)"""


def make_prepare(resolve: ModelResolver) -> Node:
    """Build the ``prepare`` node."""

    def prepare(state: MoAState, runtime: Runtime[MoAConfig], config: RunnableConfig) -> dict[str, Any]:
        cfg = new_turn_moa_config(runtime, config, state.get("moa_config"))
        if not state.get("messages"):
            raise ConfigError("the input has no messages: pass {'messages': [('user', '...')]}")
        resolve.check(cfg)  # unknown providers and missing keys stop the run before any call
        if cfg.review and not (config.get("configurable") or {}).get(CONFIG_KEY_CHECKPOINTER):
            raise ConfigError(
                "review=True pauses the run for a reviewer, which needs a checkpointer to resume from: "
                "compile the graph with one (e.g. InMemorySaver()), or leave review off"
            )
        get_stream_writer()(
            {
                "event": "run_started",
                "layers": cfg.layers,
                "proposers": {str(n): [s.model for s in cfg.proposers_for(n)] for n in range(1, cfg.layers)},
                "aggregator": cfg.aggregator.model,
            }
        )
        return {
            "layer": 1,
            "config_fingerprint": fingerprint(cfg),
            "moa_config": stored_config(cfg),
            "turn_id": uuid.uuid4().hex,
            "run_seed": cfg.seed if cfg.seed is not None else fresh_seed(),
            "proposals": Overwrite([]),
            "failures": Overwrite([]),
            "usage": Overwrite([]),
            "provisional_answers": Overwrite([]),
            "usage_summary": summarize_usage([], cfg),
            "stopped_after": None,
            "dropped": Overwrite([]),
            "decisions": Overwrite([]),
            "staircase": None,
        }

    return prepare


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
    cfg = _turn_moa_config(None, config, state.get("moa_config"))
    if steer_due(cfg, state["layer"]):
        return COST_OPTION
    return _next_layer(state, cfg)


def route_after_steer(
    state: MoAState, config: RunnableConfig
) -> list[Send] | Literal["review on", "proposer layers done", "staircase on"]:
    """Route on after ``steer``: the next proposer layer, review or the aggregator (:data:`ROUTES_AFTER_STEER`)."""
    return _next_layer(state, _turn_moa_config(None, config, state.get("moa_config")))


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


def _layer_cutoff(
    registry: CutoffRegistry, runtime: Runtime[MoAConfig], cfg: MoAConfig, layer: int
) -> tuple[tuple[Any, ...], LayerCutoff] | None:
    """The straggler cut-off shared by the proposer tasks of this layer of this run, if configured."""
    info = getattr(runtime, "execution_info", None)
    if cfg.straggler_timeout is None or info is None:
        return None
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # a sync run: its blocking calls cannot be cancelled, so no cut-off
        return None
    # every task of one step sees the same checkpoint id; the namespace tells nested graphs apart
    key = (info.checkpoint_id, info.checkpoint_ns.rpartition("|")[0], layer)
    tasks = len(cfg.proposers_for(layer))
    return key, registry.join(key, needed=cfg.min_proposals, grace=cfg.straggler_timeout, tasks=tasks)


def make_propose(resolve: ModelResolver) -> Runnable[ProposerInput, NodeUpdate]:
    """Build the ``propose`` node, which calls one proposer of one layer."""
    cutoffs = CutoffRegistry()

    def propose(inp: ProposerInput, runtime: Runtime[MoAConfig], config: RunnableConfig) -> NodeBody:
        cfg = _turn_moa_config(runtime, config, inp.get("moa_config"))
        layer, slot = inp["layer"], inp["slot"]
        spec: ModelSpec = cfg.proposers_for(layer)[slot]
        write = get_stream_writer()
        where: dict[str, Any] = {"layer": layer, "slot": slot, "model": spec.model}
        write({"event": "proposer_started", **where})
        started = time.perf_counter()
        shared = _layer_cutoff(cutoffs, runtime, cfg, layer)
        try:
            seed = resolve.seed_for(spec, inp.get("settings", {}).get("seed"))
            model = resolve(spec, cfg, streaming=False, seed=seed)
            history = tool_turns_as_text(
                inp["messages"], tools=cfg.aggregator_tools, response_format=cfg.aggregator_response_format
            )
            messages = inject_references(history, inp["references"], cfg.aggregation_prompt)
            answer, calls = yield ModelCall(model, messages, cfg.timeout, shared[1] if shared else None)
            if not answer.text.strip():
                raise EmptyResponseError("the proposer answered with tool calls but no text")
        except Exception as exc:  # a provider failure is data, not a crash: see LayerFailedError
            error_type, message = describe_error(exc, variables=_key_variables(spec))
            seconds = round(time.perf_counter() - started, 3)
            write(
                {"event": "proposer_failed", **where, "error_type": error_type, "message": message, "seconds": seconds}
            )
            # raised, not returned, so the proposal cache never keeps it; the node's
            # error handler (cache.record_failure) records it without stopping the layer
            failure = Failure(layer=layer, slot=slot, model=spec.model, error_type=error_type, message=message)
            raise ProposerFailed(failure) from None
        finally:
            if shared:
                cutoffs.leave(*shared)
        seconds = time.perf_counter() - started
        write({"event": "proposer_done", **where, "seconds": round(seconds, 3)})
        if shared and shared[1].succeed():
            write(
                {
                    "event": "quorum_reached",
                    "layer": layer,
                    "succeeded": shared[1].succeeded,
                    "straggler_timeout": shared[1].grace,
                }
            )
        usage = _usage_record(calls, layer, slot, spec.model, "proposer")
        usage["turn_id"] = inp.get("turn_id", "")
        return {
            # a key an upstream echoes back must not reach the state (and so the checkpoints)
            "proposals": [
                Proposal(layer=layer, slot=slot, model=spec.model, content=_redacted_text(answer, spec), seed=seed)
            ],
            "usage": [usage],
        }

    return _sync_and_async(PROPOSER_NODE, propose)


def make_join_layer() -> Node:
    """Build the ``join_layer`` node, which closes a proposer layer."""

    def join_layer(state: MoAState, runtime: Runtime[MoAConfig], config: RunnableConfig) -> dict[str, Any]:
        cfg = _turn_moa_config(runtime, config, state.get("moa_config"))
        layer = state["layer"]
        succeeded = len(references_of(state, layer))
        failures = [f for f in state.get("failures", []) if f["layer"] == layer]
        if succeeded < cfg.min_proposals:
            raise LayerFailedError(layer, failures, succeeded, cfg.min_proposals)
        cached = sum(1 for r in state.get("usage", []) if r["layer"] == layer and _is_cached(r, state))
        get_stream_writer()(
            {"event": "layer_done", "layer": layer, "succeeded": succeeded, "failed": len(failures), "cached": cached}
        )
        return {"layer": layer + 1}

    return join_layer


def _is_cached(record: UsageRecord, state: Mapping[str, Any]) -> bool:
    """Whether ``record`` was replayed from the proposal cache (made by an earlier turn)."""
    return record.get("turn_id", state.get("turn_id")) != state.get("turn_id")


def summarize_usage(records: list[UsageRecord], cfg: MoAConfig, turn_id: str | None = None) -> UsageSummary:
    """Sum ``records`` per layer, per model and in total, and estimate their cost.

    Records made by another turn than ``turn_id`` (replayed from the proposal
    cache) are counted in ``cached_calls`` and left out of the tokens and cost.
    """
    turn = {"turn_id": turn_id}
    cached = [r for r in records if turn_id is not None and _is_cached(r, turn)]
    records = [r for r in records if not (turn_id is not None and _is_cached(r, turn))]
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


def make_aggregate(resolve: ModelResolver) -> Runnable[MoAState, NodeUpdate]:
    """Build the ``aggregate`` node, which writes the final answer."""

    def aggregate(state: MoAState, runtime: Runtime[MoAConfig], config: RunnableConfig) -> NodeBody:
        cfg = _turn_moa_config(runtime, config, state.get("moa_config"))
        spec = cfg.aggregator
        layer = cfg.layers
        get_stream_writer()({"event": "aggregator_started", "layer": layer, "model": spec.model})
        references = references_of(state, last_proposer_layer(state, cfg))
        history = state["messages"] if cfg.aggregator_tools else tool_turns_as_text(state["messages"])
        passes: list[UsageRecord] = []
        decisions: list[Decision] = []
        if cfg.aggregation_window and len(references) > cfg.aggregation_window:  # Self-MoA-Seq
            n_refs = len(references)
            as_text = tool_turns_as_text(state["messages"])
            references, passes = yield from _earlier_passes(resolve, cfg, as_text, references, layer)
            decisions.append(
                Decision(
                    option="aggregation_window",
                    layer=last_proposer_layer(state, cfg),
                    action="windowed",
                    reason=f"{n_refs} references read in {len(passes) + 1} passes of at most {cfg.aggregation_window}",
                    detail={"references": n_refs, "passes": len(passes) + 1, "window": cfg.aggregation_window},
                )
            )
        messages = inject_references(history, references, cfg.aggregation_prompt)
        try:
            seed = resolve.seed_for(spec, slot_seed(state.get("run_seed"), spec, layer, 0))
            model = resolve(spec, cfg, streaming=True, seed=seed)
            model = bind_aggregator(model, cfg)  # tools and response_format, per-call settings kept
            answer, calls = yield ModelCall(model, messages, cfg.timeout)
            answer = finish_answer(answer, cfg)  # the JSON asked for, checked against its schema
        except Exception as exc:
            error_type, message = describe_error(exc, variables=_key_variables(spec))
            raise AggregatorError(spec.model, error_type, message) from None
        record = _usage_record(calls, layer, 0, spec.model, "aggregator")  # never cached: no turn_id
        answer = _redacted_answer(answer, spec)
        usage = [*passes, record]
        update: dict[str, Any] = {
            "messages": [answer],
            "usage": usage,
            "usage_summary": summarize_usage([*state.get("usage", []), *usage], cfg, state.get("turn_id")),
        }
        if decisions:
            update["decisions"] = decisions
        return update

    return _sync_and_async(AGGREGATOR_NODE, aggregate)


def _earlier_passes(
    resolve: ModelResolver, cfg: MoAConfig, history: list[AnyMessage], references: list[str], layer: int
) -> Generator[ModelCall, Answer, tuple[list[str], list[UsageRecord]]]:
    """Self-MoA-Seq (``MoAConfig.aggregation_window``): every aggregation pass but the last.

    The first pass reads the first ``aggregation_window`` references; each later
    pass reads the running synthesis as reference 1 and the next
    ``aggregation_window - 1`` references. These passes stay off the token
    stream; their usage records carry the pass number as ``slot`` (the final
    answer's is 0).

    Returns:
        The references of the last pass, and the usage of the earlier ones.

    Raises:
        AggregatorError: a pass failed.
    """
    window = cfg.aggregation_window or len(references)
    spec = cfg.aggregator
    usage: list[UsageRecord] = []
    carried: str | None = None
    rest = list(references)
    while True:
        take = window if carried is None else window - 1
        chunk, rest = rest[:take], rest[take:]
        refs = chunk if carried is None else [carried, *chunk]
        if not rest:
            return refs, usage
        step = len(usage) + 1
        get_stream_writer()({"event": "aggregator_pass", "layer": layer, "pass": step, "references": len(refs)})
        try:
            model = resolve(spec, cfg, streaming=False)
            answer, calls = yield ModelCall(
                model, inject_references(history, refs, cfg.aggregation_prompt), cfg.timeout
            )
        except Exception as exc:
            error_type, message = describe_error(exc, variables=_key_variables(spec))
            raise AggregatorError(spec.model, error_type, f"pass {step} of the aggregation window: {message}") from None
        carried = _redacted_text(answer, spec)
        usage.append(_usage_record(calls, layer, step, spec.model, "aggregator"))


def make_review() -> Node:
    """Build the ``review`` node: a human (or parent graph) checks the last proposals.

    The run pauses with a LangGraph ``interrupt`` whose value is::

        {"layer": n, "proposals": [Proposal, ...], "failures": [Failure, ...],
         "instructions": "..."}

    Resume it with ``Command(resume=...)``:

    - ``True``: keep the proposals as they are;
    - ``{"proposals": [...]}``: the proposals to aggregate, in order. Each entry is
      a proposal as shown (its ``content`` may be edited) or a plain string (text
      written by the reviewer). Proposals left out are dropped.

    Any other value, or fewer proposals than ``min_proposals``, pauses the run
    again with the same request plus an ``"error"`` saying what was wrong.
    """

    def review(state: MoAState, runtime: Runtime[MoAConfig], config: RunnableConfig) -> dict[str, Any]:
        cfg = _turn_moa_config(runtime, config, state.get("moa_config"))
        layer = last_proposer_layer(state, cfg)
        current = [p for p in state.get("proposals", []) if p["layer"] == layer]
        request: dict[str, Any] = {
            "layer": layer,
            "proposals": current,
            "failures": [f for f in state.get("failures", []) if f["layer"] == layer],
            "instructions": "resume with True to keep these proposals, or with "
            "{'proposals': [...]} listing the ones to aggregate (edited or as plain strings)",
        }
        while True:
            decision = interrupt(request)
            if decision is True:
                get_stream_writer()({"event": "review_done", "layer": layer, "kept": len(current), "edited": False})
                return {}
            try:
                first_slot = len(cfg.proposers_for(layer))  # after every proposer's own slot
                reviewed = _reviewed_proposals(decision, layer, cfg.min_proposals, first_slot)
                break
            except ConfigError as exc:
                # ask again: nothing computed is lost, and the reviewer sees what was wrong
                request = {**request, "error": str(exc)}
        others = [p for p in state.get("proposals", []) if p["layer"] != layer]
        get_stream_writer()({"event": "review_done", "layer": layer, "kept": len(reviewed), "edited": True})
        return {"proposals": Overwrite([*others, *reviewed])}

    return review


def _reviewed_proposals(decision: Any, layer: int, min_proposals: int, first_slot: int) -> list[Proposal]:
    """The proposals a review resumed with, in the order given.

    They get new slots from ``first_slot`` on, so none shares a slot with one of
    the layer's recorded failures.

    Raises:
        ConfigError: the value is not one the review accepts; the message says why.
    """
    entries = decision.get("proposals") if isinstance(decision, Mapping) else None
    if not isinstance(entries, list):
        raise ConfigError(
            f"review: resume with True or {{'proposals': [...]}}, got {type(decision).__name__} {decision!r:.80}"
        )
    out: list[Proposal] = []
    for slot, entry in enumerate(entries, start=first_slot):
        if isinstance(entry, str):
            model, content = "reviewer", entry
        elif isinstance(entry, Mapping) and isinstance(entry.get("content"), str):
            model, content = str(entry.get("model") or "reviewer"), entry["content"]
        else:
            raise ConfigError(
                f"review: proposal {slot} must be a string or a mapping with 'content', got {entry!r:.80}"
            )
        if not content.strip():
            raise ConfigError(f"review: proposal {slot} is empty; leave it out to drop it")
        out.append(Proposal(layer=layer, slot=slot, model=model, content=content))
    if len(out) < min_proposals:
        raise ConfigError(f"review kept {len(out)} proposal(s) but min_proposals={min_proposals}: keep more")
    return out
