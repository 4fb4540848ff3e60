"""What one slow proposer costs, with and without the straggler cut-off.

MoA-Lite shape (2 layers: six proposers, one aggregator) on the simulated
OpenAI-compatible server at realistic rates: 300 ms to the first token,
50 tokens/s, 100-token proposals (non-streamed: each arrives after 2.3 s), a
streamed 100-token answer. In one run, each implementation answers twice: with
six equal proposers, then with one of them 10x slower. Compared:

- (a) MoA on the plain ``openai`` SDK, each layer awaited with ``asyncio.gather``
  (the reference implementation's approach);
- (b) the same with the proposers called one after another;
- (c) this project's graph without the option;
- (d) this project's graph with ``straggler_timeout`` (``--grace`` seconds,
  ``min_proposals=3``).

Reported: the time to the answer's end with the straggler divided by (c)'s
time without it (target for (d): at most 1.15), and each implementation's own
slowdown. Ratios come from one run; times on a shared machine are noisy.

    python benchmarks/stragglers.py [--grace 0.3] [--scale 1.0]
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from _moa_baselines import Timing, aggregator, graph_moa, openai_moa, proposer
from _report import save_plot, write_table
from openai import AsyncOpenAI

from langgraph_moa import MoAConfig, create_moa_graph
from langgraph_moa.testing import SimulatedOpenAIServer

PROPOSERS = [f"p{i}" for i in range(6)]
TOKENS = 100


async def measure(grace: float, scale: float) -> dict[str, dict[str, Timing]]:
    tokens = max(1, round(TOKENS * scale))
    with SimulatedOpenAIServer() as server:
        client = AsyncOpenAI(base_url=server.base_url, api_key="x")
        graph = create_moa_graph().compile()
        base = MoAConfig(
            proposers=[f"openai:{p}" for p in PROPOSERS],
            aggregator="openai:agg",
            base_url=server.base_url,
            timeout=600,
        )
        cut = base.model_copy(update={"straggler_timeout": grace * scale, "min_proposals": 3})
        runs = {
            "(a) openai SDK, asyncio.gather": lambda: openai_moa(client, [PROPOSERS], "agg", parallel=True),
            "(b) openai SDK, one after another": lambda: openai_moa(client, [PROPOSERS], "agg", parallel=False),
            "(c) langgraph-moa": lambda: graph_moa(graph, base),
            f"(d) langgraph-moa, straggler_timeout={grace * scale:g}": lambda: graph_moa(graph, cut),
        }
        server.set_behavior("agg", aggregator(tokens))
        results: dict[str, dict[str, Timing]] = {name: {} for name in runs}
        for case, slowdown in (("equal", 1.0), ("one 10x slower", 10.0)):
            for p in PROPOSERS:
                server.set_behavior(p, proposer(tokens))
            server.set_behavior(PROPOSERS[-1], proposer(tokens, slowdown))
            for name, run in runs.items():
                if case == "equal":
                    await run()  # warm up clients and connections
                results[name][case] = await run()
        await client.close()
    return results


def write(results: dict[str, dict[str, Timing]], grace: float, scale: float) -> Path:
    names = list(results)
    plain = results[names[2]]["equal"].total
    lines = [
        f"MoA-Lite (6 proposers + aggregator), simulated server: 300 ms to first token, 50 tokens/s, "
        f"{round(TOKENS * scale)}-token answers, one proposer 10x slower in the second case; "
        f"`straggler_timeout={grace * scale:g}`, `min_proposals=3`. Ratios measured in one run by "
        f"`python benchmarks/stragglers.py --grace {grace:g} --scale {scale:g}`.",
        "",
        "| implementation | equal proposers (s) | one 10x slower (s) | own slowdown | vs (c) with equal proposers |",
        "|---|---|---|---|---|",
    ]
    for name in names:
        equal, slow = results[name]["equal"].total, results[name]["one 10x slower"].total
        lines.append(f"| {name} | {equal:.2f} | {slow:.2f} | {slow / equal:.2f}x | {slow / plain:.2f}x |")
    out = write_table("stragglers", lines)

    def draw(plt: Any) -> Any:
        fig, ax = plt.subplots(figsize=(7, 3.6))
        ys = range(len(names))
        ax.barh([y + 0.2 for y in ys], [results[n]["equal"].total for n in names], 0.4, label="equal proposers")
        ax.barh([y - 0.2 for y in ys], [results[n]["one 10x slower"].total for n in names], 0.4, label="one 10x slower")
        ax.set_yticks(list(ys), [n.split(",")[0] + ("\n" + n.split(",", 1)[1] if "," in n else "") for n in names])
        ax.invert_yaxis()
        ax.set_xlabel("seconds to the end of the answer")
        ax.set_title("One slow proposer of six")
        ax.legend()
        return fig

    save_plot("stragglers", draw)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grace", type=float, default=0.3, help="straggler_timeout at scale 1 (seconds)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the answer lengths (shorter runs)")
    args = parser.parse_args()
    results = asyncio.run(measure(args.grace, args.scale))
    out = write(results, args.grace, args.scale)
    print(out.read_text())


if __name__ == "__main__":
    main()
