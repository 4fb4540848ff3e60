"""MoA as a subgraph of your own graph, with a person reviewing the proposals.

The parent graph is a plain ``MessagesState`` graph with two nodes: ``moa`` (the
compiled MoA graph, added as a node) and ``sign_off`` (a node of yours that reads
the answer). The MoA run pauses before its aggregation (``review=True``); the
parent shows the proposals, a person keeps or drops them, and the parent resumes.
Everything lives in the parent's checkpointer: with a persistent one (such as
``AsyncSqliteSaver``) instead of this example's ``InMemorySaver``, the pause
survives a restart.

Run it against any OpenAI-compatible server::

    python examples/moa_subgraph.py --base-url http://127.0.0.1:8080/v1 --model my-model

or with no arguments, against the simulated server that ships with the package
(deterministic placeholder answers, no network, no key).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from typing import Any

from langchain_core.messages import AIMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.types import Command

from langgraph_moa import MoAConfig, create_moa_graph
from langgraph_moa.testing import SimulatedOpenAIServer


def build_parent() -> Any:
    """The parent graph: MoA, then a sign-off node of its own."""

    def sign_off(state: MessagesState) -> dict[str, Any]:
        return {"messages": [AIMessage(content=f"(reviewed answer, {len(state['messages'][-1].text)} chars)")]}

    builder = StateGraph(MessagesState)
    builder.add_node("moa", create_moa_graph().compile(name="moa"))
    builder.add_node("sign_off", sign_off)
    builder.add_edge(START, "moa")
    builder.add_edge("moa", "sign_off")
    builder.add_edge("sign_off", END)
    return builder.compile(checkpointer=InMemorySaver())


def choose(proposals: list[dict[str, Any]], keep: str | None) -> Any:
    """The review decision: keep everything, or only the slots in ``keep`` (e.g. "0,2")."""
    if keep is None:
        return True
    wanted = {int(s) for s in keep.split(",") if s.strip()}
    return {"proposals": [p for p in proposals if p["slot"] in wanted]}


async def run(question: str, config: MoAConfig, keep: str | None = None) -> list[str]:
    """Ask ``question``, review the proposals, and return the conversation's texts."""
    graph = build_parent()
    thread = {"configurable": {"thread_id": "example"}}
    result = await graph.ainvoke({"messages": [("user", question)]}, thread, context=config)
    while result.get("__interrupt__"):
        request = result["__interrupt__"][0].value
        if "error" in request:  # the review asked again: the choice was not usable
            raise SystemExit(f"review: {request['error']}")
        for p in request["proposals"]:
            print(f"[proposal {p['slot']}] {p['model']}: {p['content'][:100]}")
        decision = choose(request["proposals"], keep)
        result = await graph.ainvoke(Command(resume=decision), thread, context=config)
    return [m.text for m in result["messages"]]


def main(argv: list[str] | None = None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("question", nargs="?", default="What are three fun things to do in San Francisco?")
    parser.add_argument("--base-url", help="OpenAI-compatible endpoint; default: the simulated server")
    parser.add_argument("--model", default="model", help="the served model's name (used for every role)")
    parser.add_argument("--keep", help="proposal slots to keep, e.g. 0,2 (default: all)")
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        base_url = args.base_url or stack.enter_context(SimulatedOpenAIServer()).base_url
        model = f"openai:{args.model}"
        config = MoAConfig(proposers=[model, model, model], aggregator=model, base_url=base_url, review=True)
        texts = asyncio.run(run(args.question, config, args.keep))
    for text in texts:
        print(text)
    return texts


if __name__ == "__main__":
    main()
