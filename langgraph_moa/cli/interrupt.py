"""Ctrl-C: the run stops promptly, the local model servers first, and the command exits with status 130."""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any, NoReturn

from langgraph_moa.cli_options import err
from langgraph_moa.local import kill_servers

INTERRUPT_GRACE = 0.5
"""Seconds a run may take to wind down after Ctrl-C before the command exits anyway."""

_interrupted = threading.Event()


def report_interrupted() -> None:
    """Say ``interrupted`` on stderr, once."""
    if not _interrupted.is_set():
        _interrupted.set()
        err.print("interrupted")


def exit_130() -> NoReturn:
    """After Ctrl-C: exit with status 130 at once, skipping the slow interpreter teardown."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(130)


def _exit_interrupted() -> NoReturn:  # runs on a timer thread when the run has not wound down in time
    kill_servers()
    report_interrupted()
    exit_130()


async def interruptible(coro: Any) -> Any:
    """Await ``coro`` with Ctrl-C stopping it promptly.

    asyncio.run's own handler cancels the run, which then waits for whatever its
    libraries do on cancellation (closing streams, at the next ``await`` only). In
    front of it, Ctrl-C kills the local model servers at once (a generating
    llama.cpp server keeps the cores busy meanwhile) and starts a timer: if the
    run has not wound down after :data:`INTERRUPT_GRACE` seconds, the command
    exits with status 130 anyway.
    """
    cancel_run = signal.getsignal(signal.SIGINT)
    if not callable(cancel_run) or threading.current_thread() is not threading.main_thread():
        return await coro

    def interrupt(signum: int, frame: Any) -> None:
        kill_servers()
        timer = threading.Timer(INTERRUPT_GRACE, _exit_interrupted)
        timer.daemon = True
        timer.start()
        cancel_run(signum, frame)

    signal.signal(signal.SIGINT, interrupt)
    try:
        return await coro
    finally:
        signal.signal(signal.SIGINT, cancel_run)
