"""The MoA graph served with LangServe and used through ``langserve.RemoteRunnable``.

The app runs under uvicorn on a free loopback port in a thread of this process;
the models are served by the simulated OpenAI-compatible server.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

pytest.importorskip("langserve", reason="pip install 'langgraph-moa[serve]'")

from fastapi import FastAPI
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langserve import RemoteRunnable

from langgraph_moa import create_moa_graph
from langgraph_moa.serve.langserve_routes import (
    CLIENT_FIELDS,
    TUNING_FIELDS,
    ClientLimits,
    add_moa_routes,
    create_langserve_app,
)
from langgraph_moa.testing import SimulatedOpenAIServer
from tests.conftest import running
from tests.fakes import EchoModel

pytestmark = [
    pytest.mark.filterwarnings("ignore:astream_log is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:langserve"),
    pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince211"),
]


@pytest.fixture(scope="module")
def app_url() -> Iterator[str]:
    with running(create_langserve_app()) as url:
        yield url


@pytest.fixture
def moa(app_url: str) -> Iterator[RemoteRunnable]:
    remote = RemoteRunnable(f"{app_url}/moa")
    yield remote
    remote.sync_client.close()


@pytest.fixture(autouse=True)
def _openai_models_on_the_simulated_server(server: SimulatedOpenAIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # clients may not name endpoints; the server's environment points `openai:` models here
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)


def _configurable(**extra: Any) -> dict[str, Any]:
    """Three layers: two proposer layers of p1 and p2 on the simulated server, then agg."""
    fields = {"layers": 3, "proposers": ["openai:p1", "openai:p2"], "aggregator": "openai:agg"}
    return {"configurable": {**fields, **extra}}


def _ask(text: str) -> dict[str, Any]:
    return {"messages": [("user", text)]}


def test_invoke_runs_every_layer_with_the_configurable_config(
    moa: RemoteRunnable, server: SimulatedOpenAIServer
) -> None:
    state = moa.invoke(_ask("hello langserve"), _configurable())
    answer = state["messages"][-1]
    assert isinstance(answer, AIMessage)
    assert answer.content == "agg answer to: hello langserve [refs=2]"
    assert [(p["layer"], p["slot"], p["model"]) for p in state["proposals"]] == [
        (1, 0, "openai:p1"),
        (1, 1, "openai:p2"),
        (2, 0, "openai:p1"),
        (2, 1, "openai:p2"),
    ]
    assert state["proposals"][2]["content"] == "p1 answer to: hello langserve [refs=2]"  # layer 2 saw layer 1
    assert state["failures"] == []
    assert state["usage_summary"]["total"]["total_tokens"] > 0
    assert "moa_config" not in state  # the turn's configuration stays in the checkpoint
    assert server.calls("p1") == 2 and server.calls("p2") == 2 and server.calls("agg") == 1


def test_the_configurable_changes_the_run(moa: RemoteRunnable, server: SimulatedOpenAIServer) -> None:
    state = moa.invoke(_ask("two layers"), _configurable(layers=2, proposers=["openai:solo"]))
    assert state["messages"][-1].content == "agg answer to: two layers [refs=1]"
    assert server.calls("solo") == 1 and server.calls("p1") == 0


def test_a_preset_through_configurable(
    moa: RemoteRunnable, app_url: str, server: SimulatedOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-test-not-a-real-key-7f3a"
    monkeypatch.setenv("TOGETHER_API_KEY", secret)
    monkeypatch.setenv("TOGETHER_API_BASE", server.base_url)
    config = {"configurable": {"preset": "moa-lite", "max_tokens": 64}}
    state = moa.invoke(_ask("paper setup"), config)
    # moa-lite: the paper's six proposers, then Qwen1.5-72B-Chat aggregating their six answers
    assert state["messages"][-1].content == "Qwen/Qwen1.5-72B-Chat answer to: paper setup [refs=6]"
    assert len(state["proposals"]) == 6 and server.calls() == 7
    assert {r["max_tokens"] for r in server.requests_for("databricks/dbrx-instruct")} == {64}
    # the key went to the provider, and nowhere into what the server sends back
    raw = httpx.post(
        f"{app_url}/moa/stream_events", json={"input": _json_input("paper setup"), "config": config}, timeout=30
    ).text
    assert "Qwen/Qwen1.5-72B-Chat answer to: paper setup" in raw
    assert secret not in raw and secret not in json.dumps(state, default=str)
    raw_log = httpx.post(
        f"{app_url}/moa/stream_log", json={"input": _json_input("paper setup"), "config": config}, timeout=30
    ).text
    assert '"final_output"' in raw_log and secret not in raw_log


def _json_input(text: str) -> dict[str, Any]:
    return {"messages": [{"type": "human", "content": text}]}


def test_batch_answers_each_input_with_its_own_config(moa: RemoteRunnable, server: SimulatedOpenAIServer) -> None:
    states = moa.batch(
        [_ask("first"), {"messages": [HumanMessage("second")]}],
        [_configurable(), _configurable(layers=2, aggregator="openai:other")],
    )
    assert [s["messages"][-1].content for s in states] == [
        "agg answer to: first [refs=2]",
        "other answer to: second [refs=2]",
    ]


def test_stream_yields_the_state_after_every_layer(moa: RemoteRunnable, server: SimulatedOpenAIServer) -> None:
    states = list(moa.stream(_ask("streamed"), _configurable()))
    counts = [len(s.get("proposals", [])) for s in states]
    assert counts[0] == 0 and counts[-1] == 4
    assert 2 in counts and counts == sorted(counts)  # layer 1 is visible before layer 2 runs
    assert [s["messages"][-1].content for s in states].count("agg answer to: streamed [refs=2]") == 1
    assert states[-1]["messages"][-1].content == "agg answer to: streamed [refs=2]"
    assert states[-1]["usage_summary"]["total"]["total_tokens"] > 0
    assert all("moa_config" not in s for s in states)  # the turn's configuration names the endpoints


async def test_no_stream_carries_the_turns_configuration(moa: RemoteRunnable) -> None:
    # prepare's update and the proposers' Send payloads hold moa_config, which names the operator's endpoints
    events = [e async for e in moa.astream_events(_ask("events"), _configurable(), version="v2")]
    patches = [p async for p in moa.astream_log(_ask("logged"), _configurable())]
    assert any(e["event"] == "on_chain_end" and e.get("name") == "prepare" for e in events)
    assert "moa_config" not in repr(events) and "moa_config" not in repr(patches)
    assert patches


async def test_stream_events_carries_the_fan_out_and_the_answer_tokens(
    moa: RemoteRunnable, server: SimulatedOpenAIServer
) -> None:
    events = [e async for e in moa.astream_events(_ask("events"), _configurable(), version="v2")]
    fan_outs = [e["data"]["output"] for e in events if e["event"] == "on_chain_end" and e["name"] == "route_layer"]
    sends = [s for out in fan_outs if isinstance(out, list) for s in out]
    assert [(s["type"], s["node"], s["arg"]["layer"], s["arg"]["slot"]) for s in sends] == [
        ("send", "propose", 1, 0),
        ("send", "propose", 1, 1),
        ("send", "propose", 2, 0),
        ("send", "propose", 2, 1),
    ]
    tokens = [
        e["data"]["chunk"].content
        for e in events
        if e["event"] == "on_chat_model_stream" and e["metadata"].get("langgraph_node") == "aggregate"
    ]
    assert "".join(tokens) == "agg answer to: events [refs=2]"
    assert events[-1]["event"] == "on_chain_end"


async def test_stream_log_ends_with_the_final_state(moa: RemoteRunnable, server: SimulatedOpenAIServer) -> None:
    final = None
    async for patch in moa.astream_log(_ask("logged"), _configurable()):
        final = patch if final is None else final + patch
    assert final is not None
    output = final.state["final_output"]
    assert output["messages"][-1].content == "agg answer to: logged [refs=2]"
    assert len(output["proposals"]) == 4
    logged = final.state["logs"]
    assert "route_layer" in logged and {"propose", "join_layer", "aggregate"} <= set(logged)
    send = logged["route_layer"]["final_output"]["output"][0]
    assert send["type"] == "send" and send["node"] == "propose"


def test_invalid_configurable_is_refused_before_the_run(moa: RemoteRunnable, server: SimulatedOpenAIServer) -> None:
    with pytest.raises(httpx.HTTPStatusError) as caught:
        moa.invoke(_ask("x"), _configurable(layer_proposers=[["openai:p1"]]))
    assert caught.value.response.status_code == 422
    assert "layer_proposers has 1 lists but layers=3" in str(caught.value)
    with pytest.raises(httpx.HTTPStatusError, match="preset") as caught:
        moa.invoke(_ask("x"), {"configurable": {"preset": "nope"}})
    assert caught.value.response.status_code == 422 and "moa-lite" in str(caught.value)
    with pytest.raises(httpx.HTTPStatusError, match="review") as caught:
        moa.invoke(_ask("x"), _configurable(review=True))
    assert caught.value.response.status_code == 422
    assert server.calls() == 0


def test_schemas_and_playground(app_url: str) -> None:
    base = f"{app_url}/moa"
    input_schema = httpx.get(f"{base}/input_schema").json()
    assert input_schema["required"] == ["messages"]
    assert input_schema["properties"]["messages"]["widget"] == {"type": "chat", "input": "messages"}  # playground
    output_schema = httpx.get(f"{base}/output_schema").json()
    assert {"messages", "proposals", "failures", "usage_summary"} <= set(output_schema["properties"])
    config_schema = httpx.get(f"{base}/config_schema").json()
    configurable = config_schema["$defs"]["Configurable"]["properties"]
    assert set(configurable) == CLIENT_FIELDS  # endpoints, keys, prices, tools and review are not offered
    assert all(field.get("description") for field in configurable.values())
    assert "moa-lite" in json.dumps(configurable["preset"])
    playground = httpx.get(f"{base}/playground/index.html")
    assert playground.status_code == 200 and "<html" in playground.text.lower()
    assert httpx.get(f"{base}/playground/").status_code == 200


def test_add_moa_routes_serves_a_given_graph_with_its_defaults() -> None:
    qwen = "together:Qwen/Qwen2.5-72B-Instruct-Turbo"  # every model of the self-moa preset
    models = {"fake:a": EchoModel(name="a"), "fake:agg": EchoModel(name="agg"), qwen: EchoModel(name="q")}
    defaults = {"proposers": ["fake:a"], "aggregator": "fake:agg"}
    app = FastAPI()
    add_moa_routes(app, create_moa_graph(models=models).compile().with_config(configurable=defaults), path="/custom")
    with running(app) as served_url:
        remote = RemoteRunnable(f"{served_url}/custom")
        assert remote.invoke(_ask("hi"))["messages"][-1].content == "agg: hi (1 refs)"
        # a field overrides the bound defaults one by one
        state = remote.invoke(_ask("hi"), {"configurable": {"proposers": ["fake:a", "fake:a"]}})
        assert state["messages"][-1].content == "agg: hi (2 refs)"
        # a preset replaces them: self-moa samples one model six times
        state = remote.invoke(_ask("hi"), {"configurable": {"preset": "self-moa"}})
        assert state["messages"][-1].content == "q: hi (6 refs)"
        assert httpx.get(f"{served_url}/moa/input_schema").status_code == 404
        remote.sync_client.close()
    with pytest.raises(ValueError, match="must start with '/'"):
        add_moa_routes(FastAPI(), path="moa")
    with pytest.raises(TypeError, match=r"compiled graph, got StateGraph: pass create_moa_graph\(\)\.compile\(\)"):
        add_moa_routes(FastAPI(), create_moa_graph())
    with pytest.raises(ValueError, match="without one"):
        add_moa_routes(FastAPI(), create_moa_graph().compile(checkpointer=InMemorySaver()))


def test_a_client_cannot_name_endpoints_or_key_variables(
    moa: RemoteRunnable, server: SimulatedOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOGETHER_API_KEY", "tgp_v1_server_secret_0123456789")
    attempts = [
        {"base_url": server.base_url},
        {"proposers": [{"model": "openai:steal", "base_url": server.base_url}]},
        {"proposers": [{"model": "together:any", "base_url": server.base_url}]},
        {"aggregator": {"model": "openai:agg", "api_key_env": "TOGETHER_API_KEY"}},
        {"layer_proposers": [[{"model": "openai:p1", "api_key_env": "MOA_API_KEYS"}]], "layers": 2},
        {"prices": {"openai:agg": {"input": 0, "output": 0}}},
    ]
    for configurable in attempts:
        with pytest.raises(httpx.HTTPStatusError) as caught:
            moa.invoke(_ask("x"), {"configurable": configurable})
        assert caught.value.response.status_code == 422, configurable
        assert "server" in caught.value.response.text
    assert server.calls() == 0 and server.api_keys == []


def test_limits_cap_what_a_request_may_cost(server: SimulatedOpenAIServer) -> None:
    app = FastAPI()
    limits = ClientLimits(max_tokens=100, max_layers=3, max_proposers=2, max_timeout=30)
    add_moa_routes(app, create_moa_graph().compile(), limits=limits)
    with running(app) as served_url:
        remote = RemoteRunnable(f"{served_url}/moa")
        too_much = [
            ({"max_tokens": 101}, "max_tokens=101 is above this server's limit of 100"),
            ({"layers": 4}, "layers=4 is above this server's limit of 3"),
            ({"proposers": ["openai:a", "openai:b", "openai:c"]}, "a layer has 3 proposers"),
            ({"proposers": [{"model": "openai:a", "max_tokens": 500}]}, "max_tokens of model 'openai:a'"),
            ({"timeout": 31}, "timeout=31 is above this server's limit of 30 s"),
        ]
        for extra, message in [*too_much, ({"preset": "moa"}, "a layer has 6 proposers")]:
            configurable = extra if "preset" in extra else {**_configurable()["configurable"], **extra}
            with pytest.raises(httpx.HTTPStatusError) as caught:
                remote.invoke(_ask("x"), {"configurable": configurable})
            assert caught.value.response.status_code == 422 and message in caught.value.response.text, extra
        within = {**_configurable()["configurable"], "max_tokens": 100, "timeout": 30}
        assert remote.invoke(_ask("ok"), {"configurable": within})["messages"][-1].content.startswith("agg answer")
        remote.sync_client.close()
    assert server.calls("agg") == 1


def test_tuning_fields_leave_the_models_to_the_server() -> None:
    models = {"fake:a": EchoModel(name="a"), "fake:agg": EchoModel(name="agg")}
    graph = create_moa_graph(models=models).compile()
    app = FastAPI()
    defaults = {"proposers": ["fake:a"], "aggregator": "fake:agg"}
    add_moa_routes(app, graph.with_config(configurable=defaults), client_fields=TUNING_FIELDS)
    with running(app) as served_url:
        remote = RemoteRunnable(f"{served_url}/moa")
        assert remote.invoke(_ask("hi"), {"configurable": {"temperature": 0.1}})["messages"][-1].content == (
            "agg: hi (1 refs)"
        )
        with pytest.raises(httpx.HTTPStatusError, match="proposers cannot be set"):
            remote.invoke(_ask("hi"), {"configurable": {"proposers": ["fake:a", "fake:a"]}})
        schema = httpx.get(f"{served_url}/moa/config_schema").json()["$defs"]["Configurable"]["properties"]
        assert set(schema) == TUNING_FIELDS
        remote.sync_client.close()
    with pytest.raises(ValueError, match="client_fields may not include base_url"):
        add_moa_routes(FastAPI(), graph, client_fields={"base_url"})
