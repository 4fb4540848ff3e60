r"""Simulated OpenAI-compatible chat-completions server for tests and benchmarks.

The server speaks just enough of the OpenAI HTTP API for the real ``openai`` and
``langchain-openai`` clients to run their normal code paths (HTTP, JSON parsing,
SSE streaming, retries, timeouts) against it. It uses only the standard library.

Quick start::

    from langchain_openai import ChatOpenAI
    from langgraph_moa.testing import Fault, ModelBehavior, SimulatedOpenAIServer

    behaviors = {
        "fast": ModelBehavior(),
        "slow": ModelBehavior(latency=0.5, chunk_delay=0.05),
        "flaky": ModelBehavior(faults=[Fault(429, retry_after=0.1)]),
    }
    with SimulatedOpenAIServer(behaviors) as server:
        llm = ChatOpenAI(model="fast", base_url=server.base_url, api_key="x")
        llm.invoke("hi").content   # 'fast answer to: hi [refs=0]'
        server.calls("fast")       # 1

Endpoints:
    * ``POST /v1/chat/completions``: answers a chat-completions request, streamed
      (``"stream": true``, SSE with ``chat.completion.chunk`` objects, a usage
      chunk when ``stream_options.include_usage`` is true, then ``data: [DONE]``)
      or not (one ``chat.completion`` object). Sampling parameters such as
      ``temperature``, ``max_tokens``, ``seed`` or ``n`` are accepted and ignored;
      there is always exactly one choice.
    * ``GET /v1/models``: lists the models named in ``behaviors``.
    * Anything else: 404; a body that is not a JSON object with a string
      ``model`` and a list ``messages``: 400. Errors use the OpenAI shape
      ``{"error": {"message": ..., "type": ..., "param": null, "code": ...}}``.

Replies:
    The default reply is deterministic and one line::

        "{model} answer to: {last user message} [refs={n}]"

    where ``n`` counts the lines of the system (or developer) messages that match
    ``^\\d+\\. `` (numbered references injected by the caller); whitespace in the
    user message is collapsed to single spaces. ``ModelBehavior.reply`` replaces
    it with a fixed string or a function of the request messages;
    `answer_key` builds such a function that answers questions right or wrong
    from a key (for evaluations). After tool results (``role: tool`` messages
    following the last user message) the reply ends with
    ``" [tool results: {result}; ...]"``.

    Tools and JSON, when asked: a request with ``tools`` (and a ``tool_choice``
    other than ``"none"``) is answered with a tool call, see
    `default_tool_calls`; a ``response_format`` of type ``json_object`` or
    ``json_schema`` is answered with JSON (``{"answer": ...}``, or a value
    valid against the schema whose strings are the tool results or the
    question: `example_value`). ``ModelBehavior.tool_calls`` and ``reply``
    replace both. Streamed tool calls come as OpenAI sends them: the id and
    name first, then the arguments in pieces of ``chunk_chars`` (else 8)
    characters. Usage counts
    words, not tokens: ``prompt_tokens`` is the number of whitespace-separated
    words across all message contents (text parts of list contents included),
    ``completion_tokens`` the number of words of the reply.

Per-model behavior (see `ModelBehavior`), applied in this order when a request
arrives:
    1. The request is counted (`SimulatedOpenAIServer.calls`) and recorded
       (`SimulatedOpenAIServer.requests`).
    2. If the behavior has a pending `Fault`, one use of it is consumed and the
       server answers immediately with that error (status 0 drops the
       connection without any response). Faults are consumed from the list in
       place, so ``behavior.faults`` shows what is left.
    3. ``hang=True``: never answers; the handler waits until the client goes
       away or the server stops.
    4. ``latency`` seconds pass before the first byte is sent.
    5. The reply is sent; when streaming, in chunks of ``chunk_words`` words
       (or of ``chunk_chars`` characters) with ``chunk_delay`` seconds between
       consecutive content chunks (and, with ``hold``, a wait after the first
       chunk, or the first ``hold_after`` chunks, until that event is set). The chunks concatenate to the reply exactly.

A client that closes its connection before the answer is complete (a
cancelled call) is noticed while the server waits (``latency``, ``hang``,
``chunk_delay``) and counted by `SimulatedOpenAIServer.abandoned`.

Models without a behavior of their own share the ``default`` behavior (and so
share its fault list). Behaviors can be replaced while the server runs with
`SimulatedOpenAIServer.set_behavior`.

Command line::

    python -m langgraph_moa.testing --port 8000 --latency 0.2

serves until Ctrl-C and prints the base URL (e.g. ``http://127.0.0.1:8000/v1``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import select
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = [
    "Fault",
    "ModelBehavior",
    "SimulatedOpenAIServer",
    "answer_key",
    "continuing",
    "default_reply",
    "default_tool_calls",
    "example_value",
    "main",
]

_POLL = 0.05  # seconds; granularity of waits, so stop() and client hang-ups are noticed quickly
_REF_LINE = re.compile(r"^\d+\. ", re.MULTILINE)
_WORD = re.compile(r"\s*\S+")  # a word with the whitespace before it
_ERROR_KINDS = {  # status -> (error type, error code)
    400: ("invalid_request_error", "invalid_request"),
    401: ("authentication_error", "invalid_api_key"),
    403: ("permission_error", "permission_denied"),
    404: ("invalid_request_error", "not_found"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
}


@dataclass
class Fault:
    """An error answer injected before a model's normal answers.

    Attributes:
        status: HTTP status to answer with; 0 drops the connection without answering.
        times: How many consecutive calls get this fault before it is consumed.
        retry_after: When given, sent as a ``Retry-After`` header (seconds).
        message: Message of the OpenAI-style JSON error body.
    """

    status: int = 500
    times: int = 1
    retry_after: float | None = None
    message: str = "simulated fault"


@dataclass
class ModelBehavior:
    """How the server answers requests for one model.

    Attributes:
        latency: Seconds before the first byte (non-stream: before the response).
        reply: Fixed reply text, or a function of the request messages returning
            it; None gives `default_reply`.
        chunk_delay: Seconds between consecutive streamed content chunks.
        chunk_words: Words per streamed content chunk (at least 1).
        chunk_chars: When above 0, streamed content chunks are this many
            characters each instead, so a word (or a key) is split across
            chunks, as real tokenizers split long words.
        hang: Never answer; wait until the client gives up or the server stops.
        faults: Faults consumed in order before normal answers.
        tool_calls: A function of the whole request body (``messages``, ``tools``,
            ``tool_choice``, ...) returning the tool calls to answer with, as
            ``[{"name": ..., "arguments": {...}}]``, or None (or ``[]``) to answer
            with text. Tool calls come with ``finish_reason="tool_calls"`` and no
            text. Unset: `default_tool_calls` decides.
        echo_authorization: Append the request's ``Authorization`` header to
            every answer and error message, as a careless upstream might (for
            tests that a key never travels further than the provider).
        finish_reason: The finish reason of text answers, ``"stop"`` by default;
            ``"length"`` plays an answer cut at the token limit.
        logprobs: A function of the request messages returning the first
            token's most likely alternatives as ``(token, logprob)`` pairs, most
            likely first. A non-streamed request that asks for ``logprobs`` then
            gets them in OpenAI's shape (``top_logprobs`` of them), and the reply,
            when no other is set, is the most likely token. Without it, or when
            the request does not ask, ``logprobs`` is null (a judge that has none).
        honour_max_tokens: Cut the reply to the request's ``max_tokens`` (or
            ``max_completion_tokens``) words, with ``finish_reason="length"``
            when it was cut, as a real server does. Off by default: the reply
            is sent whole whatever the limit.
        hold: When given, a streamed answer sends its first content chunk (its
            first ``hold_after`` chunks), then waits until this event is set
            before the next one (noticing a client that hangs up meanwhile): a
            test sees an answer part-way through, however slow the machine, then
            lets it finish.
        hold_after: How many content chunks a held stream sends before it waits
            on ``hold`` (at least 1).
    """

    latency: float = 0.0
    reply: str | Callable[[list[dict]], str] | None = None
    chunk_delay: float = 0.0
    chunk_words: int = 1
    chunk_chars: int = 0
    hang: bool = False
    faults: list[Fault] = field(default_factory=list)
    tool_calls: Callable[[dict], list[dict] | None] | None = None
    echo_authorization: bool = False
    finish_reason: str = "stop"
    logprobs: Callable[[list[dict]], list[tuple[str, float]]] | None = None
    honour_max_tokens: bool = False
    drop_after: int = 0
    hold: threading.Event | None = None
    hold_after: int = 1

    def __post_init__(self) -> None:
        if self.hold_after < 1:
            raise ValueError("hold_after must be at least 1")
        if self.chunk_words < 1:
            raise ValueError("chunk_words must be at least 1")
        if self.chunk_chars < 0:
            raise ValueError("chunk_chars must not be negative")
        if self.latency < 0 or self.chunk_delay < 0:
            raise ValueError("latency and chunk_delay must not be negative")


def _logprobs(request: dict, behavior: ModelBehavior) -> dict | None:
    """The ``logprobs`` of a choice (OpenAI's shape: the first token and its top alternatives), or None."""
    if behavior.logprobs is None or not request.get("logprobs"):
        return None
    ranked = behavior.logprobs(request["messages"])
    top = [
        {"token": token, "logprob": logprob, "bytes": list(token.encode())}
        for token, logprob in ranked[: int(request.get("top_logprobs") or 0)]
    ]
    token, logprob = ranked[0]
    return {"content": [{"token": token, "logprob": logprob, "bytes": list(token.encode()), "top_logprobs": top}]}


def _text(content: Any) -> str:
    """Returns the text of a message content (a string or a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = (p if isinstance(p, str) else p.get("text", "") for p in content if isinstance(p, (str, dict)))
        return " ".join(p for p in parts if isinstance(p, str))
    return ""


def default_reply(model: str, messages: list[dict]) -> str:
    r"""Returns the deterministic default reply for a request.

    Args:
        model: The requested model name.
        messages: The request messages (OpenAI format).

    Returns:
        ``"{model} answer to: {last user message} [refs={n}]"`` on one line, where
        ``n`` counts system/developer message lines matching ``^\\d+\\. ``.
    """
    users = [_text(m.get("content")) for m in messages if m.get("role") == "user"]
    question = " ".join(users[-1].split()) if users else ""
    refs = sum(
        len(_REF_LINE.findall(_text(m.get("content")))) for m in messages if m.get("role") in ("system", "developer")
    )
    return f"{model} answer to: {question} [refs={refs}]"


def wrong_answer(answer: str) -> str:
    """A deterministic wrong answer: a number plus one, or a word spelled backwards with an ``x``."""
    try:
        value = float(answer)
    except ValueError:
        return answer[::-1] + "x"
    return f"{value + 1:g}"


def answer_key(
    answers: dict[str, str],
    *,
    wrong: bool | Callable[[str], bool] = False,
    template: str = "Let me think. The answer is {answer}.",
    unknown: str = "I do not know.",
) -> Callable[[list[dict]], str]:
    """A ``ModelBehavior.reply`` function that answers questions from a key.

    The question is the last user message, whitespace collapsed; it is looked up
    in ``answers`` (keys compared the same way). The reply is ``template`` with
    the answer filled in, or, when ``wrong`` says so, with `wrong_answer` of it.
    Unknown questions get ``unknown``. References in the system message are
    ignored, so an aggregator built on this answers the same whatever it is shown.

    Args:
        answers: Question text -> correct answer.
        wrong: True answers every question wrongly; a function of the question
            text answers wrongly where it returns True.
        template: The reply, with ``{answer}`` in it.
        unknown: The reply to a question not in ``answers``.

    Example:
        ```python
        key = {"What is 2+2?": "4", "Capital of France?": "Paris"}
        behaviors = {
            "right": ModelBehavior(reply=answer_key(key)),
            "wrong": ModelBehavior(reply=answer_key(key, wrong=True)),
            "half": ModelBehavior(reply=answer_key(key, wrong=lambda q: "France" in q)),
        }
        ```
    """
    table = {" ".join(q.split()): a for q, a in answers.items()}

    def reply(messages: list[dict]) -> str:
        users = [_text(m.get("content")) for m in messages if m.get("role") == "user"]
        question = " ".join(users[-1].split()) if users else ""
        if question not in table:
            return unknown
        answer = table[question]
        is_wrong = wrong(question) if callable(wrong) else wrong
        return template.format(answer=wrong_answer(answer) if is_wrong else answer)

    return reply


def continuing(full: str) -> Callable[[list[dict]], str]:
    """A ``ModelBehavior.reply`` function that writes ``full`` in parts, continuing what it has written.

    The reply is the rest of ``full`` after the longest assistant message of
    the request that ``full`` starts with (an answer so far, given as a
    trailing assistant turn to continue, or as an earlier turn followed by an
    instruction to continue); without one, ``full`` itself. With
    ``honour_max_tokens`` each call writes the next part.
    """

    def reply(messages: list[dict]) -> str:
        written = [
            text
            for m in messages
            if m.get("role") == "assistant" and (text := _text(m.get("content"))) and full.startswith(text)
        ]
        return full[len(max(written, key=len)) :] if written else full

    return reply


def _usage(messages: list[dict], reply: str) -> dict[str, int]:
    prompt = sum(len(_text(m.get("content")).split()) for m in messages)
    completion = len(reply.split())
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _chunks(reply: str, words: int, chars: int = 0) -> list[str]:
    """Splits ``reply`` into pieces of ``words`` words (or ``chars`` characters) that concatenate to it exactly."""
    if chars > 0:
        return [reply[i : i + chars] for i in range(0, len(reply), chars)] or [reply]
    pieces = _WORD.findall(reply)
    chunks = ["".join(pieces[i : i + words]) for i in range(0, len(pieces), words)]
    rest = reply[len("".join(chunks)) :]  # trailing whitespace, or all of a blank reply
    if rest:
        chunks = chunks[:-1] + [(chunks[-1] if chunks else "") + rest]
    return chunks


def _tool_calls(completion_id: str, calls: list[dict] | None) -> list[dict]:
    """OpenAI ``tool_calls`` entries for ``[{"name": ..., "arguments": {...}}]``."""
    return [
        {
            "id": f"call_{completion_id[-8:]}_{i}",
            "type": "function",
            "function": {"name": c["name"], "arguments": json.dumps(c.get("arguments", {}))},
        }
        for i, c in enumerate(calls or [])
    ]


def _question(messages: list[dict]) -> str:
    users = [_text(m.get("content")) for m in messages if m.get("role") == "user"]
    return " ".join(users[-1].split()) if users else ""


def _tool_results(messages: list[dict]) -> list[str]:
    """The tool results after the last user message, whitespace collapsed."""
    results: list[str] = []
    for m in messages:
        if m.get("role") == "user":
            results = []
        elif m.get("role") == "tool":
            results.append(" ".join(_text(m.get("content")).split()))
    return results


def _tool_results_note(messages: list[dict]) -> str:
    results = _tool_results(messages)
    return f" [tool results: {'; '.join(results)}]" if results else ""


def example_value(schema: Any, text: str, root: Any = None, depth: int = 0) -> Any:
    """A deterministic value valid against the JSON ``schema``: every string is ``text``.

    Handles what tool and response schemas use: objects (every property),
    arrays (one item), ``$ref`` to ``$defs``, ``anyOf``/``oneOf`` (the first
    option that is not null), ``allOf``, ``enum`` and ``const``.
    """
    root = schema if root is None else root
    if not isinstance(schema, dict) or depth > 12:
        return text
    if "$ref" in schema:
        target: Any = root
        for part in str(schema["$ref"]).lstrip("#/").split("/"):
            target = target.get(part, {}) if isinstance(target, dict) and part else target
        return example_value(target, text, root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        options = [o for o in schema.get(key) or [] if not (isinstance(o, dict) and o.get("type") == "null")]
        if options:
            return example_value(options[0], text, root, depth + 1)
    if schema.get("allOf"):
        return example_value(schema["allOf"][0], text, root, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or (kind is None and "properties" in schema):
        properties = schema.get("properties") or {}
        return {name: example_value(sub, text, root, depth + 1) for name, sub in properties.items()}
    if kind == "array":
        count = max(1, int(schema.get("minItems") or 1))
        return [example_value(schema.get("items") or {}, text, root, depth + 1) for _ in range(count)]
    return {"integer": 1, "number": 1, "boolean": True, "null": None}.get(str(kind), text)


def default_tool_calls(request: dict) -> list[dict] | None:
    """The simulated model's own tool calls, when the request offers tools and no ``tool_calls`` is set.

    A request whose ``tool_choice`` is not ``"none"`` and whose conversation has
    no tool result after its last user message calls the first tool (or the
    named one), with every string argument set to the last user message. After
    a tool result it answers with text (``"required"``: calls the first tool
    not called yet, else the last; a named choice: that tool again).
    """
    tools = [t for t in request.get("tools") or [] if isinstance(t, dict) and isinstance(t.get("function"), dict)]
    choice = request.get("tool_choice") or "auto"
    if not tools or choice == "none":
        return None
    by_name = {t["function"].get("name"): t["function"] for t in tools}
    messages = request["messages"]
    answered = bool(_tool_results(messages))
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
    elif not answered:
        name = tools[0]["function"].get("name")
    elif choice == "required":
        called = {
            (c.get("function") or {}).get("name")
            for m in messages
            if m.get("role") == "assistant"
            for c in m.get("tool_calls") or []
            if isinstance(c, dict)
        }
        name = next((n for n in by_name if n not in called), tools[-1]["function"].get("name"))
    else:
        return None
    function = by_name.get(name) or {}
    source = "; ".join(_tool_results(messages)) or _question(messages)
    arguments = example_value(function.get("parameters") or {"type": "object"}, source)
    return [{"name": name, "arguments": arguments if isinstance(arguments, dict) else {}}]


def _json_reply(request: dict) -> str | None:
    """A JSON reply for a request whose ``response_format`` asks for one (else None)."""
    fmt = request.get("response_format")
    if not isinstance(fmt, dict) or fmt.get("type") not in ("json_object", "json_schema"):
        return None
    messages = request["messages"]
    source = "; ".join(_tool_results(messages)) or _question(messages)
    if fmt["type"] == "json_object":
        return json.dumps({"answer": f"{request['model']} answer to: {source}"})
    schema = (fmt.get("json_schema") or {}).get("schema") or {"type": "object"}
    return json.dumps(example_value(schema, source))


def _error_body(status: int, message: str) -> dict[str, Any]:
    kind, code = _ERROR_KINDS.get(status, ("server_error" if status >= 500 else "api_error", None))
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


class SimulatedOpenAIServer:
    """An OpenAI-compatible chat-completions server on a background thread.

    Args:
        behaviors: Behavior per model name; these models are listed by ``/v1/models``.
        default: Behavior of models not in ``behaviors`` (``ModelBehavior()`` if None).
        host: Interface to bind.
        port: Port to bind; 0 picks a free one.

    Attributes:
        requests: Every received chat-completion request body, in arrival order.
        connections: Client connections accepted since start (keep-alive connections
            carry many requests; a client that pools its connections opens few).
        max_open_connections: Highest number of client connections open at once
            (accepted and not yet closed, idle keep-alive connections included).
        arrivals: ``(model, time.monotonic())`` of each request, in arrival order:
            for causal timing checks (a retry cannot arrive before the wait it
            was told to make), never for speed.
        max_concurrency: Highest number of chat-completion requests in flight at once.
        in_flight: Chat-completion requests being answered right now.
    """

    def __init__(
        self,
        behaviors: dict[str, ModelBehavior] | None = None,
        *,
        default: ModelBehavior | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.host = host
        self.port = port
        self.requests: list[dict] = []
        self.api_keys: list[str] = []  # the bearer token of each request, in arrival order
        self.arrivals: list[tuple[str, float]] = []
        self.connections = 0
        self.max_open_connections = 0
        self.max_concurrency = 0
        self._behaviors = dict(behaviors or {})
        self._default = default if default is not None else ModelBehavior()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # notified on every arrival and departure
        self._calls: Counter[str] = Counter()
        self._abandoned: Counter[str] = Counter()
        self._in_flight = 0
        self._ids = itertools.count(1)
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._base_url: str | None = None

    @property
    def base_url(self) -> str:
        """The API base URL, e.g. ``http://127.0.0.1:PORT/v1`` (set by `start`)."""
        if self._base_url is None:
            raise RuntimeError("server not started")
        return self._base_url

    def start(self) -> SimulatedOpenAIServer:
        """Binds the socket and serves on a daemon thread; returns self."""
        if self._httpd is not None:
            raise RuntimeError("server already running")
        httpd = _HTTPServer((self.host, self.port), self)
        host, port = httpd.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else host
        self._base_url = f"http://{host}:{port}/v1"
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": _POLL}, name="simulated-openai", daemon=True
        )
        self._httpd = httpd
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops serving, closes all sockets and returns promptly, even if requests hang."""
        httpd, thread = self._httpd, self._thread
        if httpd is None or thread is None:
            return
        self._httpd = self._thread = None
        httpd.stopping.set()
        httpd.shutdown()
        httpd.server_close()
        httpd.close_connections()
        thread.join(timeout=1)

    def __enter__(self) -> SimulatedOpenAIServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def set_behavior(self, model: str, behavior: ModelBehavior) -> None:
        """Sets (or replaces) the behavior of ``model``; safe while running."""
        with self._lock:
            self._behaviors[model] = behavior

    def calls(self, model: str | None = None) -> int:
        """Returns how many chat-completion requests arrived for ``model`` (or in total)."""
        with self._lock:
            return self._calls[model] if model is not None else sum(self._calls.values())

    def wait_for_calls(self, count: int, model: str | None = None, timeout: float = 30.0) -> bool:
        """Block until ``count`` requests for ``model`` (or in total) have arrived; False if ``timeout`` passed first.

        For tests that act once a request is at the server (cancel it, hang up)
        instead of guessing how long that takes.
        """
        with self._changed:
            return self._changed.wait_for(
                lambda: (self._calls[model] if model is not None else sum(self._calls.values())) >= count, timeout
            )

    def wait_for_concurrency(self, count: int, timeout: float = 30.0) -> bool:
        """Block until ``count`` requests have been in flight at once; False if ``timeout`` passed first.

        Reads ``max_concurrency``, so a ``reset`` restarts it. For tests of a concurrency bound: a reply that waits for this makes the
        bound's peak happen however slowly the machine starts the requests.
        """
        with self._changed:
            return self._changed.wait_for(lambda: self.max_concurrency >= count, timeout)

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until no request is in flight; False if ``timeout`` passed first."""
        with self._changed:
            return self._changed.wait_for(lambda: self._in_flight == 0, timeout)

    def abandoned(self, model: str | None = None) -> int:
        """Returns how many requests for ``model`` (or in total) the client closed before the answer was complete."""
        with self._lock:
            return self._abandoned[model] if model is not None else sum(self._abandoned.values())

    @property
    def in_flight(self) -> int:
        """Chat-completion requests being answered right now."""
        with self._lock:
            return self._in_flight

    @property
    def open_connections(self) -> int:
        """Client connections open right now (idle keep-alive connections included)."""
        httpd = self._httpd
        return httpd.open_connections() if httpd is not None else 0

    def requests_for(self, model: str) -> list[dict]:
        """Returns the recorded request bodies for ``model``, in arrival order."""
        with self._lock:
            return [r for r in self.requests if r.get("model") == model]

    def reset(self) -> None:
        """Clears call and abandon counts, recorded requests, ``max_concurrency`` and ``max_open_connections``.

        The two maxima restart from what is in flight and open now; ``connections``
        keeps counting.
        """
        httpd = self._httpd
        if httpd is not None:
            httpd.restart_max_open()
        else:
            self.max_open_connections = 0
        with self._lock:
            self._calls.clear()
            self._abandoned.clear()
            self.requests.clear()
            self.api_keys.clear()
            self.arrivals.clear()
            self.max_concurrency = self._in_flight

    # Internals used by the request handler.

    def _arrive(self, request: dict, api_key: str) -> tuple[ModelBehavior, Fault | None, str]:
        """Records a request; returns its behavior, the fault to answer with, and an id."""
        model = request["model"]
        with self._lock:
            self.requests.append(request)
            self.api_keys.append(api_key)
            self.arrivals.append((model, time.monotonic()))
            self._calls[model] += 1
            self._in_flight += 1
            self.max_concurrency = max(self.max_concurrency, self._in_flight)
            self._changed.notify_all()
            behavior = self._behaviors.get(model, self._default)
            fault = None
            while behavior.faults and fault is None:
                head = behavior.faults[0]
                if head.times > 0:
                    fault = head
                    head.times -= 1
                if head.times <= 0:
                    behavior.faults.pop(0)
            return behavior, fault, f"chatcmpl-sim{next(self._ids)}"

    def _depart(self, model: str, abandoned: bool) -> None:
        with self._lock:
            self._in_flight -= 1
            if abandoned:
                self._abandoned[model] += 1
            self._changed.notify_all()

    def _models(self) -> dict[str, Any]:
        with self._lock:
            names = list(self._behaviors)
        data = [{"id": n, "object": "model", "created": 0, "owned_by": "simulated"} for n in names]
        return {"object": "list", "data": data}


