"""A ``moa`` command that starts in milliseconds, for the shell snippets of the docs.

Each ``moa`` process would import LangChain, LangGraph and the OpenAI client
again (seconds per call on a loaded machine). Instead, one server process
imports the command and what its runs import, once; the ``moa`` on the
snippets' ``PATH`` is a small script that hands the server its arguments,
environment, working directory and its stdin, stdout and stderr (the file
descriptors themselves, over a Unix socket); the server forks a child that runs
the command on them, and the script exits with the child's exit status. The
child is a process of its own, with the caller's streams, so pipes (``echo hi |
moa chat``), redirections and exit statuses behave as they do for the real
command.

The server handles one call at a time (the snippets run their commands one
after another) and is stopped, children included, by :meth:`ForkedMoa.stop`.
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

# What a run imports lazily: importing it before forking is what makes each call fast.
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
)

_SHIM = """#!{python} -I
import json, os, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect({path!r})
call = {{"args": sys.argv[1:], "env": dict(os.environ), "cwd": os.getcwd()}}
socket.send_fds(s, [json.dumps(call).encode()], [0, 1, 2])
s.shutdown(socket.SHUT_WR)
reply = b""
while chunk := s.recv(64):
    reply += chunk
code = int(reply) if reply else 1  # no reply: the server is gone
sys.exit(128 - code if code < 0 else code)  # killed by signal N: 128 + N, as a shell says
"""


class ForkedMoa:
    """The server process and the ``moa`` script that calls it (``bin / "moa"``)."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        """Start the server with ``env`` (it waits until the command is imported); write ``folder/bin/moa``."""
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
        assert self.process.stdout is not None
        ready = self.process.stdout.readline()
        if ready.strip() != "ready":
            self.stop()
            raise RuntimeError(f"the moa fork server did not start: {ready}{self.process.stderr.read()}")  # type: ignore[union-attr]
        shim = self.bin / "moa"
        shim.write_text(_SHIM.format(python=sys.executable, path=str(self.socket_path)))
        shim.chmod(0o755)

    def stop(self) -> None:
        """Kill the server and every child it forked."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


def _run_child(call: dict[str, Any], fds: list[int]) -> None:
    """In the forked child: take the caller's streams, environment and directory; run ``moa``; exit."""
    code: Any = 1
    try:
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(call["cwd"])
        os.environ.clear()
        os.environ.update(call["env"])
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
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
        os._exit(code or 0)


def serve(path: str) -> None:
    """Import the command, then fork a child for each call on the Unix socket at ``path``."""
    import importlib

    for name in PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    threads = threading.enumerate()
    assert len(threads) == 1, f"forking after imports that started threads is unsafe: {threads}"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(8)
    print("ready", flush=True)
    while True:
        conn, _ = listener.accept()
        with conn:
            message, fds, _, _ = socket.recv_fds(conn, 1 << 16, 3)
            while chunk := conn.recv(1 << 16):
                message += chunk
            pid = os.fork()
            if pid == 0:
                listener.close()
                conn.close()
                _run_child(json.loads(message), fds)
            for fd in fds:
                os.close(fd)
            _, status = os.waitpid(pid, 0)
            conn.sendall(str(os.waitstatus_to_exitcode(status)).encode())


if __name__ == "__main__":
    serve(sys.argv[1])
