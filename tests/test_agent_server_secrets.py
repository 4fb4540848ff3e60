"""The Agent Server (``langgraph dev`` from langgraph.json) gives no key away, and lets no client choose where keys go.

The canary key is the server's ``OPENAI_API_KEY``; ``OPENAI_BASE_URL`` points
the ``openai:`` models at a simulated upstream that puts the key inside a long
run of text without whitespace (compact JSON) and streams it in 3-character
chunks, then echoes the ``Authorization`` header. Every stream mode of the
LangGraph API, its stored state and history, ``/v1`` and the server's log are
searched for the key, and each model call's chunks are concatenated as a client
would. Run with ``python -m pytest -n 0 -m langgraph_dev``.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from langgraph_moa.local import free_port
from langgraph_moa.testing import ModelBehavior, SimulatedOpenAIServer
from tests.test_langgraph_dev import DevServer

pytestmark = pytest.mark.langgraph_dev

CANARY = "moa-canary-agent-4c2b9e7f1d"
LONG_RUN = '{"pad":"' + "p" * 600 + '","auth":"' + CANARY + '","tail":"' + "q" * 700 + '"}'
REDACTED = LONG_RUN.replace(CANARY, "***")


@pytest.fixture(scope="module")
def upstream() -> Iterator[SimulatedOpenAIServer]:
    with SimulatedOpenAIServer(default=ModelBehavior(reply=LONG_RUN, echo_authorization=True, chunk_chars=3)) as sim:
        yield sim


@pytest.fixture(scope="module")
def attacker() -> Iterator[SimulatedOpenAIServer]:
    """A port on the server's own machine that no operator allowed."""
    with SimulatedOpenAIServer() as sim:
        yield sim


@pytest.fixture(scope="module")
def dev(upstream: SimulatedOpenAIServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_API_BASE", "_BASE_URL"))}
    env.update(
        LANGGRAPH_CLI_NO_ANALYTICS="1",
        LANGSMITH_TRACING="false",
        OPENAI_API_KEY=CANARY,
        OPENAI_BASE_URL=upstream.base_url,  # the operator's endpoint for openai: models
    )
    env.pop("MOA_ALLOWED_BASE_URLS", None)
    workdir = tmp_path_factory.mktemp("secrets-dev")
    assistants = workdir / "assistants.json"
    assistants.write_text(json.dumps({"echo": {"proposers": ["openai:p1"], "aggregator": "openai:agg"}}))
    env["MOA_ASSISTANTS"] = str(assistants)  # what /v1 serves
    server = DevServer(workdir, free_port(), env)
    try:
        yield server.wait_until_ready()
    finally:
        server.stop()


def _post(url: str, body: dict[str, Any]) -> tuple[int, str]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _context(**extra: Any) -> dict[str, Any]:
    return {"proposers": ["openai:p1", "openai:p2"], "aggregator": "openai:agg", "max_retries": 0, **extra}


@pytest.mark.parametrize("via", ["context", "configurable"])
def test_a_client_cannot_send_the_servers_keys_to_a_port_of_its_choosing(
    dev: DevServer, attacker: SimulatedOpenAIServer, via: str
) -> None:
    """The issue's probe: a loopback endpoint the operator did not allow, with OPENAI_API_KEY, or HOME."""
    for variable in ("OPENAI_API_KEY", "HOME"):
        spec = {"model": "openai:x", "base_url": attacker.base_url, "api_key_env": variable}
        settings = {"proposers": [spec], "aggregator": spec}
        body: dict[str, Any] = {"assistant_id": "moa", "input": {"messages": [{"role": "user", "content": "hi"}]}}
        body.update({"context": settings} if via == "context" else {"config": {"configurable": settings}})
        _, text = _post(f"{dev.url}/runs/wait", body)
        assert "is not allowed on this server" in text, text
    assert attacker.calls() == 0 and attacker.api_keys == []


def test_the_langgraph_api_streams_hold_no_key_however_a_client_joins_them(
    dev: DevServer, upstream: SimulatedOpenAIServer
) -> None:
    from langgraph_sdk import get_sync_client

    client = get_sync_client(url=dev.url)
    thread = client.threads.create()
    modes = ["messages-tuple", "values", "updates", "custom", "debug", "events", "tasks", "checkpoints"]
    seen: list[tuple[str, str]] = []
    by_message: dict[str, str] = {}
    by_event_run: dict[str, str] = {}
    for part in client.runs.stream(
        thread["thread_id"],
        "moa",
        input={"messages": [{"role": "user", "content": "hi"}]},
        context=_context(layers=3, provisional_answers=True),
        stream_mode=modes,
        stream_subgraphs=True,
    ):
        assert not part.event.startswith("error"), part.data
        seen.append((part.event, json.dumps(part.data)))
        if part.event.startswith("messages"):
            chunk, _ = part.data
            by_message[chunk["id"]] = by_message.get(chunk["id"], "") + (chunk.get("content") or "")
        if part.event.startswith("events") and part.data.get("event") == "on_chat_model_stream":
            run = part.data["run_id"]
            by_event_run[run] = by_event_run.get(run, "") + (part.data["data"]["chunk"].get("content") or "")
    assert CANARY in upstream.api_keys  # the key did go to the provider
    assert by_message and any(text.startswith(REDACTED) for text in by_message.values()), by_message
    assert by_event_run and any(text.startswith(REDACTED) for text in by_event_run.values()), by_event_run
    seen += [(f"messages {m}, joined", text) for m, text in by_message.items()]
    seen += [(f"events {r}, joined", text) for r, text in by_event_run.items()]
    seen.append(("state", json.dumps(client.threads.get_state(thread["thread_id"]))))
    seen.append(("history", json.dumps(client.threads.get_history(thread["thread_id"], limit=100))))

    import openai

    with openai.OpenAI(base_url=dev.url + "/v1", api_key="unused", max_retries=0, timeout=120) as oa:
        streamed = oa.chat.completions.create(
            model="echo", messages=[{"role": "user", "content": "via /v1"}], stream=True
        )
        text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    assert text.startswith(REDACTED), text
    seen.append(("/v1 stream, joined", text))
    seen.append(("server log", Path(dev.log).read_text(errors="replace")))
    leaked = [where for where, text in seen if CANARY in text]
    assert not leaked, leaked
