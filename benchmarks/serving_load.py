"""A bounded load test of ``moa serve`` on loopback: many requests, disconnects, one maximal request.

``moa serve`` runs in its own process with a 2-layer MoA (3 proposers, then the
aggregator) on the simulated OpenAI-compatible server. At once:

- ``--requests`` requests (default 200), half of them streamed;
- ``--disconnects`` of them (default 50) leave mid-run: half are streams closed
  after their first chunk, half are plain requests whose client gives up;
- one request at the server's limits (``max_messages`` messages holding
  ``max_request_chars`` characters);
- ``/health`` polled every 50 ms throughout.

The server is warmed up with 5 requests one after the other, then with one
burst of ``--max-concurrent-runs`` requests at once (the server's own bound on
runs), so that what grows with concurrency (connection pools, caches) has grown
before the rounds; memory is measured after each. The load then runs
``--rounds`` times (default 2) on the same server. Reported:
requests that failed (every request that did not leave on purpose must get
its whole answer), upstream calls still open once the load is over (a leak: a
run that went on for a client that left), the ``/health`` latencies, and the
server's memory after a warm-up and after each round: resident memory (RSS),
and where it is according to the allocators themselves (bytes in Python
objects, bytes the allocators hold free), so that growth from objects kept
alive can be told from memory the allocators keep for reuse. The server also
reports its full garbage collections (each stops the event loop).

By default two servers run one after the other, with and without the start-up
objects frozen out of garbage collection (``ServeSettings.freeze_startup_objects``),
so both columns of the table come from one run. The server is ``moa serve``
started through ``benchmarks/_server_stats.py``, which adds the ``/_stats``
route that reports the memory and collections. The test stops itself after
``--deadline`` seconds per round. Linux with glibc only (``/proc``, ``mallinfo2``).

    python benchmarks/serving_load.py [--requests 200] [--disconnects 50] [--latency 0.3] [--gc-freeze both]

Writes benchmarks/results/serving_load.md and serving_load.png.
"""

from __future__ import annotations

import argparse
import asyncio
import os
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


def start_server(base_url: str, provider_concurrency: int, max_runs: int, freeze: bool) -> tuple[subprocess.Popen, str]:
    """``moa serve`` with the ``/_stats`` route of benchmarks/_server_stats.py, in its own process."""
    args = ["--base-url", base_url, "--aggregator", "openai:agg"]
    args += [a for p in PROPOSERS for a in ("--proposer", f"openai:{p}")]
    args += ["--provider-concurrency", str(provider_concurrency), "--max-concurrent-runs", str(max_runs)]
    args += ["--log-level", "warning", "--db", ":memory:"]
    stats_server = str(Path(__file__).parent / "_server_stats.py")
    env = {"MOA_BENCH_NO_FREEZE": "0" if freeze else "1"}
    return start_moa_serve(*args, timeout=120, entry=(stats_server,), env=env)


def server_stats(url: str, trim: bool = False) -> dict:
    """The server's memory and garbage collections since the last call (see _server_stats.py)."""
    return httpx.get(f"{url}/_stats", params={"trim": trim}, timeout=120).json()


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


