"""Staircase streaming against plain MoA-Lite: the final answer's time to first token, total time, tokens.

MoA-Lite (2 layers) with 3 proposers and an aggregator on the simulated
OpenAI-compatible server, every model at 300 ms to the first token and then
50 tokens/s, every answer about 300 tokens (``--tokens``). Compared in one run:

- (a) the raw-gather baseline: MoA on the plain ``openai`` SDK, the proposers
  awaited with ``asyncio.gather``, the aggregator streamed;
- (b) this project's graph, plain;
- (c) (d) the graph with ``staircase=True``, with two piece schedules;
- the physical limit of any MoA answer: one proposer chunk plus one aggregator
  first token (2 x 300 ms), computed, not run.

The simulated upstream plays the same generation rate two ways: a call that
is not streamed (plain MoA's proposers) answers after 300 ms plus its whole
answer's generation time; a streamed call (the aggregator, and the staircase's
proposers) sends its first chunk after 300 ms and one token every 20 ms. The
aggregator honours ``max_tokens`` and continues the answer so far, as a
server does with assistant prefill (``staircase_continuation="prefill"``).

Reported: seconds to the final answer's first token and to its end, each
divided by (b)'s; prompt and completion tokens from the run's usage. Targets:
at most 0.15x (b)'s time to first token and 1.1x its total time. Ratios come
from one run.

    python benchmarks/staircase.py [--tokens 300] [--piece-tokens 40]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _moa_baselines import FIRST_TOKEN, TOKENS_PER_SECOND, openai_moa, proposer, text_of
from _report import save_plot, write_table
from openai import AsyncOpenAI

from langgraph_moa import MoAConfig, create_moa_graph
from langgraph_moa.stream import is_aggregator_token
from langgraph_moa.testing import ModelBehavior, SimulatedOpenAIServer, continuing

PROPOSERS = ["p0", "p1", "p2"]
CHUNK = 1 / TOKENS_PER_SECOND


@dataclass
class Run:
    """One run: seconds to the answer's first token and to its end, and its tokens (None: not counted)."""

    first_token: float
    total: float
    input_tokens: int | None = None
    output_tokens: int | None = None
    pieces: int | None = None


def streamed(tokens: int, reply: Any = None, **kw: Any) -> ModelBehavior:
    """A streamed call: the first chunk after 300 ms, then one token per 20 ms."""
    return ModelBehavior(latency=FIRST_TOKEN, chunk_delay=CHUNK, reply=reply or text_of(tokens), **kw)


def proposers_for(server: SimulatedOpenAIServer, tokens: int, *, streaming: bool) -> None:
    for i, name in enumerate(PROPOSERS):
        reply = " ".join(f"p{i}w{j}" for j in range(tokens))
        whole = ModelBehavior(latency=proposer(tokens).latency, reply=reply)  # arrives when its last token is written
        server.set_behavior(name, streamed(tokens, reply) if streaming else whole)


async def graph_run(graph: Any, config: MoAConfig) -> Run:
    started = time.perf_counter()
    first = None
    state: dict[str, Any] = {}
    async for mode, chunk in graph.astream(
        {"messages": [("user", "q")]}, context=config, stream_mode=["messages", "values"]
    ):
        if mode == "messages":
            token, metadata = chunk
            if first is None and token.text and is_aggregator_token(metadata):
                first = time.perf_counter() - started
        else:
            state = chunk
    total = time.perf_counter() - started
    usage = state["usage_summary"]["total"]
    pieces = len(state["staircase"]["pieces"]) if state.get("staircase") else None
    return Run(first if first is not None else total, total, usage["input_tokens"], usage["output_tokens"], pieces)


