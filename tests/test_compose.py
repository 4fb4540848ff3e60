"""MoA inside larger graphs: as a subgraph, as a chat model in an agent loop, with
agent proposers that use tools, and with a human review before the aggregation."""

from __future__ import annotations

from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.types import Command
from pydantic import ValidationError
from typing_extensions import TypedDict

from langgraph_moa import ChatMoA, ConfigError, MoAConfig, create_moa_graph
from langgraph_moa.testing import Fault, ModelBehavior, SimulatedOpenAIServer, _usage
from tests.conftest import sim_config, user

THREAD = {"configurable": {"thread_id": "t1"}}


def parent_graph(moa: Any) -> StateGraph:
    """A MessagesState graph: the MoA graph, then a node that reads its answer."""

    def after(state: MessagesState) -> dict[str, Any]:
        return {"messages": [AIMessage(content=f"parent saw: {state['messages'][-1].text}")]}

    builder = StateGraph(MessagesState)
    builder.add_node("moa", moa)
    builder.add_node("after", after)
    builder.add_edge(START, "moa")
    builder.add_edge("moa", "after")
    builder.add_edge("after", END)
    return builder


async def test_compiled_graph_is_a_node_of_a_messages_graph(server: SimulatedOpenAIServer) -> None:
    parent = parent_graph(create_moa_graph().compile()).compile(checkpointer=InMemorySaver())
    config = sim_config(server, ["a", "b"])
    seen: list[tuple[tuple[str, ...], str]] = []
    async for namespace, update in parent.astream(
        user("hi"), THREAD, context=config, subgraphs=True, stream_mode="updates"
    ):
        seen.extend((namespace, node) for node in update)
    inner = [node for ns, node in seen if ns and ns[0].startswith("moa:")]
    assert inner.count("propose") == 2 and "join_layer" in inner and "aggregate" in inner
    assert [node for ns, node in seen if not ns] == ["moa", "after"]
    state = await parent.aget_state(THREAD)
    texts = [m.text for m in state.values["messages"]]
    assert texts == ["hi", "agg answer to: hi [refs=2]", "parent saw: agg answer to: hi [refs=2]"]
    assert "proposals" not in state.values  # the parent keeps only the keys it declares


async def test_moa_called_from_a_node_with_another_state_schema(server: SimulatedOpenAIServer) -> None:
    moa = create_moa_graph().compile()
    config = sim_config(server, ["a", "b"])

    class Report(TypedDict, total=False):
        question: str
        answer: str
        proposals_used: int

    async def ask_moa(state: Report) -> dict[str, Any]:
        result = await moa.ainvoke(user(state["question"]), context=config)
        return {"answer": result["messages"][-1].text, "proposals_used": len(result["proposals"])}

    builder = StateGraph(Report)
    builder.add_node("ask_moa", ask_moa)
    builder.add_edge(START, "ask_moa")
    result = await builder.compile(checkpointer=InMemorySaver()).ainvoke({"question": "why?"}, THREAD)
    assert result == {"question": "why?", "answer": "agg answer to: why? [refs=2]", "proposals_used": 2}


async def test_review_interrupt_crosses_the_parent_and_resumes(server: SimulatedOpenAIServer) -> None:
    parent = parent_graph(create_moa_graph().compile()).compile(checkpointer=InMemorySaver())
    config = sim_config(server, ["a", "b"], review=True)
    paused = await parent.ainvoke(user("hi"), THREAD, context=config)
    (pending,) = paused["__interrupt__"]
    assert [p["model"] for p in pending.value["proposals"]] == ["openai:a", "openai:b"]
    assert server.calls("agg") == 0  # nothing aggregated before the review
    edited = {**pending.value["proposals"][1], "content": "b, edited by a person"}
    done = await parent.ainvoke(Command(resume={"proposals": [edited]}), THREAD, context=config)
    assert done["messages"][-1].text == "parent saw: agg answer to: hi [refs=1]"
    system = server.requests_for("agg")[0]["messages"][0]["content"]
    assert "1. b, edited by a person" in system and "answer to: hi" not in system
    assert server.calls("a") == server.calls("b") == 1  # resuming did not call the proposers again


