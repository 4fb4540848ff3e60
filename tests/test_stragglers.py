"""The straggler cut-off (MoAConfig.straggler_timeout) over HTTP and with fake models."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from pydantic import ValidationError

from langgraph_moa import AggregatorError, MoAConfig, StragglerTimeout, create_moa_graph
from langgraph_moa.stragglers import CutoffRegistry, LayerCutoff
from langgraph_moa.testing import Fault, ModelBehavior, SimulatedOpenAIServer
from tests.conftest import sim_config, user
from tests.fakes import EchoModel

SIX = [f"p{i}" for i in range(6)]


async def until(condition, seconds: float = 10.0) -> None:
    """Wait until ``condition()`` holds (the server notices a closed connection within ~50 ms)."""
    for _ in range(int(seconds / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached")


@pytest.mark.parametrize("value", [0, -1.5, "soon", float("nan"), float("inf"), True, [2]])
def test_straggler_timeout_must_be_a_positive_number(value) -> None:
    with pytest.raises(ValidationError, match="straggler_timeout"):
        MoAConfig(straggler_timeout=value)


def test_straggler_timeout_accepts_seconds_and_none() -> None:
    assert MoAConfig(straggler_timeout=0.5).straggler_timeout == 0.5
    assert MoAConfig().straggler_timeout is None


async def test_the_straggler_is_cut_recorded_and_its_request_closed(server: SimulatedOpenAIServer) -> None:
    server.set_behavior("p5", ModelBehavior(hang=True))
    graph = create_moa_graph().compile()
    # the quorum is every proposer but the hanging one, so no other is still running when the grace ends
    config = sim_config(server, SIX, min_proposals=5, straggler_timeout=0.2, timeout=10)
    events, state = [], {}
    async for mode, chunk in graph.astream(user("q"), context=config, stream_mode=["custom", "values"]):
        if mode == "custom":
            events.append(chunk)
        else:
            state = chunk
    assert [f["error_type"] for f in state["failures"]] == ["StragglerTimeout"]
    assert state["failures"][0]["slot"] == 5 and "straggler_timeout=0.2" in state["failures"][0]["message"]
    assert len(state["proposals"]) == 5
    assert state["messages"][-1].content == "agg answer to: q [refs=5]"
    # visible on the custom stream: the quorum, then the cut
    names = [e["event"] for e in events]
    assert names.index("quorum_reached") < names.index("proposer_failed") < names.index("layer_done")
    quorum = next(e for e in events if e["event"] == "quorum_reached")
    assert quorum["layer"] == 1 and quorum["succeeded"] == 5 and quorum["straggler_timeout"] == 0.2
    cut = next(e for e in events if e["event"] == "proposer_failed")
    assert cut["model"] == "openai:p5" and cut["error_type"] == "StragglerTimeout"
    # the straggler's HTTP request was closed by the client, not left running
    await until(lambda: server.abandoned("p5") == 1)
    assert server.calls("p5") == 1 and server.abandoned() == 1


async def test_without_the_option_every_proposer_is_awaited(server: SimulatedOpenAIServer) -> None:
    server.set_behavior("p2", ModelBehavior(latency=0.4))
    graph = create_moa_graph().compile()
    state = await graph.ainvoke(user("q"), context=sim_config(server, ["p0", "p1", "p2"]))
    assert state["failures"] == [] and len(state["proposals"]) == 3
    assert server.abandoned() == 0


async def test_after_a_cut_the_run_resumes_from_its_checkpoint(server: SimulatedOpenAIServer) -> None:
    server.set_behavior("p2", ModelBehavior(hang=True))
    server.set_behavior("agg", ModelBehavior(faults=[Fault(500)]))
    graph = create_moa_graph().compile(checkpointer=InMemorySaver())
    thread = {"configurable": {"thread_id": "cut"}}
    config = sim_config(server, ["p0", "p1", "p2"], min_proposals=2, straggler_timeout=0.1, max_retries=0)
    with pytest.raises(AggregatorError):
        await graph.ainvoke(user("q"), thread, context=config)
    saved = (await graph.aget_state(thread)).values
    assert [f["error_type"] for f in saved["failures"]] == ["StragglerTimeout"]

    state = await graph.ainvoke(None, thread, context=config)  # resume: only the aggregator runs again
    assert state["messages"][-1].content == "agg answer to: q [refs=2]"
    assert [server.calls(m) for m in ("p0", "p1", "p2", "agg")] == [1, 1, 1, 2]
    assert [f["error_type"] for f in state["failures"]] == ["StragglerTimeout"]


async def test_no_cut_before_the_quorum(server: SimulatedOpenAIServer) -> None:
    # two of three answer; min_proposals=3 is never reached, so nobody is cut: the hanging one runs into
    # its own timeout and the layer fails for lack of proposals, not because of the cut-off
    server.set_behavior("p2", ModelBehavior(hang=True))
    graph = create_moa_graph().compile()
    config = sim_config(server, ["p0", "p1", "p2"], min_proposals=3, straggler_timeout=0.01, timeout=2)
    with pytest.raises(Exception, match="TimeoutError") as info:
        await graph.ainvoke(user("q"), context=config)
    assert "StragglerTimeout" not in str(info.value)


@pytest.mark.parametrize("min_proposals", [1, 2, 3, 4, 5, 6])
async def test_a_cut_never_leaves_fewer_than_min_proposals(min_proposals: int) -> None:
    # proposers finish at staggered times; a tiny grace cuts everyone after the quorum, never before it
    delays = [0.0, 0.05, 0.1, 0.15, 0.2, 0.25]
    models = {f"fake:p{i}": EchoModel(name=f"p{i}", delay=d) for i, d in enumerate(delays)}
    models["fake:agg"] = EchoModel(name="agg")
    graph = create_moa_graph(models=models).compile()
    config = MoAConfig(
        layers=3,
        proposers=list(models)[:6],
        aggregator="fake:agg",
        min_proposals=min_proposals,
        straggler_timeout=0.001,
    )
    state = await graph.ainvoke(user("q"), context=config)
    for layer in (1, 2):
        kept = [p["slot"] for p in state["proposals"] if p["layer"] == layer]
        cut = [f["slot"] for f in state["failures"] if f["layer"] == layer]
        assert len(kept) >= min_proposals
        assert all(f["error_type"] == "StragglerTimeout" for f in state["failures"])
        assert sorted(kept + cut) == list(range(6))
        assert max(kept) < min(cut, default=6)  # the slowest ones are the ones cut


async def test_layer_cutoff_counts_only_complete_answers_in_any_order() -> None:
    # every order of successes and cut attempts: a deadline exists only after `needed` successes
    for needed, order in itertools.product([1, 2, 3], itertools.permutations("sssfc")):
        cutoff = LayerCutoff(needed=needed, grace=0.0, tasks=5)
        for step in order:
            if step == "s":
                cutoff.succeed()
            elif cutoff.deadline is not None:
                with pytest.raises(StragglerTimeout):
                    async with cutoff.guard():
                        await asyncio.sleep(1)
                assert cutoff.succeeded >= needed


async def test_a_task_that_starts_after_the_deadline_never_calls() -> None:
    cutoff = LayerCutoff(needed=1, grace=0.0, tasks=2)
    cutoff.succeed()
    called = False
    with pytest.raises(StragglerTimeout, match="before it started"):
        async with cutoff.guard():
            called = True
    assert not called


async def test_registry_forgets_a_layer_when_its_tasks_are_done() -> None:
    registry = CutoffRegistry()
    a = registry.join(("ckpt", "", 1), needed=1, grace=1.0, tasks=2)
    assert registry.join(("ckpt", "", 1), needed=1, grace=1.0, tasks=2) is a
    assert registry.join(("ckpt", "", 2), needed=1, grace=1.0, tasks=1) is not a
    registry.leave(("ckpt", "", 1), a)
    assert len(registry) == 2
    registry.leave(("ckpt", "", 1), a)
    assert len(registry) == 1


def test_a_sync_run_with_the_option_awaits_every_proposer(server: SimulatedOpenAIServer) -> None:
    # blocking calls cannot be cancelled: under invoke the option changes nothing and breaks nothing
    server.set_behavior("p1", ModelBehavior(latency=0.3))
    graph = create_moa_graph().compile()
    state = graph.invoke(user("q"), context=sim_config(server, ["p0", "p1"], straggler_timeout=0.01))
    assert state["failures"] == [] and len(state["proposals"]) == 2
