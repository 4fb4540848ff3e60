"""Malformed LangServe bodies are a 4xx in LangServe's error shape, and the connection stays usable.

Both ways of serving the LangServe routes are probed: ``moa serve``'s app
(``create_app``) and the standalone ``create_langserve_app``. After every bad
request, a valid one goes over the same keep-alive connection.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from langgraph_moa import MoAConfig
from langgraph_moa.serve.app import ServeSettings, create_app
from langgraph_moa.serve.langserve_routes import create_langserve_app
from langgraph_moa.testing import SimulatedOpenAIServer
from tests.conftest import running

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning:langserve"),
    pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince211"),
]

BAD_MESSAGES = {
    "null": b"[null]",
    "a number": b"[1]",
    "an empty pair": b"[[]]",
    "a role without content": b'[["user"]]',
    "a tool message without tool_call_id": b'[{"role": "tool", "content": "x"}]',
    "an unknown type": b'[{"type": "nope", "content": "x"}]',
}
UNREADABLE = {
    "invalid UTF-8": b'{"input": {"messages": [["user", "\xff\xfe"]]}}',
    "a 5,000-digit integer": b'{"input": {"messages": [["user", "hi"]]}, "kwargs": ' + b"9" * 5000 + b"}",
}


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatedOpenAIServer]:
    with SimulatedOpenAIServer() as server:
        yield server


def _apps(sim: SimulatedOpenAIServer) -> dict[str, Any]:
    config = MoAConfig(proposers=["openai:p"], aggregator="openai:agg", base_url=sim.base_url)
    served = create_app(ServeSettings(assistants={"a": config}, default_assistant="a"), checkpoint=":memory:")
    standalone = create_langserve_app(create_moa_graph_with(config))
    return {"moa serve": served, "create_langserve_app": standalone}


def create_moa_graph_with(config: MoAConfig) -> Any:
    from langgraph_moa import create_moa_graph

    return create_moa_graph().compile().with_config(configurable=config.model_dump(mode="json"))


def _valid(client: httpx.Client) -> None:
    answer = client.post("/moa/invoke", json={"input": {"messages": [["user", "hi"]]}})
    assert answer.status_code == 200, answer.text
    assert answer.json()["output"]["messages"][-1]["content"] == "agg answer to: hi [refs=1]"


@pytest.mark.parametrize("which", ["moa serve", "create_langserve_app"])
def test_malformed_bodies_are_4xx_and_the_connection_stays_usable(sim: SimulatedOpenAIServer, which: str) -> None:
    app = _apps(sim)[which]
    bodies = {f"messages: {name}": b'{"input": {"messages": ' + raw + b"}}" for name, raw in BAD_MESSAGES.items()}
    bodies["config: null"] = b'{"input": {"messages": [["user", "hi"]]}, "config": null}'
    bodies.update(UNREADABLE)
    connections: set[int] = set()
    with running(app) as base, httpx.Client(base_url=base, timeout=30) as client:
        _valid(client)
        for name, body in bodies.items():
            for route in ("/moa/invoke", "/moa/stream"):
                answer = client.post(route, content=body, headers={"Content-Type": "application/json"})
                assert answer.status_code in (400, 422), (name, route, answer.status_code, answer.text)
                assert "detail" in answer.json(), (name, route, answer.text)  # LangServe's (FastAPI's) shape
                assert answer.headers.get("connection") != "close", (name, route)
                assert "Traceback" not in answer.text
                connections.add(id(answer.extensions.get("network_stream")))
                _valid(client)  # the same keep-alive connection answers the next request
    assert len(connections) == 1  # never dropped: every request went over one connection


@pytest.mark.parametrize("name", list(BAD_MESSAGES))
def test_a_bad_message_is_named_in_the_422(sim: SimulatedOpenAIServer, name: str) -> None:
    app = _apps(sim)["create_langserve_app"]
    body = b'{"input": {"messages": [["user", "hi"], ' + BAD_MESSAGES[name][1:] + b"}}"
    with running(app) as base:
        answer = httpx.post(base + "/moa/invoke", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 422, answer.text
    assert "messages" in answer.text, answer.text


def test_the_standalone_app_answers_a_missing_key_as_moa_serve_does(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TOGETHER_API_KEY", raising=False)
    with running(create_langserve_app()) as base, httpx.Client(base_url=base, timeout=30) as client:
        answer = client.post("/moa/invoke", json={"input": {"messages": [["user", "hi"]]}})
        assert answer.status_code == 503, answer.text
        error = answer.json()["error"]
        assert error["code"] == "missing_credentials" and "TOGETHER_API_KEY" in error["message"]
        assert client.get("/moa/input_schema").status_code == 200  # the connection is still usable


def test_the_standalone_app_accepts_the_local_preset(
    sim: SimulatedOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``preset: local`` is the bundled model; here its server is stood in for by the simulated one."""
    from langgraph_moa import studio
    from tests.conftest import sim_config

    monkeypatch.setattr(studio, "LOCAL_AVAILABLE", True)
    started: list[bool] = []
    monkeypatch.setattr(studio, "local_urls", lambda *, start: started.append(start) or {})
    monkeypatch.setitem(studio.PRESET_FACTORIES, "local", lambda: sim_config(sim, ["smol"], "smol"))
    with running(create_langserve_app()) as base:
        body = {"input": {"messages": [["user", "hi"]]}, "config": {"configurable": {"preset": "local"}}}
        answer = httpx.post(base + "/moa/invoke", json=body, timeout=30)
        schema = httpx.get(base + "/moa/config_schema").json()
    assert answer.status_code == 200, answer.text
    assert answer.json()["output"]["messages"][-1]["content"] == "smol answer to: hi [refs=1]"
    assert started == [True]
    assert "local" in str(schema)
