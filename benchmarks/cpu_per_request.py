"""CPU time per MoA request against an instant upstream.

The simulated OpenAI-compatible server runs in its own process and answers at
once, so the CPU time of this process is the client side of a request: 3 layers
x 6 proposers and a streamed aggregator. Compared in one run, each for
``--requests`` requests one after another:

- (a) MoA on the plain ``openai`` SDK, each layer awaited with ``asyncio.gather``;
- (b) the same with the proposers called one after another;
- a plain LangChain MoA: ``ChatOpenAI.ainvoke`` calls gathered per layer, the
  aggregator streamed with ``astream``;
- (c) this project's graph, streamed (``stream_mode=["messages", "custom"]``)
  with an ``InMemorySaver`` checkpointer.

Reported: CPU milliseconds per request (``time.process_time``) and the ratio to
the LangChain baseline. Ratios come from one run; the machine's other load moves
absolute figures.

    python benchmarks/cpu_per_request.py [--requests 30]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from _moa_baselines import _with_references, graph_moa, openai_moa
from langchain_openai import ChatOpenAI
from langgraph.checkpoint.memory import InMemorySaver
from openai import AsyncOpenAI

from langgraph_moa import MoAConfig, create_moa_graph
from langgraph_moa.local import free_port

RESULTS = Path(__file__).parent / "results"
PROPOSERS = [f"p{i}" for i in range(6)]


async def langchain_moa(models: dict[str, ChatOpenAI]) -> None:
    """MoA on LangChain chat models: proposers gathered per layer, the aggregator streamed."""
    references: list[str] = []
    for _ in range(2):
        messages = _with_references([{"role": "user", "content": "q"}], references)
        answers = await asyncio.gather(*(models[p].ainvoke(messages) for p in PROPOSERS))
        references = [a.text for a in answers]
    async for _ in models["agg"].astream(_with_references([{"role": "user", "content": "q"}], references)):
        pass


async def cpu_ms(run: Callable[[], Awaitable[object]], requests: int) -> float:
    await run()  # warm up clients and connections
    started = time.process_time()
    for _ in range(requests):
        await run()
    return (time.process_time() - started) * 1000 / requests


async def measure(base_url: str, requests: int) -> dict[str, float]:
    client = AsyncOpenAI(base_url=base_url, api_key="x")
    models = {m: ChatOpenAI(model=m, base_url=base_url, api_key="x") for m in [*PROPOSERS, "agg"]}  # type: ignore[arg-type]
    graph = create_moa_graph().compile(checkpointer=InMemorySaver())
    config = MoAConfig(
        layers=3, proposers=[f"openai:{p}" for p in PROPOSERS], aggregator="openai:agg", base_url=base_url
    )

    async def graph_run() -> None:
        thread = {"configurable": {"thread_id": str(uuid.uuid4())}}
        await graph_moa(graph, config, thread)

    runs: dict[str, Callable[[], Awaitable[object]]] = {
        "(a) openai SDK, asyncio.gather": lambda: openai_moa(client, [PROPOSERS] * 2, "agg", parallel=True),
        "(b) openai SDK, one after another": lambda: openai_moa(client, [PROPOSERS] * 2, "agg", parallel=False),
        "LangChain, asyncio.gather": lambda: langchain_moa(models),
        "(c) langgraph-moa, streamed, checkpointer": graph_run,
    }
    results = {name: await cpu_ms(run, requests) for name, run in runs.items()}
    await client.close()
    return results


def write(results: dict[str, float], requests: int) -> Path:
    RESULTS.mkdir(exist_ok=True)
    baseline = results["LangChain, asyncio.gather"]
    lines = [
        f"CPU per request, 3 layers x 6 proposers + a streamed aggregator, instant simulated upstream in "
        f"another process; {requests} requests each. Ratios measured in one run by "
        f"`python benchmarks/cpu_per_request.py --requests {requests}`.",
        "",
        "| implementation | CPU ms per request | / LangChain gather |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {ms:.1f} | {ms / baseline:.2f} |" for name, ms in results.items()]
    out = RESULTS / "cpu_per_request.md"
    out.write_text("\n".join(lines) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 3))
        names = list(results)
        ax.barh(names, [results[n] for n in names])
        ax.invert_yaxis()
        ax.set_xlabel("CPU milliseconds per request")
        ax.set_title("Client-side CPU per MoA request (3 layers x 6 proposers)")
        fig.tight_layout()
        fig.savefig(RESULTS / "cpu_per_request.png", dpi=110)
    except ImportError:
        print("matplotlib not installed: table only (pip install -e '.[dev]')")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=30)
    args = parser.parse_args()
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "langgraph_moa.testing", "--port", str(port)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        base_url = server.stdout.readline().strip()  # printed once the server listens
        results = asyncio.run(measure(base_url, args.requests))
    finally:
        server.terminate()
        server.wait()
    print(write(results, args.requests).read_text())


if __name__ == "__main__":
    main()
