"""Time to first token of 3-layer MoA, and what shortens it.

3 layers x 6 proposers on the simulated OpenAI-compatible server at realistic
rates: 300 ms to the first token, 50 tokens/s; the six proposers write answers
of different lengths (``--tokens``, default 100 to 250 tokens: non-streamed,
each arrives when its last token is written), the aggregator streams 150
tokens. Compared in one run:

- (a) MoA on the plain ``openai`` SDK, each layer awaited with ``asyncio.gather``;
- (b) the same with the proposers called one after another;
- (c) this project's graph, plain;
- (d) with the quorum cut-off (``min_proposals=3``, ``straggler_timeout`` 0.5 s):
  each layer ends soon after its third answer;
- (e) with ``provisional_answers``: an answer synthesised from layer 1 streams
  (on the custom stream, marked provisional, naming its proposals) while
  layer 2 runs;
- (f) both.

Reported: seconds to the first token of the first answer a reader sees (the
provisional one where there is one) and of the final answer, each divided by
(c)'s time to first token. Target: at most 0.5. Ratios come from one run.

    python benchmarks/ttft.py [--tokens 100,130,160,190,220,250] [--agg-tokens 150]
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


async def measure(tokens: list[int], agg_tokens: int, grace: float) -> dict[str, Timing]:
    with SimulatedOpenAIServer() as server:
        for name, n in zip(PROPOSERS, tokens, strict=True):
            server.set_behavior(name, proposer(n))
        server.set_behavior("agg", aggregator(agg_tokens))
        client = AsyncOpenAI(base_url=server.base_url, api_key="x")
        graph = create_moa_graph().compile()
        plain = MoAConfig(
            layers=3,
            proposers=[f"openai:{p}" for p in PROPOSERS],
            aggregator="openai:agg",
            base_url=server.base_url,
            timeout=600,
        )
        quorum = {"min_proposals": 3, "straggler_timeout": grace}
        runs = {
            "(a) openai SDK, asyncio.gather": lambda: openai_moa(client, [PROPOSERS] * 2, "agg", parallel=True),
            "(b) openai SDK, one after another": lambda: openai_moa(client, [PROPOSERS] * 2, "agg", parallel=False),
            "(c) langgraph-moa": lambda: graph_moa(graph, plain),
            "(d) quorum cut-off": lambda: graph_moa(graph, plain.model_copy(update=quorum)),
            "(e) provisional answer": lambda: graph_moa(graph, plain.model_copy(update={"provisional_answers": True})),
            "(f) provisional answer + quorum cut-off": lambda: graph_moa(
                graph, plain.model_copy(update={"provisional_answers": True, **quorum})
            ),
        }
        await openai_moa(client, [["p0"]], "agg", parallel=True)  # warm up the SDK client
        warm = MoAConfig(proposers=["openai:p0"], aggregator="openai:agg", base_url=server.base_url)
        await graph_moa(graph, warm)
        results = {name: await run() for name, run in runs.items()}
        await client.close()
    return results


def write(results: dict[str, Timing], tokens: list[int], agg_tokens: int, grace: float) -> Path:
    names = list(results)
    plain = results[names[2]].first_token
    lines = [
        f"3 layers x 6 proposers, simulated server: 300 ms to first token, 50 tokens/s; proposals of "
        f"{', '.join(map(str, tokens))} tokens, a {agg_tokens}-token streamed answer; quorum cut-off = "
        f"`min_proposals=3, straggler_timeout={grace:g}`. Ratios measured in one run by "
        f"`python benchmarks/ttft.py --tokens {','.join(map(str, tokens))} --agg-tokens {agg_tokens}`.",
        "",
        "| implementation | first token seen (s) | / (c) | final answer's first token (s) | / (c) | answer done (s) |",
        "|---|---|---|---|---|---|",
    ]
    for name in names:
        t = results[name]
        seen = t.provisional_first_token if t.provisional_first_token is not None else t.first_token
        mark = " (provisional)" if t.provisional_first_token is not None else ""
        lines.append(
            f"| {name} | {seen:.2f}{mark} | {seen / plain:.2f} | {t.first_token:.2f} | "
            f"{t.first_token / plain:.2f} | {t.total:.2f} |"
        )
    out = write_table("ttft", lines)

    def draw(plt: Any) -> Any:
        fig, ax = plt.subplots(figsize=(7, 3.8))
        ys = list(range(len(names)))
        seen = [results[n].provisional_first_token or results[n].first_token for n in names]
        ax.barh([y - 0.2 for y in ys], seen, 0.4, label="first token seen (provisional or final)")
        ax.barh([y + 0.2 for y in ys], [results[n].first_token for n in names], 0.4, label="final answer's first token")
        ax.set_yticks(ys, names)
        ax.invert_yaxis()
        ax.set_xlabel("seconds from the request")
        ax.set_title("Time to first token, 3 layers x 6 proposers")
        ax.legend(fontsize=8)
        return fig

    save_plot("ttft", draw)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", default="100,130,160,190,220,250", help="six proposal lengths, comma-separated")
    parser.add_argument("--agg-tokens", type=int, default=150)
    parser.add_argument("--grace", type=float, default=0.5, help="straggler_timeout of the quorum cut-off")
    args = parser.parse_args()
    tokens = [int(t) for t in args.tokens.split(",")]
    if len(tokens) != len(PROPOSERS):
        parser.error(f"--tokens needs {len(PROPOSERS)} lengths")
    results = asyncio.run(measure(tokens, args.agg_tokens, args.grace))
    out = write(results, tokens, args.agg_tokens, args.grace)
    print(out.read_text())


if __name__ == "__main__":
    main()
