"""How close a MoA layer comes to running its proposers fully in parallel.

Against the simulated OpenAI-compatible server (every proposer answers after
``--latency`` seconds, the aggregator at once), for 1 to 8 proposers, one run
measures:

- the graph's layer time (from the run's start to ``layer_done``),
- the ideal: one proposer latency (all in parallel, zero overhead),
- a plain ``asyncio.gather`` of the same proposer calls with the same clients
  (the reference implementation's approach), and
- the calls one after another (a sequential baseline).

Ratios, not bare times, are reported, since times on a shared machine are noisy.

    python benchmarks/parallel_layers.py [--latency 0.2] [--repeats 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

from _report import save_plot, write_table

from langgraph_moa import MoAConfig, create_moa_graph
from langgraph_moa.providers import ModelResolver
from langgraph_moa.testing import ModelBehavior, SimulatedOpenAIServer

COUNTS = (1, 2, 4, 6, 8)


async def graph_layer_time(graph, config: MoAConfig) -> float:
    started = time.perf_counter()
    async for chunk in graph.astream({"messages": [("user", "q")]}, context=config, stream_mode="custom"):
        if chunk["event"] == "layer_done":
            return time.perf_counter() - started
    raise RuntimeError("no layer_done event")


async def direct_calls(config: MoAConfig, parallel: bool) -> float:
    resolve = ModelResolver()
    models = [resolve(spec, config, streaming=False) for spec in config.proposers]
    messages = [("user", "q")]
    started = time.perf_counter()
    if parallel:
        await asyncio.gather(*(m.ainvoke(messages) for m in models))
    else:
        for m in models:
            await m.ainvoke(messages)
    return time.perf_counter() - started


async def measure(latency: float, repeats: int) -> list[dict[str, float]]:
    rows = []
    with SimulatedOpenAIServer(default=ModelBehavior(latency=latency)) as server:
        graph = create_moa_graph().compile()
        for n in COUNTS:
            config = MoAConfig(
                layers=2,
                proposers=[f"openai:p{i}" for i in range(n)],
                aggregator="openai:agg",
                base_url=server.base_url,
            )
            await graph_layer_time(graph, config)  # warm up clients and connections
            graph_t = statistics.median([await graph_layer_time(graph, config) for _ in range(repeats)])
            gather_t = statistics.median([await direct_calls(config, True) for _ in range(repeats)])
            seq_t = await direct_calls(config, False)
            rows.append(
                {
                    "proposers": n,
                    "graph_vs_ideal": graph_t / latency,
                    "gather_vs_ideal": gather_t / latency,
                    "graph_vs_gather": graph_t / gather_t,
                    "sequential_vs_graph": seq_t / graph_t,
                }
            )
    return rows


def write(rows: list[dict[str, float]], latency: float, repeats: int) -> Path:
    lines = [
        f"Proposer latency {latency * 1000:.0f} ms (simulated server), median of {repeats} runs; "
        "ratios measured in one run by `python benchmarks/parallel_layers.py`.",
        "",
        "| proposers | graph layer / ideal | asyncio.gather / ideal | graph / gather | sequential / graph (speed-up) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['proposers']} | {r['graph_vs_ideal']:.2f} | {r['gather_vs_ideal']:.2f} | "
            f"{r['graph_vs_gather']:.2f} | {r['sequential_vs_graph']:.1f}x |"
        )
    out = write_table("parallel_layers", lines)

    def draw(plt: Any) -> Any:
        fig, ax = plt.subplots(figsize=(6, 3.6))
        xs = [r["proposers"] for r in rows]
        ax.plot(xs, [r["graph_vs_ideal"] for r in rows], "o-", label="langgraph-moa layer")
        ax.plot(xs, [r["gather_vs_ideal"] for r in rows], "s--", label="plain asyncio.gather")
        ax.plot(xs, [r["graph_vs_ideal"] * r["sequential_vs_graph"] for r in rows], "^:", label="sequential calls")
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set_xlabel("proposers in the layer")
        ax.set_ylabel("layer time / one proposer's latency")
        ax.set_title("A MoA layer runs its proposers in parallel")
        ax.legend()
        return fig

    save_plot("parallel_layers", draw)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rows = asyncio.run(measure(args.latency, args.repeats))
    out = write(rows, args.latency, args.repeats)
    print(out.read_text())


if __name__ == "__main__":
    main()
