"""The MoA runs behind the ``/v1`` routes, from a request's body to its answer.

Both routers run a request the same way: :mod:`langgraph_moa.serve.openai_api`
(chat completions) directly, :mod:`langgraph_moa.serve.responses_api` on the
chat-completions request a Responses request stands for. This module holds what
they share:

- the request: :func:`read_body` reads the body up to ``max_request_bytes``
  (413 beyond), :func:`parse_within` checks it against ``max_messages`` and
  ``max_request_chars`` before validating it in full as a
  :class:`~langgraph_moa.serve.openai_schemas.ChatCompletionRequest` (400 naming
  the field), :func:`request_config` puts its temperature, token limit, seed and
  aggregator settings on the served configuration;
- the run: :class:`BackgroundRun` runs the graph on a background task, after
  waiting for one of the server's run slots, and queues its events (aggregator
  tokens and tool-call pieces with secrets redacted, then the final state or the
  error); :class:`RunStream` is the event-stream response that cancels the run
  however the response ends;
- the finished run: :func:`answer_of` (its answer) and :func:`moa_details` (the
  ``moa`` extension field: proposals, failures, usage and cost).

Turning events and answers into each API's wire format is left to the routers.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from fastapi import Request
from langchain_core.messages import AIMessage, AIMessageChunk
from pydantic import ValidationError
from sse_starlette import EventSourceResponse

from langgraph_moa.config import MoAConfig, describe_validation_error
from langgraph_moa.providers import StreamRedactor, key_variables
from langgraph_moa.serve.api_settings import APISettings
from langgraph_moa.serve.openai_errors import OpenAIError, bad_request
from langgraph_moa.serve.openai_schemas import ChatCompletionRequest
from langgraph_moa.stream import is_aggregator_token

__all__ = [
    "BackgroundRun",
    "RunStream",
    "answer_of",
    "check_size",
    "moa_details",
    "parse_within",
    "read_body",
    "request_config",
]


# --------------------------------------------------------------------------- request


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, read up to ``limit`` bytes (a 413 beyond it, declared or streamed)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    body = bytearray()
    async for piece in request.stream():
        body += piece
        if len(body) > limit:
            raise _too_large(limit)
    return bytes(body)


def _too_large(limit: int) -> OpenAIError:
    return OpenAIError(
        413,
        f"the request body is larger than this server's limit of {limit} bytes",
        type="invalid_request_error",
        code="request_too_large",
    )


def check_size(count: int, chars: int, settings: APISettings) -> None:
    """Refuse a conversation of more messages or characters than ``settings`` allow.

    Raises:
        OpenAIError: 400, ``too_many_messages`` or ``request_too_long``.
    """
    if count > settings.max_messages:
        raise bad_request(
            f"messages: {count} messages are more than this server's limit of {settings.max_messages}; "
            "send a shorter conversation",
            param="messages",
            code="too_many_messages",
        )
    if chars > settings.max_request_chars:
        raise bad_request(
            f"messages: {chars} characters of text are more than this server's limit of "
            f"{settings.max_request_chars}; send a shorter conversation",
            param="messages",
            code="request_too_long",
        )


def parse_within(body: bytes, settings: APISettings) -> ChatCompletionRequest:
    """The request, checked against the size limits before the conversation is validated in full."""
    try:
        raw = json.loads(body)
    except (ValueError, RecursionError):
        raw = None  # _parse says what is wrong
    if isinstance(raw, dict) and isinstance(raw.get("messages"), list):
        messages = raw["messages"]
        check_size(len(messages), 0, settings)
    request = _parse(body)
    check_size(len(request.messages), sum(len(m.text()) for m in request.messages), settings)
    try:
        request.check()
    except ValueError as exc:
        param, message = exc.args
        raise bad_request(message, param=param) from None
    return request


def _parse(body: bytes) -> ChatCompletionRequest:
    try:
        return ChatCompletionRequest.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = [str(p) for p in first["loc"]]
        if first["type"] == "json_invalid":
            raise bad_request(f"the body is not valid JSON: {first['msg']}") from None
        if not loc:
            raise bad_request("the body must be a JSON object with model and messages") from None
        if loc[:1] == ["messages"] and len(loc) >= 3 and loc[2] in ("role", "content"):
            param = _param(first["loc"][:3])
            if loc[2] == "role":
                message = (
                    f"{param}: {first.get('input')!r} is not supported; use system, developer, user, assistant or tool"
                )
            else:
                message = f"{param}: only text is supported, as a string or a list of text parts"
            raise bad_request(message, param=param) from None
        if loc == ["n"] and not first["type"].endswith("_type"):  # a wrong type gets the generic message
            raise bad_request(
                "n: MoA writes one answer per request; send n=1 (or leave it out) and send the request again "
                "for another answer",
                param="n",
            ) from None
        message = describe_validation_error(exc).replace("invalid MoA configuration", "invalid request", 1)
        raise bad_request(message, param=_param(first["loc"])) from None


def _param(loc: Any) -> str:
    """A validation error's location as OpenAI names a field: ``messages[1].tool_calls[0].id``.

    The names pydantic gives the members of a union (``str``, ``list[TextPart]``,
    ``NamedToolChoice``) are left out.
    """
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not (any(c in str(part) for c in "[-") or str(part)[:1].isupper() or part in _TYPE_NAMES):
            out += f".{part}" if out else str(part)
    return out


_TYPE_NAMES = frozenset({"str", "int", "float", "bool", "dict", "list", "literal"})


def request_config(base: MoAConfig, request: ChatCompletionRequest, limit: int) -> MoAConfig:
    """``base`` with the request's temperature and token limit on its aggregator."""
    max_tokens = request.token_limit()
    if max_tokens is not None and max_tokens > limit:
        param = "max_completion_tokens" if request.max_completion_tokens is not None else "max_tokens"
        raise bad_request(f"{param}={max_tokens} is above this server's limit of {limit}", param=param)
    changes: dict[str, Any] = {}
    if request.temperature is not None:
        changes["temperature"] = request.temperature
    if max_tokens is not None:
        changes["max_tokens"] = max_tokens
    run: dict[str, Any] = request.aggregator_settings()  # all validated by the request model and check()
    if request.seed is not None:
        run["seed"] = request.seed
    if changes:
        run["aggregator"] = base.aggregator.model_copy(update=changes)
    return base.model_copy(update=run) if run else base


