"""The local model's engine: xllamacpp (llama.cpp's C++ server, prebuilt) against llama-cpp-python's server.

For each engine installed, serves the bundled SmolLM2-135M-Instruct (Q4_1) on
loopback and measures, ``--repeats`` times with the engines taking turns so
both see the same load:

- start: seconds from starting the server process until it answers,
- one answer: a ``--max-tokens`` answer alone, its completion tokens per second
  (llama.cpp's reported completion tokens over the request's wall time),
- three at once: three such answers sent together, as the local preset's
  Self-MoA samples are, and their summed tokens per second,
- memory: the server process's peak resident set (``VmHWM``).

xllamacpp runs as the project runs it (:func:`langgraph_moa.local.llama_server`,
3 slots); llama-cpp-python as it was run before (``python -m llama_cpp.server``,
which answers one request at a time). llama-cpp-python is not a dependency: it
compiles from source at install, so it is measured only where it is installed
with its ``[server]`` extra.
Times on a shared machine are noisy: the load average is written with the table.

    python benchmarks/local_engines.py [--repeats 3] [--max-tokens 64]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from langgraph_moa import local
from langgraph_moa.local import bundled_gguf, free_port, llama_server

RESULTS = Path(__file__).parent / "results"
PROMPT = "Write a long story about a dragon who learns to count."


def _answer(url: str, max_tokens: int) -> int:
    body = {"model": "m", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": max_tokens}
    request = urllib.request.Request(
        f"{url}/chat/completions", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=300) as response:
        return int(json.load(response)["usage"]["completion_tokens"])


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@contextmanager
def xllamacpp_server() -> Iterator[tuple[str, int]]:
    with llama_server(bundled_gguf(), slots=3) as url:
        (process,) = local._running
        yield url, process.pid


@contextmanager
def llama_cpp_python_server() -> Iterator[tuple[str, int]]:
    port = free_port()
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(bundled_gguf()), "--host", "127.0.0.1",
        "--port", str(port), "--n_ctx", "4096", "--verbose", "False",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        while True:
            try:
                urllib.request.urlopen(f"{url}/models", timeout=1).close()
                break
            except OSError:
                if process.poll() is not None:
                    raise RuntimeError("llama-cpp-python's server exited") from None
                time.sleep(0.05)
        yield url, process.pid
    finally:
        process.kill()
        process.wait()


ENGINES: dict[str, tuple[str, Callable[[], object]]] = {
    "xllamacpp": ("xllamacpp", xllamacpp_server),
    "llama-cpp-python": ("llama_cpp.server.app", llama_cpp_python_server),
}


def installed(module: str) -> bool:
    """True when ``module`` imports (in a child process: llama-cpp-python's server needs its ``[server]`` extra)."""
    return subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True).returncode == 0


def one_run(start: Callable[[], object], max_tokens: int) -> dict[str, float]:
    began = time.perf_counter()
    with start() as (url, pid):  # type: ignore[attr-defined]
        up = time.perf_counter() - began
        _answer(url, 8)  # warm up
        t = time.perf_counter()
        tokens = _answer(url, max_tokens)
        single = time.perf_counter() - t
        t = time.perf_counter()
        with ThreadPoolExecutor(3) as pool:
            together = sum(pool.map(lambda _: _answer(url, max_tokens), range(3)))
        three = time.perf_counter() - t
        memory = _peak_rss_mb(pid)
    return {
        "start": up,
        "single_s": single,
        "single_tps": tokens / single,
        "three_s": three,
        "three_tps": together / three,
        "memory": memory,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()
    engines = {name: start for name, (module, start) in ENGINES.items() if installed(module)}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in engines}
    load = [os.getloadavg()[0]]
    for _ in range(args.repeats):
        for name, start in engines.items():
            runs[name].append(one_run(start, args.max_tokens))
    load.append(os.getloadavg()[0])

    def median(name: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[name])

    lines = [
        f"The bundled SmolLM2-135M-Instruct (Q4_1) on 2 cores, {args.max_tokens}-token answers; medians of "
        f"{args.repeats} runs per engine, taking turns, by `python benchmarks/local_engines.py`; "
        f"load average {load[0]:.1f} at the start, {load[1]:.1f} at the end.",
        "",
        "| engine | start s | one answer s | one answer tok/s | three at once s | three at once tok/s | peak memory MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in engines:
        lines.append(
            f"| {name} | {median(name, 'start'):.2f} | {median(name, 'single_s'):.2f} | "
            f"{median(name, 'single_tps'):.0f} | {median(name, 'three_s'):.2f} | {median(name, 'three_tps'):.0f} | "
            f"{median(name, 'memory'):.0f} |"
        )
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "local_engines.md"
    out.write_text("\n".join(lines) + "\n")
    print(out.read_text())


if __name__ == "__main__":
    main()
