"""What each cost-saving option saves against plain MoA, on the simulated upstream.

One run measures, for a 4-layer MoA (3 proposer layers of 4 proposers, then
the aggregator) against the simulated OpenAI-compatible server:

- model calls (counted by the server),
- tokens (the server's usage: it counts words as tokens),
- estimated cost (price table: $0.90 per 1M tokens for the proposers and the
  ranker, $1.20 for the aggregator; replayed cached calls cost nothing),
- latency (median of ``--repeats`` runs; every call takes ``--latency`` seconds),

for plain MoA and for each option: the proposal cache (the same turn asked
again), ``early_stop``, ``keep_top`` (the rule and a judge model),
``aggregation_window`` (Self-MoA-Seq) and ``max_cost_usd`` (at 75%, 50% and 25% of plain MoA's cost). Two workloads: proposers that agree on the final answer
(each writes its own ~100-word explanation ending in the same ``Answer:``) and
proposers that disagree (each ends in a different answer). Only ratios measured
in the same run are compared; quality is not measured here.

    python benchmarks/strategies.py [--latency 0.05] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

from _report import save_plot, write_table
from langgraph.cache.memory import InMemoryCache

from langgraph_moa import MoAConfig, create_moa_graph
from langgraph_moa.testing import ModelBehavior, SimulatedOpenAIServer

PROPOSERS = ["p1", "p2", "p3", "p4"]
CITIES = ["Paris", "Lyon", "Marseille", "Toulouse"]
FILLER = (
    "Considering the question carefully, the relevant facts are these. The city has long been the seat of "
    "government, the largest urban area, and the centre of the country's cultural and economic life. "
    "Historical records, official sources and common reference works all point the same way, and no "
    "serious competing claim exists today. Weighing that evidence step by step leads to one conclusion."
)


def proposer_reply(index: int, agree: bool):
    def reply(messages: list[dict]) -> str:
        refs = sum(1 for m in messages if m["role"] == "system")
        opening = f"Proposer {index + 1} (having read {refs} reference block(s)) answers as follows."
        words = FILLER.split()
        body = " ".join(words[index * 3 :] + words[: index * 3])  # same words, each in its own order
        return f"{opening} {body} Answer: {CITIES[0] if agree else CITIES[index]}"

    return reply


def base_config(server: SimulatedOpenAIServer, **options: Any) -> MoAConfig:
    prices = {f"openai:{p}": {"input": 0.9, "output": 0.9} for p in [*PROPOSERS, "judge"]}
    prices["openai:agg"] = {"input": 1.2, "output": 1.2}
    return MoAConfig(
        layers=4,
        proposers=[f"openai:{p}" for p in PROPOSERS],
        aggregator="openai:agg",
        base_url=server.base_url,
        max_tokens=256,
        prices=prices,
        **options,
    )


async def one_run(graph: Any, server: SimulatedOpenAIServer, config: MoAConfig, question: str) -> dict[str, Any]:
    server.reset()
    started = time.perf_counter()
    state = await graph.ainvoke({"messages": [("user", question)]}, context=config)
    seconds = time.perf_counter() - started
    summary = state["usage_summary"]
    did = "; ".join(f"{d['option']}: {d['action']} after layer {d['layer']}" for d in state.get("decisions", []))
    if summary.get("cached_calls"):
        did = f"{summary['cached_calls']} proposals from the cache"
    return {
        "calls": server.calls(),
        "tokens": summary["total"]["total_tokens"],
        "agg_input": max(r["input_tokens"] for r in state["usage"] if r["role"] == "aggregator"),
        "cost": summary["cost_usd"],
        "seconds": seconds,
        "did": did or "-",
    }


async def measure_case(
    server: SimulatedOpenAIServer, config: MoAConfig, repeats: int, *, cached: bool = False
) -> dict[str, Any]:
    """Median latency over ``repeats``; counts from the last run (they do not vary)."""
    runs = []
    for _ in range(repeats):
        question = "What is the capital of France?"
        if cached:  # a fresh cache per repeat, filled by a first identical turn
            graph = create_moa_graph().compile(cache=InMemoryCache())
            await one_run(graph, server, config, question)
        else:
            graph = create_moa_graph().compile()
        runs.append(await one_run(graph, server, config, question))
    last = dict(runs[-1])
    last["seconds"] = statistics.median(r["seconds"] for r in runs)
    return last


async def measure(latency: float, repeats: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with SimulatedOpenAIServer(default=ModelBehavior(latency=latency)) as server:
        server.set_behavior("judge", ModelBehavior(latency=latency, reply="2, 1, 4, 3"))
        warm = create_moa_graph().compile()
        await one_run(warm, server, base_config(server), "warm up")
        for workload, agree in (("agree", True), ("disagree", False)):
            for i, name in enumerate(PROPOSERS):
                server.set_behavior(name, ModelBehavior(latency=latency, reply=proposer_reply(i, agree)))
            plain = await measure_case(server, base_config(server), repeats)
            cases: list[tuple[str, MoAConfig, bool]] = [
                ("proposal cache (same turn again)", base_config(server), True),
                ("early_stop=0.9", base_config(server, early_stop=0.9), False),
                ("keep_top=2 (rule)", base_config(server, keep_top=2), False),
                ("keep_top=2, ranker", base_config(server, keep_top=2, ranker="openai:judge"), False),
                ("aggregation_window=2", base_config(server, aggregation_window=2), False),
            ]
            for share in (0.75, 0.5, 0.25):
                budget = round(plain["cost"] * share, 8)
                cases.append((f"max_cost_usd = {share:.0%} of plain", base_config(server, max_cost_usd=budget), False))
            rows.append({"workload": workload, "option": "plain MoA", **plain})
            for option, config, cached in cases:
                row = await measure_case(server, config, repeats, cached=cached)
                rows.append({"workload": workload, "option": option, **row})
            for row in rows:
                if row["workload"] == workload:
                    for key in ("calls", "tokens", "cost", "seconds", "agg_input"):
                        row[f"{key}_ratio"] = row[key] / plain[key] if plain[key] else float("nan")
    return rows


def write(rows: list[dict[str, Any]], latency: float, repeats: int) -> Path:
    lines = [
        f"4 layers (3 proposer layers x 4 proposers + aggregator) on the simulated server, every call "
        f"{latency * 1000:.0f} ms; latency is the median of {repeats} runs; ratios against plain MoA on the "
        "same workload, measured in one run by `python benchmarks/strategies.py`. Tokens are the server's "
        "word counts; cost uses $0.90/1M tokens (proposers, ranker) and $1.20/1M (aggregator). "
        "Quality is not measured here.",
        "",
        "| workload | option | calls | tokens | largest aggregator prompt | cost (USD) | latency (s) "
        "| calls / plain | tokens / plain | cost / plain | latency / plain | what the option did |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['workload']} | {r['option']} | {r['calls']} | {r['tokens']} | {r['agg_input']} | {r['cost']:.6f} "
            f"| {r['seconds']:.3f} | {r['calls_ratio']:.2f} | {r['tokens_ratio']:.2f} | {r['cost_ratio']:.2f} "
            f"| {r['seconds_ratio']:.2f} | {r['did']} |"
        )
    out = write_table("strategies", lines)

    def draw(plt: Any) -> Any:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
        metrics = [
            ("calls_ratio", "calls"),
            ("tokens_ratio", "tokens"),
            ("cost_ratio", "cost"),
            ("seconds_ratio", "latency"),
        ]
        for ax, workload in zip(axes, ("agree", "disagree"), strict=True):
            subset = [r for r in rows if r["workload"] == workload and r["option"] != "plain MoA"]
            width = 0.2
            for m, (key, label) in enumerate(metrics):
                xs = [i + (m - 1.5) * width for i in range(len(subset))]
                ax.bar(xs, [r[key] for r in subset], width, label=label)
            ax.axhline(1.0, color="grey", lw=0.8)
            ax.set_xticks(range(len(subset)), [r["option"] for r in subset], rotation=25, ha="right", fontsize=8)
            ax.set_title(f"proposers {workload}")
        axes[0].set_ylabel("option / plain MoA")
        axes[0].legend(fontsize=8)
        fig.suptitle("What each option spends against plain MoA (simulated upstream)")
        return fig

    save_plot("strategies", draw)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = asyncio.run(measure(args.latency, args.repeats))
    out = write(rows, args.latency, args.repeats)
    print(out.read_text())


if __name__ == "__main__":
    main()
