"""Provisional answers (MoAConfig.provisional_answers) over HTTP."""

from __future__ import annotations

from langgraph.checkpoint.memory import InMemorySaver

from langgraph_moa import MoAConfig, create_moa_graph
from langgraph_moa.stream import is_aggregator_token
from langgraph_moa.testing import Fault, ModelBehavior, SimulatedOpenAIServer
from tests.conftest import user


def three_layers(server: SimulatedOpenAIServer, **kw) -> MoAConfig:
    return MoAConfig(
        layers=3,
        layer_proposers=[["openai:a0", "openai:a1", "openai:a2"], ["openai:b0", "openai:b1"]],
        aggregator="openai:agg",
        base_url=server.base_url,
        **kw,
    )


async def run(graph, config: MoAConfig, thread: dict | None = None):
    events, tokens, state = [], [], {}
    async for mode, chunk in graph.astream(
        user("q"), thread, context=config, stream_mode=["custom", "messages", "values"]
    ):
        if mode == "custom":
            events.append(chunk)
        elif mode == "messages":
            if is_aggregator_token(chunk[1]):
                tokens.append(chunk[0].text)
        else:
            state = chunk
    return events, "".join(tokens), state


async def test_a_provisional_answer_from_layer_one_streams_before_the_final_one(
    server: SimulatedOpenAIServer,
) -> None:
    server.set_behavior("agg", ModelBehavior(chunk_words=1))
    graph = create_moa_graph().compile()
    events, final_tokens, state = await run(graph, three_layers(server, provisional_answers=True))
    names = [e["event"] for e in events]
    # shown while layer 2 runs: every provisional event comes before layer 2 closes
    assert names.index("provisional_started") < names.index("provisional_token")
    assert max(i for i, n in enumerate(names) if n.startswith("provisional")) < names.index("aggregator_started")
    answer = next(e for e in events if e["event"] == "provisional_answer")
    tokens = "".join(e["text"] for e in events if e["event"] == "provisional_token")
    # built from layer 1's three proposals, and says so
    assert tokens == answer["content"] == "agg answer to: q [refs=3]"
    assert answer["layer"] == 1 and answer["built_from"] == ["openai:a0", "openai:a1", "openai:a2"]
    assert state["provisional_answers"] == [{k: answer[k] for k in state["provisional_answers"][0]}]
    # the final answer is the aggregator's over layer 2, and only its tokens are the answer's
    assert state["messages"][-1].content == final_tokens == "agg answer to: q [refs=2]"
    assert server.calls("agg") == 2
    assert [r["role"] for r in state["usage"]].count("provisional") == 1


async def test_no_provisional_answer_unless_asked_or_with_two_layers(server: SimulatedOpenAIServer) -> None:
    graph = create_moa_graph().compile()
    events, _, state = await run(graph, three_layers(server))
    assert not any(e["event"].startswith("provisional") for e in events) and server.calls("agg") == 1
    config = MoAConfig(proposers=["openai:a0"], aggregator="openai:agg", base_url=server.base_url)
    await graph.ainvoke(user("q"), context=config.model_copy(update={"provisional_answers": True}))
    assert server.calls("agg") == 2


async def test_a_failed_provisional_answer_leaves_the_run_alone(server: SimulatedOpenAIServer) -> None:
    server.set_behavior("agg", ModelBehavior(faults=[Fault(400)]))  # the first agg call is the provisional one
    graph = create_moa_graph().compile()
    events, _, state = await run(graph, three_layers(server, provisional_answers=True))
    failed = next(e for e in events if e["event"] == "provisional_failed")
    assert failed["layer"] == 1 and failed["error_type"] == "BadRequestError"
    assert state["messages"][-1].content == "agg answer to: q [refs=2]"
    assert state.get("provisional_answers", []) == []


async def test_provisional_answers_are_reset_by_the_next_turn(server: SimulatedOpenAIServer) -> None:
    graph = create_moa_graph().compile(checkpointer=InMemorySaver())
    thread = {"configurable": {"thread_id": "t"}}
    _, _, state = await run(graph, three_layers(server, provisional_answers=True), thread)
    assert len(state["provisional_answers"]) == 1
    _, _, state = await run(graph, three_layers(server), thread)
    assert state["provisional_answers"] == []


def test_provisional_answers_under_sync_invoke(server: SimulatedOpenAIServer) -> None:
    graph = create_moa_graph().compile()
    events = []
    for mode, chunk in graph.stream(
        user("q"), context=three_layers(server, provisional_answers=True), stream_mode=["custom", "values"]
    ):
        if mode == "custom":
            events.append(chunk["event"])
        else:
            state = chunk
    assert "provisional_token" in events and state["provisional_answers"][0]["content"] == "agg answer to: q [refs=3]"
    assert state["messages"][-1].content == "agg answer to: q [refs=2]"
