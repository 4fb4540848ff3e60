"""The Responses API (``POST /v1/responses``) on the runs chat completions use.

The default API of the OpenAI Agents SDK and of newer OpenAI clients. A request
is translated into the chat-completions request it stands for, checked the same
way (400 naming the field, before any model call) and run the same way (the
aggregator is the model; the proposers advise it), both with
:mod:`langgraph_moa.serve.graph_runs`; the answer comes back as a ``response``
object, the ``openai`` package's own ``Response`` type:

- ``input``: a string, or items: messages (``role`` and ``content`` as a string
  or ``input_text``/``output_text`` parts), ``function_call`` items (the calls
  an earlier response made) and ``function_call_output`` items (their results).
  ``reasoning`` items are skipped (MoA's aggregator reasons in the open).
- ``instructions``: a system message placed first.
- ``tools`` (function tools), ``tool_choice``, ``parallel_tool_calls``: as in
  chat completions; the answer's calls are ``function_call`` output items.
- ``text.format``: ``json_schema`` or ``json_object``, as ``response_format``.
- ``temperature``, ``max_output_tokens``: the aggregator's.
- ``stream: true``: server-sent events ``response.created``,
  ``response.in_progress``, ``response.output_item.added``,
  ``response.content_part.added``, ``response.output_text.delta`` ...
  ``response.function_call_arguments.delta``/``.done``,
  ``response.output_item.done`` and ``response.completed``; an error after the
  first event is an ``error`` event.
- ``store`` (on by default, as OpenAI's): the response is kept in this
  server's memory (the last ``max_stored_responses``, lost on restart) so a
  later request may continue it with ``previous_response_id`` (its input and
  output come before the new input; its ``instructions`` do not carry over)
  and ``GET /v1/responses/{id}`` returns it.

The MoA details (proposals, failures, usage per layer) are in the extension
field ``moa``. Other built-in tools (web search, file search, computer use)
and ``background`` are refused with 400.

:func:`add_responses_routes` adds the routes to a router;
:func:`langgraph_moa.serve.openai_api.create_openai_router` calls it, so the
``/v1`` API serves both.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from langchain_core.messages import AIMessage
from openai.types.responses import Response as _Response
from pydantic import ValidationError

from langgraph_moa.config import MoAConfig, describe_validation_error
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
from langgraph_moa.serve.openai_errors import OpenAIError, bad_request, error_for

__all__ = ["ResponseObject", "ResponseStore", "add_responses_routes", "to_chat_request"]


class ResponseObject(_Response):
    """A ``response`` object (the ``openai`` package's ``Response``) with the MoA details in ``moa``."""

    moa: dict[str, Any] | None = None


class ResponseStore:
    """The responses kept for ``previous_response_id``: the last ``size``, in memory."""

    def __init__(self, size: int = 1000) -> None:
        self.size = size
        self._items: OrderedDict[str, tuple[list[dict[str, Any]], dict[str, Any]]] = OrderedDict()

    def put(self, response_id: str, conversation: list[dict[str, Any]], response: dict[str, Any]) -> None:
        """Keep ``response`` and the whole conversation it ends (chat messages, its answer included)."""
        self._items[response_id] = (conversation, response)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def get(self, response_id: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """The conversation and response stored as ``response_id``.

        Raises:
            OpenAIError: 404, no such stored response.
        """
        try:
            return self._items[response_id]
        except KeyError:
            raise OpenAIError(
                404,
                f"no stored response {response_id!r}: only responses created with store on (the default) "
                f"are kept, the last {self.size}, until the server restarts",
                type="invalid_request_error",
                param="previous_response_id",
                code="previous_response_not_found",
            ) from None


# --------------------------------------------------------------------------- request


def _field(body: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
    value = body.get(name, default)
    if value is None:
        return default
    if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, (int, float))):
        raise bad_request(f"{name}: {value!r} is not valid here", param=name)
    return value


def _content_text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise bad_request(f"{where}: must be a string or a list of text parts", param=where)
    texts = []
    for i, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in ("input_text", "output_text", "text") or not isinstance(part.get("text"), str):
            raise bad_request(
                f"{where}[{i}]: only text parts (input_text, output_text) are supported, not {kind!r}",
                param=f"{where}[{i}]",
            )
        texts.append(part["text"])
    return "\n".join(texts)


_FROM = "x_input_item"
"""Extra field of each chat message (and tool call) naming the input item it came from, for 400s."""

_FIELDS = {".tool_call_id": ".call_id", ".function.name": ".name", ".function.arguments": ".arguments"}
_TOP_FIELDS = [  # chat-completions field -> the Responses field it came from
    (r"^max_tokens$", "max_output_tokens"),
    (r"^response_format\.json_schema\.schema", "text.format.schema"),
    (r"^response_format\.json_schema", "text.format"),
    (r"^response_format", "text.format"),
    (r"^(tools\[\d+\])\.function", r"\1"),
    (r"^tool_choice\.function", "tool_choice"),
]


def input_param(error: OpenAIError, chat_body: dict[str, Any]) -> OpenAIError:
    """``error`` about ``messages[k]...`` of the chat request, renamed for the Responses field it came from."""
    match = re.match(r"messages\[(\d+)\](?:\.tool_calls\[(\d+)\])?(.*)", error.param or "")
    if not match:
        renamed = error.param or ""
        for chat_name, name in _TOP_FIELDS:
            renamed = re.sub(chat_name, name, renamed, count=1)
        if renamed != error.param:
            error.message = error.message.replace(error.param or "", renamed, 1)
            error.param = renamed
        return error
    message = chat_body["messages"][int(match.group(1))]
    source = message
    if match.group(2) is not None:
        source = (message.get("tool_calls") or [{}])[int(match.group(2))]
    origin = source.get(_FROM) or message.get(_FROM) or "input"
    rest = _FIELDS.get(match.group(3), match.group(3)) if origin.startswith("input") else ""
    param = origin + rest
    error.message = error.message.replace(error.param or "", param, 1)
    error.param = param
    return error


def _messages(items: Any) -> list[dict[str, Any]]:
    """Responses ``input`` items as chat-completions messages."""
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    if not isinstance(items, list):
        raise bad_request("input: must be a string or a list of items", param="input")
    out: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise bad_request(f"{where}: must be an object", param=where)
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in ("system", "developer", "user", "assistant"):
                raise bad_request(
                    f"{where}.role: {role!r} is not supported; use system, developer, user or assistant",
                    param=f"{where}.role",
                )
            out.append({"role": role, "content": _content_text(item.get("content"), f"{where}.content"), _FROM: where})
        elif kind == "function_call":
            for name in ("call_id", "name", "arguments"):
                if not isinstance(item.get(name), str):
                    raise bad_request(f"{where}.{name}: a function_call item needs it, as a string", param=where)
            call = {
                "id": item["call_id"],
                "type": "function",
                "function": {"name": item["name"], "arguments": item["arguments"]},
                _FROM: where,
            }
            last = out[-1] if out else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)  # a message and its calls are one assistant turn
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call], _FROM: where})
        elif kind == "function_call_output":
            if not isinstance(item.get("call_id"), str):
                raise bad_request(f"{where}.call_id: a function_call_output item needs it", param=f"{where}.call_id")
            output = item.get("output")
            text = output if isinstance(output, str) else _content_text(output, f"{where}.output")
            out.append({"role": "tool", "tool_call_id": item["call_id"], "content": text, _FROM: where})
        elif kind == "reasoning":
            continue
        else:
            raise bad_request(
                f"{where}.type: {kind!r} items are not supported; send message, function_call and "
                "function_call_output items",
                param=f"{where}.type",
            )
    return out


