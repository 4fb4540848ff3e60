"""What serving MoA over HTTP adds to a run, and how the server holds up under concurrency.

Against the simulated OpenAI-compatible server (every model answers after
``--latency`` seconds), a 2-layer MoA (3 proposers, then the aggregator) is run:

- in process, with ``graph.ainvoke`` (the baseline),
- through ``moa serve`` (a separate process) with the official ``openai`` SDK,
  non-streaming and streaming,
- through the same server's LangServe routes with ``RemoteRunnable``,

one request at a time, then ``--concurrency`` requests at once (in process vs
the OpenAI API). The ideal for one request is two model latencies (the layer's
proposers in parallel, then the aggregator); with every request in parallel it
is the same. Ratios measured in one run are reported, not bare times.

    python benchmarks/serving_overhead.py [--latency 0.2] [--requests 10] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import time
from pathlib import Path

import openai
from _report import write_table
from _serve import start_moa_serve
from langserve import RemoteRunnable

from langgraph_moa import MoAConfig, create_moa_graph
from langgraph_moa.testing import ModelBehavior, SimulatedOpenAIServer

PROPOSERS = ["p1", "p2", "p3"]
QUESTION = [{"role": "user", "content": "What are three fun things to do in San Francisco?"}]


def start_server(base_url: str, concurrency: int) -> tuple[subprocess.Popen, str]:
    """``moa serve`` with the simulated models, in its own process; returns it and its URL."""
    args = ["--base-url", base_url, "--aggregator", "openai:agg"]
    args += [a for p in PROPOSERS for a in ("--proposer", f"openai:{p}")]
    args += ["--provider-concurrency", str(4 * concurrency), "--log-level", "warning"]
    return start_moa_serve(*args)


def timed(fn, n: int) -> float:
    """Median seconds of ``fn()`` over ``n`` calls (after one warm-up call)."""
    fn()
    times = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(latency: float, requests: int, concurrency: int) -> dict[str, float]:
    behavior = ModelBehavior(latency=latency)
    with SimulatedOpenAIServer(default=behavior) as sim:
        config = MoAConfig(proposers=[f"openai:{p}" for p in PROPOSERS], aggregator="openai:agg", base_url=sim.base_url)
        graph = create_moa_graph().compile()
        process, url = start_server(sim.base_url, concurrency)
        try:
            client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)
            remote = RemoteRunnable(f"{url}/moa")
            loop = asyncio.new_event_loop()

            def direct() -> None:
                loop.run_until_complete(graph.ainvoke({"messages": QUESTION}, context=config))

            def via_openai() -> None:
                client.chat.completions.create(model="default", messages=QUESTION)

            def via_openai_stream() -> None:
                for _ in client.chat.completions.create(model="default", messages=QUESTION, stream=True):
                    pass

            def via_langserve() -> None:
                remote.invoke({"messages": [("user", QUESTION[0]["content"])]})

            row = {
                "ideal": 2 * latency,
                "in process": timed(direct, requests),
                "OpenAI API": timed(via_openai, requests),
                "OpenAI API, streamed": timed(via_openai_stream, requests),
                "LangServe": timed(via_langserve, requests),
            }

            async def burst_direct() -> None:
                await asyncio.gather(
                    *(graph.ainvoke({"messages": QUESTION}, context=config) for _ in range(concurrency))
                )

            async def burst_openai() -> None:
                async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0) as aclient:
                    await asyncio.gather(
                        *(
                            aclient.chat.completions.create(model="default", messages=QUESTION)
                            for _ in range(concurrency)
                        )
                    )

            row["burst in process"] = timed(lambda: loop.run_until_complete(burst_direct()), 3)
            row["burst OpenAI API"] = timed(lambda: loop.run_until_complete(burst_openai()), 3)
            loop.close()
            remote.sync_client.close()
        finally:
            process.terminate()
            process.wait(timeout=10)
    return row


def write(row: dict[str, float], latency: float, requests: int, concurrency: int) -> Path:
    ideal = row["ideal"]
    lines = [
        "# Serving overhead",
        "",
        f"2-layer MoA (3 proposers, then the aggregator) on the simulated server, {latency:g} s per model call;",
        f"one request at a time (median of {requests}), then {concurrency} requests at once (median of 3 bursts).",
        "The ideal is two model latencies. Ratios from one run of `python benchmarks/serving_overhead.py`.",
        "",
        "| path | / ideal | / in process |",
        "|---|---|---|",
    ]
    for name in ("in process", "OpenAI API", "OpenAI API, streamed", "LangServe"):
        lines.append(f"| {name}, one request | {row[name] / ideal:.2f} | {row[name] / row['in process']:.2f} |")
    burst_ratio = row["burst OpenAI API"] / row["burst in process"]
    lines.append(f"| in process, {concurrency} at once | {row['burst in process'] / ideal:.2f} | 1.00 |")
    lines.append(f"| OpenAI API, {concurrency} at once | {row['burst OpenAI API'] / ideal:.2f} | {burst_ratio:.2f} |")
    return write_table("serving_overhead", lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per simulated model call")
    parser.add_argument("--requests", type=int, default=10, help="sequential requests per path")
    parser.add_argument("--concurrency", type=int, default=32, help="requests at once in the burst")
    args = parser.parse_args()
    row = measure(args.latency, args.requests, args.concurrency)
    path = write(row, args.latency, args.requests, args.concurrency)
    print(path.read_text())


if __name__ == "__main__":
    main()
