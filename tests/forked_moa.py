"""A ``moa`` command that starts in milliseconds, for the docs tests.

Each ``moa`` process would import LangChain, LangGraph, the OpenAI client and
the web stack again (seconds per call on a loaded machine). Instead, one server
process imports the command and what its runs import, once. ``bin/moa`` (on the
snippets' ``PATH``) is a small script that hands the server its arguments,
environment, working directory and its stdin, stdout and stderr (the file
descriptors themselves, over a Unix socket); the server forks a child that runs
the command on them and reports its exit status, which the script exits with.
The script passes SIGINT and SIGTERM on to the child. So the child is a process
of its own with the caller's streams: pipes (``echo hi | moa chat``),
redirections, exit statuses and ``moa serve`` stopped by SIGTERM behave as they
do for the real command. ``bin/python`` does the same for ``python -c CODE
ARGS``, for code that would import the same libraries.

Calls run concurrently (a ``moa serve`` keeps running while other commands
come); :meth:`ForkedMoa.stop` ends the server and every child left running.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

# What the commands import lazily: importing it before forking is what makes each call fast.
PRELOAD = (
    "langgraph_moa.cli",
    "langchain.chat_models.base",
    "langchain_openai",
    "openai",
    "langgraph.checkpoint.sqlite.aio",
    "langgraph.checkpoint.memory",
    "langgraph.cache.sqlite",
    "langgraph.cache.memory",
    "filelock",
    "matplotlib.pyplot",
    "langgraph_moa.serve.app",
    "uvicorn",
)

_SHIM = """#!{python} -I
import json, os, signal, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect({path!r})
call = {{"kind": {kind!r}, "args": sys.argv[1:], "env": dict(os.environ), "cwd": os.getcwd()}}
socket.send_fds(s, [json.dumps(call).encode()], [0, 1, 2])
s.shutdown(socket.SHUT_WR)
reply = s.makefile("rb")
pid = int(reply.readline() or 0)  # the child running the command
for sig in (signal.SIGINT, signal.SIGTERM):
    signal.signal(sig, lambda signum, frame: pid and os.kill(pid, signum))
status = reply.readline().strip()
code = int(status) if status else 1  # no status: the child died without reporting one
sys.exit(128 - code if code < 0 else code)  # killed by signal N: 128 + N, as a shell says
"""


class ForkedMoa:
    """The server process and the scripts that call it: ``bin / "moa"`` and ``bin / "python"``."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        """Start the server with ``env`` (it waits until the imports are done); write the scripts in ``folder/bin``."""
        self.socket_path = folder / "moa.sock"
        self.bin = folder / "bin"
        self.bin.mkdir()
        assert len(str(self.socket_path)) < 100, f"a Unix socket path must be short: {self.socket_path}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.forked_moa", str(self.socket_path)],
            env={**env, "MPLBACKEND": "Agg"},  # pyplot is imported up front: no display, as the command asks
            cwd=Path(__file__).resolve().parent.parent,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # stop() ends the server and any child left running, and nothing else
        )
        assert self.process.stdout is not None and self.process.stderr is not None
        ready = self.process.stdout.readline()
        if ready.strip() != "ready":
            problem = self.process.stderr.read()
            self.stop()
            raise RuntimeError(f"the moa fork server did not start: {ready}{problem}")
        for kind in ("moa", "python"):
            shim = self.bin / kind
            shim.write_text(_SHIM.format(python=sys.executable, path=str(self.socket_path), kind=kind))
            shim.chmod(0o755)

    def stop(self) -> None:
        """Kill the server and every child it forked."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


def _run_child(call: dict[str, Any], fds: list[int], conn: socket.socket) -> None:
    """In the forked child: take the caller's streams, environment and directory; run the call; report; exit."""
    code: Any = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the command waits for processes of its own
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        conn.sendall(f"{os.getpid()}\n".encode())
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(call["cwd"])
        os.environ.clear()
        os.environ.update(call["env"])
        if call["kind"] == "python":  # python -c CODE ARGS...
            option, code_text, *args = call["args"]
            assert option == "-c", f"bin/python runs only -c CODE, not {call['args']}"
            sys.argv = ["-c", *args]
            exec(compile(code_text, "<string>", "exec"), {"__name__": "__main__"})
        else:
            sys.argv = ["moa", *call["args"]]
            from langgraph_moa.cli import main

            main()
        code = 0
    except SystemExit as exc:
        code = exc.code
        if code is not None and not isinstance(code, int):
            print(code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        with contextlib.suppress(OSError):
            conn.sendall(f"{code or 0}\n".encode())
        os._exit(code or 0)


def serve(path: str) -> None:
    """Import the command, then fork a child for each call on the Unix socket at ``path``."""
    import importlib

    for name in PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    threads = threading.enumerate()
    assert len(threads) == 1, f"forking after imports that started threads is unsafe: {threads}"
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the system: nobody waits for them here
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    print("ready", flush=True)
    while True:
        conn, _ = listener.accept()
        message, fds, _, _ = socket.recv_fds(conn, 1 << 16, 3)
        while chunk := conn.recv(1 << 16):
            message += chunk
        if os.fork() == 0:
            listener.close()
            _run_child(json.loads(message), fds, conn)
        for fd in fds:
            os.close(fd)
        conn.close()


if __name__ == "__main__":
    serve(sys.argv[1])