def _tools(tools: Any) -> list[dict[str, Any]] | None:
    if tools is None:
        return None
    if not isinstance(tools, list):
        raise bad_request("tools: must be a list", param="tools")
    out = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type") != "function":
            kind = tool.get("type") if isinstance(tool, dict) else tool
            raise bad_request(
                f"tools[{i}].type: only function tools are supported, not {kind!r}", param=f"tools[{i}].type"
            )
        function = {k: tool[k] for k in ("name", "description", "parameters", "strict") if tool.get(k) is not None}
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"type": "function", "function": {"name": choice.get("name")}}
    if isinstance(choice, dict):
        raise bad_request(
            f"tool_choice: {choice!r} is not supported; use auto, none, required or a function", param="tool_choice"
        )
    return choice


def _response_format(text: Any) -> dict[str, Any] | None:
    fmt = (text or {}).get("format") if isinstance(text, dict) else None
    if not isinstance(fmt, dict) or fmt.get("type") in (None, "text"):
        return None
    if fmt.get("type") == "json_object":
        return {"type": "json_object"}
    if fmt.get("type") == "json_schema":
        spec = {k: fmt[k] for k in ("name", "description", "schema", "strict") if fmt.get(k) is not None}
        return {"type": "json_schema", "json_schema": spec}
    raise bad_request(f"text.format.type: {fmt.get('type')!r} is not supported", param="text.format.type")


