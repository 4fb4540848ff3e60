"""Secrets removed from LangServe's token streams, even when a secret is split across events.

The serializer of the LangServe routes redacts every event on its own
(:class:`~langgraph_moa.serve.langserve_routes.GraphSerializer`). A model's
tokens are separate events, though: an upstream that echoes the key it was
sent can stream it in pieces (``"moa-c"``, ``"anary"``, ...), no event holds it
whole, and a client that concatenates the chunks gets it back. The functions
here sit between the graph and LangServe and pass each model call's tokens
through one :class:`~langgraph_moa.providers.StreamRedactor`, which holds back
only the end of the text that could still be the start of a key:

- :func:`redact_stream_events` for ``astream_events`` (``/stream_events``):
  the ``on_chat_model_stream`` chunks of each run; the text still held back
  when the call ends comes in one more ``on_chat_model_stream`` event just
  before its ``on_chat_model_end``;
- :func:`redact_run_log` for ``astream_log`` (``/stream_log`` and the
  playground): the ``streamed_output_str`` and ``streamed_output`` entries of
  each run in the log; the rest is added just before the run's
  ``final_output``.

A client that concatenates a call's chunks gets its answer with the key
removed, as ``/v1`` streams it. Text is redacted by value (the provider keys of
the environment, see :func:`~langgraph_moa.providers.redact`), like answers.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Collection
from typing import Any

from langchain_core.messages import AIMessageChunk, BaseMessageChunk
from langchain_core.runnables.schema import StreamEvent
from langchain_core.tracers.log_stream import RunLog, RunLogPatch

from langgraph_moa.providers import StreamRedactor

__all__ = ["redact_run_log", "redact_stream_events"]

_STREAMED = re.compile(r"/logs/([^/]+)/(streamed_output_str|streamed_output)/-")
_FINISHED = re.compile(r"/logs/([^/]+)/(final_output|end_time)")


def _fed(chunk: BaseMessageChunk, redactor: StreamRedactor) -> BaseMessageChunk:
    """``chunk`` with its text passed through ``redactor`` (what is certain so far; possibly empty)."""
    content = chunk.content
    if isinstance(content, str):
        return chunk.model_copy(update={"content": redactor.feed(content)})
    parts: list[Any] = []
    for part in content:
        if isinstance(part, str):
            parts.append(redactor.feed(part))
        elif isinstance(part, dict) and isinstance(part.get("text"), str):
            parts.append({**part, "text": redactor.feed(part["text"])})
        else:
            parts.append(part)
    return chunk.model_copy(update={"content": parts})


async def redact_stream_events(
    events: AsyncIterator[StreamEvent], *, variables: Collection[str] = ()
) -> AsyncIterator[StreamEvent]:
    """``events`` (of ``astream_events``) with each chat model call's streamed text redacted across chunks.

    ``variables`` are more environment variables whose values must not appear (models' ``api_key_env``).
    """
    redactors: dict[str, StreamRedactor] = {}
    last: dict[str, StreamEvent] = {}
    async for event in events:
        run = event.get("run_id", "")
        if event["event"] == "on_chat_model_stream" and isinstance(event["data"].get("chunk"), BaseMessageChunk):
            redactor = redactors.setdefault(run, StreamRedactor(variables=variables))
            event = {**event, "data": {**event["data"], "chunk": _fed(event["data"]["chunk"], redactor)}}
            last[run] = event
        elif event["event"] == "on_chat_model_end" and run in redactors:
            rest = redactors.pop(run).flush()
            previous = last.pop(run)
            if rest:
                yield {**previous, "data": {"chunk": AIMessageChunk(content=rest, id=previous["data"]["chunk"].id)}}
        yield event


def _held_back(name: str, redactors: dict[str, StreamRedactor]) -> list[dict[str, Any]]:
    """``add`` operations for the text still held back for run ``name`` of a run log."""
    ops: list[dict[str, Any]] = []
    for kind in ("streamed_output_str", "streamed_output"):
        path = f"/logs/{name}/{kind}/-"
        redactor = redactors.pop(path, None)
        if redactor is not None and (rest := redactor.flush()):
            ops.append(
                {"op": "add", "path": path, "value": rest if kind.endswith("_str") else AIMessageChunk(content=rest)}
            )
    return ops


async def _redacted_patches(
    patches: AsyncIterator[RunLogPatch], variables: Collection[str]
) -> AsyncIterator[RunLogPatch]:
    redactors: dict[str, StreamRedactor] = {}
    async for patch in patches:
        ops: list[dict[str, Any]] = []
        for op in patch.ops:
            path = op.get("path", "")
            streamed = _STREAMED.fullmatch(path) if op.get("op") == "add" else None
            value = op.get("value")
            if streamed and isinstance(value, str) and streamed.group(2) == "streamed_output_str":
                op = {**op, "value": redactors.setdefault(path, StreamRedactor(variables=variables)).feed(value)}
            elif streamed and isinstance(value, BaseMessageChunk):
                op = {**op, "value": _fed(value, redactors.setdefault(path, StreamRedactor(variables=variables)))}
            elif finished := _FINISHED.fullmatch(path):
                ops += _held_back(finished.group(1), redactors)
            ops.append(op)
        yield RunLogPatch(*ops)
    names = {path.split("/")[2] for path in redactors}
    if rest := [op for name in sorted(names) for op in _held_back(name, redactors)]:
        yield RunLogPatch(*rest)


def redact_run_log(
    patches: AsyncIterator[RunLogPatch], *, diff: bool = True, variables: Collection[str] = ()
) -> AsyncIterator[RunLogPatch] | AsyncIterator[RunLog]:
    """``patches`` (of ``astream_log(diff=True)``) with each run's streamed text redacted across chunks.

    Args:
        patches: The patches of ``astream_log`` with ``diff=True``.
        diff: Yield the redacted patches (True), or the run log they build up
            (False, as ``astream_log(diff=False)`` does).
        variables: More environment variables whose values must not appear
            (models' ``api_key_env``).
    """
    if diff:
        return _redacted_patches(patches, variables)

    async def accumulated() -> AsyncIterator[RunLog]:
        state = RunLog(state=None)  # type: ignore[arg-type]
        async for patch in _redacted_patches(patches, variables):
            state = state + patch
            yield state

    return accumulated()
