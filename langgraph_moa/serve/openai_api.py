"""Serve MoA as an OpenAI-compatible chat-completions API.

Any OpenAI client (the ``openai`` SDK, LibreChat, Continue, Open WebUI) can use
MoA as if it were one model:

- ``GET /v1/models`` lists the served model ids: the presets and any assistants
  you configure (:attr:`APISettings.assistants`).
- ``POST /v1/chat/completions`` runs one MoA turn. ``model`` picks the assistant;
  ``temperature`` and ``max_tokens`` (or ``max_completion_tokens``) apply to the
  aggregator, the proposers keep the assistant's settings. ``stream: true``
  answers with server-sent ``chat.completion.chunk`` events and a final
  ``data: [DONE]``; ``stream_options.include_usage`` adds a last chunk with
  ``usage``. ``store: true`` keeps the run in the server's checkpointer, where
  ``GET /v1/chat/completions/{id}`` finds it again.
- The aggregator is the model the client talks to; the proposers advise it.
  ``tools``, ``tool_choice`` (``auto``, ``none``, ``required``, a named
  function) and ``parallel_tool_calls`` go to the aggregator, which answers
  with ``message.tool_calls`` and ``finish_reason: "tool_calls"`` (streamed:
  ``delta.tool_calls``, id and name first, then the arguments). The history
  may hold assistant ``tool_calls`` and ``role: tool`` results; proposers see
  them, and the tool list, as text. ``response_format`` ``json_object`` or
  ``json_schema`` makes the aggregator write JSON (see
  :mod:`langgraph_moa.aggregator_output`), checked against the schema before
  it is sent (streamed: in one piece, after the check); an answer that is not
  the JSON asked for is a 502 ``aggregator_failed``. ``stop`` cuts the answer
  before the first stop sequence; ``seed`` is the run's base seed (every
  call's seed derives from it). ``n`` above 1, ``logprobs``, ``audio``,
  ``prediction`` and the legacy ``functions`` are refused with 400.
- ``usage`` counts the tokens of every model call of the turn (proposers and
  aggregator), since that is what the request cost. The MoA details (every
  proposal, every failure, usage per layer and per model, estimated cost) are
  in the extension field ``moa`` of the completion (of the last content chunk
  when streaming); standard clients ignore it, the ``openai`` SDK exposes it as
  ``completion.moa``.

Each request is independent: its ``messages`` are the whole conversation and no
state is shared between requests. Errors have OpenAI's shape
``{"error": {"message", "type", "param", "code"}}``:

======  =====================================================================
status  when
======  =====================================================================
400     the body is not a valid request (``param`` names the field: a malformed
        tool or schema, a tool result without its call, a ``tool_choice``
        naming an unknown function, ...), or asks for more than the limits
        (``max_tokens``; ``max_messages`` and ``max_request_chars``: codes
        ``too_many_messages`` and ``request_too_long``)
404     ``model`` is not served (the message lists the served ids), or the
        route is unknown (``unknown_url``; 405 ``method_not_allowed``)
413     the body is larger than ``max_request_bytes``
429     the upstream providers rate-limited every proposer of a layer, or the
        aggregator
500     the assistant is misconfigured on the server (``invalid_config``), or
        the run failed unexpectedly (``internal_error``)
502     every proposer of a layer failed (``proposers_failed``), or the
        aggregator failed (``aggregator_failed``)
503     a provider key the model needs is not set on the server (the message
        names the variable, never a key)
504     every proposer of a layer, or the aggregator, gave no answer within
        the assistant's ``timeout`` (``upstream_timeout``)
======  =====================================================================

Errors that cannot go better on a second try (every 4xx but 429, a
misconfiguration, a missing provider key, proposers or an aggregator refused
for their request or credentials) carry the header ``x-should-retry: false``,
so the ``openai`` SDK does not repeat them; 429, 504 and other upstream
failures may be retried.

Errors found before the first answer token (every proposer failure is) get
their status code even when streaming: the response starts with the first
token. A failure after that ends the stream with an ``error`` event, which
the ``openai`` SDK raises as ``APIError``.

A client that disconnects cancels its run and with it the upstream calls.

Needs the ``serve`` extra: ``pip install 'langgraph-moa[serve]'``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
)
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from sse_starlette import EventSourceResponse

from langgraph_moa.chat_model import StopCutter, truncate_at_stop
from langgraph_moa.config import MoAConfig, describe_validation_error
from langgraph_moa.errors import MoAError
from langgraph_moa.presets import PRESETS
from langgraph_moa.providers import StreamRedactor, check_credentials, key_variables
from langgraph_moa.serve.concurrency import ProviderConcurrencyLimit
from langgraph_moa.serve.openai_errors import OpenAIError, bad_request, error_for
from langgraph_moa.serve.openai_schemas import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatMessage,
    Choice,
    ChunkChoice,
    Delta,
    FinishReason,
    ModelCard,
    ModelList,
    ResponseMessage,
    Usage,
)
from langgraph_moa.stream import is_aggregator_token

__all__ = [
    "APISettings",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatCompletionRequest",
    "ChatMessage",
    "ModelList",
    "OpenAIError",
    "create_openai_router",
    "error_for",
]

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- settings


class APISettings(BaseModel):
    """What the OpenAI-compatible API serves, and its limits."""

    model_config = ConfigDict(frozen=True)

    assistants: dict[str, MoAConfig] = Field(
        default_factory=lambda: dict(PRESETS),
        description="The served model ids and their MoA configurations (default: every preset).",
    )
    max_request_bytes: int = Field(default=1_000_000, ge=1024, description="Largest request body accepted (413 above).")
    max_messages: int = Field(
        default=256,
        ge=1,
        description="Most messages one request may send (400 above). Every model call of a run carries the "
        "whole conversation, and preparing it costs CPU time on the server's event loop.",
    )
    max_request_chars: int = Field(
        default=400_000, ge=1, description="Most characters of message text one request may send (400 above)."
    )
    max_tokens: int = Field(
        default=4096, ge=1, description="Largest max_tokens (or max_completion_tokens) a request may ask for."
    )
    provider_concurrency: int = Field(
        default=16, ge=1, description="Upstream model calls in flight per provider endpoint, across all requests."
    )
    max_concurrent_runs: int = Field(
        default=32,
        ge=1,
        description="MoA runs executing at once, across all requests; later ones wait for a free slot before "
        "they start, so a burst of requests does not start every run at once on the event loop.",
    )

    @model_validator(mode="after")
    def _no_review(self) -> APISettings:
        reviewed = [name for name, config in self.assistants.items() if getattr(config, "review", False)]
        if reviewed:
            raise ValueError(
                f"assistants {', '.join(reviewed)} have review=True, but no one can review proposals over the "
                "OpenAI API; serve them with review=False (LangGraph's API or your own graph runs can review)"
            )
        return self

    def served(self, model: str) -> MoAConfig:
        """The configuration served as ``model``.

        Raises:
            OpenAIError: 404, ``model`` is not served.
        """
        try:
            return self.assistants[model]
        except KeyError:
            raise OpenAIError(
                404,
                f"The model {model!r} does not exist on this server; use one of: {', '.join(self.assistants)}",
                type="invalid_request_error",
                param="model",
                code="model_not_found",
            ) from None

    def runnable(self) -> list[str]:
        """The served model ids whose models all have their provider keys set on this server."""
        ready = []
        for name, config in self.assistants.items():
            try:
                check_credentials(config)
            except MoAError:
                continue
            ready.append(name)
        return ready


# --------------------------------------------------------------------------- runs


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


def _usage(state: Mapping[str, Any]) -> Usage:
    total = (state.get("usage_summary") or {}).get("total") or {}
    prompt, completion = int(total.get("input_tokens", 0)), int(total.get("output_tokens", 0))
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


def answer_of(state: Mapping[str, Any]) -> AIMessage:
    """The answer of a finished run: its last message (a 500 ``no_answer`` when there is none)."""
    messages = state.get("messages") or []
    if not messages or not isinstance(messages[-1], AIMessage):
        raise OpenAIError(500, "the MoA run ended without an answer", type="server_error", code="no_answer")
    return messages[-1]


def _finish_reason(answer: AIMessage) -> FinishReason:
    if answer.tool_calls:
        return "tool_calls"
    reason = (answer.response_metadata or {}).get("finish_reason")
    return reason if reason in ("stop", "length", "content_filter") else "stop"


def _tool_calls(answer: AIMessage) -> list[dict[str, Any]] | None:
    """The answer's tool calls in OpenAI's shape (``None`` when it has none)."""
    if not answer.tool_calls:
        return None
    return [
        {
            "id": call.get("id") or f"call_{uuid.uuid4().hex[:24]}",
            "type": "function",
            "function": {"name": call["name"], "arguments": json.dumps(call["args"], ensure_ascii=False)},
        }
        for call in answer.tool_calls
    ]


def _response_message(answer: AIMessage, stop: list[str]) -> ResponseMessage:
    """The ``message`` of a completion: the answer's text (cut at ``stop``) and tool calls."""
    calls = _tool_calls(answer)
    text = truncate_at_stop(answer, stop).text
    return ResponseMessage.model_validate({"content": text if text or not calls else None, "tool_calls": calls})


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


