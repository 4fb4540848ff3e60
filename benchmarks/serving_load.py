"""A bounded load test of ``moa serve`` on loopback: many requests, disconnects, one maximal request.

``moa serve`` runs in its own process with a 2-layer MoA (3 proposers, then the
aggregator) on the simulated OpenAI-compatible server. At once:

- ``--requests`` requests (default 200), half of them streamed;
- ``--disconnects`` of them (default 50) leave mid-run: half are streams closed
  after their first chunk, half are plain requests whose client gives up;
- one request at the server's limits (``max_messages`` messages holding
  ``max_request_chars`` characters);
- ``/health`` polled every 50 ms throughout.

The load runs ``--rounds`` times (default 2) on the same server. Reported:
requests that failed (every request that did not leave on purpose
must get its whole answer), upstream calls still open once the load is over
(a leak: a run that went on for a client that left), the server's resident
memory after a warm-up and after each round (growth that stops after the first
round is the allocator keeping memory, not a leak), and the ``/health``
latencies. The
test stops itself after ``--deadline`` seconds. Linux only (RSS from /proc).

    python benchmarks/serving_load.py [--requests 200] [--disconnects 50] [--latency 0.3]

Writes benchmarks/results/serving_load.md and serving_load.png.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
from _report import save_plot, write_table
from _serve import start_moa_serve

from langgraph_moa.serve.openai_api import APISettings
from langgraph_moa.testing import ModelBehavior, SimulatedOpenAIServer

PROPOSERS = ["p1", "p2", "p3"]


def rss_kib(pid: int) -> int:
    """Resident memory of ``pid`` in KiB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def start_server(base_url: str, provider_concurrency: int, max_runs: int) -> tuple[subprocess.Popen, str]:
    args = ["--base-url", base_url]
    args += ["--aggregator", "openai:agg", *(a for p in PROPOSERS for a in ("--proposer", f"openai:{p}"))]
    args += ["--provider-concurrency", str(provider_concurrency), "--max-concurrent-runs", str(max_runs)]
    args += ["--log-level", "warning", "--db", ":memory:"]
    return start_moa_serve(*args)


async def one(client: httpx.AsyncClient, i: int, stream: bool, leave: bool, messages: list[dict]) -> str:
    """Run request ``i``; return its outcome: ok, left, or what failed."""
    body = {"model": "default", "messages": messages, "stream": stream}
    try:
        if stream:
            async with client.stream("POST", "/v1/chat/completions", json=body) as response:
                if response.status_code != 200:
                    return f"status {response.status_code}"
                chunks = 0
                async for line in response.aiter_lines():
                    if line.startswith("data: "):
                        chunks += 1
                        if leave and chunks >= 2:
                            return "left"
                        if line == "data: [DONE]":
                            return "ok"
                return "stream ended without [DONE]"
        timeout = httpx.Timeout(0.5) if leave else httpx.Timeout(60)
        response = await client.post("/v1/chat/completions", json=body, timeout=timeout)
        answer = response.json()["choices"][0]["message"]["content"] if response.status_code == 200 else ""
        return "ok" if answer.startswith("agg answer to:") else f"status {response.status_code}"
    except httpx.TimeoutException:
        return "left" if leave else "timeout"
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}"


async def poll_health(url: str, stop: asyncio.Event, samples: list[tuple[float, float]]) -> None:
    start = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        while not stop.is_set():
            sent = time.perf_counter()
            response = await client.get("/health")
            assert response.status_code == 200
            samples.append((sent - start, time.perf_counter() - sent))
            await asyncio.sleep(0.05)


async def load(
    url: str, requests: int, disconnects: int, deadline: float, maximal_request: bool
) -> tuple[dict[str, int], list, float]:
    settings = APISettings()
    chars = settings.max_request_chars // settings.max_messages - 1
    maximal = [{"role": "user", "content": "w" * chars}] * settings.max_messages
    question = [{"role": "user", "content": "What are three fun things to do in San Francisco?"}]
    samples: list[tuple[float, float]] = []
    stop = asyncio.Event()
    limits = httpx.Limits(max_connections=requests + 10, max_keepalive_connections=requests + 10)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        poller = asyncio.create_task(poll_health(url, stop, samples))
        await asyncio.sleep(0.5)
        started = time.perf_counter()
        jobs = [one(client, i, stream=i % 2 == 1, leave=i < disconnects, messages=question) for i in range(requests)]
        if maximal_request:
            jobs.append(one(client, requests, stream=False, leave=False, messages=maximal))
        outcomes = await asyncio.wait_for(asyncio.gather(*jobs), deadline)
        elapsed = time.perf_counter() - started
        await asyncio.sleep(0.5)
        stop.set()
        await poller
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts, samples, elapsed