def serve_and_load(sim: SimulatedOpenAIServer, args: argparse.Namespace, freeze: bool) -> dict:
    """Start a server, warm it up, run the rounds; what was measured."""
    process, url = start_server(sim.base_url, args.provider_concurrency, args.max_concurrent_runs, freeze)
    try:
        for _ in range(5):  # warm-up: imports, clients, the first runs
            httpx.post(
                f"{url}/v1/chat/completions",
                json={"model": "default", "messages": [{"role": "user", "content": "warm"}]},
                timeout=60,
            )
        time.sleep(1.0)
        sequential = server_stats(url)
        # then one burst at the server's own bound on runs, to fill what grows with concurrency (pools, caches)
        burst, _, _ = asyncio.run(load(url, args.max_concurrent_runs, 0, args.deadline, False))
        time.sleep(1.0)
        stats = [server_stats(url)]
        counts: dict[str, int] = {}
        rounds: list[list[float]] = []
        elapsed, leaked = [], []
        for _ in range(args.rounds):
            got, polled, seconds = asyncio.run(
                load(url, args.requests, args.disconnects, args.deadline, not args.no_maximal)
            )
            for outcome, n in got.items():
                counts[outcome] = counts.get(outcome, 0) + n
            rounds.append([latency * 1000 for _, latency in polled])
            elapsed.append(seconds)
            leaked.append(open_upstream(sim, 5.0))
            time.sleep(1.0)
            stats.append(server_stats(url))
        trimmed = server_stats(url, trim=True)
    finally:
        process.terminate()
        process.wait(timeout=60)
    return {
        "counts": counts,
        "burst": burst,
        "rounds": rounds,
        "elapsed": elapsed,
        "leaked": leaked,
        "sequential": sequential,
        "stats": stats,
        "trimmed": trimmed,
    }


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _rows(run: dict, args: argparse.Namespace) -> list[tuple[str, str]]:
    counts, stats = run["counts"], run["stats"]
    latencies = [x for r in run["rounds"] for x in r]
    failed = sum(n for outcome, n in counts.items() if outcome not in ("ok", "left"))
    rss = [s["rss_kib"] for s in stats]
    first, last = run["sequential"], stats[-1]

    def mib(kib: float) -> str:
        return f"{kib / 1024:.1f}"

    memory = [
        ("Python objects (pymalloc blocks in use)", first["pymalloc_kib"]["objects"], last["pymalloc_kib"]["objects"]),
        ("rest of pymalloc's arenas (free)", first["pymalloc_kib"]["free"], last["pymalloc_kib"]["free"]),
    ]
    if first["malloc_kib"]:
        memory += [
            ("malloc in use", first["malloc_kib"]["in_use"], last["malloc_kib"]["in_use"]),
            ("malloc free, kept by glibc", first["malloc_kib"]["free"], last["malloc_kib"]["free"]),
        ]
    extra = "" if args.no_maximal else " + 1 maximal"
    return [
        ("rounds x requests (half streamed)", f"{args.rounds} x {args.requests}{extra}"),
        ("clients that left mid-run", f"{counts.get('left', 0)} (asked {args.rounds * args.disconnects})"),
        ("answered in full", str(counts.get("ok", 0))),
        ("failed (rounds)", f"{failed} {sorted(o for o in counts if o not in ('ok', 'left'))}"),
        ("upstream requests open 5 s after each round", " / ".join(map(str, run["leaked"]))),
        ("duration of each round", " / ".join(f"{e:.1f} s" for e in run["elapsed"])),
        ("warm-up burst: requests at once, answered", f"{args.max_concurrent_runs}, {run['burst'].get('ok', 0)}"),
        (
            "server RSS after the sequential warm-up, after the warm-up burst, then after each round",
            " / ".join(f"{mib(r)} MiB" for r in [run["sequential"]["rss_kib"], *rss]),
        ),
        ("RSS after the first round / after the sequential warm-up", f"{rss[1] / run['sequential']['rss_kib']:.3f}"),
        ("RSS after the first round / after the warm-up burst", f"{rss[1] / rss[0]:.3f}"),
        ("RSS after the last round / after the first", f"{rss[-1] / rss[1]:.3f}"),
        *(
            (f"{name}, MiB: after the sequential warm-up -> after the last round", f"{mib(a)} -> {mib(b)}")
            for name, a, b in memory
        ),
        (
            "RSS after the last round, then after gc.collect() + malloc_trim(0)",
            f"{mib(rss[-1])} -> {mib(run['trimmed']['rss_kib'])} MiB",
        ),
        (
            "objects the collector tracks (frozen) after the last round",
            f"{last['tracked_objects']} ({last['frozen_objects']})",
        ),
        (
            "full garbage collections in each round (longest)",
            " / ".join(f"{s['full_collections']} ({s['full_collection_ms_max']:.0f} ms)" for s in stats[1:]),
        ),
        ("/health samples", str(len(latencies))),
        (
            "/health p50 / p99 / max, all rounds",
            f"{statistics.median(latencies):.0f} / {_percentile(latencies, 0.99):.0f} / {max(latencies):.0f} ms",
        ),
        ("/health p99 of each round", " / ".join(f"{_percentile(r, 0.99):.0f} ms" for r in run["rounds"])),
    ]


CONFIGS = {
    "on": "start-up objects frozen (the default)",
    "off": "not frozen (`freeze_startup_objects=False`)",
}


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
    parser.add_argument(
        "--gc-freeze",
        choices=["both", "on", "off"],
        default="both",
        help="serve with the start-up objects frozen out of garbage collection (on, the default of moa serve), "
        "without (off), or one server of each, one after the other (both)",
    )
    args = parser.parse_args()

    configs = ["on", "off"] if args.gc_freeze == "both" else [args.gc_freeze]
    behavior = ModelBehavior(latency=args.latency, chunk_delay=0.01)
    runs = {}
    with SimulatedOpenAIServer(default=behavior) as sim:
        for config in configs:
            runs[config] = serve_and_load(sim, args, freeze=config == "on")
    load_average = os.getloadavg()

    rows = {config: _rows(run, args) for config, run in runs.items()}
    names = [name for name, _ in rows[configs[0]]]
    header = "| measure | " + " | ".join(CONFIGS[c] for c in configs) + " |\n"
    header += "|---|" + "---|" * len(configs) + "\n"
    table = header + "\n".join(
        f"| {name} | " + " | ".join(rows[c][i][1] for c in configs) + " |" for i, name in enumerate(names)
    )
    command = f"python benchmarks/serving_load.py --requests {args.requests} --disconnects {args.disconnects}"
    command += f" --rounds {args.rounds} --provider-concurrency {args.provider_concurrency}"
    command += f" --max-concurrent-runs {args.max_concurrent_runs} --gc-freeze {args.gc_freeze}"
    command += " --no-maximal" if args.no_maximal else ""
    out = write_table(
        "serving_load",
        [
            "# Serving under load",
            "",
            f"`{command} --latency {args.latency}` on loopback, simulated models (2 layers, 3 proposers). "
            f"One run; the servers ran one after the other ({', '.join(configs)}); times depend on the machine's "
            f"load (load average at the end: {' / '.join(f'{x:.1f}' for x in load_average)} over 1 / 5 / 15 min).",
            "",
            table,
        ],
    )
    print(out.read_text())

    def draw(plt: Any) -> Any:
        fig, ax = plt.subplots(figsize=(7, 3.5))
        for config, run in runs.items():
            latencies = [x for r in run["rounds"] for x in r]
            ax.plot(latencies, ".", markersize=3, label=CONFIGS[config].replace("`", ""))
        ax.set_xlabel("/health request, in order (all rounds)")
        ax.set_ylabel("/health latency (ms)")
        ax.set_title(f"/health during {args.requests} concurrent MoA requests")
        ax.legend()
        return fig

    save_plot("serving_load", draw, dpi=120)


if __name__ == "__main__":
    main()
