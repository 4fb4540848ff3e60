"""``moa serve``: one process serving the OpenAI API and the LangServe routes, with its checkpointer."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest
from langserve import RemoteRunnable
from pydantic import ValidationError
from typer.testing import CliRunner

from langgraph_moa import ConfigError, MoAConfig
from langgraph_moa.cli import app
from langgraph_moa.local import free_port
from langgraph_moa.serve.app import (
    ServeSettings,
    create_app,
    describe_checkpoint,
    load_api_keys,
    load_assistants,
)
from langgraph_moa.testing import Fault, ModelBehavior, SimulatedOpenAIServer
from tests.conftest import answer_at_peak, post_then_hang_up, running, sim_config, wait_idle

KEY = "sk-moa-serve-test-key-42"


def test_moa_serve_answers_openai_and_langserve_clients(server: SimulatedOpenAIServer, tmp_path: Path) -> None:
    assistants = tmp_path / "assistants.json"
    assistants.write_text(
        json.dumps({"solo": {"proposers": ["openai:p9"], "aggregator": "openai:a9", "base_url": server.base_url}})
    )
    db, port = tmp_path / "serve.sqlite", free_port()
    env = {**os.environ, "MOA_API_KEYS": KEY, "LANGSMITH_TRACING": "false"}
    env.pop("OPENAI_API_KEY", None)
    command = [
        sys.executable,
        "-m",
        "langgraph_moa",
        "serve",
        "--port",
        str(port),
        "--base-url",
        server.base_url,
        "--proposer",
        "p1",
        "--proposer",
        "p2",
        "--aggregator",
        "agg",
        "--assistants",
        str(assistants),
        "--db",
        str(db),
        "--log-level",
        "info",
    ]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "moa serve did not start"
            try:
                if httpx.get(base + "/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)

        with openai.OpenAI(base_url=base + "/v1", api_key=KEY, max_retries=0) as client:
            ids = [m.id for m in client.models.list()]
            assert ids == ["default", "solo"]  # the presets need provider keys this server does not have
            answer = client.chat.completions.create(
                model="default", messages=[{"role": "user", "content": "served?"}], store=True
            )
            assert answer.choices[0].message.content == "agg answer to: served? [refs=2]"
            solo = client.chat.completions.create(model="solo", messages=[{"role": "user", "content": "x"}])
            assert solo.choices[0].message.content == "a9 answer to: x [refs=1]"

        # LangServe starts from the served configuration (--name, "default")
        remote = RemoteRunnable(base + "/moa", headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
        state = remote.invoke({"messages": [("user", "via langserve")]})
        assert state["messages"][-1].content == "agg answer to: via langserve [refs=2]"
        assert httpx.post(base + "/moa/invoke", json={"input": {"messages": []}}).status_code == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=15)
    assert proc.returncode == 0, stderr  # SIGTERM with nothing in flight: a clean drain
    assert "serving default, solo, moa" in stderr and "1 API key(s)" in stderr
    assert "left out of /v1/models until their provider keys are set: moa, moa-lite" in stderr
    logged = stdout + stderr
    assert '"POST /v1/chat/completions HTTP/1.1" 200' in logged  # uvicorn's access log
    assert '"POST /moa/invoke HTTP/1.1" 401' in logged
    assert KEY not in logged
    with sqlite3.connect(db) as conn:  # the stored completion is a thread of the SQLite checkpointer
        threads = {row[0] for row in conn.execute("SELECT DISTINCT thread_id FROM checkpoints")}
    assert threads == {answer.id}


def test_serve_refuses_two_checkpointers_and_bad_urls(tmp_path: Path) -> None:
    runner = CliRunner()
    both = runner.invoke(app, ["serve", "--db", str(tmp_path / "x"), "--checkpoint-url", "postgresql://h/db"])
    assert both.exit_code == 2 and "not both" in both.output
    wrong = runner.invoke(app, ["serve", "--checkpoint-url", "mysql://h/db"])
    assert wrong.exit_code == 2 and "postgresql://" in wrong.output


def test_api_keys_come_from_the_environment_and_a_file(tmp_path: Path) -> None:
    file = tmp_path / "keys"
    file.write_text("# team keys\nkey-from-file-1\n\n  key-shared  \n")
    keys = load_api_keys(file, {"MOA_API_KEYS": "key-from-env, key-shared,"})
    assert [k.get_secret_value() for k in keys] == ["key-from-env", "key-shared", "key-from-file-1"]
    assert "key-from-env" not in repr(keys)
    with pytest.raises(ConfigError, match="cannot read the API key file"):
        load_api_keys(tmp_path / "missing", {})


def test_assistants_file_errors_name_the_assistant(tmp_path: Path) -> None:
    file = tmp_path / "a.json"
    file.write_text(json.dumps({"good": {"preset": "moa-lite", "temperature": 0.1}, "bad": {"layers": 0}}))
    with pytest.raises(ConfigError, match="assistant 'bad': .*layers"):
        load_assistants(file)
    file.write_text(json.dumps({"good": {"preset": "moa-lite", "temperature": 0.1}}))
    assert load_assistants(file)["good"].temperature == 0.1


def test_checkpoint_description_hides_credentials() -> None:
    described = describe_checkpoint("postgresql://moa:s3cret-pw@db.example:5433/moa")
    assert described == "PostgreSQL at db.example:5433/moa" and "s3cret" not in described
    assert describe_checkpoint("/tmp/x.sqlite") == "SQLite at /tmp/x.sqlite"


def test_default_assistant_must_be_served() -> None:
    with pytest.raises(ConfigError, match="default_assistant 'nope' is not served"):
        create_app(ServeSettings(default_assistant="nope"))


@pytest.mark.postgres
def test_postgres_checkpointer_keeps_stored_completions(server: SimulatedOpenAIServer) -> None:
    """Needs MOA_TEST_POSTGRES_URL, a database the test may create tables in (`.ci/run` starts one)."""
    import psycopg

    url = os.environ.get("MOA_TEST_POSTGRES_URL")
    if not url:
        pytest.fail("set MOA_TEST_POSTGRES_URL=postgresql://... to run the PostgreSQL test")
    config = MoAConfig(proposers=["openai:p1", "openai:p2"], aggregator="openai:agg", base_url=server.base_url)
    app_ = create_app(ServeSettings(assistants={"sim": config}), checkpoint=url, langserve_path=None)
    with running(app_) as base, openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0) as client:
        stored = client.chat.completions.create(
            model="sim", messages=[{"role": "user", "content": "in postgres"}], store=True
        )
        assert client.chat.completions.retrieve(stored.id).choices[0].message.content == (
            "agg answer to: in postgres [refs=2]"
        )
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT count(*) FROM checkpoints WHERE thread_id = %s", (stored.id,)).fetchone()
    assert rows[0] >= 1
    # a new app on the same database still finds it: the checkpoints outlive the process
    with running(create_app(ServeSettings(assistants={"sim": config}), checkpoint=url, langserve_path=None)) as base:
        again = httpx.get(f"{base}/v1/chat/completions/{stored.id}").json()
    assert again["choices"][0]["message"]["content"] == "agg answer to: in postgres [refs=2]"


def test_assistants_that_wait_for_a_human_review_are_refused() -> None:
    with pytest.raises(ValidationError, match="assistants careful have review=True"):
        ServeSettings(assistants={"careful": MoAConfig(review=True), "ok": MoAConfig()})


@pytest.mark.filterwarnings("ignore:Accessing the 'model_fields' attribute:DeprecationWarning")  # langserve's batch
def test_langserve_runs_share_the_provider_bound() -> None:
    with SimulatedOpenAIServer() as sim:
        for model in ("p1", "p2", "p3", "agg"):
            sim.set_behavior(model, ModelBehavior(latency=0.1, reply=answer_at_peak(sim, 2)))
        config = MoAConfig(
            proposers=["openai:p1", "openai:p2", "openai:p3"], aggregator="openai:agg", base_url=sim.base_url
        )
        settings = ServeSettings(assistants={"d": config}, default_assistant="d", provider_concurrency=2)
        with running(create_app(settings, checkpoint=":memory:")) as base:
            states = RemoteRunnable(base + "/moa").batch([{"messages": [("user", f"q{i}")]} for i in range(3)])
    assert [s["messages"][-1].content for s in states] == [f"agg answer to: q{i} [refs=3]" for i in range(3)]
    assert sim.calls() == 12 and sim.max_concurrency == 2


def test_serve_refuses_an_empty_assistants_file_and_a_name_taken_by_an_assistant(tmp_path: Path) -> None:
    runner = CliRunner()
    empty = tmp_path / "empty.json"
    empty.write_text("{}")
    unbindable = ["--host", "256.0.0.1"]  # had the refusal regressed, serving would fail at once instead of hanging
    result = runner.invoke(app, ["serve", "--assistants", str(empty), *unbindable])
    assert result.exit_code == 2 and "holds no assistants" in result.output, result.output
    taken = tmp_path / "taken.json"
    taken.write_text(json.dumps({"fast": {"preset": "moa-lite"}}))
    result = runner.invoke(app, ["serve", "--assistants", str(taken), "--name", "fast", "--preset", "moa"])
    assert result.exit_code == 2 and "--name 'fast' is also an assistant" in result.output, result.output


@pytest.mark.parametrize(
    ("args", "answered", "refused"),
    [
        ([], ["127.0.0.1:8000", "localhost", "[::1]:8000"], ["evil.example", "evil.example:8000", ""]),
        (["--host", "0.0.0.0"], ["evil.example", "10.0.0.2:8000"], []),
        (["--host", "0.0.0.0", "--allowed-host", "moa.internal"], ["moa.internal:8000"], ["evil.example"]),
    ],
    ids=["loopback", "all-interfaces", "allowed-host"],
)
def test_serve_answers_only_to_its_host_names(
    server: SimulatedOpenAIServer,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    answered: list[str],
    refused: list[str],
) -> None:
    """A page whose name was rebound to 127.0.0.1 sends its own name as Host: loopback servers refuse it."""
    import uvicorn
    from starlette.testclient import TestClient

    apps = []
    monkeypatch.setattr(uvicorn, "run", lambda app_, **_: apps.append(app_))
    options = ["--base-url", server.base_url, "--proposer", "p1", "--aggregator", "agg", "--db", ":memory:"]
    result = CliRunner().invoke(app, ["serve", *options, *args])
    assert result.exit_code == 0, result.output
    client = TestClient(apps[0])  # the lifespan does not run: the guard answers first
    for host in answered:
        assert client.get("/health", headers={"host": host}).status_code == 200, host
    for host in refused:
        refused_ = client.get("/health", headers={"host": host})
        assert refused_.status_code == 400 and refused_.json()["error"]["code"] == "invalid_host", host


@pytest.mark.filterwarnings("ignore:Accessing the 'model_fields' attribute:DeprecationWarning")  # langserve's batch
def test_a_langserve_client_that_goes_away_cancels_its_run() -> None:
    """/moa/invoke and /moa/batch answer once the run is over: a client gone before that frees its slots."""
    with SimulatedOpenAIServer({"hang": ModelBehavior(hang=True)}) as sim:

        def cfg(*proposers: str, **kw) -> MoAConfig:
            return MoAConfig(
                proposers=[f"openai:{p}" for p in proposers],
                aggregator="openai:agg",
                base_url=sim.base_url,
                max_retries=0,
                **kw,
            )

        settings = ServeSettings(
            assistants={"hanging": cfg("hang", "hang", timeout=60), "sim": cfg("p1")},
            default_assistant="hanging",
            provider_concurrency=2,
        )
        question = {"messages": [{"type": "human", "content": "x"}]}
        with running(create_app(settings, checkpoint=":memory:")) as base:
            post_then_hang_up(base + "/moa/invoke", {"input": question}, sim, 2, "hang")
            post_then_hang_up(base + "/moa/batch", {"inputs": [question]}, sim, 4, "hang")
            assert sim.calls("hang") == 4  # both runs held both slots of the provider
            assert wait_idle(sim), "the runs went on after their clients left"  # they hang until cancelled
            with openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=5) as client:
                answer = client.chat.completions.create(model="sim", messages=[{"role": "user", "content": "next"}])
            assert answer.choices[0].message.content == "agg answer to: next [refs=1]"


@pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince211")  # inside langserve
def test_langserve_clients_of_the_app_only_tune_the_served_models(server: SimulatedOpenAIServer) -> None:
    from fastapi.testclient import TestClient

    served = sim_config(server, ["a", "b"])
    settings = ServeSettings(assistants={"default": served}, default_assistant="default", max_tokens=200)
    with TestClient(create_app(settings, checkpoint=None)) as client:
        body = {"input": {"messages": [{"type": "human", "content": "hi"}]}, "config": {"configurable": {}}}
        tuned = {**body, "config": {"configurable": {"temperature": 0.1}}}
        assert client.post("/moa/invoke", json=tuned).json()["output"]["messages"][-1]["content"] == (
            "agg answer to: hi [refs=2]"
        )
        for refused in ({"proposers": ["openai:other"]}, {"max_tokens": 201}, {"base_url": server.base_url}):
            answer = client.post("/moa/invoke", json={**body, "config": {"configurable": refused}})
            assert answer.status_code == 422, refused
    assert server.calls("other") == 0 and server.calls("agg") == 1


@pytest.mark.filterwarnings("ignore::DeprecationWarning:langserve")
@pytest.mark.filterwarnings("ignore:astream_log is deprecated:DeprecationWarning")
def test_langserve_errors_say_what_failed_as_v1_does(server: SimulatedOpenAIServer) -> None:
    """Upstream failures keep /v1's status and code; bad input is a 4xx with a reason, never a bare 500."""
    from langserve.lzstring import LZString

    server.set_behavior("down", ModelBehavior(faults=[Fault(500, times=10**6)]))
    failing = MoAConfig(proposers=["openai:down"], aggregator="openai:agg", base_url=server.base_url, max_retries=0)
    settings = ServeSettings(assistants={"failing": failing}, default_assistant="failing")
    question = {"input": {"messages": [{"type": "human", "content": "x"}]}}
    with running(create_app(settings, checkpoint=":memory:")) as base, httpx.Client(base_url=base, timeout=30) as c:
        invoked = c.post("/moa/invoke", json=question)
        assert invoked.status_code == 502 and invoked.json()["error"]["code"] == "proposers_failed"
        assert "openai:down" in invoked.json()["error"]["message"]
        for route in ("stream", "stream_log", "stream_events"):  # the stream ends with the same reason
            streamed = c.post(f"/moa/{route}", json=question)
            data = streamed.text.split("event: error", 1)[1].split("data: ", 1)[1].strip()
            assert json.loads(data)["status_code"] == 502 and json.loads(data)["code"] == "proposers_failed", route
        empty = c.post("/moa/invoke", json={"input": {"messages": []}})
        assert empty.status_code == 422 and "messages" in empty.text
        deep = b'{"input": ' + b"[" * 5_000 + b"]" * 5_000 + b"}"
        nested = c.post("/moa/invoke", content=deep, headers={"content-type": "application/json"})
        assert nested.status_code == 400 and nested.json()["error"]["code"] == "invalid_json"
        # the configurable in a /c/<hash>/ path is held to the same policy as the body's
        for forbidden in ({"base_url": "http://evil.example/v1"}, {"proposers": ["openai:other"]}):
            config_hash = LZString.compressToEncodedURIComponent(json.dumps({"configurable": forbidden}))
            refused = c.post(f"/moa/c/{config_hash}/invoke", json=question)
            assert refused.status_code == 422 and "cannot be set by a client" in refused.text, forbidden
        assert c.get("/health").status_code == 200  # the connection was kept: nothing crashed
    assert server.calls("other") == 0


