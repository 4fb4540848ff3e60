"""A bounded, graceful shutdown: requests in flight finish, or are cancelled after a grace period.

``moa serve --graceful-timeout S`` (default :data:`DEFAULT_GRACEFUL_TIMEOUT`)
runs uvicorn with ``timeout_graceful_shutdown=S``. On SIGTERM (or Ctrl-C) the
server stops accepting connections and lets the requests in flight finish for up
to ``S`` seconds; then uvicorn cancels them. A cancelled run cancels its model
calls, so their upstream connections are closed, and a stored run (``store:
true``) keeps in its checkpoint the proposals that had finished. The checkpointer
is closed only once the cancelled runs have unwound.

:class:`InFlight` counts the requests in flight and those cancelled by the
shutdown, so ``moa serve`` exits with 0 after a clean drain and with 1 when it
had to cancel requests.

LangGraph's own drain (``RunControl.request_drain`` / ``GraphDrained``) stops a
run cooperatively at the next step boundary; it cannot end a model call in
progress (a hanging proposer would hold the shutdown as long as its timeout), so
the bound here is uvicorn's. Server-sent event streams are not ended at the
first signal either (sse-starlette's automatic drain is turned off by
:func:`keep_streams_during_grace`), so a streamed answer gets the same grace
period as any other.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from langgraph_moa.serve.openai_errors import OpenAIError

__all__ = ["DEFAULT_GRACEFUL_TIMEOUT", "CountInFlight", "InFlight", "keep_streams_during_grace"]

logger = logging.getLogger(__name__)

DEFAULT_GRACEFUL_TIMEOUT = 25
"""Seconds runs may go on after SIGTERM: below Kubernetes' default grace period of 30 s."""


class InFlight:
    """The requests and runs in flight, and how many requests a shutdown cancelled.

    :func:`~langgraph_moa.serve.app.create_app` keeps one in ``app.state.in_flight``
    and counts every HTTP request with :class:`CountInFlight`.

    Attributes:
        cancelled: Requests cancelled while they ran: uvicorn cancels the
            requests still running when the grace period is over.
    """

    def __init__(self) -> None:
        self.cancelled = 0
        self._requests = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._idle: asyncio.Event | None = None

    @property
    def active(self) -> int:
        """Requests and tracked run tasks not finished yet."""
        return self._requests + sum(1 for t in self._tasks if not t.done())

    def track(self, task: asyncio.Task[Any]) -> None:
        """Count a run's own task until it ends, so that the checkpointer outlives it."""
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        self._changed()

    def _changed(self) -> None:
        if self._idle is not None and self.active == 0:
            self._idle.set()

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is in flight, at most ``timeout`` seconds; True if nothing is."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self.active:
            self._idle = asyncio.Event()
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._idle.wait(), remaining)
            except TimeoutError:
                return not self.active
        return True


class CountInFlight:
    """ASGI middleware: count each HTTP request in ``in_flight``, and those cancelled while running.

    A request cancelled before its response started is answered 503
    ``server_shutting_down`` (which the ``openai`` SDK retries), rather than
    uvicorn's plain-text 500; one whose response had started (a stream) is cut.
    """

    def __init__(self, app: Any, in_flight: InFlight) -> None:
        self.app = app
        self._in_flight = in_flight

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Handle one ASGI connection."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        in_flight = self._in_flight
        in_flight._requests += 1
        started = False

        async def sending(message: dict[str, Any]) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except asyncio.CancelledError:
            in_flight.cancelled += 1
            logger.warning("%s %s was cancelled: the shutdown's grace period is over", scope["method"], scope["path"])
            if started:
                raise
            error = OpenAIError(
                503,
                "the server is shutting down and stopped this request before it finished; send it again",
                type="server_error",
                code="server_shutting_down",
                retry=True,
            )
            await error.response()(scope, receive, send)
        finally:
            in_flight._requests -= 1
            in_flight._changed()


def keep_streams_during_grace() -> None:
    """Let server-sent event streams run through the grace period instead of ending at the first signal.

    sse-starlette ends every stream as soon as uvicorn is asked to exit; uvicorn's
    ``timeout_graceful_shutdown`` then ends them when the grace period is over.
    """
    from sse_starlette.sse import AppStatus

    AppStatus.disable_automatic_graceful_drain()
