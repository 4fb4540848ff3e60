"""The nodes of the MoA graph.

- ``prepare`` starts a turn: it takes the run's configuration (the thread's
  last one when the run names none) and stores it in the state for the rest of
  the turn, checks the input, every model's provider and API key (before any
  call), and clears the previous turn's proposals, failures and usage, so
  references never leak between turns.
- ``propose`` calls one proposer (one task per proposer of a layer, fanned out
  by :func:`~langgraph_moa.routing.route_layer`). Provider errors and timeouts
  become a recorded :class:`~langgraph_moa.state.Failure` instead of a failed
  run, so one bad provider never cancels its siblings: ``propose`` raises
  :class:`~langgraph_moa.cache.ProposerFailed` (which the proposal cache never
  keeps) and the node's error handler records it. With
  ``MoAConfig.straggler_timeout``, the proposers of a layer share its cut-off
  (:mod:`langgraph_moa.stragglers`).
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

Where the graph goes after each node is :mod:`langgraph_moa.routing`; the nodes'
names are in :mod:`langgraph_moa.node_names`. Every node runs under
``graph.invoke``/``stream`` and ``graph.ainvoke``/``astream``: the nodes without
I/O are plain functions, and ``propose`` and ``aggregate`` are generator bodies
that yield their model call, run by :func:`~langgraph_moa.calls.sync_and_async`
(:mod:`langgraph_moa.calls`). Their usage records are made by
:mod:`langgraph_moa.usage`.

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
from collections.abc import Callable, Generator, Mapping
from typing import Any

from langchain_core.messages import AnyMessage
from langchain_core.runnables import Runnable, RunnableConfig
from langgraph.config import get_stream_writer
from langgraph.constants import CONFIG_KEY_CHECKPOINTER
from langgraph.runtime import Runtime
from langgraph.types import Overwrite, interrupt

from langgraph_moa.aggregator_output import bind_aggregator, finish_answer
from langgraph_moa.cache import ProposerFailed
from langgraph_moa.calls import (
    Answer,
    ModelCall,
    NodeBody,
    NodeUpdate,
    redacted_answer,
    redacted_text,
    spec_key_variables,
    sync_and_async,
)
from langgraph_moa.config import MoAConfig, ModelSpec
from langgraph_moa.context import fingerprint, new_turn_moa_config, stored_config, turn_moa_config
from langgraph_moa.errors import AggregatorError, ConfigError, EmptyResponseError, LayerFailedError
from langgraph_moa.node_names import AGGREGATOR_NODE, PROPOSER_NODE
from langgraph_moa.prompts import inject_references, tool_turns_as_text
from langgraph_moa.providers import ModelResolver, describe_error
from langgraph_moa.routing import last_proposer_layer
from langgraph_moa.seeds import fresh_seed, slot_seed
from langgraph_moa.state import (
    Decision,
    Failure,
    MoAState,
    Proposal,
    ProposerInput,
    UsageRecord,
    references_of,
)
from langgraph_moa.stragglers import CutoffRegistry, LayerCutoff
from langgraph_moa.usage import is_cached, summarize_usage, usage_record

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
        cfg = turn_moa_config(runtime, config, inp.get("moa_config"))
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
            error_type, message = describe_error(exc, variables=spec_key_variables(spec))
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
        usage = usage_record(calls, layer, slot, spec.model, "proposer")
        usage["turn_id"] = inp.get("turn_id", "")
        return {
            # a key an upstream echoes back must not reach the state (and so the checkpoints)
            "proposals": [
                Proposal(layer=layer, slot=slot, model=spec.model, content=redacted_text(answer, spec), seed=seed)
            ],
            "usage": [usage],
        }

    return sync_and_async(PROPOSER_NODE, propose)


def make_join_layer() -> Node:
    """Build the ``join_layer`` node, which closes a proposer layer."""

    def join_layer(state: MoAState, runtime: Runtime[MoAConfig], config: RunnableConfig) -> dict[str, Any]:
        cfg = turn_moa_config(runtime, config, state.get("moa_config"))
        layer = state["layer"]
        succeeded = len(references_of(state, layer))
        failures = [f for f in state.get("failures", []) if f["layer"] == layer]
        if succeeded < cfg.min_proposals:
            raise LayerFailedError(layer, failures, succeeded, cfg.min_proposals)
        cached = sum(1 for r in state.get("usage", []) if r["layer"] == layer and is_cached(r, state))
        get_stream_writer()(
            {"event": "layer_done", "layer": layer, "succeeded": succeeded, "failed": len(failures), "cached": cached}
        )
        return {"layer": layer + 1}

    return join_layer


def make_aggregate(resolve: ModelResolver) -> Runnable[MoAState, NodeUpdate]:
    """Build the ``aggregate`` node, which writes the final answer."""

    def aggregate(state: MoAState, runtime: Runtime[MoAConfig], config: RunnableConfig) -> NodeBody:
        cfg = turn_moa_config(runtime, config, state.get("moa_config"))
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
            error_type, message = describe_error(exc, variables=spec_key_variables(spec))
            raise AggregatorError(spec.model, error_type, message) from None
        record = usage_record(calls, layer, 0, spec.model, "aggregator")  # never cached: no turn_id
        answer = redacted_answer(answer, spec)
        usage = [*passes, record]
        update: dict[str, Any] = {
            "messages": [answer],
            "usage": usage,
            "usage_summary": summarize_usage([*state.get("usage", []), *usage], cfg, state.get("turn_id")),
        }
        if decisions:
            update["decisions"] = decisions
        return update

    return sync_and_async(AGGREGATOR_NODE, aggregate)


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
            error_type, message = describe_error(exc, variables=spec_key_variables(spec))
            raise AggregatorError(spec.model, error_type, f"pass {step} of the aggregation window: {message}") from None
        carried = redacted_text(answer, spec)
        usage.append(usage_record(calls, layer, step, spec.model, "aggregator"))


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
        cfg = turn_moa_config(runtime, config, state.get("moa_config"))
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