# --------------------------------------------------------------------------- router


def create_openai_router(
    settings: APISettings | None = None,
    *,
    graph: Any = None,
    store_graph: Any = None,
    limit: ProviderConcurrencyLimit | None = None,
    slots: asyncio.Semaphore | None = None,
) -> APIRouter:
    """The OpenAI-compatible routes (``/v1/models``, ``/v1/chat/completions``, ``/v1/responses``).

    Args:
        settings: Served assistants and limits; ``APISettings()`` by default (every preset).
        graph: The compiled MoA graph the requests run on, without a checkpointer
            (each request is a new conversation); ``None`` builds the default.
        store_graph: The same graph compiled with a checkpointer, for requests
            with ``store: true`` (its thread id is the completion id). ``None``:
            nothing is stored and ``store`` is ignored. Its ``checkpointer`` is
            read per request, so it may be set once the server has started.
        limit: The per-provider bound on upstream calls, to share it with
            other routes; ``None`` makes one of ``settings.provider_concurrency``.
        slots: The bound on runs executing at once, to share it with other
            routes; ``None`` makes one of ``settings.max_concurrent_runs``.

    Returns:
        A FastAPI ``APIRouter``; include it with ``app.include_router(router)``.
        Authentication is the app's concern (see :func:`langgraph_moa.serve.app.create_app`).

    Example:
        ```python
        from fastapi import FastAPI
        from langgraph_moa.serve.openai_api import APISettings, create_openai_router

        app = FastAPI()
        app.include_router(create_openai_router(APISettings(max_tokens=2048)))
        # uvicorn.run(app); then: OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="-")
        ```
    """
    settings = settings or APISettings()
    if graph is None:
        from langgraph_moa.graph import create_moa_graph

        graph = create_moa_graph().compile(name="moa")
    limit = limit or ProviderConcurrencyLimit(settings.provider_concurrency)
    slots = slots or asyncio.Semaphore(settings.max_concurrent_runs)
    router = APIRouter(tags=["OpenAI-compatible API"])

    @router.get("/v1/models", response_model=ModelList)
    async def list_models() -> ModelList:
        """The model ids that can run here: the assistants and presets whose provider keys are set.

        A model id whose key is missing is left out (a request for it gets 503
        naming the variable), so a client's model menu offers only what works.
        """
        return ModelList(data=[ModelCard(id=name) for name in settings.runnable()])

    @router.get("/v1/models/{model:path}", response_model=ModelCard)
    async def get_model(model: str) -> Any:
        """One served model id, or 404."""
        if model not in settings.runnable():
            try:
                settings.served(model)
            except OpenAIError as exc:
                return exc.response()
        return ModelCard(id=model)

    @router.get("/v1/chat/completions/{completion_id}", response_model=ChatCompletion)
    async def get_completion(completion_id: str) -> Any:
        """A completion created with ``store: true``, from the checkpointer."""
        saver = getattr(store_graph, "checkpointer", None)
        snapshot = None
        if saver is not None:
            snapshot = await store_graph.aget_state({"configurable": {"thread_id": completion_id}})
        if snapshot is None or not snapshot.values or snapshot.next:
            return OpenAIError(
                404,
                f"no stored completion {completion_id!r} (only requests with store: true are kept)",
                type="invalid_request_error",
                param="completion_id",
                code="not_found",
            ).response()
        model = str(snapshot.metadata.get("openai_model", ""))
        state = snapshot.values
        answer = answer_of(state)
        stop = list(snapshot.metadata.get("openai_stop") or [])
        return ChatCompletion(
            id=completion_id,
            created=int(snapshot.metadata.get("openai_created", 0)),
            model=model,
            choices=[Choice(message=_response_message(answer, stop), finish_reason=_finish_reason(answer))],
            usage=_usage(state),
            moa=moa_details(state, model),
        )

    @router.post(
        "/v1/chat/completions",
        response_model=ChatCompletion,
        responses={
            200: {"content": {"text/event-stream": {}}, "description": "A completion, or chunks when streaming"}
        },
    )
    async def chat_completions(request: Request) -> Response:
        """Answer the conversation with Mixture-of-Agents."""
        model = "?"
        try:
            raw = await read_body(request, settings.max_request_bytes)
            # parsing up to max_request_bytes of JSON is CPU work: off the event loop, which serves everyone
            body = await asyncio.to_thread(parse_within, raw, settings)
            model = body.model
            # off the event loop: serving a model may start its server first (the local model under langgraph dev)
            config = request_config(await asyncio.to_thread(settings.served, model), body, settings.max_tokens)
        except OpenAIError as exc:
            return exc.response()
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        stored = body.store and getattr(store_graph, "checkpointer", None) is not None
        run_graph = store_graph if stored else graph
        run_config: dict[str, Any] = {
            "callbacks": [limit],
            "run_name": "moa",
            "metadata": {"openai_model": model, "openai_created": created, "openai_stop": body.stop_sequences()},
        }
        if stored:
            run_config["configurable"] = {"thread_id": completion_id}
        names = body.tool_names()
        inputs = {"messages": await asyncio.to_thread(lambda: [m.to_langchain(names) for m in body.messages])}
        run = BackgroundRun(run_graph, inputs, run_config, config, body.stream, slots)
        in_flight = getattr(request.app.state, "in_flight", None)
        if in_flight is not None:  # a stored run cancelled by a shutdown still writes its checkpoint
            in_flight.track(run.task)
        if body.stream:
            return await _stream(run, request, body, config, completion_id, created)
        event = await run.next(request)
        if event is None:
            return Response(status_code=499)  # the client is gone; nobody reads this
        kind, value = event
        if kind == "error":
            return error_for(value, model).response()
        try:
            answer = answer_of(value)
        except OpenAIError as exc:
            return exc.response()
        completion = ChatCompletion(
            id=completion_id,
            created=created,
            model=model,
            choices=[
                Choice(message=_response_message(answer, body.stop_sequences()), finish_reason=_finish_reason(answer))
            ],
            usage=_usage(value),
            moa=moa_details(value, model),
        )
        return JSONResponse(completion.model_dump(mode="json"))

    from langgraph_moa.serve.responses_api import add_responses_routes  # it builds on this module

    add_responses_routes(router, settings, graph=graph, limit=limit, slots=slots)
    return router