def to_chat_request(body: dict[str, Any], history: list[dict[str, Any]]) -> dict[str, Any]:
    """The chat-completions request body a Responses request stands for.

    Args:
        body: The Responses request.
        history: The conversation of ``previous_response_id`` (empty without one).

    Raises:
        OpenAIError: 400 naming the field the request gets wrong.
    """
    if body.get("background"):
        raise bad_request("background: responses are answered in the request; leave background out", param="background")
    messages = [{**m, _FROM: "previous_response_id"} for m in history]
    instructions = _field(body, "instructions", str)
    if instructions:
        messages.insert(0, {"role": "system", "content": instructions, _FROM: "instructions"})
    if "input" not in body:
        raise bad_request("input: required", param="input")
    messages += _messages(body["input"])
    chat: dict[str, Any] = {"model": body.get("model"), "messages": messages, "stream": bool(body.get("stream"))}
    if (tools := _tools(body.get("tools"))) is not None and tools:
        chat["tools"] = tools
    if body.get("tool_choice") is not None:
        chat["tool_choice"] = _tool_choice(body["tool_choice"])
    for name in ("temperature", "parallel_tool_calls"):
        if body.get(name) is not None:
            chat[name] = body[name]
    if body.get("max_output_tokens") is not None:
        chat["max_tokens"] = body["max_output_tokens"]
    if (fmt := _response_format(body.get("text"))) is not None:
        chat["response_format"] = fmt
    return chat


# --------------------------------------------------------------------------- response


def _output_items(answer: AIMessage, message_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    if answer.text:
        items.append(
            {
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": answer.text, "annotations": [], "logprobs": []}],
            }
        )
    for call in answer.tool_calls:
        call_id = call.get("id") or f"call_{uuid.uuid4().hex[:24]}"
        items.append(
            {
                "id": f"fc_{uuid.uuid4().hex}",
                "type": "function_call",
                "call_id": call_id,
                "name": call["name"],
                "arguments": json.dumps(call["args"], ensure_ascii=False),
                "status": "completed",
            }
        )
    return items


def _usage(state: Any) -> dict[str, Any]:
    total = (state.get("usage_summary") or {}).get("total") or {}
    prompt, completion = int(total.get("input_tokens", 0)), int(total.get("output_tokens", 0))
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    }