class _HTTPServer(ThreadingHTTPServer):
    """Threading HTTP server that tracks open connections so stop() can cut them."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], sim: SimulatedOpenAIServer) -> None:
        self.sim = sim
        self.stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
            self.sim.connections += 1
            self.sim.max_open_connections = max(self.sim.max_open_connections, len(self._connections))
        try:
            super().finish_request(request, client_address)
        finally:
            with self._connections_lock:
                self._connections.discard(request)

    def open_connections(self) -> int:
        with self._connections_lock:
            return len(self._connections)

    def restart_max_open(self) -> None:
        with self._connections_lock:
            self.sim.max_open_connections = len(self._connections)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError) or self.stopping.is_set():
            return  # client hung up or server stopping: not worth a traceback
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; streams use chunked transfer encoding
    disable_nagle_algorithm = True  # else headers and body in separate writes wait ~40 ms for a delayed ACK
    server: _HTTPServer
    _abandoned = False  # the client of the current request went away before the answer was complete

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        if path == "/v1/models":
            self._json(200, self.server.sim._models())
        else:
            self._json(404, _error_body(404, f"Unknown request URL: GET {path}"))

    def do_POST(self) -> None:
        try:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        except ValueError:
            self.close_connection = True
            self._json(400, _error_body(400, "Invalid Content-Length header"))
            return
        path = self.path.split("?", 1)[0].rstrip("/")
        if path != "/v1/chat/completions":
            self._json(404, _error_body(404, f"Unknown request URL: POST {path}"))
            return
        try:
            request = json.loads(body)
        except ValueError as exc:
            self._json(400, _error_body(400, f"We could not parse the JSON body of your request: {exc}"))
            return
        if not (
            isinstance(request, dict)
            and isinstance(request.get("model"), str)
            and isinstance(request.get("messages"), list)
        ):
            self._json(400, _error_body(400, "The body must be a JSON object with 'model' and 'messages'"))
            return
        bearer = self.headers.get("Authorization", "")
        behavior, fault, completion_id = self.server.sim._arrive(request, bearer.removeprefix("Bearer "))
        self._abandoned = False
        try:
            self._answer(request, behavior, fault, completion_id, bearer)
        except OSError:
            self._abandoned = not self.server.stopping.is_set()  # the client hung up mid-write
            raise
        finally:
            self.server.sim._depart(request["model"], self._abandoned)

    def _answer(
        self, request: dict, behavior: ModelBehavior, fault: Fault | None, completion_id: str, authorization: str
    ) -> None:
        echo = f" (Authorization: {authorization})" if behavior.echo_authorization else ""
        if fault is not None:
            if fault.status == 0:
                self.close_connection = True  # socketserver closes the socket without a response
                return
            headers = {} if fault.retry_after is None else {"Retry-After": f"{fault.retry_after:g}"}
            self._json(fault.status, _error_body(fault.status, fault.message + echo), headers)
            return
        if behavior.hang:
            self._wait(None)  # until the client hangs up or the server stops
            self.close_connection = True
            return
        if not self._wait(behavior.latency):
            self.close_connection = True
            return
        messages = request["messages"]
        try:
            chosen = behavior.tool_calls(request) if behavior.tool_calls else default_tool_calls(request)
            calls = _tool_calls(completion_id, chosen)
            reply = behavior.reply(messages) if callable(behavior.reply) else behavior.reply
            if reply is None and not calls:
                reply = _json_reply(request)
        except Exception as exc:  # a broken reply function is reported, not fatal
            self._json(500, _error_body(500, f"reply or tool_calls function failed: {exc!r}"))
            return
        logprobs = _logprobs(request, behavior)
        if calls:
            reply = ""
        elif reply is None and logprobs is not None:
            reply = logprobs["content"][0]["token"]
        elif reply is None:
            reply = default_reply(request["model"], messages) + _tool_results_note(messages)
        if echo and not calls:
            reply += echo
        finish = "tool_calls" if calls else behavior.finish_reason
        limit = request.get("max_tokens") or request.get("max_completion_tokens")
        if behavior.honour_max_tokens and not calls and isinstance(limit, int) and limit > 0:
            words = _WORD.findall(reply)
            if len(words) > limit:
                reply, finish = "".join(words[:limit]), "length"
        head = {"id": completion_id, "created": int(time.time()), "model": request["model"]}
        usage = _usage(messages, reply)
        if request.get("stream"):
            options = request.get("stream_options")
            include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
            self._stream(head, reply, usage if include_usage else None, behavior, calls, finish)
            return
        message: dict[str, Any] = {"role": "assistant", "content": reply or None, "refusal": None}
        if calls:
            message["tool_calls"] = calls
        choice = {"index": 0, "message": message, "logprobs": logprobs, "finish_reason": finish}
        self._json(200, {**head, "object": "chat.completion", "choices": [choice], "usage": usage})

    def _stream(
        self, head: dict, reply: str, usage: dict | None, behavior: ModelBehavior, calls: list[dict], finish: str
    ) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        head = {**head, "object": "chat.completion.chunk"}

        def choice(delta: dict, finish_reason: str | None = None) -> list[dict]:
            return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]

        self._event({**head, "choices": choice({"role": "assistant", "content": ""})})
        for i, call in enumerate(calls):  # as OpenAI streams them: id and name first, then the arguments in pieces
            named = {**call, "function": {"name": call["function"]["name"], "arguments": ""}}
            self._event({**head, "choices": choice({"tool_calls": [{"index": i, **named}]})})
            for piece in _chunks(call["function"]["arguments"], 1, behavior.chunk_chars or 8):
                self._event(
                    {**head, "choices": choice({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})}
                )
        for i, text in enumerate(_chunks(reply, behavior.chunk_words, behavior.chunk_chars) if not calls else []):
            if i == behavior.hold_after and behavior.hold is not None and not self._wait(None, until=behavior.hold):
                self.close_connection = True  # the client went away while the stream was held
                return
            if i and not self._wait(behavior.chunk_delay):
                self.close_connection = True  # abandon the stream mid-way
                return
            if behavior.drop_after and i >= behavior.drop_after:
                self.close_connection = True  # fail mid-answer: no end of the stream
                return
            self._event({**head, "choices": choice({"content": text})})
        self._event({**head, "choices": choice({}, finish)})
        if usage is not None:
            self._event({**head, "choices": [], "usage": usage})
        self._write_chunk(b"data: [DONE]\n\n")
        self._write_chunk(b"")  # end of the chunked body

    def _event(self, payload: dict) -> None:
        self._write_chunk(b"data: " + json.dumps(payload).encode() + b"\n\n")

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _json(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _wait(self, seconds: float | None, until: threading.Event | None = None) -> bool:
        """Sleeps ``seconds`` (forever if None) or until ``until`` is set.

        False if stopped early by server stop or client hang-up.
        """
        deadline = None if seconds is None else time.monotonic() + seconds
        while True:
            remaining = _POLL if deadline is None else deadline - time.monotonic()
            if remaining <= 0 or (until is not None and until.is_set()):
                return True
            if self.server.stopping.wait(min(remaining, _POLL)):
                return False
            if self._client_gone():
                self._abandoned = True
                return False

    def _client_gone(self) -> bool:
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True


def main(argv: list[str] | None = None) -> None:
    """Serves a simulated API until Ctrl-C (``python -m langgraph_moa.testing``)."""
    parser = argparse.ArgumentParser(
        prog="python -m langgraph_moa.testing",
        description="Serve a simulated OpenAI-compatible chat-completions API.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8000, help="port, 0 for a free one (default: %(default)s)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before the first byte")
    parser.add_argument("--chunk-delay", type=float, default=0.0, help="seconds between streamed chunks")
    parser.add_argument("--chunk-words", type=int, default=1, help="words per streamed chunk")
    parser.add_argument(
        "--model", action="append", default=[], help="model name listed by /v1/models (repeatable); any model is served"
    )
    args = parser.parse_args(argv)
    behavior = ModelBehavior(latency=args.latency, chunk_delay=args.chunk_delay, chunk_words=args.chunk_words)
    server = SimulatedOpenAIServer(
        {name: behavior for name in args.model}, default=behavior, host=args.host, port=args.port
    )
    with server:
        print(server.base_url, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
