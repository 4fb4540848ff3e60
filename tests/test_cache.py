"""The proposal cache: LangGraph's node cache on ``propose``, over HTTP."""

from __future__ import annotations

import pytest
from langgraph.cache.memory import InMemoryCache
from langgraph.checkpoint.memory import InMemorySaver

from langgraph_moa import ModelSpec, create_moa_graph
from langgraph_moa.cache import proposal_cache, proposal_cache_key
from langgraph_moa.testing import Fault, ModelBehavior, SimulatedOpenAIServer
from tests.conftest import sim_config, user


async def test_an_identical_turn_makes_no_proposer_call(server: SimulatedOpenAIServer) -> None:
    graph = create_moa_graph().compile(cache=InMemoryCache())
    config = sim_config(server, ["p1", "p2"], seed=7, layers=3)
    first = await graph.ainvoke(user("q"), context=config)
    assert server.calls("p1") == 2 and server.calls("p2") == 2 and server.calls("agg") == 1
    second = await graph.ainvoke(user("q"), context=config)
    assert server.calls("p1") == 2 and server.calls("p2") == 2  # both layers came from the cache
    assert server.calls("agg") == 2  # the aggregator is not cached
    assert second["proposals"] == first["proposals"]
    assert second["messages"][-1].content == first["messages"][-1].content
    # replayed calls cost nothing: counted apart, left out of the tokens
    assert first["usage_summary"]["cached_calls"] == 0 and second["usage_summary"]["cached_calls"] == 4
    agg_tokens = first["usage_summary"]["by_model"]["openai:agg"]
    assert second["usage_summary"]["total"] == agg_tokens


async def test_whatever_shapes_the_answer_is_in_the_key(server: SimulatedOpenAIServer) -> None:
    graph = create_moa_graph().compile(cache=InMemoryCache())
    base = sim_config(server, ["p1"], seed=7, layers=2)
    await graph.ainvoke(user("q"), context=base)
    assert server.calls("p1") == 1
    changes = [
        {"temperature": 0.1},
        {"max_tokens": 7},
        {"proposers": [ModelSpec(model="openai:p1", seed=3)]},
        {"seed": 8},
        {"aggregation_prompt": "Other answers:"},
    ]
    for n, change in enumerate(changes, start=2):
        await graph.ainvoke(user("q"), context=base.model_copy(update=change))
        assert server.calls("p1") == n, change
    await graph.ainvoke(user("another question"), context=base)
    assert server.calls("p1") == len(changes) + 2
    # a setting that does not shape the answer keeps the entry
    await graph.ainvoke(user("q"), context=base.model_copy(update={"timeout": 99.0}))
    assert server.calls("p1") == len(changes) + 2


async def test_failures_are_not_cached(server: SimulatedOpenAIServer) -> None:
    server.set_behavior("flaky", ModelBehavior(faults=[Fault(400, message="bad request")]))
    graph = create_moa_graph().compile(cache=InMemoryCache())
    config = sim_config(server, ["ok", "flaky"], seed=7, layers=2)
    first = await graph.ainvoke(user("q"), context=config)
    assert [f["model"] for f in first["failures"]] == ["openai:flaky"]
    assert [p["model"] for p in first["proposals"]] == ["openai:ok"]
    second = await graph.ainvoke(user("q"), context=config)
    assert server.calls("flaky") == 2 and server.calls("ok") == 1  # only the failed one is called again
    assert second["failures"] == []
    assert [p["model"] for p in second["proposals"]] == ["openai:ok", "openai:flaky"]


