"""ASGI checks run before any route of ``moa serve``: Host names, bearer keys, JSON bodies, body size, disconnects."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Callable
from typing import Any

from langgraph.errors import GraphRecursionError
from pydantic import SecretStr

from langgraph_moa.errors import MoAError
from langgraph_moa.providers import LOOPBACK_HOSTS  # for ServeSettings.allowed_hosts; exported here too
from langgraph_moa.serve.openai_api import OpenAIError
from langgraph_moa.serve.openai_errors import error_for

logger = logging.getLogger(__name__)

_OPEN_PATHS = frozenset({"/health"})
"""Paths that need no API key."""

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def loopback_host(host: str) -> bool:
    """True when ``host`` (an interface to bind) is only reachable from this machine."""
    return host.strip("[]").lower() in LOOPBACK_HOSTS or host.startswith("127.")


def _host_name(header: bytes) -> str:
    """The name of a ``Host`` header, without its port (``[::1]:8000`` -> ``::1``)."""
    host = header.decode("latin-1").strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class _TooLarge(Exception):
    """The body read so far is over the limit; the guard answers 413."""


class RequestGuard:
    """ASGI middleware run before any route: host names, bearer keys, content type and body size.

    - ``Host`` must be one of ``allowed_hosts`` (``"*"`` allows any), so a web
      page whose name was rebound to a loopback address cannot reach a server
      bound to loopback (DNS rebinding); a request with two ``Host`` headers
      is refused (400) whatever they say;
    - a body must be declared ``application/json`` (415 otherwise): browsers send
      ``text/plain`` and form bodies cross-site without asking the server first;
    - the body is counted as it is read, with or without ``Content-Length``, and
      a body over ``max_bytes`` is answered with 413 whichever route reads it.
    """

    def __init__(
        self, app: Any, keys: tuple[SecretStr, ...], max_bytes: int, allowed_hosts: tuple[str, ...] = ("*",)
    ) -> None:
        self.app = app
        self._keys = [k.get_secret_value().encode() for k in keys]
        self._max_bytes = max_bytes
        hosts = {h.strip("[]").lower() for h in allowed_hosts}
        self._hosts = None if "*" in hosts else frozenset(hosts)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Handle one ASGI connection."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        if sum(1 for name, _ in scope.get("headers") or [] if name == b"host") > 1:
            error = OpenAIError(
                400,
                "the request has more than one Host header; send exactly one",
                type="invalid_request_error",
                code="invalid_host",
            )
            await _send_error(send, error)
            return
        if self._hosts is not None and _host_name(headers.get(b"host", b"")) not in self._hosts:
            error = OpenAIError(
                400,
                "this server does not answer to the host name of this request; connect to it by one of its "
                "allowed host names (moa serve --allowed-host)",
                type="invalid_request_error",
                code="invalid_host",
            )
            await _send_error(send, error)
            return
        if scope["path"] in _OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        if self._keys and not self._authorized(headers.get(b"authorization", b"")):
            error = OpenAIError(
                401,
                "missing or invalid API key: send the header 'Authorization: Bearer <key>' "
                "with a key this server accepts",
                type="invalid_request_error",
                code="invalid_api_key",
            )
            await _send_error(send, error, {"www-authenticate": "Bearer"})
            return
        if scope["method"] in _BODY_METHODS and not _is_json(headers.get(b"content-type", b"")):
            error = OpenAIError(
                415,
                "the body must be JSON: send the header 'Content-Type: application/json'",
                type="invalid_request_error",
                code="unsupported_media_type",
            )
            await _send_error(send, error)
            return
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > self._max_bytes:
            await _send_error(send, self._too_large())
            return
        await self._limited(scope, receive, send)

    async def _limited(self, scope: Any, receive: Any, send: Any) -> None:
        """Run the app, answering 413 as soon as the body it reads passes the limit."""
        read = 0
        over = started = False

        async def counting_receive() -> dict[str, Any]:
            nonlocal read, over
            message = await receive()
            if message["type"] == "http.request":
                read += len(message.get("body", b""))
                if read > self._max_bytes:
                    over = True
                    raise _TooLarge
            return message

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal started
            if over:  # the app's answer to a body it could not read whole: the 413 replaces it
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except Exception:
            if not over:
                raise
        if over and not started:
            await _send_error(send, self._too_large())

    def _too_large(self) -> OpenAIError:
        return OpenAIError(
            413,
            f"the request body is larger than this server's limit of {self._max_bytes} bytes",
            type="invalid_request_error",
            code="request_too_large",
        )

    def _authorized(self, header: bytes) -> bool:
        scheme, _, token = header.partition(b" ")
        if scheme.lower() != b"bearer":
            return False
        token = token.strip()
        matched = False
        for key in self._keys:  # every key is compared, so timing tells nothing about which one
            matched |= hmac.compare_digest(token, key)
        return matched


def _is_json(content_type: bytes) -> bool:
    return content_type.split(b";", 1)[0].strip().lower() == b"application/json"


async def _send_error(send: Any, error: OpenAIError, extra: dict[str, str] | None = None) -> None:
    await error.response().__call__({"type": "http"}, _no_receive, _with_headers(send, extra or {}))


async def _no_receive() -> dict[str, Any]:  # pragma: no cover - a JSONResponse never reads the request
    return {"type": "http.disconnect"}


def _with_headers(send: Any, extra: dict[str, str]) -> Any:
    async def wrapped(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start" and extra:
            message = {
                **message,
                "headers": [*message["headers"], *((k.encode(), v.encode()) for k, v in extra.items())],
            }
        await send(message)

    return wrapped


def add_error_handlers(app: Any, assistant: str) -> None:
    """Answer a failed LangServe run as ``/v1`` answers one: its status, code and reason, as JSON.

    ``/v1`` catches its own errors; LangServe's ``/invoke`` and ``/batch`` let a
    run's exception through, which would otherwise be a bare 500 in plain text.
    """

    async def failed_run(request: Any, exc: Exception) -> Any:
        if isinstance(exc, RecursionError) and not isinstance(exc, GraphRecursionError):
            error = OpenAIError(
                400, "the body nests too deeply to be read", type="invalid_request_error", code="invalid_json"
            )
        else:  # a run of a preset the request named is that preset's, not the default assistant's
            error = error_for(exc, getattr(request.state, "moa_preset", None) or assistant)
        return error.response()

    app.add_exception_handler(MoAError, failed_run)
    app.add_exception_handler(RecursionError, failed_run)
    app.add_exception_handler(Exception, failed_run)  # the 500 is logged by the server too


class CancelOnDisconnect:
    """ASGI middleware for the LangServe routes: cancel on disconnect, and say why a stream failed.

    - A POST under ``prefix`` is cancelled when its client goes away.
      LangServe's ``/invoke`` and ``/batch`` only answer once the run is over
      and never look at the connection meanwhile, so a client that gives up
      would leave its run (and the provider slots it holds) going until the
      end. Here the app runs on a task; the request's messages reach it
      through a queue, and an ``http.disconnect`` that arrives before the
      response is complete cancels the task.
    - A stream (``/stream``, ``/stream_log``, ``/stream_events``) whose run
      fails ends with an ``error`` event carrying the status, code and reason
      that ``/v1`` would answer (``{"status_code": 502, "message": ...,
      "code": "proposers_failed"}``), and the stream is closed properly.
      LangServe itself sends ``500 Internal Server Error`` and then lets the
      exception cut the connection.
    - With ``slots``, a request waits for one before it runs: the server's
      bound on runs executing at once, shared with ``/v1``.

    Args:
        app: The ASGI app.
        prefix: The path of the LangServe routes (``/moa``).
        error_for: Maps a failed run's exception to the error to report.
        slots: The server's bound on runs executing at once, if any.
    """

    def __init__(
        self,
        app: Any,
        prefix: str,
        error_for: Callable[[BaseException], OpenAIError],
        slots: asyncio.Semaphore | None = None,
    ) -> None:
        self.app = app
        self._prefix = prefix.rstrip("/") + "/"
        self._error_for = error_for
        self._slots = slots

    async def _admitted(self, scope: Any, receive: Any, send: Any) -> None:
        if self._slots is None:
            await self.app(scope, receive, send)
            return
        async with self._slots:  # the server's bound on runs executing at once (max_concurrent_runs)
            await self.app(scope, receive, send)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Handle one ASGI connection."""
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].startswith(self._prefix):
            await self.app(scope, receive, send)
            return
        messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        complete = started = False
        held: dict[str, Any] | None = None  # LangServe's own error event, replaced if the run's error is known

        async def sending(message: dict[str, Any]) -> None:
            nonlocal complete, started, held
            started = started or message["type"] == "http.response.start"
            if message["type"] == "http.response.body":
                if message.get("body", b"").startswith(b"event: error"):
                    held = message
                    return
                if not message.get("more_body", False):
                    complete = True
            await send(message)

        task = asyncio.ensure_future(self._admitted(scope, messages.get, sending))
        try:
            while not task.done():
                incoming = asyncio.ensure_future(receive())
                await asyncio.wait({incoming, task}, return_when=asyncio.FIRST_COMPLETED)
                if not incoming.done():
                    incoming.cancel()
                    break
                message = incoming.result()  # a body over the limit raises here, for the guard to answer
                messages.put_nowait(message)
                if message["type"] == "http.disconnect":
                    if not complete:
                        task.cancel()
                    break
            await asyncio.wait({task})
            if task.cancelled():
                return
            failure = task.exception()
            if failure is None or complete:
                if held is not None:
                    await send(held)
                if failure is not None:  # answered already: logged here, so the connection stays usable
                    logger.error("%s %s failed after its response", scope["method"], scope["path"], exc_info=failure)
                return
            if not started:  # answered here rather than by the server, which would then drop the connection
                error = self._error_for(_run_error(failure))
                if error.status >= 500:
                    logger.error("%s %s failed", scope["method"], scope["path"], exc_info=failure)
                await _send_error(send, error)
                return
            error = self._error_for(_run_error(failure))
            event = {"status_code": error.status, "message": error.message, "type": error.type, "code": error.code}
            body = b"event: error\r\ndata: " + json.dumps(event).encode() + b"\r\n\r\n"
            await send({"type": "http.response.body", "body": body, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            task.cancel()


def _run_error(exc: BaseException) -> BaseException:
    """The run's own exception, under the one FastAPI raises when a stream had already started."""
    while isinstance(exc, RuntimeError) and exc.__cause__ is not None:
        exc = exc.__cause__
    return exc