async def _stream(
    run: BackgroundRun,
    request: Request,
    body: ChatCompletionRequest,
    config: MoAConfig,
    completion_id: str,
    created: int,
) -> Response:
    """Wait for the first event (so early errors keep their status code), then stream."""
    first = await run.next(request)
    if first is None:
        return Response(status_code=499)
    if first[0] == "error":
        return error_for(first[1], body.model).response()
    include_usage = bool(body.stream_options and body.stream_options.include_usage)

    def chunk(delta: Delta | None, finish_reason: FinishReason | None = None, **extra: Any) -> dict[str, str]:
        choices = [ChunkChoice(delta=delta, finish_reason=finish_reason)] if delta is not None else []
        payload = ChatCompletionChunk(id=completion_id, created=created, model=body.model, choices=choices, **extra)
        return {"data": payload.model_dump_json(exclude_none=False)}

    # JSON output is sent once the whole answer has been checked against its schema
    buffered = config.aggregator_response_format is not None
    cut = StopCutter(body.stop_sequences())

    async def events() -> AsyncIterator[dict[str, str]]:
        try:
            yield chunk(Delta(role="assistant", content=""))
            event: tuple[str, Any] = first
            sent = sent_tools = False
            while True:
                kind, value = event
                if kind in ("token", "tool") and buffered:
                    pass
                elif kind == "token":
                    sent = True
                    if text := cut.feed(value):
                        yield chunk(Delta(content=text))
                elif kind == "tool":
                    sent_tools = True
                    index, call_id, name, arguments = value
                    call: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
                    if call_id:
                        call.update(id=call_id, type="function")
                    if name:
                        call["function"]["name"] = name
                    yield chunk(Delta.model_validate({"tool_calls": [call]}))
                elif kind == "error":
                    yield {"data": _json(error_for(value, body.model).body())}
                    return
                else:
                    try:
                        answer = answer_of(value)
                    except OpenAIError as exc:
                        yield {"data": _json(exc.body())}
                        return
                    if sent and (tail := cut.flush()):
                        yield chunk(Delta(content=tail))
                    if not sent and (text := truncate_at_stop(answer, body.stop_sequences()).text):
                        yield chunk(Delta(content=text))  # a model that did not stream, or JSON: in one piece
                    if not sent_tools and (calls := _tool_calls(answer)):
                        yield chunk(
                            Delta.model_validate({"tool_calls": [{"index": i, **c} for i, c in enumerate(calls)]})
                        )
                    details = moa_details(value, body.model)
                    yield chunk(Delta(), _finish_reason(answer), moa=details)
                    if include_usage:
                        yield chunk(None, usage=_usage(value))
                    yield {"data": "[DONE]"}
                    return
                event = await run.events.get()
        finally:
            run.cancel()  # the client went away, or the run is over: nothing may keep calling upstream

    return RunStream(run, events(), sep="\n", ping=15)


class RunStream(EventSourceResponse):
    """The event stream of a run, which cancels the run when the response ends in any way.

    The generator's own ``finally`` does not run if the client went away before
    the generator was first iterated.
    """

    def __init__(self, run: BackgroundRun, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._run = run

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._run.cancel()


def _json(payload: Any) -> str:
    return json.dumps(payload, ensure_ascii=False)