async def test_hits_land_in_their_own_layer_and_slot(server: SimulatedOpenAIServer) -> None:
    # the same model twice in a layer with the same settings: two entries, two slots
    graph = create_moa_graph().compile(cache=InMemoryCache(), checkpointer=InMemorySaver())
    config = sim_config(server, ["p", "p"], seed=7, layers=3)
    await graph.ainvoke(user("q"), {"configurable": {"thread_id": "a"}}, context=config)
    assert server.calls("p") == 4
    state = await graph.ainvoke(user("q"), {"configurable": {"thread_id": "b"}}, context=config)
    assert server.calls("p") == 4
    assert [(p["layer"], p["slot"]) for p in state["proposals"]] == [(1, 0), (1, 1), (2, 0), (2, 1)]
    assert state["messages"][-1].content.endswith("[refs=2]")


async def test_sqlite_cache_survives_the_graph(server: SimulatedOpenAIServer, tmp_path) -> None:
    config = sim_config(server, ["p1"], seed=7, layers=2)
    await create_moa_graph().compile(cache=proposal_cache(tmp_path / "c.sqlite")).ainvoke(user("q"), context=config)
    await create_moa_graph().compile(cache=proposal_cache(tmp_path / "c.sqlite")).ainvoke(user("q"), context=config)
    assert server.calls("p1") == 1 and server.calls("agg") == 2


def test_the_key_holds_the_layer_and_the_slot() -> None:
    # the cached writes carry (layer, slot): a hit must land where the entry was made
    task = {"settings": {"model": "openai:p", "seed": 1}, "messages": [("user", "q")], "references": [], "layer": 1}
    keys = {proposal_cache_key({**task, **where}) for where in ({"slot": 0}, {"slot": 1}, {"layer": 2, "slot": 0})}
    assert len(keys) == 3
    assert proposal_cache_key({**task, "slot": 0}) == proposal_cache_key({**task, "slot": 0})


def test_key_function_takes_other_input() -> None:
    # LangGraph calls the key function when it draws the graph, with the state
    assert proposal_cache_key({"messages": []}) == proposal_cache_key({"messages": []})
    create_moa_graph().compile(cache=InMemoryCache()).get_graph()


def test_the_cache_and_failure_records_work_under_invoke(server: SimulatedOpenAIServer) -> None:
    server.set_behavior("flaky", ModelBehavior(faults=[Fault(400, message="bad request")]))
    graph = create_moa_graph().compile(cache=InMemoryCache())
    config = sim_config(server, ["ok", "flaky"], seed=7, layers=2)
    first = graph.invoke(user("q"), context=config)
    assert [f["model"] for f in first["failures"]] == ["openai:flaky"]
    second = graph.invoke(user("q"), context=config)
    assert server.calls("ok") == 1 and server.calls("flaky") == 2
    assert second["usage_summary"]["cached_calls"] == 1


async def test_a_failed_layer_still_raises_after_its_failures_are_freed(
    server: SimulatedOpenAIServer, monkeypatch
) -> None:
    # LangGraph remembers handled exceptions by id(); a freed one's id can come back
    # as the LayerFailedError's, which must still be raised (cache._HANDLED keeps them)
    import gc

    from langgraph_moa import LayerFailedError, nodes

    def collect_then_raise(*args):
        gc.collect(1)  # frees the handled failures now, so their addresses are reused first
        return LayerFailedError(*args)

    monkeypatch.setattr(nodes, "LayerFailedError", collect_then_raise)
    graph = create_moa_graph().compile()
    config = sim_config(server, ["p"], seed=7, max_retries=0)
    for _ in range(150):
        server.set_behavior("p", ModelBehavior(faults=[Fault(400)]))
        with pytest.raises(LayerFailedError):
            await graph.ainvoke(user("q"), context=config)


async def test_without_a_seed_every_run_draws_new_samples(server: SimulatedOpenAIServer) -> None:
    graph = create_moa_graph().compile(cache=InMemoryCache())
    config = sim_config(server, ["p1"], layers=2)
    for _ in range(2):
        await graph.ainvoke(user("q"), context=config)
    assert server.calls("p1") == 2  # the key holds the seed the call used, drawn fresh each run
    seeds = [r["seed"] for r in server.requests_for("p1")]
    assert seeds[0] != seeds[1]
