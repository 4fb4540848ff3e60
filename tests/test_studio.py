"""The graph langgraph.json serves: the local preset for a first run with no key (no server started here)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from langgraph_moa import MoAConfig, get_preset, studio
from langgraph_moa.context import stored_config
from langgraph_moa.graph import graph
from langgraph_moa.graph import graph as served_graph
from langgraph_moa.routing import ROUTES_AFTER_PREPARE, route_layer

ROOT = Path(__file__).resolve().parent.parent


async def test_a_configured_run_gets_the_plain_graph(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(studio, "LOCAL_AVAILABLE", True)
    assert await studio.make_graph({"configurable": {"preset": "moa-lite"}}) is graph
    monkeypatch.setenv("TOGETHER_API_KEY", "tgp-test")
    assert await studio.make_graph({"configurable": {}}) is graph


async def test_without_a_key_a_run_that_configures_nothing_runs_the_local_preset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(studio, "LOCAL_AVAILABLE", True)
    started = []
    monkeypatch.setattr(studio, "local_urls", lambda *, start: started.append(start) or {})
    served = await studio.make_graph({"configurable": {"thread_id": "t"}})  # a schema read: no server
    assert served is not graph and served.config["configurable"] == {"moa_default_preset": "local"}
    assert started == []
    await studio.make_graph({"configurable": {"__is_for_execution__": True}})  # a run: the server starts
    assert started == [True]
    monkeypatch.setattr(studio, "LOCAL_AVAILABLE", False)  # without the local extra: the default, and its error
    assert await studio.make_graph({"configurable": {}}) is graph


def test_local_is_a_preset_and_says_when_its_server_is_not_running(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(KeyError, match="moa-lite, .*local"):
        get_preset("nope")
    monkeypatch.setattr(studio, "_started", None)
    with pytest.raises(studio.LocalModelError, match="not running"):
        get_preset("local")


MERMAID = re.compile(r"```mermaid\n(.*?)\n```", re.S)


def test_the_pictured_graph_is_the_served_graphs_drawing() -> None:
    (pictured,) = MERMAID.findall((ROOT / "docs" / "studio.md").read_text())
    assert pictured == served_graph.get_graph().draw_mermaid().strip("\n"), (
        "docs/studio.md's picture is not the graph's drawing: regenerate it with "
        'python -c "from langgraph_moa.graph import graph; print(graph.get_graph().draw_mermaid())"'
    )


def test_the_drawing_names_precise_destinations_and_no_unconnected_node() -> None:
    drawn = served_graph.get_graph()
    edges: dict[str, set[str]] = {}
    for edge in drawn.edges:
        edges.setdefault(edge.source, set()).add(edge.target)
    # never provisional or review after prepare; staircase replaces the last proposer layer and the aggregator
    assert edges["prepare"] == {"propose", "steer", "aggregate", "staircase"}
    assert edges["join_layer"] == {"propose", "provisional", "steer", "review", "aggregate", "staircase"}
    assert edges["steer"] == {"propose", "provisional", "review", "aggregate", "staircase"}
    assert edges["propose"] == {"join_layer", "__error_handler__propose"}
    assert edges["__error_handler__propose"] == {"join_layer"}
    connected = {e.source for e in drawn.edges} | {e.target for e in drawn.edges}
    assert set(drawn.nodes) == connected
    labels = {(e.source, e.target): e.data for e in drawn.edges if e.conditional}
    assert labels[("join_layer", "review")] == "review on"
    assert labels[("prepare", "aggregate")] == "proposer layers done"


@pytest.mark.parametrize(
    ("options", "first_route"),
    [
        ({"layers": 1, "proposers": []}, "proposer layers done"),
        ({"layers": 2}, "next layer"),
        ({"layers": 2, "max_cost_usd": 1.0}, "cost-saving option on"),
    ],
)
def test_every_route_prepare_takes_is_drawn(options: dict, first_route: str) -> None:
    cfg = MoAConfig.model_validate({"aggregator": "openai:agg", "proposers": ["openai:a"], **options})
    state = {"messages": [], "layer": 1, "moa_config": stored_config(cfg), "config_fingerprint": "x"}
    routed = route_layer(state, {})  # type: ignore[arg-type]
    route = "next layer" if isinstance(routed, list) else routed
    assert route == first_route and route in ROUTES_AFTER_PREPARE


# --------------------------------------------------------------------------- /v1 under langgraph dev, with no key


def test_v1_under_langgraph_dev_serves_default_and_local_without_a_key(
    monkeypatch: pytest.MonkeyPatch, server: Any
) -> None:
    import openai

    from langgraph_moa.serve import agent_server
    from tests.conftest import running

    monkeypatch.delenv("TOGETHER_API_KEY", raising=False)
    monkeypatch.setattr(studio, "LOCAL_AVAILABLE", True)
    started: list[bool] = []

    def bundled(*, start: bool = False) -> MoAConfig:  # the bundled model, played by the simulated server
        started.append(start)
        return MoAConfig(layers=2, proposers=["openai:p", "openai:p"], aggregator="openai:p", base_url=server.base_url)

    monkeypatch.setattr(studio, "local_preset", bundled)
    settings = agent_server.default_settings()
    assert settings.local_models == ("default", "local") and "default" not in settings.assistants
    with running(agent_server.create_agent_server_app(settings)) as base:
        with openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0) as client:
            assert [m.id for m in client.models.list()] == ["default", "local"]  # no hosted preset without its key
            assert client.models.retrieve("local").id == "local" and started == []  # listing starts nothing
            answer = client.chat.completions.create(model="default", messages=[{"role": "user", "content": "hi"}])
            assert answer.choices[0].message.content == "p answer to: hi [refs=2]"
            assert started == [True]
            with pytest.raises(openai.NotFoundError, match="use one of: default, local, moa"):
                client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])


def test_v1_under_langgraph_dev_serves_default_as_moa_current_with_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    from langgraph_moa.serve import agent_server

    monkeypatch.setenv("TOGETHER_API_KEY", "tgp-test")
    monkeypatch.setattr(studio, "LOCAL_AVAILABLE", True)
    settings = agent_server.default_settings()
    assert settings.assistants["default"] == get_preset("moa-current") and settings.local_models == ("local",)
    monkeypatch.setattr(studio, "LOCAL_AVAILABLE", False)
    assert agent_server.default_settings().local_models == ()
