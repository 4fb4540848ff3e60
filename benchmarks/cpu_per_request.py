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
  with an ``InMemorySaver`` checkpointer;
- (d) the smallest LangGraph graph that makes the same calls: two fan-outs of
  ``Send`` to a proposer node, then an aggregator node streaming its model,
  streamed and checkpointed like (c). It is the floor of any MoA built as a
  LangGraph graph and streamed this way; (c) / (d) is this project's own share;
- (e) the same minimal graph run with ``ainvoke``, no checkpointer, no stream.

Reported: CPU milliseconds per request (``time.process_time``) and the ratio to
the LangChain baseline. Ratios come from one run; the machine's other load moves
absolute figures.

    python benchmarks/cpu_per_request.py [--requests 30]
"""

from __future__ import annotations

import argparse
import asyncio
import operator
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypedDict

from _moa_baselines import _with_references, graph_moa, openai_moa
from _report import save_plot, write_table
from _serve import simulated_upstream
from langchain_openai import ChatOpenAI
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send
from openai import AsyncOpenAI

from langgraph_moa import MoAConfig, create_moa_graph

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


class _MinimalState(TypedDict):
    references: Annotated[list[str], operator.add]
    answer: str


def minimal_langgraph_moa(models: dict[str, ChatOpenAI]) -> Any:
    """The same calls as :func:`langchain_moa`, as the smallest LangGraph graph: Send fan-outs and an aggregator."""
    question = [{"role": "user", "content": "q"}]

    async def propose(task: dict[str, Any]) -> dict[str, Any]:
        answer = await models[task["model"]].ainvoke(_with_references(question, task["references"]))
        return {"references": [answer.text]}

    async def aggregate(state: _MinimalState) -> dict[str, Any]:
        text = ""
        async for chunk in models["agg"].astream(_with_references(question, state["references"][-len(PROPOSERS) :])):
            text += chunk.text
        return {"answer": text}

    async def join(_: _MinimalState) -> dict[str, Any]:
        return {}  # the layer's proposals are in: one node, so the next fan-out happens once

    def fan_out(references: list[str], node: str) -> list[Send]:
        return [Send(node, {"model": p, "references": references}) for p in PROPOSERS]

    builder = StateGraph(_MinimalState)
    builder.add_node("propose_1", propose)
    builder.add_node("propose_2", propose)
    builder.add_node("layer_1_done", join)
    builder.add_node("aggregate", aggregate)
    builder.add_conditional_edges(START, lambda _: fan_out([], "propose_1"), ["propose_1"])
    builder.add_edge("propose_1", "layer_1_done")
    builder.add_conditional_edges("layer_1_done", lambda s: fan_out(s["references"], "propose_2"), ["propose_2"])
    builder.add_edge("propose_2", "aggregate")
    builder.add_edge("aggregate", END)
    return builder


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

    minimal = minimal_langgraph_moa(models)
    minimal_streamed = minimal.compile(checkpointer=InMemorySaver())
    minimal_plain = minimal.compile()
    start = {"references": [], "answer": ""}

    async def minimal_run() -> None:
        thread = {"configurable": {"thread_id": str(uuid.uuid4())}}
        async for _ in minimal_streamed.astream(start, thread, stream_mode=["messages", "custom"]):
            pass

    runs: dict[str, Callable[[], Awaitable[object]]] = {
        "(a) openai SDK, asyncio.gather": lambda: openai_moa(client, [PROPOSERS] * 2, "agg", parallel=True),
        "(b) openai SDK, one after another": lambda: openai_moa(client, [PROPOSERS] * 2, "agg", parallel=False),
        "LangChain, asyncio.gather": lambda: langchain_moa(models),
        "(c) langgraph-moa, streamed, checkpointer": graph_run,
        "(d) minimal LangGraph graph, streamed, checkpointer": minimal_run,
        "(e) minimal LangGraph graph, ainvoke": lambda: minimal_plain.ainvoke(start),
    }
    results = {name: await cpu_ms(run, requests) for name, run in runs.items()}
    await client.close()
    return results


def write(results: dict[str, float], requests: int) -> Path:
    baseline = results["LangChain, asyncio.gather"]
    lines = [
        f"CPU per request, 3 layers x 6 proposers + a streamed aggregator, instant simulated upstream in "
        f"another process; {requests} requests each. Ratios measured in one run by "
        f"`python benchmarks/cpu_per_request.py --requests {requests}`.",
        "",
        "| implementation | CPU ms per request | / LangChain gather | / minimal LangGraph (d) |",
        "|---|---|---|---|",
    ]
    floor = results["(d) minimal LangGraph graph, streamed, checkpointer"]
    lines += [f"| {name} | {ms:.1f} | {ms / baseline:.2f} | {ms / floor:.2f} |" for name, ms in results.items()]
    out = write_table("cpu_per_request", lines)

    def draw(plt: Any) -> Any:
        fig, ax = plt.subplots(figsize=(7, 3))
        names = list(results)
        ax.barh(names, [results[n] for n in names])
        ax.invert_yaxis()
        ax.set_xlabel("CPU milliseconds per request")
        ax.set_title("Client-side CPU per MoA request (3 layers x 6 proposers)")
        return fig

    save_plot("cpu_per_request", draw)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=30)
    args = parser.parse_args()
    with simulated_upstream() as base_url:
        results = asyncio.run(measure(base_url, args.requests))
    print(write(results, args.requests).read_text())


if __name__ == "__main__":
    main()
