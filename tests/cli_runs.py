"""Running the ``moa`` command in tests: in this process (typer's ``CliRunner``), or as a subprocess.

In process is the default (:func:`moa`): the command's imports are paid once per
test worker instead of once per call, and its output, exit status and files are
the same. A subprocess (:func:`moa_process`) is for what only a process shows:
signals (Ctrl-C), ``os._exit``, output read from a pipe while the command runs,
a lock held by another process, the ``python -m langgraph_moa`` entry point.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import PROVIDER_VARIABLES

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Ran:
    """What a finished ``moa`` command left: like :class:`subprocess.CompletedProcess`."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str


def moa(
    *args: str,
    stdin: str = "",
    env: Mapping[str, str | None] | None = None,
    cwd: Path | None = None,
    columns: int = 200,
) -> Ran:
    """Run ``moa ARGS`` in this process with ``stdin``; ``env`` overrides variables (None removes one).

    The provider variables are already removed by the ``clean_env`` fixture. An
    exception the command lets escape is reported as a subprocess would show it:
    its traceback on stderr and exit status 1.
    """
    from typer.testing import CliRunner

    from langgraph_moa.cli import app

    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    overrides = {"LANGSMITH_TRACING": "false", "COLUMNS": str(columns), **(env or {})}
    chdir = contextlib.chdir(cwd) if cwd is not None else contextlib.nullcontext()
    try:
        with chdir:
            result = CliRunner().invoke(app, list(args), input=stdin, env=overrides)
    finally:
        for sig, handler in handlers.items():  # the command sets its own (SIGTERM exits like Ctrl-C)
            signal.signal(sig, handler)
    stderr = result.stderr
    code = result.exit_code
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        info = result.exc_info or (type(result.exception), result.exception, result.exception.__traceback__)
        stderr += "".join(traceback.format_exception(*info))
        code = 1
    return Ran(list(args), code, result.stdout, stderr)


def moa_env(**extra: str) -> dict[str, str]:
    """The environment of a ``moa`` subprocess: this one without provider variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in PROVIDER_VARIABLES}
    env.update({"LANGSMITH_TRACING": "false", "COLUMNS": "200", "PYTHONPATH": str(ROOT), **extra})
    return env


def moa_process(
    *args: str, stdin: str = "", env: dict[str, str] | None = None, timeout: float = 60, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    """Run ``python -m langgraph_moa ARGS`` as a subprocess to its end."""
    return subprocess.run(
        [sys.executable, "-m", "langgraph_moa", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env or moa_env(),
        timeout=timeout,
        cwd=cwd,
    )


def sigint_as_default() -> None:
    """In the child before exec: SIGINT acts, even if pytest runs as a background job (which ignores it)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
