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
- ``POST /v1/responses`` and ``GET /v1/responses/{id}``: the Responses API,
  from :mod:`langgraph_moa.serve.responses_api`; :func:`create_openai_router`
  adds its routes beside these.

This module turns requests and runs into chat completions and chunks. What it
shares with the Responses routes is elsewhere: :class:`APISettings` (what is
served, and the limits) in :mod:`langgraph_moa.serve.api_settings`; reading and
checking a request within those limits, its run configuration, the run on a
background task and its event stream, and the answer and ``moa`` details of a
finished run in :mod:`langgraph_moa.serve.graph_runs`.

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
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from langchain_core.messages import AIMessage

from langgraph_moa.chat_model import StopCutter, truncate_at_stop
from langgraph_moa.config import MoAConfig
from langgraph_moa.serve.api_settings import APISettings
from langgraph_moa.serve.concurrency import ProviderConcurrencyLimit
from langgraph_moa.serve.graph_runs import (
    BackgroundRun,
    RunStream,
    answer_of,
    moa_details,
    parse_within,
    read_body,
    request_config,
)
from langgraph_moa.serve.openai_errors import OpenAIError, error_for
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
from langgraph_moa.serve.responses_api import add_responses_routes

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


# --------------------------------------------------------------------------- completions


def _usage(state: Mapping[str, Any]) -> Usage:
    total = (state.get("usage_summary") or {}).get("total") or {}
    prompt, completion = int(total.get("input_tokens", 0)), int(total.get("output_tokens", 0))
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


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


def _json(payload: Any) -> str:
    return json.dumps(payload, ensure_ascii=False)
