"""A client of a served graph cannot choose where the server's requests, and its keys, go.

The graph ``langgraph.json`` serves (the Agent Server, ``langgraph dev``) is
configured by its clients through ``context`` or ``configurable``. It may name
only the endpoints the operator allowed (``MOA_ALLOWED_BASE_URLS``, or the
endpoints of the operator's models: presets, ``local``, ``MOA_ASSISTANTS``),
loopback included, and an ``api_key_env`` only where an operator's model uses
that variable on the same endpoint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from langgraph_moa import MoAConfig, create_moa_graph
from langgraph_moa.config import ModelSpec
from langgraph_moa.errors import ConfigError
from langgraph_moa.presets import PRESET_FACTORIES
from langgraph_moa.providers import EndpointPolicy, served_graph_policy
from langgraph_moa.testing import SimulatedOpenAIServer
from tests.conftest import sim_config, user

CANARY = "moa-canary-policy-7d3e9a1b"


def _served_graph() -> Any:
    """The graph as ``langgraph.json`` serves it, with the policy read from this test's environment."""
    return create_moa_graph(allowed_base_urls=served_graph_policy()).compile()


def _spec(server: SimulatedOpenAIServer, model: str, **kw: Any) -> ModelSpec:
    return ModelSpec(model=f"openai:{model}", base_url=server.base_url, **kw)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("MOA_ALLOWED_BASE_URLS", "MOA_ASSISTANTS", "OPENAI_BASE_URL", "OPENAI_API_BASE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    return monkeypatch


@pytest.mark.parametrize("via", ["context", "configurable"])
async def test_a_client_cannot_send_the_servers_key_to_a_loopback_port(
    server: SimulatedOpenAIServer, clean_env: pytest.MonkeyPatch, via: str
) -> None:
    """The probe of the issue: a loopback port of the client's choosing, and the server's OPENAI_API_KEY."""
    graph = _served_graph()
    attack = {
        "proposers": [{"model": "openai:x", "base_url": server.base_url, "api_key_env": "OPENAI_API_KEY"}],
        "aggregator": {"model": "openai:x", "base_url": server.base_url, "api_key_env": "HOME"},
    }
    kwargs: dict[str, Any] = (
        {"context": MoAConfig.model_validate(attack)} if via == "context" else {"config": {"configurable": attack}}
    )
    with pytest.raises(ConfigError, match="base_url .* is not allowed on this server.*MOA_ALLOWED_BASE_URLS"):
        await graph.ainvoke(user("hi"), **kwargs)
    assert server.calls() == 0 and CANARY not in server.api_keys


async def test_an_allowed_endpoint_gets_no_key_the_operator_did_not_pair_with_it(
    server: SimulatedOpenAIServer, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("MOA_ALLOWED_BASE_URLS", server.base_url)  # the operator allows the endpoint, keyless
    graph = _served_graph()
    answer = await graph.ainvoke(user("hi"), context=sim_config(server, ["a"]))
    assert answer["messages"][-1].text == "agg answer to: hi [refs=1]"
    for variable in ("OPENAI_API_KEY", "HOME", "TOGETHER_API_KEY"):
        before = server.calls()
        config = MoAConfig(proposers=[_spec(server, "a", api_key_env=variable)], aggregator=_spec(server, "agg"))
        with pytest.raises(ConfigError, match=f"api_key_env '{variable}' is not allowed on this server"):
            await graph.ainvoke(user("hi"), context=config)
        assert server.calls() == before
    # a provider's key on its own endpoint is the operator's choice (the presets use it): only the variable differs
    swapped = MoAConfig(proposers=[ModelSpec(model="together:m", api_key_env="OPENAI_API_KEY")], aggregator="openai:a")
    with pytest.raises(ConfigError, match="api_key_env 'OPENAI_API_KEY' is not allowed .* for together models"):
        EndpointPolicy(operator_configs=lambda: [MoAConfig()]).check(swapped)
    assert CANARY not in server.api_keys


async def test_the_operators_assistants_allow_their_endpoints_and_key_variables(
    server: SimulatedOpenAIServer, clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    other = SimulatedOpenAIServer().__enter__()
    try:
        clean_env.setenv("MY_LLM_CRED", CANARY)
        assistants = {
            "internal": {
                "proposers": [{"model": "openai:a", "base_url": server.base_url, "api_key_env": "MY_LLM_CRED"}],
                "aggregator": {"model": "openai:agg", "base_url": server.base_url, "api_key_env": "MY_LLM_CRED"},
            }
        }
        (tmp_path / "assistants.json").write_text(json.dumps(assistants))
        clean_env.setenv("MOA_ASSISTANTS", str(tmp_path / "assistants.json"))
        clean_env.setenv("MOA_ALLOWED_BASE_URLS", other.base_url)
        graph = _served_graph()
        # the client's own models, on the operator's endpoint with the operator's variable there
        mine = MoAConfig(
            proposers=[_spec(server, "b", api_key_env="MY_LLM_CRED")],
            aggregator=_spec(server, "agg", api_key_env="MY_LLM_CRED"),
        )
        assert (await graph.ainvoke(user("hi"), context=mine))["messages"][-1].text == "agg answer to: hi [refs=1]"
        assert set(server.api_keys) == {CANARY}
        # the same variable on another endpoint, even one the operator allows: refused
        moved = MoAConfig(proposers=[_spec(other, "b", api_key_env="MY_LLM_CRED")], aggregator=_spec(other, "agg"))
        with pytest.raises(ConfigError, match="api_key_env 'MY_LLM_CRED' is not allowed"):
            await graph.ainvoke(user("hi"), context=moved)
        assert other.calls() == 0
        # a path below the operator's endpoint is the same server; a lookalike host is not
        lookalike = ModelSpec(model="openai:b", base_url=server.base_url.replace("127.0.0.1", "127.0.0.1.evil.test"))
        with pytest.raises(ConfigError, match="is not allowed on this server"):
            await graph.ainvoke(user("hi"), context=MoAConfig(proposers=[lookalike], aggregator=_spec(server, "agg")))
    finally:
        other.__exit__(None, None, None)


async def test_the_local_preset_runs_on_its_loopback_server(
    server: SimulatedOpenAIServer, clean_env: pytest.MonkeyPatch
) -> None:
    """``langgraph dev`` with no key runs the ``local`` preset: its loopback endpoint is the operator's own."""
    local = sim_config(server, ["smol"], "smol")
    clean_env.setitem(PRESET_FACTORIES, "local", lambda: local)
    graph = _served_graph()
    state = await graph.ainvoke(user("hi"), config={"configurable": {"preset": "local", "temperature": 0.1}})
    assert state["messages"][-1].text == "smol answer to: hi [refs=1]"
    clean_env.delitem(PRESET_FACTORIES, "local")  # its server stopped: its endpoint is no longer allowed
    with pytest.raises(ConfigError, match="is not allowed on this server"):
        await _served_graph().ainvoke(user("hi"), context=local)


def test_url_prefixes_allow_only_what_they_cover() -> None:
    listed = MoAConfig(
        proposers=[ModelSpec(model="openai:a", base_url="https://api.example.org/v1/")], aggregator="openai:a"
    )
    EndpointPolicy(base_urls=("https://api.example.org/v1",)).check(listed)
    for other in ["https://api.example.org/v2", "https://api.example.org.evil.test", "http://api.example.org/v1"]:
        with pytest.raises(ConfigError):
            EndpointPolicy(base_urls=(other,)).check(listed)
    loopback = MoAConfig(proposers=["openai:a"], aggregator="openai:a", base_url="http://127.0.0.1:11434/v1")
    with pytest.raises(ConfigError, match="'http://127.0.0.1:11434/v1' is not allowed"):
        EndpointPolicy().check(loopback)  # loopback is not implicitly allowed
    EndpointPolicy(base_urls=("http://127.0.0.1:11434",)).check(loopback)