def test_a_request_of_too_many_messages_or_characters_is_refused_at_once(server: SimulatedOpenAIServer) -> None:
    """20,000 short messages fit in the body limit, but every model call would carry them all."""
    config = sim_config(server, ["p1"])
    settings = ServeSettings(assistants={"sim": config}, default_assistant="sim", max_request_chars=5_000)
    many = [{"role": "user", "content": "hi"}] * 20_000
    long = [{"role": "user", "content": "x" * 5_001}]
    with running(create_app(settings, checkpoint=":memory:")) as base, httpx.Client(base_url=base, timeout=30) as c:
        for messages, code in ((many, "too_many_messages"), (long, "request_too_long")):
            refused = c.post("/v1/chat/completions", json={"model": "sim", "messages": messages})
            assert refused.status_code == 400, refused.text
            assert refused.json()["error"]["code"] == code and refused.json()["error"]["param"] == "messages"
            refused = c.post("/moa/invoke", json={"input": {"messages": messages}})
            assert refused.status_code == 400 and "server's limit" in refused.text
            batch = c.post(
                "/moa/batch",
                json={"inputs": [{"messages": [{"type": "human", "content": "ok"}]}, {"messages": messages}]},
            )
            assert batch.status_code == 400
        at_limit = [{"role": "user", "content": "hi"}] * settings.max_messages
        assert c.post("/v1/chat/completions", json={"model": "sim", "messages": at_limit}).status_code == 200
    assert server.calls() == 2  # only the request within the limits reached the models


@pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince211")  # inside langserve
def test_the_message_limit_lets_the_cap_through_and_refuses_one_more(server: SimulatedOpenAIServer) -> None:
    settings = ServeSettings(assistants={"sim": sim_config(server, ["p1"])}, default_assistant="sim", max_messages=3)
    at_cap = [{"role": "user", "content": "hi"}] * 3
    over = at_cap + [{"role": "user", "content": "hi"}]
    with running(create_app(settings, checkpoint=":memory:")) as base, httpx.Client(base_url=base, timeout=30) as c:
        assert c.post("/v1/chat/completions", json={"model": "sim", "messages": at_cap}).status_code == 200
        assert c.post("/moa/invoke", json={"input": {"messages": at_cap}}).status_code == 200
        refused = c.post("/v1/chat/completions", json={"model": "sim", "messages": over})
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "too_many_messages"
        refused = c.post("/moa/invoke", json={"input": {"messages": over}})
        assert refused.status_code == 400 and "4 messages are more than this server's limit of 3" in refused.text
    assert server.calls() == 4  # the two runs at the cap, one proposer and the aggregator each


def test_health_answers_while_a_maximal_request_runs(server: SimulatedOpenAIServer) -> None:
    """The largest request the limits let through still leaves the event loop free for others."""
    import threading

    healthy = threading.Event()  # set once /health has answered three times while the request runs

    def after_health_answered(messages: list[dict]) -> None:
        healthy.wait(30)
        return None  # the default reply

    server.set_behavior("slowagg", ModelBehavior(reply=after_health_answered))
    config = sim_config(server, ["p1", "p2", "p3"], aggregator="slowagg")
    settings = ServeSettings(assistants={"sim": config})
    words = settings.max_request_chars // settings.max_messages - 1
    messages = [{"role": "user", "content": "w" * words}] * settings.max_messages
    done = threading.Event()
    answers: list[int] = []
    with running(create_app(settings, checkpoint=":memory:")) as base:

        def maximal() -> None:
            answer = httpx.post(base + "/v1/chat/completions", json={"model": "sim", "messages": messages}, timeout=60)
            answers.append(answer.status_code)
            done.set()

        threading.Thread(target=maximal).start()
        assert server.wait_for_calls(1)  # the run has started its model calls
        health = []
        while not done.is_set():
            health.append(httpx.get(base + "/health", timeout=5).status_code)
            if len(health) >= 3:
                healthy.set()  # the aggregator answers now, and the request ends
            time.sleep(0.05)
    assert answers == [200]
    assert len(health) >= 3 and set(health) == {200}  # /health kept answering while the request ran


