"""The graph's structure and behaviour with in-process fake models."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, SystemMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, MessagesState, StateGraph

from langgraph_moa import (
    AggregatorError,
    LayerFailedError,
    MoAConfig,
    create_moa_graph,
)
from langgraph_moa.prompts import AGGREGATE_AND_SYNTHESIZE
from tests.conftest import user
from tests.fakes import EchoModel


def fakes(*names: str, **kw) -> dict[str, EchoModel]:
    return {f"fake:{n}": EchoModel(name=n, **kw) for n in names}


def test_graph_shape_is_fan_out_join_aggregate() -> None:
    builder = create_moa_graph()
    nodes = {"prepare", "propose", "provisional", "join_layer", "steer", "review", "aggregate", "staircase"}
    assert set(builder.nodes) == nodes | {"__error_handler__propose"}  # records a failed proposer
    drawn = builder.compile().get_graph()
    edges = {(e.source, e.target) for e in drawn.edges}
    assert ("prepare", "propose") in edges and ("propose", "join_layer") in edges
    assert ("join_layer", "propose") in edges and ("join_layer", "aggregate") in edges
    assert ("join_layer", "review") in edges and ("review", "aggregate") in edges
    assert ("join_layer", "provisional") in edges and ("provisional", "join_layer") in edges


@pytest.mark.parametrize("layers", [1, 2, 3, 4])
async def test_layers_one_to_four(layers: int) -> None:
    models = fakes("a", "b", "agg")
    graph = create_moa_graph(models=models).compile()
    config = MoAConfig(layers=layers, proposers=["fake:a", "fake:b"], aggregator="fake:agg")
    state = await graph.ainvoke(user("hello"), context=config)
    proposer_layers = layers - 1
    assert len(models["fake:a"].prompts) == proposer_layers
    assert len(models["fake:agg"].prompts) == 1
    assert [p["layer"] for p in state["proposals"]] == [n for n in range(1, layers) for _ in (0, 1)]
    refs = 2 if layers > 1 else 0
    assert state["messages"][-1].content == f"agg: hello ({refs} refs)"
    # layer k > 1 proposers see exactly the answers of layer k - 1
    for k in range(2, layers):
        system = models["fake:a"].prompts[k - 1][0].text
        assert f"1. a: hello ({2 if k > 2 else 0} refs)" in system


async def test_references_in_proposer_order_and_same_model_twice() -> None:
    models = {"fake:slow": EchoModel(name="slow", delay=0.05), **fakes("fast", "agg")}
    graph = create_moa_graph(models=models).compile()
    config = MoAConfig(layers=2, proposers=["fake:slow", "fake:fast", "fake:slow"], aggregator="fake:agg")
    state = await graph.ainvoke({"messages": [SystemMessage("You are terse."), ("user", "q")]}, context=config)
    assert [(p["slot"], p["model"]) for p in state["proposals"]] == [
        (0, "fake:slow"),
        (1, "fake:fast"),
        (2, "fake:slow"),
    ]
    system = models["fake:agg"].prompts[0][0]
    assert system.content == (
        "You are terse.\n\n"
        + AGGREGATE_AND_SYNTHESIZE
        + "\n1. slow: q (0 refs)\n2. fast: q (0 refs)\n3. slow: q (0 refs)"
    )
    # the user's own system message stays first and single
    assert sum(1 for m in models["fake:agg"].prompts[0] if m.type == "system") == 1


async def test_failed_proposer_is_recorded_and_left_out() -> None:
    models = {**fakes("a", "agg"), "fake:bad": EchoModel(name="bad", fail_with=RuntimeError("boom"))}
    graph = create_moa_graph(models=models).compile()
    config = MoAConfig(layers=2, proposers=["fake:a", "fake:bad"], aggregator="fake:agg")
    state = await graph.ainvoke(user("q"), context=config)
    assert state["failures"] == [
        {"layer": 1, "slot": 1, "model": "fake:bad", "error_type": "RuntimeError", "message": "boom"}
    ]
    system = models["fake:agg"].prompts[0][0].text
    assert system.endswith("\n1. a: q (0 refs)")
    assert "None" not in system and "boom" not in system and "2." not in system.splitlines()[-1][:2]


async def test_failed_layer_names_every_failed_model() -> None:
    models = {
        **fakes("agg"),
        "fake:x": EchoModel(name="x", fail_with=ConnectionError("refused")),
        "fake:y": EchoModel(name="y", fail_with=ValueError("bad request")),
    }
    graph = create_moa_graph(models=models).compile()
    config = MoAConfig(layers=3, proposers=["fake:x", "fake:y"], aggregator="fake:agg")
    with pytest.raises(LayerFailedError) as info:
        await graph.ainvoke(user("q"), context=config)
    message = str(info.value)
    assert "layer 1 failed: 0 proposal(s) succeeded, min_proposals=1" in message
    assert "fake:x (slot 0): ConnectionError: refused" in message
    assert "fake:y (slot 1): ValueError: bad request" in message
    assert models["fake:agg"].prompts == []  # the run stopped before the aggregator


async def test_min_proposals_stops_a_partly_failed_layer() -> None:
    models = {**fakes("a", "agg"), "fake:bad": EchoModel(name="bad", fail_with=RuntimeError("no"))}
    graph = create_moa_graph(models=models).compile()
    config = MoAConfig(layers=2, proposers=["fake:a", "fake:bad"], aggregator="fake:agg", min_proposals=2)
    with pytest.raises(LayerFailedError, match="1 proposal\\(s\\) succeeded, min_proposals=2"):
        await graph.ainvoke(user("q"), context=config)


async def test_failed_aggregator_is_an_error_and_resume_reruns_only_it() -> None:
    agg = EchoModel(name="agg", fail_with=RuntimeError("down"))
    models = {**fakes("a", "b"), "fake:agg": agg}
    graph = create_moa_graph(models=models).compile(checkpointer=InMemorySaver())
    config = MoAConfig(layers=2, proposers=["fake:a", "fake:b"], aggregator="fake:agg")
    thread = {"configurable": {"thread_id": "t"}}
    with pytest.raises(AggregatorError, match="aggregator fake:agg failed: RuntimeError: down"):
        await graph.ainvoke(user("q"), thread, context=config)
    snapshot = await graph.aget_state(thread)
    assert snapshot.next == ("aggregate",)
    assert len(snapshot.values["proposals"]) == 2  # nothing computed is lost
    agg.fail_with = None
    state = await graph.ainvoke(None, thread, context=config)
    assert state["messages"][-1].content == "agg: q (2 refs)"
    assert len(models["fake:a"].prompts) == 1 and len(models["fake:b"].prompts) == 1


async def test_a_run_returns_its_state_without_the_configuration_it_checkpoints() -> None:
    # the configuration names the operator's endpoints: the checkpoint keeps it, the caller is not given it
    graph = create_moa_graph(models={**fakes("a"), "fake:agg": EchoModel(name="agg")}).compile(
        checkpointer=InMemorySaver()
    )
    config = MoAConfig(layers=2, proposers=["fake:a"], aggregator="fake:agg", base_url="http://10.0.0.7:8000/v1")
    thread = {"configurable": {"thread_id": "t"}}
    state = await graph.ainvoke(user("q"), thread, context=config)
    assert "moa_config" not in state and state["proposals"] and state["usage_summary"]
    assert (await graph.aget_state(thread)).values["moa_config"]["base_url"] == "http://10.0.0.7:8000/v1"


async def test_resuming_without_a_configuration_continues_with_the_turns_own() -> None:
    agg = EchoModel(name="agg")
    graph = create_moa_graph(models={**fakes("a"), "fake:agg": agg}).compile(
        checkpointer=InMemorySaver(), interrupt_before=["aggregate"]
    )
    config = MoAConfig(layers=2, proposers=["fake:a"], aggregator="fake:agg", temperature=0.1)
    thread = {"configurable": {"thread_id": "t"}}
    await graph.ainvoke(user("q"), thread, context=config)
    assert (await graph.aget_state(thread)).values["moa_config"] == config.model_dump(mode="json")
    other = MoAConfig(layers=2, proposers=["fake:a"], aggregator="fake:agg", temperature=0.2)
    with pytest.raises(ValueError, match="started with another MoA configuration"):
        await graph.ainvoke(None, thread, context=other)  # an explicitly different one is refused
    with pytest.raises(ValueError, match="started with another MoA configuration"):
        await graph.ainvoke(None, {"configurable": {"thread_id": "t", "temperature": 0.2}})
    assert agg.prompts == []
    state = await graph.ainvoke(None, thread)  # none: the turn's own (the defaults would call Together)
    assert state["messages"][-1].content == "agg: q (1 refs)"


async def test_a_new_turn_without_a_configuration_keeps_the_threads() -> None:
    graph = create_moa_graph(models=fakes("a", "agg")).compile(checkpointer=InMemorySaver())
    config = MoAConfig(layers=2, proposers=["fake:a"], aggregator="fake:agg")
    thread = {"configurable": {"thread_id": "t"}}
    await graph.ainvoke(user("first"), thread, context=config)
    state = await graph.ainvoke(user("second"), thread)  # no context: the thread's (defaults would call Together)
    assert state["messages"][-1].content == "agg: second (1 refs)"
    with pytest.raises(Exception, match="TOGETHER_API_KEY"):  # a named one starts the turn with it
        await graph.ainvoke(user("third"), {"configurable": {"thread_id": "t", "preset": "moa-lite"}})


async def test_resuming_with_the_same_configuration_continues() -> None:
    graph = create_moa_graph(models=fakes("a", "agg")).compile(
        checkpointer=InMemorySaver(), interrupt_before=["aggregate"]
    )
    config = MoAConfig(layers=2, proposers=["fake:a"], aggregator="fake:agg")
    thread = {"configurable": {"thread_id": "t"}}
    await graph.ainvoke(user("q"), thread, context=config)
    state = await graph.ainvoke(None, thread, context=config)
    assert state["messages"][-1].content == "agg: q (1 refs)"


def _edit(snapshot) -> dict:
    """What a Studio user edits at a checkpoint: the question before ``prepare``, else the latest proposal."""
    if snapshot.next == ("prepare",):
        return {"messages": [("user", "edited question")]}
    proposals = snapshot.values.get("proposals", [])
    if not proposals:
        return {"messages": [("user", "edited question")]}
    last = proposals[-1]
    return {"proposals": [{**last, "content": "EDITED PROPOSAL"}]}


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_edit_state_and_fork_at_every_checkpoint_of_a_three_layer_run(mode: str) -> None:
    models = fakes("a", "b", "agg")
    graph = create_moa_graph(models=models).compile(checkpointer=InMemorySaver())
    config = MoAConfig(layers=3, proposers=["fake:a", "fake:b"], aggregator="fake:agg")
    thread = {"configurable": {"thread_id": "t"}}
    await graph.ainvoke(user("q"), thread, context=config)
    history = [s async for s in graph.aget_state_history(thread)]
    checkpoints = [s for s in history if s.next]
    assert [s.next for s in checkpoints] == [
        ("aggregate",),
        ("join_layer",),
        ("propose", "propose"),
        ("join_layer",),
        ("propose", "propose"),
        ("prepare",),
        ("__start__",),
    ]
    for snapshot in checkpoints:
        edit = _edit(snapshot)
        for model in models.values():
            model.prompts.clear()
        # what Studio's "edit and fork" does: update_state at the checkpoint, then run the fork on
        # without a context (the turn's configuration is in the state). Before join_layer the edit
        # is written as a proposer's (LangGraph's default there is join_layer, which would run the
        # layer again and overwrite it); elsewhere LangGraph's default applies.
        as_node = "propose" if snapshot.next == ("join_layer",) else None
        # a fork before the first `prepare` starts the turn anew: it is given the configuration
        context = None if "moa_config" in snapshot.values else config
        if mode == "sync":
            fork = graph.update_state(snapshot.config, edit, as_node=as_node)
            state = graph.invoke(None, fork, context=context)
        else:
            fork = await graph.aupdate_state(snapshot.config, edit, as_node=as_node)
            state = await graph.ainvoke(None, fork, context=context)
        answer = state["messages"][-1]
        assert answer.type == "ai" and answer.content.startswith("agg: "), snapshot.next
        prompts = [m.text for model in models.values() for p in model.prompts for m in p]
        if "proposals" in edit:
            assert any("EDITED PROPOSAL" in text for text in prompts), snapshot.next
        elif snapshot.next != ("__start__",):
            assert answer.content.startswith("agg: edited question"), snapshot.next


async def test_empty_aggregator_answer_is_an_error() -> None:
    class Empty(EchoModel):
        def _answer(self, messages):  # type: ignore[override]
            return AIMessage(content="")

    graph = create_moa_graph(models={"fake:agg": Empty()}).compile()
    with pytest.raises(AggregatorError, match="EmptyResponseError"):
        await graph.ainvoke(user("q"), context=MoAConfig(layers=1, proposers=[], aggregator="fake:agg"))


async def test_multi_turn_references_do_not_leak() -> None:
    models = fakes("a", "agg")
    graph = create_moa_graph(models=models).compile(checkpointer=InMemorySaver())
    config = MoAConfig(layers=2, proposers=["fake:a"], aggregator="fake:agg")
    thread = {"configurable": {"thread_id": "chat"}}
    await graph.ainvoke(user("first"), thread, context=config)
    state = await graph.ainvoke(user("second"), thread, context=config)
    assert [m.type for m in state["messages"]] == ["human", "ai", "human", "ai"]
    expected = {"layer": 1, "slot": 0, "model": "fake:a", "content": "a: second (0 refs)", "seed": None}
    assert state["proposals"] == [expected]
    system = models["fake:agg"].prompts[1][0].text
    assert system.endswith("\n1. a: second (0 refs)") and "first (0 refs)" not in system
    # the second turn's proposer sees the history but no references of the first turn
    assert models["fake:a"].prompts[1][0].type == "human"
    assert len(state["usage"]) == 2  # usage is per turn


async def test_configurable_drives_a_run_without_context() -> None:
    models = fakes("a", "b", "agg")
    graph = create_moa_graph(models=models).compile()
    state = await graph.ainvoke(
        user("q"),
        {"configurable": {"layers": 3, "proposers": ["fake:b"], "aggregator": "fake:agg"}},
    )
    assert len(models["fake:b"].prompts) == 2 and models["fake:a"].prompts == []
    assert state["messages"][-1].content == "agg: q (1 refs)"


async def test_composes_as_a_subgraph_of_a_messages_state_graph() -> None:
    models = fakes("a", "agg")
    moa = create_moa_graph(models=models).compile()

    parent = StateGraph(MessagesState, context_schema=MoAConfig)
    parent.add_node("moa", moa)
    parent.add_edge(START, "moa")
    app = parent.compile()
    config = MoAConfig(layers=2, proposers=["fake:a"], aggregator="fake:agg")
    state = await app.ainvoke(user("q"), context=config)
    assert state["messages"][-1].content == "agg: q (1 refs)"
    assert set(state) == {"messages"}


async def test_usage_is_recorded_per_call_and_summed() -> None:
    models = fakes("a", "b", "agg")
    graph = create_moa_graph(models=models).compile()
    config = MoAConfig(
        layers=2,
        proposers=["fake:a", "fake:b"],
        aggregator="fake:agg",
        prices={"fake:agg": {"input": 1e6, "output": 0}},
    )
    state = await graph.ainvoke(user("one two"), context=config)
    records = state["usage"]
    assert sorted((r["layer"], r["slot"], r["role"]) for r in records) == [
        (1, 0, "proposer"),
        (1, 1, "proposer"),
        (2, 0, "aggregator"),
    ]
    summary = state["usage_summary"]
    assert summary["total"]["input_tokens"] == sum(r["input_tokens"] for r in records)
    assert summary["by_layer"]["1"]["output_tokens"] == records[0]["output_tokens"] + records[1]["output_tokens"]
    agg_in = next(r["input_tokens"] for r in records if r["role"] == "aggregator")
    assert summary["cost_usd"] == pytest.approx(agg_in * 1.0)  # $1e6 per 1M input tokens = $1 per token
    assert summary["unpriced_models"] == ["fake:a", "fake:b"]


async def test_calls_without_usage_are_counted_not_invented() -> None:
    class NoUsage(EchoModel):
        def _answer(self, messages):  # type: ignore[override]
            return AIMessage(content="an answer")

    graph = create_moa_graph(models={"fake:agg": NoUsage()}).compile()
    state = await graph.ainvoke(user("q"), context=MoAConfig(layers=1, proposers=[], aggregator="fake:agg"))
    assert state["usage"] == [
        {
            "layer": 1,
            "slot": 0,
            "model": "fake:agg",
            "role": "aggregator",
            "input_tokens": 0,
            "output_tokens": 0,
            "reported": False,
        }
    ]
    assert state["usage_summary"]["unreported_calls"] == 1


async def test_empty_input_is_rejected() -> None:
    graph = create_moa_graph(models=fakes("agg")).compile()
    with pytest.raises(ValueError, match="the input has no messages"):
        await graph.ainvoke({"messages": []}, context=MoAConfig(layers=1, proposers=[], aggregator="fake:agg"))


@pytest.mark.parametrize("layers", [3, 4])
def test_the_aggregator_reads_the_last_proposer_layer(layers: int) -> None:
    models = fakes("a", "b", "agg")
    config = MoAConfig(layers=layers, proposers=["fake:a", "fake:b"], aggregator="fake:agg")
    create_moa_graph(models=models).compile().invoke(user("hello"), context=config)
    (prompt,) = models["fake:agg"].prompts
    system = prompt[0].text
    # layer 1 answered with 0 references, every later layer with 2: the aggregator sees the last one's
    assert "1. a: hello (2 refs)" in system and "2. b: hello (2 refs)" in system
    assert "(0 refs)" not in system


def test_only_the_aggregators_tokens_are_the_answer_in_a_parent_graph() -> None:
    """A parent graph streams MoA (a subgraph) and a model of its own: is_aggregator_token keeps MoA's answer."""
    from langgraph_moa import is_aggregator_token

    models = fakes("a", "agg")
    moa = create_moa_graph(models=models).compile()
    other = EchoModel(name="other")

    def comment(state: MessagesState) -> dict:
        return {"messages": [other.invoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("moa", moa)
    builder.add_node("comment", comment)
    builder.add_edge(START, "moa")
    builder.add_edge("moa", "comment")
    config = MoAConfig(proposers=["fake:a", "fake:a"], aggregator="fake:agg")
    kept, dropped = [], []
    for _, (token, metadata) in builder.compile().stream(
        user("hi"), context=config, stream_mode="messages", subgraphs=True
    ):
        (kept if is_aggregator_token(metadata) else dropped).append(token.text)
    assert "".join(kept).strip() == "agg: hi (2 refs)"
    assert "".join(dropped).strip().startswith("other: hi")  # the parent's own model is not the answer