# --------------------------------------------------------------------------- run


class BackgroundRun:
    """One MoA turn on a background task, its events on a queue.

    Events: ``("token", str)`` for each aggregator token and ``("tool", (index,
    id, name, arguments))`` for each piece of a tool call (when streaming), then
    ``("done", final state)`` or ``("error", exception)``.
    """

    def __init__(
        self,
        graph: Any,
        inputs: dict[str, Any],
        run_config: dict[str, Any],
        config: MoAConfig,
        stream: bool,
        slots: asyncio.Semaphore | None = None,
    ):
        self.events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.task = asyncio.create_task(self._admitted(graph, inputs, run_config, config, stream, slots))

    async def _admitted(self, *args: Any) -> None:
        """Wait for one of the server's run slots (``max_concurrent_runs``), then run."""
        *run_args, slots = args
        if slots is None:
            await self._run(*run_args)
            return
        async with slots:
            await self._run(*run_args)

    async def _run(
        self, graph: Any, inputs: dict[str, Any], run_config: dict[str, Any], config: MoAConfig, stream: bool
    ) -> None:
        final: Any = None
        modes = ["messages", "values"] if stream else ["values"]
        # a stored run is written once, when it ends: nothing can resume it over this API
        extra = {"durability": "exit"} if "configurable" in run_config else {}
        # a key an upstream echoes is removed, even split across tokens, whatever its variable's name
        redactor = StreamRedactor(variables=key_variables(config))
        # each tool call's arguments pass through a redactor of their own, as they arrive in pieces
        arguments: dict[int, StreamRedactor] = {}
        try:
            async for mode, chunk in graph.astream(inputs, run_config, context=config, stream_mode=modes, **extra):
                if mode == "values":
                    final = chunk
                    continue
                message, metadata = chunk
                if not (is_aggregator_token(metadata) and isinstance(message, AIMessageChunk)):
                    continue
                if message.text and (text := redactor.feed(message.text)):
                    self.events.put_nowait(("token", text))
                for call in message.tool_call_chunks:
                    index = call.get("index") or 0
                    if index not in arguments:
                        arguments[index] = StreamRedactor(variables=key_variables(config))
                    piece = arguments[index].feed(call.get("args") or "")
                    if piece or call.get("id") or call.get("name"):
                        self.events.put_nowait(("tool", (index, call.get("id"), call.get("name"), piece)))
        except Exception as exc:
            self.events.put_nowait(("error", exc))
        else:
            if rest := redactor.flush():
                self.events.put_nowait(("token", rest))
            for index, held in arguments.items():
                if rest := held.flush():
                    self.events.put_nowait(("tool", (index, None, None, rest)))
            self.events.put_nowait(("done", final or {}))

    async def next(self, request: Request) -> tuple[str, Any] | None:
        """The next event, or ``None`` (and the run cancelled) if the client went away first."""
        get = asyncio.ensure_future(self.events.get())
        gone = asyncio.ensure_future(_disconnected(request))
        try:
            await asyncio.wait({get, gone}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # the request itself was cancelled (server shutdown): so is its run
            self.cancel()
            raise
        finally:
            gone.cancel()
            if not get.done():
                get.cancel()
        if get.done() and not get.cancelled():
            return get.result()
        self.cancel()
        return None

    def cancel(self) -> None:
        """Stop the run and its upstream calls."""
        self.task.cancel()


async def _disconnected(request: Request) -> None:
    """Return when the client closes the connection (the body has been read already)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


class RunStream(EventSourceResponse):
    """The event stream of a run, which cancels the run when the response ends in any way.

    The generator's own ``finally`` does not run if the client went away before
    the generator was first iterated.
    """

    def __init__(self, run: BackgroundRun, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._run = run

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Send the stream, then cancel the run, however the response ended."""
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._run.cancel()


# --------------------------------------------------------------------------- finished run


def answer_of(state: Mapping[str, Any]) -> AIMessage:
    """The answer of a finished run: its last message (a 500 ``no_answer`` when there is none)."""
    messages = state.get("messages") or []
    if not messages or not isinstance(messages[-1], AIMessage):
        raise OpenAIError(500, "the MoA run ended without an answer", type="server_error", code="no_answer")
    return messages[-1]


def moa_details(state: Mapping[str, Any], assistant: str) -> dict[str, Any]:
    """The ``moa`` extension field: proposals, failures and usage of a finished turn."""
    summary = state.get("usage_summary") or {}
    calls = list(state.get("usage", []))
    aggregator = next((c["model"] for c in calls if c["role"] == "aggregator"), None)
    return {
        "assistant": assistant,
        "layers": state.get("layer"),
        "aggregator": aggregator,
        "proposals": list(state.get("proposals", [])),
        "failures": list(state.get("failures", [])),
        "usage": {"by_layer": summary.get("by_layer", {}), "by_model": summary.get("by_model", {}), "calls": calls},
        "cost_usd": summary.get("cost_usd"),
        "unpriced_models": summary.get("unpriced_models", []),
    }