async def test_review_keeps_edits_or_drops_and_checks_the_resume_value(server: SimulatedOpenAIServer) -> None:
    graph = create_moa_graph().compile(checkpointer=InMemorySaver())
    config = sim_config(server, ["a", "b", "c"], review=True, min_proposals=2)
    await graph.ainvoke(user("hi"), THREAD, context=config)
    again = await graph.ainvoke(Command(resume={"proposals": ["only one"]}), THREAD, context=config)
    assert "review kept 1 proposal(s) but min_proposals=2" in again["__interrupt__"][0].value["error"]
    again = await graph.ainvoke(Command(resume="yes please"), THREAD, context=config)
    assert "resume with True" in again["__interrupt__"][0].value["error"]
    assert len(again["__interrupt__"][0].value["proposals"]) == 3  # the request is shown again, intact
    state = await graph.ainvoke(Command(resume=True), THREAD, context=config)  # keep all three
    assert state["messages"][-1].text == "agg answer to: hi [refs=3]"
    assert len(state["proposals"]) == 3


@tool
def lookup_population(city: str) -> str:
    """Population of a city."""
    return f"{city} has 2,102,650 inhabitants"


def _call_lookup(request: dict[str, Any]) -> list[dict[str, Any]] | None:
    if request.get("tools") and request["messages"][-1]["role"] != "tool":
        return [{"name": "lookup_population", "arguments": {"city": "Paris"}}]
    return None


def _after_tool(messages: list[dict[str, Any]]) -> str | None:
    results = [m["content"] for m in messages if m["role"] == "tool"]
    return f"researcher: {results[-1]}" if results else None


async def test_an_agent_with_tools_is_a_proposer_beside_plain_models(server: SimulatedOpenAIServer) -> None:
    server.set_behavior("researcher", ModelBehavior(tool_calls=_call_lookup, reply=_after_tool))
    researcher_model = ChatOpenAI(model="researcher", base_url=server.base_url, api_key="x")
    researcher = create_agent(researcher_model, tools=[lookup_population])
    graph = create_moa_graph(models={"agent:researcher": researcher}).compile()
    config = MoAConfig(proposers=["openai:a", "agent:researcher"], aggregator="openai:agg", base_url=server.base_url)
    state = await graph.ainvoke(user("How many people live in Paris?"), context=config)
    by_model = {p["model"]: p["content"] for p in state["proposals"]}
    assert by_model["agent:researcher"] == "researcher: Paris has 2,102,650 inhabitants"
    assert server.calls("researcher") == 2  # the tool call, then the answer from its result
    aggregator_prompt = server.requests_for("agg")[0]["messages"][0]["content"]
    assert "2. researcher: Paris has 2,102,650 inhabitants" in aggregator_prompt
    # the agent's tool turns stay inside it: the conversation holds the question and the answer
    assert [type(m) for m in state["messages"]] == [HumanMessage, AIMessage]
    (researcher_usage,) = [u for u in state["usage"] if u["model"] == "agent:researcher"]
    prompts = [_usage(r["messages"], "")["prompt_tokens"] for r in server.requests_for("researcher")]
    assert researcher_usage["reported"] and researcher_usage["input_tokens"] == sum(prompts)  # both calls


async def test_chat_moa_drives_a_tool_calling_agent(server: SimulatedOpenAIServer) -> None:
    server.set_behavior("agg", ModelBehavior(tool_calls=_call_lookup))
    llm = ChatMoA(config=sim_config(server, ["a", "b"]))
    agent = create_agent(llm, tools=[lookup_population])
    result = await agent.ainvoke(user("How many people live in Paris?"))
    kinds = [type(m) for m in result["messages"]]
    assert kinds == [HumanMessage, AIMessage, ToolMessage, AIMessage]
    assert result["messages"][1].tool_calls[0]["args"] == {"city": "Paris"}
    # on the second turn, the proposers saw the tool result as text, not as a tool message
    second = server.requests_for("a")[-1]["messages"]
    assert [m["role"] for m in second] == ["system", "user", "assistant", "user"]
    assert "[result of tool lookup_population]" in second[-1]["content"]
    assert "- lookup_population" in second[0]["content"]  # and the tools the aggregator may call, as text
    # the aggregator, which has the tools, gets the tool turns as they are
    last_aggregation = server.requests_for("agg")[-1]["messages"]
    assert [m["role"] for m in last_aggregation] == ["system", "user", "assistant", "tool"]
    assert last_aggregation[-1]["content"] == "Paris has 2,102,650 inhabitants"
    assert result["messages"][-1].text == (
        "agg answer to: How many people live in Paris? [refs=2] [tool results: Paris has 2,102,650 inhabitants]"
    )


