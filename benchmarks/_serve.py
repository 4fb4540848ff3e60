"""Servers a benchmark starts in their own processes: ``moa serve``, and the simulated upstream.

Each waits until its server answers; a process of its own keeps the server's
CPU time out of the benchmark's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

from langgraph_moa.local import free_port


def start_moa_serve(
    *options: str,
    timeout: float = 60,
    entry: Sequence[str] = ("-m", "langgraph_moa"),
    env: Mapping[str, str] | None = None,
) -> tuple[subprocess.Popen[bytes], str]:
    """``python -m langgraph_moa serve --port <free port> *options``; returns the process and its URL.

    The server runs without the provider keys and ``MOA_API_KEYS`` of this
    environment (the benchmarks call simulated models and no key is needed),
    its output discarded. Returns once ``GET /health`` answers 200. Raises
    ``RuntimeError`` if the process exits first, or (after stopping it) if that
    takes more than ``timeout`` seconds. The caller terminates the process.
    ``entry`` replaces ``-m langgraph_moa`` (e.g. a script that wraps the CLI,
    run with this checkout on its path); ``env`` adds environment variables.
    """
    port = free_port()
    args = [sys.executable, *entry, "serve", "--port", str(port), *options]
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and k != "MOA_API_KEYS"} | dict(env or {})
    if entry[:1] != ("-m",):  # a script: its folder comes first on sys.path, not this checkout
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    process = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moa serve exited with status {process.returncode} before answering /health")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    process.wait()
    raise RuntimeError("moa serve did not start")


@contextmanager
def simulated_upstream(*options: str) -> Iterator[str]:
    """``python -m langgraph_moa.testing --port <free port> *options``; yields its base URL, stops it on exit.

    ``options`` are the simulated server's (``--latency``, ``--chunk-delay``, ...).
    """
    args = [sys.executable, "-m", "langgraph_moa.testing", "--port", str(free_port()), *options]
    server = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        yield server.stdout.readline().strip()  # printed once the server listens
    finally:
        server.terminate()
        server.wait()