def open_upstream(sim: SimulatedOpenAIServer, seconds: float) -> int:
    """Upstream requests still in flight once ``seconds`` have passed (``reset`` keeps the in-flight count)."""
    deadline = time.monotonic() + seconds
    while True:
        sim.reset()
        if sim.max_concurrency == 0 or time.monotonic() > deadline:
            return sim.max_concurrency
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--disconnects", type=int, default=50)
    parser.add_argument("--latency", type=float, default=0.3, help="seconds before each model's first byte")
    parser.add_argument("--deadline", type=float, default=180, help="the load stops itself after this many seconds")
    parser.add_argument("--rounds", type=int, default=2, help="loads in a row (RSS after each: growth or plateau)")
    parser.add_argument("--no-maximal", action="store_true", help="leave out the request at the limits")
    parser.add_argument(
        "--provider-concurrency", type=int, default=16, help="moa serve's bound on upstream calls (its default: 16)"
    )
    parser.add_argument(
        "--max-concurrent-runs", type=int, default=32, help="moa serve's bound on runs at once (its default: 32)"
    )
    args = parser.parse_args()

    behavior = ModelBehavior(latency=args.latency, chunk_delay=0.01)
    with SimulatedOpenAIServer(default=behavior) as sim:
        process, url = start_server(sim.base_url, args.provider_concurrency, args.max_concurrent_runs)
        try:
            for _ in range(5):  # warm-up: imports, clients, the first runs
                httpx.post(
                    f"{url}/v1/chat/completions",
                    json={"model": "default", "messages": [{"role": "user", "content": "warm"}]},
                    timeout=60,
                )
            rss = [rss_kib(process.pid)]
            counts: dict[str, int] = {}
            samples: list[tuple[float, float]] = []
            elapsed, leaked = [], []
            for _ in range(args.rounds):
                got, polled, seconds = asyncio.run(
                    load(url, args.requests, args.disconnects, args.deadline, not args.no_maximal)
                )
                for outcome, n in got.items():
                    counts[outcome] = counts.get(outcome, 0) + n
                samples += polled
                elapsed.append(seconds)
                leaked.append(open_upstream(sim, 5.0))
                time.sleep(1.0)
                rss.append(rss_kib(process.pid))
        finally:
            process.terminate()
            process.wait(timeout=60)

    latencies = sorted(s[1] * 1000 for s in samples)
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    failed = sum(n for outcome, n in counts.items() if outcome not in ("ok", "left"))
    extra = "" if args.no_maximal else " + 1 maximal"
    rows = [
        ("rounds x requests (half streamed)", f"{args.rounds} x {args.requests}{extra}"),
        ("clients that left mid-run", f"{counts.get('left', 0)} (asked {args.rounds * args.disconnects})"),
        ("answered in full", str(counts.get("ok", 0))),
        ("failed", f"{failed} {sorted(o for o in counts if o not in ('ok', 'left'))}"),
        ("upstream requests open 5 s after each round", " / ".join(map(str, leaked))),
        ("duration of each round", " / ".join(f"{e:.1f} s" for e in elapsed)),
        ("server RSS after warm-up, then after each round", " / ".join(f"{r / 1024:.0f} MiB" for r in rss)),
        ("RSS after the last round / after the first", f"{rss[-1] / rss[1]:.2f}"),
        ("RSS after the first round / after warm-up", f"{rss[1] / rss[0]:.2f}"),
        ("/health samples", str(len(latencies))),
        ("/health p50 / p99 / max", f"{p50:.0f} / {p99:.0f} / {latencies[-1]:.0f} ms"),
    ]
    table = "| measure | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)
    command = f"python benchmarks/serving_load.py --requests {args.requests} --disconnects {args.disconnects}"
    command += f" --rounds {args.rounds} --provider-concurrency {args.provider_concurrency}"
    command += f" --max-concurrent-runs {args.max_concurrent_runs}"
    command += " --no-maximal" if args.no_maximal else ""
    out = write_table(
        "serving_load",
        [
            "# Serving under load",
            "",
            f"`{command} --latency {args.latency}` on loopback, simulated models "
            "(2 layers, 3 proposers). One run; times depend on the machine's load.",
            "",
            table,
        ],
    )
    print(out.read_text())

    def draw(plt: Any) -> Any:
        fig, ax = plt.subplots(figsize=(7, 3.5))
        ax.plot([s[1] * 1000 for s in samples], ".", markersize=3)
        ax.set_xlabel("/health request, in order (all rounds)")
        ax.set_ylabel("/health latency (ms)")
        ax.set_title(f"/health during {args.requests} concurrent MoA requests")
        return fig

    save_plot("serving_load", draw, dpi=120)


if __name__ == "__main__":
    main()
