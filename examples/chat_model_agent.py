"""``ChatMoA`` driving a tool-calling agent, and an agent with tools as a proposer.

Two ways to give MoA tools:

1. ``create_agent(ChatMoA(...), tools=[...])``: the aggregator calls the tools; the
   proposers read the tool results (as text) and write their answers each turn.
2. ``create_moa_graph(models={"agent:researcher": agent})``: one proposer is an
   agent with tools of its own; its tool calls stay inside it and its final
   answer is its proposal, next to plain model proposers.

Run it against any OpenAI-compatible server whose model can call tools::

    python examples/chat_model_agent.py --base-url http://127.0.0.1:8080/v1 --model my-model

or with no arguments, against the package's simulated server, scripted here to
call the tool once and then answer.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from typing import Any

from langchain.agents import create_agent
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

from langgraph_moa import ChatMoA, MoAConfig, create_moa_graph
from langgraph_moa.testing import ModelBehavior, SimulatedOpenAIServer


@tool
def city_population(city: str) -> str:
    """The population of a city (a fixed table, for the example)."""
    table = {"paris": "2.1 million", "tokyo": "14 million"}
    return f"{city}: {table.get(city.lower(), 'unknown')}"


def _scripted_tool_use(request: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The simulated model: call the offered tool once, then answer."""
    if request.get("tools") and request["messages"][-1]["role"] != "tool":
        return [{"name": "city_population", "arguments": {"city": "Paris"}}]
    return None


async def run(base_url: str, model: str) -> dict[str, str]:
    name = f"openai:{model}"
    config = MoAConfig(proposers=[name, name], aggregator=name, base_url=base_url)

    # 1. MoA as the agent's chat model: the aggregator calls the tool
    agent = create_agent(ChatMoA(config=config), tools=[city_population])
    looped = await agent.ainvoke({"messages": [("user", "How many people live in Paris?")]})

    # 2. an agent with tools as one proposer
    llm = ChatOpenAI(model=model, base_url=base_url, api_key="not-needed")
    researcher = create_agent(llm, tools=[city_population])
    graph = create_moa_graph(models={"agent:researcher": researcher}).compile()
    with_agent = MoAConfig(proposers=[name, name, "agent:researcher"], aggregator=name, base_url=base_url)
    result = await graph.ainvoke({"messages": [("user", "How many people live in Paris?")]}, context=with_agent)
    return {
        "agent answer": looped["messages"][-1].text,
        "tool calls by the aggregator": str(sum(len(getattr(m, "tool_calls", [])) for m in looped["messages"])),
        "researcher proposal": next(p["content"] for p in result["proposals"] if p["model"] == "agent:researcher"),
        "moa answer": result["messages"][-1].text,
    }


def main(argv: list[str] | None = None) -> dict[str, str]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base-url", help="OpenAI-compatible endpoint; default: the simulated server")
    parser.add_argument("--model", default="model", help="the served model's name")
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        base_url = args.base_url
        if base_url is None:
            behavior = ModelBehavior(tool_calls=_scripted_tool_use)
            base_url = stack.enter_context(SimulatedOpenAIServer({args.model: behavior})).base_url
        results = asyncio.run(run(base_url, args.model))
    for key, value in results.items():
        print(f"{key}: {value}")
    return results


if __name__ == "__main__":
    main()