def test_the_sqlite_tables_exist_from_start_up(tmp_path: Path) -> None:
    import sqlite3

    from langgraph_moa.serve.app import ServeSettings, create_app
    from tests.conftest import running

    db = tmp_path / "serve.sqlite"
    with running(create_app(ServeSettings(), checkpoint=db)):
        with sqlite3.connect(db) as connection:
            tables = {row[0] for row in connection.execute("select name from sqlite_master where type = 'table'")}
    assert {"checkpoints", "writes"} <= tables


def test_the_objects_of_start_up_are_frozen_out_of_garbage_collection() -> None:
    """A full collection during a burst walks only what requests created, not every module and graph."""
    import gc

    gc.unfreeze()
    with running(create_app(ServeSettings(freeze_startup_objects=False), checkpoint=":memory:")):
        assert gc.get_freeze_count() == 0
    marker = object.__new__(type("StartUpObject", (), {}))  # alive at start-up, tracked by the collector
    try:
        with running(create_app(ServeSettings(), checkpoint=":memory:")) as base:
            assert httpx.get(base + "/health").json() == {"status": "ok"}
            assert gc.get_freeze_count() > 1000
            assert not any(o is marker for o in gc.get_objects())  # out of every generation
    finally:
        gc.unfreeze()
    assert any(o is marker for o in gc.get_objects())


