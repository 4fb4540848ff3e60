"""The straggler cut-off (``MoAConfig.straggler_timeout``).

Once a proposer layer has ``min_proposals`` successful proposals, the proposers
still running get at most ``straggler_timeout`` more seconds; then their calls
are cancelled (which closes their HTTP requests) and they are recorded as
failures with ``error_type`` ``"StragglerTimeout"``. A proposer that starts after
that moment (``max_concurrency`` holds tasks back) is cut before it calls its
model.

Why the proposer tasks coordinate here instead of using LangGraph's timeouts:
a per-``Send`` timeout or a node ``TimeoutPolicy`` is fixed when a task starts
and counts from that task's own start, while the cut-off starts when *other*
tasks of the same step have succeeded, which no per-task policy can see; and a
task that times out raises ``NodeTimeoutError``, which cancels its running
siblings unless an error handler turns it into a state update. So the tasks of
one layer share a :class:`LayerCutoff`, found in a per-graph
:class:`CutoffRegistry` keyed by the step (the checkpoint id LangGraph gives all
tasks of one step, plus the graph's namespace) and the layer. Each proposer's
call runs under an ``asyncio.timeout`` that the quorum reschedules: cancelling
a task is asyncio's own mechanism, and the failure is returned as data like any
provider error, so the layer goes on, the run stays resumable, and siblings
that finished are never re-run. The cut-off applies to async runs (``ainvoke``,
``astream``): a sync run's blocking calls cannot be cancelled, so it has none.

Sync runs (``invoke``/``stream``) make blocking calls, which cannot be
cancelled from outside: there the option has no effect (each call still has
its own ``timeout``).

By construction a cut-off never leaves fewer than ``min_proposals``: the deadline
exists only after ``min_proposals`` proposers have succeeded, and a proposer
counts as succeeded only once its answer is complete, after which nothing cuts
it. On resume, proposers that finished before are not re-run and not counted:
the cut-off then starts when ``min_proposals`` of the re-run ones succeed.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from langgraph_moa.errors import StragglerTimeout

_MAX_STEPS = 256  # layers whose tasks never all finished (interrupted runs, resumes) are forgotten past this


class LayerCutoff:
    """The shared clock of one proposer layer of one run.

    Args:
        needed: ``min_proposals``: successes that start the cut-off.
        grace: ``straggler_timeout``: seconds the others get after that.
        tasks: How many proposer tasks the layer has.
    """

    def __init__(self, needed: int, grace: float, tasks: int) -> None:
        self.needed = needed
        self.grace = grace
        self.tasks = tasks
        self.succeeded = 0
        self.finished = 0
        self.deadline: float | None = None  # event-loop time at which the stragglers are cut
        self._running: set[asyncio.Timeout] = set()

    @asynccontextmanager
    async def guard(self) -> AsyncIterator[None]:
        """Run one proposer's call under the cut-off.

        Raises:
            StragglerTimeout: the layer's deadline passed before the body finished
                (the body was cancelled), or had passed before it started (the
                body never ran).
        """
        loop = asyncio.get_running_loop()
        if self.deadline is not None and self.deadline <= loop.time():
            raise StragglerTimeout(self._message(started_late=True))
        timeout = asyncio.timeout(self.deadline)
        try:
            async with timeout:
                self._running.add(timeout)
                try:
                    yield
                finally:
                    self._running.discard(timeout)
        except TimeoutError:
            if not timeout.expired():
                raise  # the call's own timeout, not the cut-off
            raise StragglerTimeout(self._message(started_late=False)) from None

    def succeed(self) -> bool:
        """Count one complete proposal; True when it completes the quorum (and starts the cut-off)."""
        self.succeeded += 1
        if self.deadline is not None or self.succeeded < self.needed:
            return False
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a sync run (invoke/stream): a blocking call cannot be cancelled, so no cut-off
            return False
        self.deadline = loop.time() + self.grace
        # every guard running now entered before the deadline existed, so its timeout has none to compare with
        for timeout in self._running:
            timeout.reschedule(self.deadline)
        return True

    def _message(self, *, started_late: bool) -> str:
        when = "before it started" if started_late else "while it was still running"
        return (
            f"cut off {self.grace:g}s after the layer had min_proposals={self.needed} "
            f"proposal(s) ({when}; straggler_timeout={self.grace:g})"
        )


class CutoffRegistry:
    """The :class:`LayerCutoff` of each running layer, shared by its proposer tasks."""

    def __init__(self) -> None:
        self._layers: OrderedDict[tuple[Any, ...], LayerCutoff] = OrderedDict()
        self._lock = threading.Lock()

    def join(self, key: tuple[Any, ...], *, needed: int, grace: float, tasks: int) -> LayerCutoff:
        """The layer's cut-off, created by its first task."""
        with self._lock:
            cutoff = self._layers.get(key)
            if cutoff is None:
                cutoff = self._layers[key] = LayerCutoff(needed, grace, tasks)
                while len(self._layers) > _MAX_STEPS:
                    self._layers.popitem(last=False)
            return cutoff

    def leave(self, key: tuple[Any, ...], cutoff: LayerCutoff) -> None:
        """One task of the layer is done; the last one forgets the layer."""
        with self._lock:
            cutoff.finished += 1
            if cutoff.finished >= cutoff.tasks and self._layers.get(key) is cutoff:
                del self._layers[key]

    def __len__(self) -> int:
        return len(self._layers)
