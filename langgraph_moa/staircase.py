"""Staircase streaming (``MoAConfig.staircase``): the final answer starts while the proposers still write.

Wang et al., "Staircase Streaming for Low-Latency Multi-Agent Inference"
(arXiv 2510.05059). Plain MoA shows nothing until every proposer of every
layer has finished; with ``staircase=True`` the last proposer layer and the
final aggregation run together in one ``staircase`` node:

1. The layer's proposers are called with streaming on (kept off the answer's
   ``messages`` stream), all at once.
2. Once each of them has streamed ``staircase_first_chunk`` chunks (about one
   token each; a proposer that failed is not waited for), the aggregator writes
   piece 1 of the answer from the proposal prefixes streamed so far. A piece is
   one aggregator call whose ``max_tokens`` is the piece's size:
   ``staircase_piece_tokens``, each next piece ``staircase_growth`` times longer.
3. Piece k+1 is asked for as soon as piece k ends, from the longer prefixes
   streamed by then and the answer so far, which it continues
   (``staircase_continuation``, below). The proposers keep streaming meanwhile.
4. Once every proposal has ended (complete, failed or cut as a straggler), the
   next piece is written from the complete proposals, with the rest of the
   aggregator's ``max_tokens``, and ends the answer. A piece that ends on its
   own (``finish_reason`` other than ``"length"``) before that also ends the
   answer: the proposers still running are cancelled (their requests closed)
   and recorded as ``"cancelled"``.

Every piece streams on the ``messages`` stream as the answer
(:func:`~langgraph_moa.stream.is_aggregator_token` is True for it), so the
CLI, ``ChatMoA`` and the OpenAI-compatible server show it as it comes; each
piece is a separate model call, so a client grouping tokens by message id sees
one id per piece. The state gets the answer (all pieces joined) as one
``AIMessage``.

How a piece continues the answer so far (``staircase_continuation``):

- ``"prompt"`` (the default, any server): the conversation, then the answer
  so far as an assistant turn, then a user turn with :data:`CONTINUE_INSTRUCTION`.
  The model is asked, not forced, to continue without repeating itself.
- ``"prefill"``: the answer so far as a trailing assistant turn, which the
  server continues as its own text (assistant prefill). llama.cpp's
  ``llama-server`` does this by default (``--no-prefill-assistant`` turns it
  off), and Anthropic's API does it natively. OpenAI's API does not (it starts
  a new turn): use ``"prompt"`` there.
- ``"vllm"``: prefill for vLLM, which continues a trailing assistant turn only
  when asked: ``continue_final_message=True, add_generation_prompt=False`` are
  sent in the request body.

References that are still being written are marked with
:data:`PARTIAL_MARK` at their end, so the model knows they stop mid-way.

What each piece was built from is kept: ``state["staircase"]`` (a
:class:`~langgraph_moa.state.StaircaseRecord`) lists the pieces with the
proposal prefix each saw (characters and chunks per proposer slot, and whether
the proposal was complete) and how each proposer's stream ended; the
``custom`` stream carries ``staircase_started``, ``staircase_piece_started``
(``piece``, ``built_from``, ``final``) and ``staircase_piece`` (the piece's
record, text included) events, besides the usual ``proposer_started``,
``proposer_done``, ``proposer_failed``, ``quorum_reached`` and
``aggregator_started``.

Failures, stragglers and interruptions:

- A proposer that fails (or streams nothing) is recorded in ``failures`` and
  left out of every later piece; pieces written before keep its prefix in
  their ``built_from``. If so many fail that fewer than ``min_proposals`` can
  still succeed, the run stops with
  :class:`~langgraph_moa.errors.LayerFailedError` and the pieces streamed so
  far are not written to the state.
- ``straggler_timeout`` works as in a plain layer: once ``min_proposals``
  proposals are complete, the others get that many more seconds, then they are
  cut and recorded as ``StragglerTimeout`` failures; the final piece then
  follows.
- Ctrl-C (cancelling the run) cancels the proposers' and the aggregator's
  calls, as in a plain run. Resume granularity: the staircase node is one
  LangGraph task, so a killed or interrupted run resumes at it and makes its
  calls again (the last proposer layer and every piece); the earlier layers of
  a 3+ layer run are kept in the checkpoint and not repeated.

Cost: each piece re-reads the proposals. Every piece's usage is a record in
``usage`` (role ``"aggregator"``, ``slot`` = the piece number), priced like
any call; ``state["staircase"]["reread_input_tokens"]`` sums the prompt
tokens of every piece but the last.

With more than two layers, the staircase applies to the last proposer layer
and the aggregator only; the layers before it run as in plain MoA. When
``early_stop`` or ``max_cost_usd`` skips the last proposer layer, the plain
``aggregate`` node writes the answer. The proposal cache does not apply to the
staircase layer (its proposers stream). Its calls are made inside one
LangGraph task, so ``config["max_concurrency"]`` does not bound them (the
proposers and a piece run at once); ``moa serve``'s per-provider bound, which
counts model calls, does. The node runs under ``ainvoke`` and
``astream``; under ``invoke``/``stream`` it runs the same calls in an event
loop of its own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, Literal

from langchain_core.messages import AIMessage, AIMessageChunk, AnyMessage, HumanMessage
from langchain_core.runnables import Runnable, RunnableBinding, RunnableConfig, RunnableLambda
from langgraph.config import get_stream_writer
from langgraph.constants import TAG_NOSTREAM
from langgraph.runtime import get_runtime

from langgraph_moa.config import MoAConfig, ModelSpec
from langgraph_moa.context import fingerprint, moa_config_of_run
from langgraph_moa.errors import AggregatorError, ConfigError, EmptyResponseError, LayerFailedError
from langgraph_moa.node_names import STAIRCASE_NODE
from langgraph_moa.prompts import inject_references, tool_turns_as_text
from langgraph_moa.providers import ModelResolver, describe_error, key_variables, redact
from langgraph_moa.providers.redacted_model import RedactedChatModel
from langgraph_moa.seeds import slot_seed
from langgraph_moa.state import (
    Failure,
    MoAState,
    Proposal,
    ProposalPrefix,
    ProposerStream,
    StaircasePiece,
    StaircaseRecord,
    UsageRecord,
    references_of,
)
from langgraph_moa.stragglers import LayerCutoff
from langgraph_moa.usage import summarize_usage

CONTINUE_INSTRUCTION = (
    "Continue your response from exactly where it stops. Do not repeat any of it and do not comment on it: "
    "write only what comes next."
)
"""The user turn after the answer so far (``staircase_continuation="prompt"``)."""

PARTIAL_MARK = " [...still being written]"
"""Appended to a reference that is still being written."""


def piece_size(cfg: MoAConfig, piece: int) -> int:
    """The size in tokens of piece ``piece`` (from 1) written from incomplete proposals."""
    return max(1, round(cfg.staircase_piece_tokens * cfg.staircase_growth ** (piece - 1)))


def piece_messages(history: list[AnyMessage], references: list[str], answer: str, cfg: MoAConfig) -> list[AnyMessage]:
    """The prompt of one piece: the references in the system message, then the answer so far to continue."""
    messages = inject_references(history, references, cfg.aggregation_prompt)
    if not answer:
        return messages
    if cfg.staircase_continuation == "prompt":
        return [*messages, AIMessage(content=answer), HumanMessage(content=CONTINUE_INSTRUCTION)]
    return [*messages, AIMessage(content=answer)]


@dataclass
class _Stream:
    """One proposer's streamed call, as far as it has got."""

    slot: int
    spec: ModelSpec
    seed: int | None
    text: str = ""
    chunks: int = 0
    status: Literal["running", "complete", "failed", "cancelled"] = "running"
    total: AIMessageChunk | None = None
    failure: Failure | None = None

    def prefix(self) -> ProposalPrefix:
        return ProposalPrefix(
            slot=self.slot,
            model=self.spec.model,
            chars=len(self.text),
            chunks=self.chunks,
            complete=self.status == "complete",
        )