async def test_chat_moa_streams_into_a_parent_graph_once(server: SimulatedOpenAIServer) -> None:
    llm = ChatMoA(config=sim_config(server, ["a", "b"]))

    async def call(state: MessagesState) -> dict[str, Any]:
        return {"messages": [await llm.ainvoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("call", call)
    builder.add_edge(START, "call")
    graph = builder.compile(checkpointer=InMemorySaver())
    tokens = [
        chunk.text async for chunk, meta in graph.astream(user("hi"), THREAD, stream_mode="messages") if chunk.text
    ]
    assert "".join(tokens) == "agg answer to: hi [refs=2]"  # once, and no proposer tokens
    state = await graph.aget_state(THREAD)
    assert state.values["messages"][-1].usage_metadata["input_tokens"] > 0
    assert list(state.values) == ["messages"]  # MoA's own keys stay in its own run
    namespaces = {c.config["configurable"]["checkpoint_ns"] async for c in graph.checkpointer.alist(THREAD)}
    assert namespaces == {""}  # the MoA run did not become a subgraph of this one


def test_chat_moa_streams_into_a_sync_parent_graph_once(server: SimulatedOpenAIServer) -> None:
    llm = ChatMoA(config=sim_config(server, ["a", "b"]))

    def call(state: MessagesState) -> dict[str, Any]:
        return {"messages": [llm.invoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("call", call)
    builder.add_edge(START, "call")
    graph = builder.compile(checkpointer=InMemorySaver())
    tokens = [chunk.text for chunk, meta in graph.stream(user("hi"), THREAD, stream_mode="messages") if chunk.text]
    assert "".join(tokens) == "agg answer to: hi [refs=2]"  # once, and no proposer tokens
    assert list(graph.get_state(THREAD).values) == ["messages"]  # MoA's own keys stay in its own run
    namespaces = {c.config["configurable"]["checkpoint_ns"] for c in graph.checkpointer.list(THREAD)}
    assert namespaces == {""}  # the MoA run did not become a subgraph of this one


async def test_a_ready_model_with_bound_tools_is_still_called_with_messages(server: SimulatedOpenAIServer) -> None:
    server.set_behavior("tooled", ModelBehavior(tool_calls=lambda request: None))  # answers in text, tools or not
    bound = ChatOpenAI(model="tooled", base_url=server.base_url, api_key="x").bind_tools([lookup_population])
    graph = create_moa_graph(models={"openai:tooled": bound}).compile()
    config = MoAConfig(proposers=["openai:tooled", "openai:a"], aggregator="openai:agg", base_url=server.base_url)
    state = await graph.ainvoke(user("hi"), context=config)
    assert [p["content"] for p in state["proposals"]] == ["tooled answer to: hi [refs=0]", "a answer to: hi [refs=0]"]
    assert server.requests_for("tooled")[0]["tools"][0]["function"]["name"] == "lookup_population"


async def test_review_of_a_later_layer_keeps_earlier_layers_and_shows_failures(server: SimulatedOpenAIServer) -> None:
    server.set_behavior("bad", ModelBehavior(faults=[Fault(400, times=10)]))
    graph = create_moa_graph().compile(checkpointer=InMemorySaver())
    # the failure holds slot 0, the first one a reviewed proposal would take if slots started over
    config = sim_config(server, ["bad", "a", "b"], review=True, layers=3, max_retries=0)
    paused = await graph.ainvoke(user("hi"), THREAD, context=config)
    request = paused["__interrupt__"][0].value
    assert request["layer"] == 2 and [f["model"] for f in request["failures"]] == ["openai:bad"]
    state = await graph.ainvoke(Command(resume={"proposals": ["mine"]}), THREAD, context=config)
    layer1 = [p for p in state["proposals"] if p["layer"] == 1]
    assert [p["model"] for p in layer1] == ["openai:a", "openai:b"]  # untouched by the review
    (mine,) = [p for p in state["proposals"] if p["layer"] == 2]
    assert mine["model"] == "reviewer" and mine["slot"] not in {f["slot"] for f in state["failures"]}
    assert [(f["layer"], f["slot"]) for f in state["failures"]] == [(1, 0), (2, 0)]


async def test_review_needs_a_checkpointer_and_a_proposer_layer(server: SimulatedOpenAIServer) -> None:
    with pytest.raises(ConfigError, match="needs a checkpointer"):
        await create_moa_graph().compile().ainvoke(user("hi"), context=sim_config(server, ["a"], review=True))
    assert server.calls() == 0  # refused before any call
    with pytest.raises(ValidationError, match="review=True needs a proposer layer"):
        sim_config(server, ["a"], review=True, layers=1)
