"""MoA on the bundled local model: wall time per answer and per layer, tokens per second.

Starts llama.cpp servers for SmolLM2-135M-Instruct (the ``local`` extra; with
``local_servers(parallel_samples=True)``: one for the aggregator, one 1-thread
server per sample) and,
for each prompt, in the same run:

- answers it once with the local preset (Self-MoA: 3 samples in parallel, then the aggregator),
- answers it with the 3 samples queued on the aggregator's one server (as before
  the sample servers existed),
- answers it with the aggregator model alone (``layers=1``, one call),

then reports, per prompt and in total, the ratio of MoA wall time to the
single-model answer, each layer's share of MoA time, and completion tokens per
second: the completion tokens llama.cpp reported for the proposer calls over
MoA wall time, and the aggregator's streaming rate (llama.cpp sends one token
per streamed chunk and no usage on streamed calls, so its chunks are counted). Times on a shared machine are noisy: read the ratios.

    python benchmarks/local_moa.py [--max-tokens 128] [--layers 2]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from langgraph_moa import create_moa_graph
from langgraph_moa.local import LocalServers, local_config, local_servers

RESULTS = Path(__file__).parent / "results"
PROMPTS = [
    "Name three primary colors.",
    "Write a haiku about the sea.",
    "Give two tips for learning a new language.",
    "What is the boiling point of water at sea level?",
    "Explain what a checkpoint is in one sentence.",
]


async def timed_run(graph, config, prompt: str) -> dict:
    started = time.perf_counter()
    marks: dict[str, float] = {}
    first_token = None
    aggregator_chunks = 0
    final: dict = {}
    async for mode, chunk in graph.astream(
        {"messages": [("user", prompt)]}, context=config, stream_mode=["custom", "messages", "values"]
    ):
        now = time.perf_counter() - started
        if mode == "custom" and chunk["event"] == "layer_done":
            marks[f"layer {chunk['layer']}"] = now
        elif mode == "custom" and chunk["event"] == "aggregator_started":
            marks["aggregator_start"] = now
        elif mode == "messages" and chunk[0].text:
            first_token = now if first_token is None else first_token
            aggregator_chunks += 1
        elif mode == "values":
            final = chunk
    total = time.perf_counter() - started
    usage = final.get("usage", [])
    agg_time = total - marks.get("aggregator_start", 0.0)
    return {
        "total": total,
        "marks": marks,
        "first_token": first_token or total,
        "completion_tokens": sum(r["output_tokens"] for r in usage),
        "aggregator_tokens": aggregator_chunks,  # llama.cpp streams one token per chunk
        "aggregator_time": agg_time,
        "failures": len(final.get("failures", [])),
    }


async def measure(urls: LocalServers, layers: int, max_tokens: int) -> list[dict]:
    graph = create_moa_graph().compile()
    moa = local_config(urls, layers=layers, max_tokens=max_tokens)
    queued = local_config(dict(urls), layers=layers, max_tokens=max_tokens)  # every sample on one server
    single = local_config(urls, layers=1, max_tokens=max_tokens)
    await timed_run(graph, moa, "Hello")  # warm up the models and the clients
    rows = []
    for prompt in PROMPTS:
        m = await timed_run(graph, moa, prompt)
        q = await timed_run(graph, queued, prompt)
        s = await timed_run(graph, single, prompt)
        rows.append({"prompt": prompt, "moa": m, "queued": q, "single": s})
    return rows


def write(rows: list[dict], layers: int, max_tokens: int) -> Path:
    RESULTS.mkdir(exist_ok=True)
    lines = [
        f"Local preset: Self-MoA of SmolLM2-135M-Instruct (Q4_1, llama.cpp, 2 cores), {layers} layers, "
        f"3 samples per proposer layer, max_tokens={max_tokens}; measured in one run by "
        "`python benchmarks/local_moa.py`. Seconds are this run on this machine and move with its load; "
        "the ratios and shares are the comparable figures.",
        "",
        "| prompt | MoA s | single s | MoA / single | samples queued on one server: MoA / single "
        "| time to first token, MoA / single | "
        + " | ".join(f"layer {n} s (share)" for n in range(1, layers))
        + " | aggregator s (share) | proposer completion tok/s | aggregator streamed tok/s (prompt processing included) |",
        "|---|---|---|---|---|---|" + "---|" * (layers - 1) + "---|---|---|",
    ]
    for row in rows:
        m, s = row["moa"], row["single"]
        per_layer, previous = [], 0.0
        for n in range(1, layers):
            end = m["marks"].get(f"layer {n}", previous)
            per_layer.append(f"{end - previous:.1f} ({(end - previous) / m['total']:.0%})")
            previous = end
        lines.append(
            f"| {row['prompt']} | {m['total']:.1f} | {s['total']:.1f} | {m['total'] / s['total']:.1f}x | "
            f"{row['queued']['total'] / s['total']:.1f}x | "
            f"{m['first_token'] / s['first_token']:.1f}x | "
            + " | ".join(per_layer)
            + f" | {m['aggregator_time']:.1f} ({m['aggregator_time'] / m['total']:.0%}) | "
            f"{m['completion_tokens'] / m['total']:.0f} | "
            f"{m['aggregator_tokens'] / max(m['aggregator_time'], 1e-9):.0f} |"
        )
    moa_total = sum(r["moa"]["total"] for r in rows)
    single_total = sum(r["single"]["total"] for r in rows)
    queued_total = sum(r["queued"]["total"] for r in rows)
    samples = sum(r["moa"]["marks"].get("layer 1", 0.0) for r in rows)
    samples_queued = sum(r["queued"]["marks"].get("layer 1", 0.0) for r in rows)
    tokens = sum(r["moa"]["completion_tokens"] for r in rows)
    failures = sum(r["moa"]["failures"] for r in rows)
    lines += [
        "",
        f"All prompts: MoA took {moa_total / single_total:.1f}x the wall time of single-model answers "
        f"({queued_total / single_total:.1f}x with the samples queued on one server); "
        f"{tokens / moa_total:.0f} proposer completion tokens per second of MoA wall time; "
        f"{failures} failed proposer call(s).",
        f"The 3 samples (layer 1) took {samples / single_total:.1f}x the single answers' time on their own "
        f"1-thread servers, {samples_queued / single_total:.1f}x queued on one server.",
        "Tokens per second depend on the machine; compare them between rows of one run.",
    ]
    out = RESULTS / "local_moa.md"
    out.write_text("\n".join(lines) + "\n")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=128)
    args = parser.parse_args()
    with local_servers(parallel_samples=True) as urls:
        rows = asyncio.run(measure(urls, args.layers, args.max_tokens))
    print(write(rows, args.layers, args.max_tokens).read_text())


if __name__ == "__main__":
    main()