def _as_chat_messages(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Output items as the chat messages a later request continues from."""
    return _messages([{k: v for k, v in item.items() if k not in ("id", "status")} for item in items])


# --------------------------------------------------------------------------- routes


def add_responses_routes(
    router: APIRouter,
    settings: APISettings,
    *,
    graph: Any,
    limit: ProviderConcurrencyLimit,
    slots: asyncio.Semaphore,
    store: ResponseStore | None = None,
) -> ResponseStore:
    """Add ``POST /v1/responses`` and ``GET /v1/responses/{id}`` to ``router``; returns the response store."""
    store = store or ResponseStore()

    @router.get("/v1/responses/{response_id}", response_model=ResponseObject)
    async def get_response(response_id: str) -> Any:
        """A response created with ``store`` on, from this server's memory."""
        try:
            _, response = store.get(response_id)
        except OpenAIError as exc:
            exc.param = "response_id"
            return exc.response()
        return JSONResponse(response)

    @router.post("/v1/responses", response_model=ResponseObject)
    async def create_response(request: Request) -> Response:
        """Answer with Mixture-of-Agents, in the Responses API's shape."""
        model = "?"
        try:
            raw = await read_body(request, settings.max_request_bytes)
            try:
                body = json.loads(raw)
            except (ValueError, RecursionError) as exc:
                raise bad_request(f"the body is not valid JSON: {exc}") from None
            if not isinstance(body, dict):
                raise bad_request("the body must be a JSON object with model and input")
            history: list[dict[str, Any]] = []
            if previous := _field(body, "previous_response_id", str):
                conversation, _ = store.get(previous)
                history = conversation
            chat_body = to_chat_request(body, history)
            try:
                parsed = await asyncio.to_thread(parse_within, json.dumps(chat_body).encode(), settings)
                model = parsed.model
                config = request_config(settings.served(model), parsed, settings.max_tokens)
            except OpenAIError as exc:
                raise input_param(exc, chat_body) from None
        except OpenAIError as exc:
            return exc.response()
        except ValidationError as exc:  # pragma: no cover - parse_within reports its own
            return bad_request(describe_validation_error(exc)).response()
        response_id = f"resp_{uuid.uuid4().hex}"
        message_id = f"msg_{uuid.uuid4().hex}"
        created = int(time.time())
        run_config: dict[str, Any] = {"callbacks": [limit], "run_name": "moa", "metadata": {"openai_model": model}}
        names = parsed.tool_names()
        inputs = {"messages": await asyncio.to_thread(lambda: [m.to_langchain(names) for m in parsed.messages])}
        run = BackgroundRun(graph, inputs, run_config, config, parsed.stream, slots)
        keep = body.get("store") is not False

        def finished(state: Any, answer: AIMessage) -> dict[str, Any]:
            output = _output_items(answer, message_id)
            response = _response(body, response_id, created, model, output, state)
            if keep:
                # instructions do not carry over to a later response, as on OpenAI's API
                conversation = [*history, *_messages(body["input"]), *_as_chat_messages(output)]
                store.put(response_id, conversation, response)
            return response

        def base(status: str, output: list[dict[str, Any]] | None = None) -> dict[str, Any]:
            return _response(body, response_id, created, model, output or [], None, status=status)

        if parsed.stream:
            return await _stream(run, request, model, config, message_id, base, finished)
        event = await run.next(request)
        if event is None:
            return Response(status_code=499)
        kind, value = event
        if kind == "error":
            return error_for(value, model).response()
        try:
            answer = answer_of(value)
        except OpenAIError as exc:
            return exc.response()
        return JSONResponse(finished(value, answer))

    return store


def _response(
    body: dict[str, Any],
    response_id: str,
    created: int,
    model: str,
    output: list[dict[str, Any]],
    state: Any,
    *,
    status: str = "completed",
) -> dict[str, Any]:
    """A ``response`` object as JSON, checked against the ``openai`` package's ``Response`` type."""
    text = body.get("text") if isinstance(body.get("text"), dict) else {"format": {"type": "text"}}
    payload: dict[str, Any] = {
        "id": response_id,
        "object": "response",
        "created_at": created,
        "status": status,
        "model": model,
        "output": output,
        "instructions": body.get("instructions"),
        "previous_response_id": body.get("previous_response_id"),
        "tools": body.get("tools") or [],
        "tool_choice": body.get("tool_choice") or "auto",
        "parallel_tool_calls": body.get("parallel_tool_calls") is not False,
        "temperature": body.get("temperature"),
        "top_p": body.get("top_p"),
        "max_output_tokens": body.get("max_output_tokens"),
        "metadata": body.get("metadata") or {},
        "store": body.get("store") is not False,
        "text": text,
        "error": None,
        "incomplete_details": None,
        "usage": _usage(state) if state is not None else None,
        "moa": moa_details(state, model) if state is not None else None,
    }
    return ResponseObject.model_validate(payload).model_dump(mode="json", exclude_unset=True)


async def _stream(
    run: BackgroundRun, request: Request, model: str, config: MoAConfig, message_id: str, base: Any, finished: Any
) -> Response:
    """Stream a run as ``response.*`` events (early errors keep their status code)."""
    first = await run.next(request)
    if first is None:
        return Response(status_code=499)
    if first[0] == "error":
        return error_for(first[1], model).response()
    buffered = config.aggregator_response_format is not None  # JSON is sent once checked
    sequence = iter(range(1_000_000))

    def event(kind: str, **fields: Any) -> dict[str, str]:
        return {"event": kind, "data": json.dumps({"type": kind, "sequence_number": next(sequence), **fields})}

    def message_item(text: str, status: str) -> dict[str, Any]:
        part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
        return {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "status": status,
            "content": [part] if status == "completed" else [],
        }

    def message_opened() -> list[dict[str, str]]:
        """The events that open the answer's message item and its one text part, before its first delta."""
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        return [
            event("response.output_item.added", output_index=0, item=message_item("", "in_progress")),
            event("response.content_part.added", item_id=message_id, output_index=0, content_index=0, part=part),
        ]

    async def events() -> AsyncIterator[dict[str, str]]:
        try:
            yield event("response.created", response=base("in_progress"))
            yield event("response.in_progress", response=base("in_progress"))
            current: tuple[str, Any] = first
            opened = False
            while True:
                kind, value = current
                if kind == "token" and not buffered:
                    if not opened:
                        opened = True
                        for opening in message_opened():
                            yield opening
                    yield event(
                        "response.output_text.delta",
                        item_id=message_id,
                        output_index=0,
                        content_index=0,
                        delta=value,
                        logprobs=[],
                    )
                elif kind == "error":
                    error = error_for(value, model)
                    yield event("error", code=error.code, message=error.message, param=error.param)
                    return
                elif kind == "done":
                    try:
                        answer = answer_of(value)
                    except OpenAIError as exc:
                        yield event("error", code=exc.code, message=exc.message, param=exc.param)
                        return
                    response = finished(value, answer)
                    index = 0
                    for item in response["output"]:
                        if item["type"] == "message":
                            final = item["content"][0]["text"]
                            if not opened:
                                for opening in message_opened():
                                    yield opening
                                yield event(
                                    "response.output_text.delta",
                                    item_id=message_id,
                                    output_index=0,
                                    content_index=0,
                                    delta=final,
                                    logprobs=[],
                                )
                            yield event(
                                "response.output_text.done",
                                item_id=message_id,
                                output_index=0,
                                content_index=0,
                                text=final,
                                logprobs=[],
                            )
                            yield event(
                                "response.content_part.done",
                                item_id=message_id,
                                output_index=0,
                                content_index=0,
                                part=item["content"][0],
                            )
                            yield event("response.output_item.done", output_index=0, item=item)
                        else:
                            yield event(
                                "response.output_item.added",
                                output_index=index,
                                item={**item, "arguments": "", "status": "in_progress"},
                            )
                            yield event(
                                "response.function_call_arguments.delta",
                                item_id=item["id"],
                                output_index=index,
                                delta=item["arguments"],
                            )
                            yield event(
                                "response.function_call_arguments.done",
                                item_id=item["id"],
                                output_index=index,
                                arguments=item["arguments"],
                                name=item["name"],
                            )
                            yield event("response.output_item.done", output_index=index, item=item)
                        index += 1
                    yield event("response.completed", response=response)
                    return
                current = await run.events.get()
        finally:
            run.cancel()

    return RunStream(run, events(), sep="\n", ping=15)
