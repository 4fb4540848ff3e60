"""Sampling seeds: fresh per run, derived per layer and slot, reproducible from one seed, recorded."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from langgraph_moa import MoAConfig, ModelSpec, create_moa_graph
from langgraph_moa.local import local_config
from langgraph_moa.providers import resolver
from langgraph_moa.testing import SimulatedOpenAIServer
from tests.conftest import sim_config, user
from tests.fakes import EchoModel


def _sent(server: SimulatedOpenAIServer, model: str) -> list[int]:
    return [r["seed"] for r in server.requests_for(model)]


def test_every_run_draws_new_seeds_and_slots_differ(server: SimulatedOpenAIServer) -> None:
    graph = create_moa_graph().compile()
    config = sim_config(server, ["p", "p", "p"])
    runs = []
    for prompt in ("first question", "second question"):
        server.reset()
        state = graph.invoke(user(prompt), context=config)
        seeds = [p["seed"] for p in state["proposals"]]
        assert sorted(seeds) == sorted(_sent(server, "p"))  # what was sent is what was recorded
        assert len(set(seeds)) == 3  # the three samples of one model differ
        runs.append(seeds)
    assert set(runs[0]).isdisjoint(runs[1])  # the second prompt got other seeds


def test_a_seed_reproduces_every_call_and_layers_differ(server: SimulatedOpenAIServer) -> None:
    graph = create_moa_graph().compile()
    config = sim_config(server, ["p", "p"], layers=3, seed=1234)
    states = []
    sent = []
    for prompt in ("one", "two"):
        server.reset()
        states.append(graph.invoke(user(prompt), context=config))
        sent.append((_sent(server, "p"), _sent(server, "agg")))
    assert [sorted(s) for s in sent[0]] == [sorted(s) for s in sent[1]]  # the same seeds, whatever the prompt
    seeds = [p["seed"] for p in states[0]["proposals"]]
    assert len(set(seeds)) == 4  # 2 layers x 2 slots, all different
    assert states[0]["run_seed"] == 1234
    (aggregator_seed,) = sent[0][1]
    assert aggregator_seed not in seeds
    server.reset()
    graph.invoke(user("one"), context=config.model_copy(update={"seed": 1235}))
    assert set(_sent(server, "p")).isdisjoint(seeds)  # another seed, other samples


def test_a_models_own_seed_is_its_base(server: SimulatedOpenAIServer) -> None:
    graph = create_moa_graph().compile()
    pinned = ModelSpec(model="openai:p", seed=5)
    config = MoAConfig(proposers=[pinned, "openai:q"], aggregator="openai:agg", base_url=server.base_url)
    first = graph.invoke(user("x"), context=config)
    second = graph.invoke(user("y"), context=config)
    assert first["proposals"][0]["seed"] == second["proposals"][0]["seed"]  # from the model's seed
    assert first["proposals"][1]["seed"] != second["proposals"][1]["seed"]  # fresh per run


def test_ready_models_get_no_seed() -> None:
    models = {"fake:a": EchoModel(name="a"), "fake:agg": EchoModel(name="agg")}
    state = (
        create_moa_graph(models=models)
        .compile()
        .invoke(user("x"), context=MoAConfig(proposers=["fake:a"], aggregator="fake:agg", seed=3))
    )
    assert state["proposals"][0]["seed"] is None  # it keeps its own settings; nothing was sent


def test_seeds_are_bound_per_call_not_built_into_clients(
    server: SimulatedOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    built = []
    original = resolver._new_model
    monkeypatch.setattr(resolver, "_new_model", lambda *a, **kw: built.append(a) or original(*a, **kw))
    graph = create_moa_graph().compile()
    for seed in (1, 2, 3):
        graph.invoke(user("x"), context=sim_config(server, ["fresh-p", "fresh-p"], "fresh-agg", seed=seed))
    assert len(built) == 2  # one model for the proposers, one for the aggregator: not one per seed
    assert len(set(_sent(server, "fresh-p"))) == 6


@pytest.mark.parametrize("value", [-1, 2.5, "7", True])
def test_a_seed_must_be_a_non_negative_integer(value: object) -> None:
    with pytest.raises(ValidationError, match="seed"):
        MoAConfig(seed=value)
    with pytest.raises(ValidationError, match="seed"):
        ModelSpec(model="openai:x", seed=value)


def test_presets_pin_no_seed() -> None:
    from langgraph_moa import PRESETS

    local = local_config({"m": "http://127.0.0.1:1/v1"})
    specs = [*local.proposers, local.aggregator, *PRESETS["self-moa"].proposers, PRESETS["self-moa"].aggregator]
    assert {s.seed for s in specs} == {None} and local.seed is None
