"""MoA on the bundled local model against its physical floor.

Starts one llama.cpp server (xllamacpp) for SmolLM2-135M-Instruct with a slot
per Self-MoA sample, as the local preset does, and a second one with one slot
(the samples queue on it). For each prompt, in the same run:

- answers it with the local preset (Self-MoA: 3 samples at once on the
  server's slots, then the aggregator on the same server),
- answers it the same way on the one-slot server,
- answers it with the model alone (``layers=1``, one call).

On a compute-bound CPU (a 135M model on 2 cores) MoA cannot take less than the
time to generate all its tokens: the floor is the completion tokens of every
proposer call and of the aggregator's, as llama.cpp reported them, at the
tokens per second of the single answers in the same run (their completion
tokens over their wall time, prompt reading included). MoA / floor near 1
means the graph adds nothing to the model's own work; below 1, batching the
samples on the slots beat one stream. The ratio to a single answer is reported
next to it. Times on a shared machine are noisy: read the ratios.

    python benchmarks/local_moa.py [--max-tokens 128] [--layers 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from pathlib import Path

from langgraph_moa import create_moa_graph
from langgraph_moa.local import local_config, local_servers

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
        "aggregator_tokens": sum(r["output_tokens"] for r in usage if r["role"] == "aggregator"),
        "aggregator_chunks": aggregator_chunks,
        "unreported": sum(1 for r in usage if not r["reported"]),
        "aggregator_time": agg_time,
        "failures": len(final.get("failures", [])),
    }


async def measure(urls: dict[str, str], one_slot: dict[str, str], layers: int, max_tokens: int) -> list[dict]:
    graph = create_moa_graph().compile()
    moa = local_config(urls, layers=layers, max_tokens=max_tokens)
    queued = local_config(one_slot, layers=layers, max_tokens=max_tokens)
    single = local_config(urls, layers=1, max_tokens=max_tokens)
    await timed_run(graph, moa, "Hello")  # warm up the models and the clients
    await timed_run(graph, queued, "Hello")
    rows = []
    for prompt in PROMPTS:
        m = await timed_run(graph, moa, prompt)
        q = await timed_run(graph, queued, prompt)
        s = await timed_run(graph, single, prompt)
        rows.append({"prompt": prompt, "moa": m, "queued": q, "single": s})
    return rows


def write(rows: list[dict], layers: int, max_tokens: int) -> Path:
    RESULTS.mkdir(exist_ok=True)
    rate = sum(r["single"]["completion_tokens"] for r in rows) / sum(r["single"]["total"] for r in rows)
    lines = [
        f"Local preset: Self-MoA of SmolLM2-135M-Instruct (Q4_1, llama.cpp via xllamacpp, 2 cores), {layers} "
        f"layers, 3 samples per proposer layer, max_tokens={max_tokens}; measured in one run by "
        "`python benchmarks/local_moa.py` (load average "
        f"{os.getloadavg()[0]:.1f} at the end). The floor is the MoA run's completion tokens (every proposer "
        f"and the aggregator, as llama.cpp reported them) at the single answers' {rate:.0f} tokens/s. "
        "Seconds move with the machine's load; the ratios are the comparable figures.",
        "",
        "| prompt | MoA s | single s | MoA / single | MoA tokens (aggregator) | floor s | MoA / floor "
        "| samples on 1 slot: MoA / floor | time to first token, MoA / single | "
        + " | ".join(f"layer {n} s (share)" for n in range(1, layers))
        + " | aggregator s (share) |",
        "|---|---|---|---|---|---|---|---|---|" + "---|" * (layers - 1) + "---|",
    ]
    for row in rows:
        m, s, q = row["moa"], row["single"], row["queued"]
        per_layer, previous = [], 0.0
        for n in range(1, layers):
            end = m["marks"].get(f"layer {n}", previous)
            per_layer.append(f"{end - previous:.1f} ({(end - previous) / m['total']:.0%})")
            previous = end
        floor, queued_floor = m["completion_tokens"] / rate, q["completion_tokens"] / rate
        lines.append(
            f"| {row['prompt']} | {m['total']:.1f} | {s['total']:.1f} | {m['total'] / s['total']:.1f}x | "
            f"{m['completion_tokens']} ({m['aggregator_tokens']}) | {floor:.1f} | {m['total'] / floor:.2f} | "
            f"{q['total'] / queued_floor:.2f} | {m['first_token'] / s['first_token']:.1f}x | "
            + " | ".join(per_layer)
            + f" | {m['aggregator_time']:.1f} ({m['aggregator_time'] / m['total']:.0%}) |"
        )
    moa_total = sum(r["moa"]["total"] for r in rows)
    single_total = sum(r["single"]["total"] for r in rows)
    queued_total = sum(r["queued"]["total"] for r in rows)
    floor_total = sum(r["moa"]["completion_tokens"] for r in rows) / rate
    queued_floor_total = sum(r["queued"]["completion_tokens"] for r in rows) / rate
    failures = sum(r["moa"]["failures"] for r in rows)
    unreported = sum(r["moa"]["unreported"] + r["single"]["unreported"] for r in rows)
    lines += [
        "",
        f"All prompts: MoA took {moa_total:.1f} s against a floor of {floor_total:.1f} s "
        f"({moa_total / floor_total:.2f}x the floor) and {moa_total / single_total:.1f}x the single answers' "
        f"{single_total:.1f} s. With the samples queued on a one-slot server: {queued_total:.1f} s, "
        f"{queued_total / queued_floor_total:.2f}x its floor. {failures} failed proposer call(s); "
        f"{unreported} call(s) without reported usage.",
        "A 135M model's answers say nothing about MoA's quality; these runs show what the pipeline costs.",
    ]
    out = RESULTS / "local_moa.md"
    out.write_text("\n".join(lines) + "\n")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=128)
    args = parser.parse_args()
    with local_servers() as urls, local_servers(slots=1) as one_slot:
        rows = asyncio.run(measure(urls, one_slot, args.layers, args.max_tokens))
    print(write(rows, args.layers, args.max_tokens).read_text())


if __name__ == "__main__":
    main()
