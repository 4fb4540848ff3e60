"""How a MoA request's latency holds up when many run at once in one process.

The simulated OpenAI-compatible server runs in its own process: every call
waits ``--latency`` seconds (300 ms by default) before its first byte, and the
aggregator streams its answer a word every ``--chunk-delay`` seconds. A request
is 3 layers x 6 proposers and a streamed aggregator (13 upstream calls). Each
implementation runs ``--single`` requests one at a time, then ``--concurrent``
requests at once, in one run:

- (a) MoA on the plain ``openai`` SDK, each layer awaited with ``asyncio.gather``;
- (b) the same with the proposers called one after another;
- (c) this project's graph, streamed (``stream_mode=["messages", "custom"]``)
  with an ``InMemorySaver`` checkpointer, as a server runs it.

Reported: the median (p50) and p95 request latency alone and under
concurrency, p50 at ``--concurrent`` divided by p50 at 1 (1.0: the requests do
not slow each other down), and p50 at ``--concurrent`` divided by (a)'s. The
simulated server is a Python thread-per-connection server: under many requests
its own CPU time slows every implementation alike, which (a)'s ratio shows; the
last column separates the client's share. Ratios come from one run; other load
on the machine moves them.

    python benchmarks/concurrency.py [--concurrent 50] [--single 10]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from _moa_baselines import graph_moa, openai_moa
from _report import save_plot, write_table
from _serve import simulated_upstream
from langgraph.checkpoint.memory import InMemorySaver
from openai import AsyncOpenAI

from langgraph_moa import MoAConfig, create_moa_graph

PROPOSERS = [f"p{i}" for i in range(6)]


def p95(values: list[float]) -> float:
    """The 95th percentile (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


async def latencies(run: Callable[[], Awaitable[object]], count: int, *, at_once: bool) -> list[float]:
    """Seconds per request: ``count`` requests one after another, or all at once."""

    async def timed() -> float:
        started = time.perf_counter()
        await run()
        return time.perf_counter() - started

    if at_once:
        return list(await asyncio.gather(*(timed() for _ in range(count))))
    return [await timed() for _ in range(count)]


async def measure(base_url: str, single: int, concurrent: int) -> dict[str, dict[str, float]]:
    client = AsyncOpenAI(base_url=base_url, api_key="x")
    graph = create_moa_graph().compile(checkpointer=InMemorySaver())
    config = MoAConfig(
        layers=3, proposers=[f"openai:{p}" for p in PROPOSERS], aggregator="openai:agg", base_url=base_url
    )

    async def graph_run() -> None:
        await graph_moa(graph, config, {"configurable": {"thread_id": str(uuid.uuid4())}})

    runs: dict[str, Callable[[], Awaitable[object]]] = {
        "(a) openai SDK, asyncio.gather": lambda: openai_moa(client, [PROPOSERS] * 2, "agg", parallel=True),
        "(b) openai SDK, one after another": lambda: openai_moa(client, [PROPOSERS] * 2, "agg", parallel=False),
        "(c) langgraph-moa, streamed, checkpointer": graph_run,
    }
    results: dict[str, dict[str, float]] = {}
    for name, run in runs.items():
        await run()  # warm up clients and connections
        alone = await latencies(run, single, at_once=False)
        loaded = await latencies(run, concurrent, at_once=True)
        results[name] = {
            "p50_1": statistics.median(alone),
            "p50_n": statistics.median(loaded),
            "p95_n": p95(loaded),
        }
    await client.close()
    return results


def write(results: dict[str, dict[str, float]], args: argparse.Namespace) -> Path:
    n = args.concurrent
    lines = [
        f"3 layers x 6 proposers + a streamed aggregator; simulated upstream in another process, "
        f"{args.latency * 1000:.0f} ms to the first byte, a streamed word every {args.chunk_delay * 1000:.0f} ms. "
        f"{args.single} requests one at a time, then {n} at once. Measured in one run by "
        f"`python benchmarks/concurrency.py --concurrent {n} --single {args.single}`.",
        "",
        f"| implementation | p50 alone (s) | p50 at {n} (s) | p95 at {n} (s) | p50 at {n} / p50 at 1 "
        f"| p50 at {n} / (a)'s |",
        "|---|---|---|---|---|---|",
    ]
    gathered = next(iter(results.values()))["p50_n"]
    lines += [
        f"| {name} | {r['p50_1']:.2f} | {r['p50_n']:.2f} | {r['p95_n']:.2f} | {r['p50_n'] / r['p50_1']:.2f} "
        f"| {r['p50_n'] / gathered:.2f} |"
        for name, r in results.items()
    ]
    out = write_table("concurrency", lines)

    def draw(plt: Any) -> Any:
        fig, ax = plt.subplots(figsize=(7, 3))
        names = list(results)
        width = 0.38
        ys = range(len(names))
        ax.barh([y - width / 2 for y in ys], [results[k]["p50_1"] for k in names], width, label="p50 alone")
        ax.barh([y + width / 2 for y in ys], [results[k]["p50_n"] for k in names], width, label=f"p50 at {n}")
        ax.set_yticks(list(ys), names)
        ax.invert_yaxis()
        ax.set_xlabel("seconds per request")
        ax.set_title(f"MoA request latency alone and {n} at once")
        ax.legend()
        return fig

    save_plot("concurrency", draw)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrent", type=int, default=50)
    parser.add_argument("--single", type=int, default=10)
    parser.add_argument("--latency", type=float, default=0.3)
    parser.add_argument("--chunk-delay", type=float, default=0.02)
    args = parser.parse_args()
    options = ["--latency", str(args.latency), "--chunk-delay", str(args.chunk_delay)]
    with simulated_upstream(*options) as base_url:
        results = asyncio.run(measure(base_url, args.single, args.concurrent))
    print(write(results, args).read_text())


if __name__ == "__main__":
    main()