def _usage(total: AIMessageChunk | None, layer: int, slot: int, model: str, role: Any) -> UsageRecord:
    meta = getattr(total, "usage_metadata", None) or {}
    return UsageRecord(
        layer=layer,
        slot=slot,
        model=model,
        role=role,
        input_tokens=int(meta.get("input_tokens", 0)),
        output_tokens=int(meta.get("output_tokens", 0)),
        reported=bool(meta),
    )


def _with_body(model: Runnable, extra: dict[str, Any]) -> Runnable:
    """``model`` sending ``extra`` in its request body, merged with a body it already sends."""
    if isinstance(model, RedactedChatModel):  # the body is the provider's model's, under the redaction
        return model.model_copy(update={"model": _with_body(model.model, extra)})
    if isinstance(model, RunnableBinding) and isinstance(model.kwargs.get("extra_body"), dict):
        return model.bind(extra_body={**model.kwargs["extra_body"], **extra})
    return model.bind(extra_body=extra)


class _Staircase:
    """One run of the staircase node: the streams, the pieces and the state update."""

    def __init__(self, resolve: ModelResolver, state: MoAState, cfg: MoAConfig) -> None:
        self.resolve, self.state, self.cfg = resolve, state, cfg
        self.layer = state["layer"]
        self.write = get_stream_writer()
        self.secrets = key_variables(cfg)
        self.history = tool_turns_as_text(state["messages"])
        self.changed = asyncio.Event()
        run_seed = state.get("run_seed")
        self.streams = [
            _Stream(slot, spec, resolve.seed_for(spec, slot_seed(run_seed, spec, self.layer, slot)))
            for slot, spec in enumerate(cfg.proposers_for(self.layer))
        ]
        grace = cfg.straggler_timeout
        self.cutoff = LayerCutoff(cfg.min_proposals, grace, len(self.streams)) if grace is not None else None
        self.pieces: list[StaircasePiece] = []
        self.usage: list[UsageRecord] = []
        self.answer = ""
        self.last_id: str | None = None  # the last piece's message id: the answer's, so it is not streamed twice

    async def run(self) -> dict[str, Any]:
        cfg = self.cfg
        self.write(
            {
                "event": "staircase_started",
                "layer": self.layer,
                "proposers": [s.spec.model for s in self.streams],
                "aggregator": cfg.aggregator.model,
            }
        )
        references = references_of(self.state, self.layer - 1)
        tasks = [asyncio.ensure_future(self._propose(s, references)) for s in self.streams]
        try:
            await self._until(
                lambda: all(s.status != "running" or s.chunks >= cfg.staircase_first_chunk for s in self.streams)
            )
            self.write({"event": "aggregator_started", "layer": cfg.layers, "model": cfg.aggregator.model})
            await self._write_answer()
        finally:
            for stream, task in zip(self.streams, tasks, strict=True):
                if not task.done():
                    stream.status = "cancelled"
                    task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return self._update()

    async def _until(self, ready: Callable[[], bool]) -> None:
        while not ready():
            self.changed.clear()
            await self.changed.wait()

    def _check_quorum(self) -> None:
        """Stop when fewer than ``min_proposals`` proposals can still succeed."""
        possible = sum(1 for s in self.streams if s.status in ("running", "complete"))
        if possible < self.cfg.min_proposals:
            succeeded = sum(1 for s in self.streams if s.status == "complete")
            failures = [s.failure for s in self.streams if s.failure is not None]
            raise LayerFailedError(self.layer, failures, succeeded, self.cfg.min_proposals)

    async def _write_answer(self) -> None:
        cfg = self.cfg
        budget = cfg.aggregator.max_tokens or cfg.max_tokens
        written = 0
        while True:
            self._check_quorum()
            final = all(s.status != "running" for s in self.streams)
            seen = [s for s in self.streams if s.status in ("running", "complete") and s.text]
            if not seen:  # every live proposer streamed nothing yet: wait for one to write or end
                await self._until(lambda: any(s.text for s in self.streams if s.status != "failed") or self._ended())
                continue
            number = len(self.pieces) + 1
            size = budget - written if final else min(piece_size(cfg, number), budget - written)
            piece = await self._piece(number, seen, size, final)
            written += piece["output_tokens"] or len(piece["text"].split())
            if final or piece["finish_reason"] not in ("length", None) or written >= budget:
                return
            if not piece["text"]:  # nothing more from partial proposals: wait for the complete ones
                await self._until(self._ended)

    def _ended(self) -> bool:
        return all(s.status != "running" for s in self.streams)

    async def _piece(self, number: int, seen: list[_Stream], size: int, final: bool) -> StaircasePiece:
        cfg, spec = self.cfg, self.cfg.aggregator
        built_from = [s.prefix() for s in seen]
        references = [s.text if s.status == "complete" else s.text + PARTIAL_MARK for s in seen]
        self.write({"event": "staircase_piece_started", "piece": number, "built_from": built_from, "final": final})
        messages = piece_messages(self.history, references, self.answer, cfg)
        text, total = "", None
        try:
            seed = self.resolve.seed_for(spec, slot_seed(self.state.get("run_seed"), spec, cfg.layers, number))
            model = self.resolve(spec.model_copy(update={"max_tokens": max(1, size)}), cfg, streaming=True, seed=seed)
            if cfg.staircase_continuation == "vllm" and self.answer:
                model = _with_body(model, {"continue_final_message": True, "add_generation_prompt": False})
            async with asyncio.timeout(cfg.timeout):
                async for chunk in model.astream(messages):
                    total = chunk if total is None else total + chunk
                    text += chunk.text
        except Exception as exc:
            error_type, message = describe_error(exc, variables=self.secrets)
            raise AggregatorError(
                spec.model, error_type, f"piece {number} of the staircase answer: {message}"
            ) from None
        record = _usage(total, cfg.layers, number, spec.model, "aggregator")
        self.usage.append(record)
        finish = (total.response_metadata.get("finish_reason") if total is not None else None) or None
        piece = StaircasePiece(
            piece=number,
            text=redact(text, variables=self.secrets, shapes=False),
            answer_chars=len(self.answer),
            built_from=built_from,
            final=final,
            finish_reason=finish,
            input_tokens=record["input_tokens"],
            output_tokens=record["output_tokens"],
        )
        self.answer += text
        self.last_id = total.id if total is not None else None
        self.pieces.append(piece)
        self.write({"event": "staircase_piece", **piece})
        return piece

    async def _propose(self, stream: _Stream, references: list[str]) -> None:
        cfg, spec = self.cfg, stream.spec
        where: dict[str, Any] = {"layer": self.layer, "slot": stream.slot, "model": spec.model}
        self.write({"event": "proposer_started", **where})
        started = time.perf_counter()
        guard: AbstractAsyncContextManager[Any] = self.cutoff.guard() if self.cutoff else nullcontext()
        try:
            model = self.resolve(spec, cfg, streaming=True, seed=stream.seed).with_config(tags=[TAG_NOSTREAM])
            messages = inject_references(self.history, references, cfg.aggregation_prompt)
            async with guard, asyncio.timeout(cfg.timeout):
                async for chunk in model.astream(messages):
                    stream.total = chunk if stream.total is None else stream.total + chunk
                    if chunk.text:
                        stream.text += chunk.text
                        stream.chunks += 1
                        self.changed.set()
            if not stream.text.strip():
                raise EmptyResponseError("the proposer streamed no text")
        except Exception as exc:  # a provider failure is data: the proposer is left out of later pieces
            error_type, message = describe_error(exc, variables=self.secrets)
            seconds = round(time.perf_counter() - started, 3)
            if stream.text:
                message = f"{message} (after streaming {len(stream.text)} characters)"
            stream.status = "failed"
            stream.failure = Failure(
                layer=self.layer, slot=stream.slot, model=spec.model, error_type=error_type, message=message
            )
            self.write(
                {"event": "proposer_failed", **where, "error_type": error_type, "message": message, "seconds": seconds}
            )
            self.changed.set()
            return
        stream.status = "complete"
        self.write({"event": "proposer_done", **where, "seconds": round(time.perf_counter() - started, 3)})
        if self.cutoff is not None and self.cutoff.succeed():
            self.write(
                {
                    "event": "quorum_reached",
                    "layer": self.layer,
                    "succeeded": self.cutoff.succeeded,
                    "straggler_timeout": self.cutoff.grace,
                }
            )
        self.changed.set()

    def _update(self) -> dict[str, Any]:
        cfg, state = self.cfg, self.state
        if not self.answer.strip():
            raise AggregatorError(cfg.aggregator.model, "EmptyResponseError", "the staircase answer has no text")
        turn_id = state.get("turn_id", "")
        proposals: list[Proposal] = []
        failures: list[Failure] = []
        usage: list[UsageRecord] = []
        streams: list[ProposerStream] = []
        for s in self.streams:
            text = redact(s.text, variables=self.secrets, shapes=False)
            if s.status == "complete":
                proposals.append(Proposal(layer=self.layer, slot=s.slot, model=s.spec.model, content=text, seed=s.seed))
            if s.failure is not None:
                failures.append(s.failure)
            if s.status != "failed" or s.total is not None:
                call = _usage(s.total, self.layer, s.slot, s.spec.model, "proposer")
                call["turn_id"] = turn_id
                usage.append(call)
            streams.append(
                ProposerStream(
                    slot=s.slot,
                    model=s.spec.model,
                    status="cancelled" if s.status == "running" else s.status,
                    chars=len(s.text),
                    chunks=s.chunks,
                    text="" if s.status == "complete" else text,
                )
            )
        usage.extend(self.usage)
        staircase = StaircaseRecord(
            layer=self.layer,
            continuation=cfg.staircase_continuation,
            pieces=self.pieces,
            proposers=streams,
            reread_input_tokens=sum(p["input_tokens"] for p in self.pieces[:-1]),
        )
        inp = sum(p["input_tokens"] for p in self.pieces)
        out = sum(p["output_tokens"] for p in self.pieces)
        # the answer takes the last piece's id: LangGraph's messages stream has shown that id's tokens
        # already and so does not show the whole answer again when the node returns it
        answer = AIMessage(
            id=self.last_id,
            content=redact(self.answer, variables=self.secrets, shapes=False),
            response_metadata={
                "finish_reason": self.pieces[-1]["finish_reason"],
                "model_name": cfg.aggregator.name,
                "staircase_pieces": len(self.pieces),
            },
            usage_metadata={"input_tokens": inp, "output_tokens": out, "total_tokens": inp + out},
        )
        all_usage = [*state.get("usage", []), *usage]
        return {
            "layer": cfg.layers,
            "messages": [answer],
            "proposals": proposals,
            "failures": failures,
            "usage": usage,
            "usage_summary": summarize_usage(all_usage, cfg, state.get("turn_id")),
            "staircase": staircase,
        }


def make_staircase(resolve: ModelResolver) -> Runnable[MoAState, dict[str, Any]]:
    """Build the ``staircase`` node: the last proposer layer and the final answer, pipelined.

    See the module's documentation for what it does; ``resolve`` builds its models.
    """

    async def asynchronous(state: MoAState, config: RunnableConfig) -> dict[str, Any]:
        cfg = moa_config_of_run(get_runtime(MoAConfig), config)
        if state.get("config_fingerprint") not in (None, fingerprint(cfg)):
            raise ConfigError(
                "this turn was started with another MoA configuration: resume it with the same "
                "context (the context is not stored in checkpoints), or start a new turn"
            )
        return await _Staircase(resolve, state, cfg).run()

    def sync(state: MoAState, config: RunnableConfig) -> dict[str, Any]:
        # a sync run has no event loop: the node's concurrent streams get one of their own
        return asyncio.run(asynchronous(state, config))

    return RunnableLambda(sync, afunc=asynchronous, name=STAIRCASE_NODE)