def _start_serve(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-m", "langgraph_moa", "serve", "--port", str(port), "--log-level", "info", *args]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "moa serve did not start"
        try:
            if httpx.get(base + "/health").status_code == 200:
                return proc, base
        except httpx.TransportError:
            time.sleep(0.1)


def test_sigterm_lets_runs_finish_then_cancels_them_and_keeps_finished_proposals(tmp_path: Path) -> None:
    """--graceful-timeout: a run that finishes in time is answered (exit 0); one that cannot is cancelled (exit 1)."""
    import threading

    from langgraph.checkpoint.sqlite import SqliteSaver

    from langgraph_moa import create_moa_graph

    drained = threading.Event()  # set once the server refuses new connections: SIGTERM has taken effect

    def after_sigterm(messages: list[dict]) -> None:
        drained.wait(60)
        return None  # the default reply

    behaviors = {"slowagg": ModelBehavior(reply=after_sigterm), "hang": ModelBehavior(hang=True)}
    with SimulatedOpenAIServer(behaviors) as sim:
        assistants = tmp_path / "assistants.json"
        models = {"base_url": sim.base_url, "timeout": 600}
        assistants.write_text(
            json.dumps(
                {
                    "finishing": {"proposers": ["openai:p1"], "aggregator": "openai:slowagg", **models},
                    "stuck": {"proposers": ["openai:p1", "openai:hang"], "aggregator": "openai:agg", **models},
                }
            )
        )
        env = {**os.environ, "LANGSMITH_TRACING": "false"}
        env.pop("MOA_API_KEYS", None)
        db = tmp_path / "serve.sqlite"
        outcomes: list[object] = []

        def ask(base: str, model: str) -> None:
            body = {"model": model, "messages": [{"role": "user", "content": "q"}], "store": True}
            try:
                outcomes.append(httpx.post(base + "/v1/chat/completions", json=body, timeout=60).status_code)
            except httpx.TransportError as exc:
                outcomes.append(type(exc).__name__)

        for model, grace in (("finishing", "20"), ("stuck", "1")):
            proc, base = _start_serve(
                ["--assistants", str(assistants), "--db", str(db), "--graceful-timeout", grace], env
            )
            try:
                sim.reset()
                asking = threading.Thread(target=ask, args=(base, model))
                asking.start()
                upstream = "slowagg" if model == "finishing" else "hang"
                assert sim.wait_for_calls(1, upstream)  # the run is under way
                proc.send_signal(signal.SIGTERM)
                deadline = time.monotonic() + 30
                while True:  # no new connection is accepted meanwhile
                    try:
                        httpx.get(base + "/health", timeout=5)
                    except httpx.TransportError:
                        break
                    assert time.monotonic() < deadline, "moa serve kept accepting connections after SIGTERM"
                    time.sleep(0.05)
                drained.set()  # the finishing run's aggregator answers only now, during the drain
                asking.join(timeout=60)
                _, stderr = proc.communicate(timeout=60)
            finally:
                if proc.poll() is None:
                    proc.kill()
            if model == "finishing":
                assert outcomes == [200] and proc.returncode == 0, stderr
            else:
                assert outcomes[-1] == 503, outcomes  # cancelled once the grace was over, answered: send it again
                assert proc.returncode == 1 and "1 request(s) were cancelled at shutdown" in stderr, stderr
                assert wait_idle(sim), "the hanging upstream request was left open"

    # the cancelled stored run kept the proposal that had finished
    with SqliteSaver.from_conn_string(str(db)) as saver:
        graph = create_moa_graph().compile(checkpointer=saver)
        threads = {c.config["configurable"]["thread_id"] for c in saver.list(None)}
        unfinished = [graph.get_state({"configurable": {"thread_id": t}}) for t in threads]
        unfinished = [s for s in unfinished if s.next]
    assert len(threads) == 2 and len(unfinished) == 1
    kept = [t.result for t in unfinished[0].tasks if t.result]
    assert [p["model"] for r in kept for p in r.get("proposals", [])] == ["openai:p1"]


@pytest.mark.postgres
def test_two_servers_share_one_postgres_and_a_killed_one_loses_nothing_stored(tmp_path: Path) -> None:
    """Replicas on one database: what one stores the other reads; a client retries a killed replica's request."""
    import psycopg

    url = os.environ.get("MOA_TEST_POSTGRES_URL")
    if not url:
        pytest.fail("set MOA_TEST_POSTGRES_URL=postgresql://... to run the PostgreSQL test")
    with SimulatedOpenAIServer({"slowagg": ModelBehavior(latency=3.0)}) as sim:
        assistants = tmp_path / "assistants.json"
        models = {"base_url": sim.base_url}
        assistants.write_text(
            json.dumps(
                {
                    "sim": {"proposers": ["openai:p1", "openai:p2"], "aggregator": "openai:agg", **models},
                    "slow": {"proposers": ["openai:p1"], "aggregator": "openai:slowagg", **models},
                }
            )
        )
        env = {**os.environ, "LANGSMITH_TRACING": "false"}
        env.pop("MOA_API_KEYS", None)
        args = ["--assistants", str(assistants), "--checkpoint-url", url]
        first, first_url = _start_serve(args, env)
        second, second_url = _start_serve(args, env)
        try:
            ask = {"model": "sim", "messages": [{"role": "user", "content": "replicated"}], "store": True}
            stored = httpx.post(first_url + "/v1/chat/completions", json=ask, timeout=30).json()
            read = httpx.get(f"{second_url}/v1/chat/completions/{stored['id']}", timeout=30).json()
            assert read["choices"][0]["message"]["content"] == "agg answer to: replicated [refs=2]"
            assert read["moa"]["proposals"] == stored["moa"]["proposals"]

            # a replica killed mid-request: the client's retry on the other one succeeds
            slow = {"model": "slow", "messages": [{"role": "user", "content": "killed"}], "store": True}
            outcome: list[object] = []

            def request_first() -> None:
                try:
                    outcome.append(httpx.post(first_url + "/v1/chat/completions", json=slow, timeout=30).status_code)
                except httpx.TransportError as exc:
                    outcome.append(type(exc).__name__)

            import threading

            asking = threading.Thread(target=request_first)
            asking.start()
            assert sim.wait_for_calls(1, "slowagg")
            first.kill()
            asking.join(timeout=30)
            assert outcome and outcome[0] not in (200,), outcome
            retried = httpx.post(second_url + "/v1/chat/completions", json=slow, timeout=30)
            assert retried.status_code == 200
            assert retried.json()["choices"][0]["message"]["content"] == "slowagg answer to: killed [refs=1]"

            # nothing stored is corrupted: every thread reads back through the survivor, finished or not
            with psycopg.connect(url) as conn:
                threads = [row[0] for row in conn.execute("SELECT DISTINCT thread_id FROM checkpoints")]
            answers = {t: httpx.get(f"{second_url}/v1/chat/completions/{t}", timeout=30) for t in threads}
            assert {stored["id"], retried.json()["id"]} <= set(threads)
            assert all(a.status_code in (200, 404) for a in answers.values()), answers
            assert (
                answers[stored["id"]].json()["choices"][0]["message"]["content"]
                == read["choices"][0]["message"]["content"]
            )
        finally:
            for proc in (first, second):
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                proc.communicate(timeout=60)


@pytest.mark.filterwarnings("ignore::DeprecationWarning:langserve")
def test_at_most_max_concurrent_runs_execute_at_once(server: SimulatedOpenAIServer) -> None:
    """A burst of requests starts its runs as slots free up, over both ways in; every request is answered."""
    import concurrent.futures

    server.set_behavior("p1", ModelBehavior(latency=0.3, reply=answer_at_peak(server, 2)))
    config = sim_config(server, ["p1"])
    settings = ServeSettings(assistants={"sim": config}, default_assistant="sim", max_concurrent_runs=2)
    with running(create_app(settings, checkpoint=":memory:")) as base:

        def ask(i: int) -> str:
            if i % 2:
                body = {"input": {"messages": [{"type": "human", "content": f"q{i}"}]}}
                return httpx.post(base + "/moa/invoke", json=body, timeout=60).json()["output"]["messages"][-1][
                    "content"
                ]
            body = {"model": "sim", "messages": [{"role": "user", "content": f"q{i}"}], "stream": i % 4 == 0}
            answer = httpx.post(base + "/v1/chat/completions", json=body, timeout=60)
            if i % 4:
                return answer.json()["choices"][0]["message"]["content"]
            chunks = [json.loads(line[6:]) for line in answer.text.splitlines() if line.startswith("data: {")]
            return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(ask, range(8)))
    assert answers == [f"agg answer to: q{i} [refs=1]" for i in range(8)]
    assert server.calls("p1") == 8 and server.max_concurrency == 2  # one upstream call per run at a time


def test_a_langserve_run_of_a_preset_names_the_preset_when_its_key_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TOGETHER_API_KEY", raising=False)
    with running(create_app(ServeSettings(), checkpoint=":memory:")) as base:
        moa = RemoteRunnable(f"{base}/moa")
        with pytest.raises(httpx.HTTPStatusError) as caught:
            moa.invoke({"messages": [("user", "hi")]}, {"configurable": {"preset": "moa-lite"}})
    response = caught.value.response
    assert response.status_code == 503
    message = response.json()["error"]["message"]
    assert message.startswith("model 'moa-lite' is not available on this server") and "TOGETHER_API_KEY" in message