async def measure(tokens: int, piece_tokens: int) -> dict[str, Run]:
    answer = text_of(tokens)
    with SimulatedOpenAIServer() as server:
        server.set_behavior("agg", streamed(tokens, continuing(answer), honour_max_tokens=True))
        client = AsyncOpenAI(base_url=server.base_url, api_key="x")
        graph = create_moa_graph().compile()
        plain = MoAConfig(
            proposers=[f"openai:{p}" for p in PROPOSERS],
            aggregator="openai:agg",
            base_url=server.base_url,
            max_tokens=2 * tokens,
            timeout=600,
        )
        stairs = {"staircase": True, "staircase_continuation": "prefill", "staircase_piece_tokens": piece_tokens}
        fixed = plain.model_copy(update=stairs)
        doubling = plain.model_copy(update={**stairs, "staircase_growth": 2.0})
        proposers_for(server, tokens, streaming=False)
        # warm up the SDK client and the graph on an instant model
        await openai_moa(client, [["warm"]], "warm", parallel=True)
        await graph_run(graph, MoAConfig(proposers=["openai:warm"], aggregator="openai:warm", base_url=server.base_url))
        results: dict[str, Run] = {}
        raw = await openai_moa(client, [PROPOSERS], "agg", parallel=True)
        results["(a) openai SDK, asyncio.gather"] = Run(raw.first_token, raw.total)
        results["(b) langgraph-moa, plain"] = await graph_run(graph, plain)
        proposers_for(server, tokens, streaming=True)
        results[f"(c) staircase, {piece_tokens}-token pieces"] = await graph_run(graph, fixed)
        results[f"(d) staircase, {piece_tokens}-token pieces doubling"] = await graph_run(graph, doubling)
        await client.close()
    return results


def write(results: dict[str, Run], tokens: int, piece_tokens: int) -> Path:
    names = list(results)
    plain = results[names[1]]
    limit = 2 * FIRST_TOKEN + CHUNK
    lines = [
        f"MoA-Lite, 3 proposers + aggregator, simulated server: 300 ms to first token, 50 tokens/s, "
        f"{tokens}-token answers. Measured in one run by "
        f"`python benchmarks/staircase.py --tokens {tokens} --piece-tokens {piece_tokens}`.",
        "",
        "| implementation | answer's first token (s) | / (b) | answer done (s) | / (b) | pieces | "
        "prompt tokens | completion tokens | tokens / (b) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        r = results[name]
        if r.input_tokens is None or r.output_tokens is None:
            counts = "| - | - | - |"
        else:
            ratio = (r.input_tokens + r.output_tokens) / ((plain.input_tokens or 0) + (plain.output_tokens or 0))
            counts = f"| {r.input_tokens} | {r.output_tokens} | {ratio:.2f} |"
        lines.append(
            f"| {name} | {r.first_token:.2f} | {r.first_token / plain.first_token:.2f} | {r.total:.2f} | "
            f"{r.total / plain.total:.2f} | {r.pieces or '-'} {counts}"
        )
    lines.append(
        f"| physical limit: one proposer chunk + one aggregator first token | {limit:.2f} | "
        f"{limit / plain.first_token:.2f} | | | | | | |"
    )
    out = write_table("staircase", lines)

    def draw(plt: Any) -> Any:
        fig, ax = plt.subplots(figsize=(7.5, 3.6))
        labels = [*names, "physical limit"]
        ys = list(range(len(labels)))
        firsts = [results[n].first_token for n in names] + [limit]
        totals = [results[n].total for n in names] + [0.0]
        ax.barh(ys, totals, 0.6, color="#cccccc", label="answer done")
        ax.barh(ys, firsts, 0.6, color="#1f77b4", label="answer's first token")
        ax.set_yticks(ys, labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("seconds from the request")
        ax.set_title(f"Staircase streaming, MoA-Lite, 3 proposers, {tokens}-token answers")
        ax.legend(fontsize=8)
        return fig

    save_plot("staircase", draw)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=300, help="tokens of every answer (proposals and the final)")
    parser.add_argument("--piece-tokens", type=int, default=40, help="staircase_piece_tokens")
    args = parser.parse_args()
    results = asyncio.run(measure(args.tokens, args.piece_tokens))
    print(write(results, args.tokens, args.piece_tokens).read_text())


if __name__ == "__main__":
    main()
