"""A provider key never travels further than the provider, whatever the provider sends back.

The simulated upstream echoes the request's ``Authorization`` header in every
answer and error body (``ModelBehavior.echo_authorization``). The key is a
canary: every way in (``/v1`` plain and streamed, stored completions, every
LangServe route, the CLI), the server and CLI logs and the checkpoints are
searched for it.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from langserve.lzstring import LZString
from typer.testing import CliRunner

from langgraph_moa import MoAConfig
from langgraph_moa.cli import app as cli_app
from langgraph_moa.providers import StreamRedactor, redact
from langgraph_moa.serve.app import ServeSettings, create_app
from langgraph_moa.testing import Fault, ModelBehavior, SimulatedOpenAIServer
from tests.conftest import running

pytestmark = [
    pytest.mark.filterwarnings("ignore:astream_log is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:langserve"),
    pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince211"),
]

CANARY = "moa-canary-5f0c1d2e3a4b9876"  # not key-shaped: only its value can give it away
ALWAYS = 10**6
ECHOED = "(Authorization: Bearer ***)"  # what is left of the echo once the key is removed


@pytest.fixture
def echoing(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimulatedOpenAIServer]:
    """An upstream that echoes the key it is sent; ``openai:`` models reach it with the canary as their key."""
    echo = ModelBehavior(echo_authorization=True)
    behaviors = {
        "ok": echo,
        "agg": echo,
        "bad": ModelBehavior(echo_authorization=True, faults=[Fault(500, times=ALWAYS)]),
        "limited": ModelBehavior(echo_authorization=True, faults=[Fault(429, times=ALWAYS)]),
        "badagg": ModelBehavior(echo_authorization=True, faults=[Fault(401, times=ALWAYS)]),
    }
    with SimulatedOpenAIServer(behaviors, default=echo) as sim:
        monkeypatch.setenv("OPENAI_API_KEY", CANARY)
        monkeypatch.setenv("OPENAI_BASE_URL", sim.base_url)
        yield sim


def _config(proposers: list[str], aggregator: str, **kw: Any) -> MoAConfig:
    return MoAConfig(
        proposers=[f"openai:{p}" for p in proposers], aggregator=f"openai:{aggregator}", max_retries=0, **kw
    )


ASSISTANTS = {
    "mixed": _config(["ok", "bad"], "agg", min_proposals=1),  # a failure record and an echoed answer
    "proposers-fail": _config(["bad", "limited"], "agg"),
    "aggregator-fails": _config(["ok"], "badagg"),
    "provisional": _config(["ok"], "agg", layers=3, provisional_answers=True),  # an early answer, kept in state
}


def _ask(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def _assert_clean(seen: list[tuple[str, str]]) -> None:
    leaked = [where for where, text in seen if CANARY in text]
    assert not leaked, f"the key leaked through: {leaked}"


def test_stream_log_does_not_leak_an_upstream_error_body(echoing: SimulatedOpenAIServer) -> None:
    """The logs of /moa/stream_log hold each model call's error response body, which echoed the key."""
    settings = ServeSettings(assistants=ASSISTANTS, default_assistant="mixed")
    with running(create_app(settings, checkpoint=":memory:")) as base:
        body = {"input": {"messages": [{"type": "human", "content": "hi"}]}}
        raw = httpx.post(base + "/moa/stream_log", json=body, timeout=30).text
    assert '"status_code":500' in raw and "simulated fault " + ECHOED in raw  # the body is there, redacted
    assert CANARY not in raw
    assert CANARY in echoing.api_keys  # the key did go to the provider


def test_no_route_log_or_checkpoint_gives_the_key_away(
    echoing: SimulatedOpenAIServer, tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[tuple[str, str]] = []
    db = tmp_path / "serve.sqlite"
    question = {"messages": [{"type": "human", "content": "hi"}]}
    for default in ("mixed", "aggregator-fails", "proposers-fail"):
        settings = ServeSettings(assistants=ASSISTANTS, default_assistant=default)
        with running(create_app(settings, checkpoint=db), log_level="debug") as base:
            with httpx.Client(base_url=base, timeout=30) as client:
                if default == "mixed":
                    for model in ASSISTANTS:
                        for stream in (False, True):
                            payload = {"model": model, "messages": _ask("hi"), "stream": stream, "store": True}
                            answer = client.post("/v1/chat/completions", json=payload)
                            seen.append((f"/v1 {model} stream={stream}", answer.text))
                            if model == "mixed" and not stream:
                                completion_id = answer.json()["id"]
                                stored = client.get(f"/v1/chat/completions/{completion_id}").text
                                seen.append(("stored completion", stored))
                                assert ECHOED in stored
                for route in ("invoke", "stream", "stream_log", "stream_events"):
                    answer = client.post(f"/moa/{route}", json={"input": question})
                    seen.append((f"/moa/{route} ({default})", answer.text))
                answer = client.post("/moa/batch", json={"inputs": [question, question]})
                seen.append((f"/moa/batch ({default})", answer.text))
                config_hash = LZString.compressToEncodedURIComponent(json.dumps({"configurable": {"temperature": 0}}))
                answer = client.post(f"/moa/c/{config_hash}/invoke", json={"input": question})
                seen.append((f"/moa/c/<hash>/invoke ({default})", answer.text))
        assert ECHOED in " ".join(text for _, text in seen)  # answers and errors did carry the echo
    seen.append(("server log records", "\n".join(r.getMessage() for r in caplog.records)))

    # the CLI: --json, the streamed answer, an error line, and a chat's SQLite history
    runner = CliRunner()
    for args in (["--json"], []):
        result = runner.invoke(cli_app, ["ask", "hi", "--proposer", "openai:ok", "--aggregator", "openai:agg", *args])
        assert result.exit_code == 0, result.output
        seen.append((f"moa ask {args}", result.output))
    failed = runner.invoke(cli_app, ["ask", "hi", "--proposer", "openai:bad", "--aggregator", "openai:agg"])
    assert failed.exit_code == 1
    seen.append(("moa ask (failing)", failed.output))
    chat_db = tmp_path / "chat.sqlite"
    options = ["--proposer", "openai:ok", "--proposer", "openai:bad", "--aggregator", "openai:agg"]
    chat = runner.invoke(cli_app, ["chat", "--db", str(chat_db), "--min-proposals", "1", *options], input="hi\n")
    assert chat.exit_code == 0, chat.output
    seen.append(("moa chat", chat.output))

    out, err = capfd.readouterr()
    seen.append(("stdout and stderr (uvicorn's logs)", out + err))
    for path in (db, chat_db):
        with sqlite3.connect(path) as conn:
            rows = sum(conn.execute("SELECT count(*) FROM checkpoints").fetchone())
        assert rows > 0
        seen.append((f"checkpoint file {path.name}", path.read_bytes().decode("latin-1")))
        wal = Path(f"{path}-wal")
        if wal.exists():
            seen.append((f"checkpoint WAL {path.name}", wal.read_bytes().decode("latin-1")))
    _assert_clean(seen)
    assert echoing.calls("ok") > 0 and echoing.calls("bad") > 0 and echoing.calls("badagg") > 0


def _sse_data(raw: str) -> list[Any]:
    """The JSON payloads of a LangServe stream's ``data`` events."""
    payloads = []
    for block in raw.replace("\r\n", "\n").split("\n\n"):
        lines = block.split("\n")
        if "event: data" in lines:
            payloads += [json.loads(line.removeprefix("data: ")) for line in lines if line.startswith("data: ")]
    return payloads


def _streamed_texts(route: str, raw: str) -> dict[str, str]:
    """Each model call's text as a client reassembles it from the stream: its chunks concatenated."""
    texts: dict[str, str] = {}
    for payload in _sse_data(raw):
        if route == "stream_events" and payload["event"] == "on_chat_model_stream":
            run = payload["run_id"]
            texts[run] = texts.get(run, "") + payload["data"]["chunk"]["content"]
        if route == "stream_log":
            for op in payload["ops"]:
                parts = op["path"].split("/")  # /logs/<name>/streamed_output_str/-
                if op["op"] == "add" and parts[1:2] == ["logs"] and parts[3:] == ["streamed_output_str", "-"]:
                    texts[parts[2]] = texts.get(parts[2], "") + op["value"]
                chunk = op.get("value")
                if parts[1:2] == ["logs"] and parts[3:] == ["streamed_output", "-"] and "content" in (chunk or {}):
                    key = parts[2] + " (message chunks)"
                    texts[key] = texts.get(key, "") + op["value"]["content"]
    return texts


def test_a_key_split_across_langserve_stream_events_is_not_recoverable(monkeypatch: pytest.MonkeyPatch) -> None:
    """An upstream streams its echo of the key in pieces of 5 characters: no event holds the key whole,
    but a client concatenating the chunks of /moa/stream_events or /moa/stream_log would get it back."""
    split = ModelBehavior(echo_authorization=True, chunk_chars=5)
    with SimulatedOpenAIServer(default=split) as sim:
        monkeypatch.setenv("OPENAI_API_KEY", CANARY)
        monkeypatch.setenv("OPENAI_BASE_URL", sim.base_url)
        settings = ServeSettings(assistants={"split": _config(["ok"], "agg")}, default_assistant="split")
        question = {"input": {"messages": [{"type": "human", "content": "hi"}]}}
        with running(create_app(settings, checkpoint=":memory:")) as base:
            raw = {
                r: httpx.post(f"{base}/moa/{r}", json=question, timeout=30).text
                for r in ("stream_log", "stream_events")
            }
    for route, text in raw.items():
        assert CANARY not in text
        texts = _streamed_texts(route, text)
        for run, streamed in texts.items():
            assert ECHOED in streamed, (route, run, streamed)  # the whole answer arrives, key removed
            assert streamed.startswith(("ok answer to: hi", "agg answer to: hi")), (route, run, streamed)
        assert any(s.startswith("agg answer") for s in texts.values()), (route, texts)  # the aggregator's stream
    assert CANARY in sim.api_keys


def test_a_key_in_a_custom_api_key_env_is_removed_from_every_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    """A model's ``api_key_env`` need not be named like a secret (``*_KEY``, ``*_TOKEN``, ...): its value is still one."""
    split = ModelBehavior(echo_authorization=True, chunk_chars=5)
    failing = ModelBehavior(echo_authorization=True, faults=[Fault(500, times=ALWAYS)])
    with SimulatedOpenAIServer({"bad": failing}, default=split) as sim:
        monkeypatch.setenv("MY_LLM_CRED", CANARY)

        def spec(model: str) -> dict[str, str]:
            return {"model": f"openai:{model}", "api_key_env": "MY_LLM_CRED", "base_url": sim.base_url}

        config = MoAConfig(proposers=[spec("ok"), spec("bad")], aggregator=spec("agg"), max_retries=0, min_proposals=1)
        settings = ServeSettings(assistants={"custom": config}, default_assistant="custom")
        question = {"input": {"messages": [{"type": "human", "content": "hi"}]}}
        seen = []
        with running(create_app(settings, checkpoint=":memory:")) as base:
            for stream in (False, True):
                payload = {"model": "custom", "messages": _ask("hi"), "stream": stream}
                seen.append((f"/v1 stream={stream}", httpx.post(f"{base}/v1/chat/completions", json=payload).text))
            for route in ("invoke", "stream", "stream_log", "stream_events"):
                seen.append((f"/moa/{route}", httpx.post(f"{base}/moa/{route}", json=question, timeout=30).text))
    assert CANARY in sim.api_keys and all(ECHOED in text for _, text in seen)
    for route in ("stream_log", "stream_events"):
        texts = _streamed_texts(route, dict(seen)[f"/moa/{route}"])
        seen += [(f"/moa/{route} {run}, reassembled", text) for run, text in texts.items()]
    _assert_clean(seen)


def test_a_key_split_across_streamed_tokens_is_removed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    text = f"the key is {CANARY} and Authorization: Bearer {CANARY}\nsk-abcdefghijklmnop done"
    for size in (1, 3, 7, len(text)):
        pieces = [text[i : i + size] for i in range(0, len(text), size)]
        answer = StreamRedactor()  # an answer: by value, so its words stay
        shown = "".join(answer.feed(p) for p in pieces) + answer.flush()
        assert shown == "the key is *** and Authorization: Bearer ***\nsk-abcdefghijklmnop done", size
        error = StreamRedactor(shapes=True)  # key-shaped tokens too
        shown = "".join(error.feed(p) for p in pieces) + error.flush()
        assert shown == "the key is *** and Authorization: Bearer ***\n*** done", size


def _every_chunking(text: str) -> Iterator[tuple[str, list[str]]]:
    """``text`` cut in pieces of every size from 1 to its length, and in 50 random cuts."""
    import random

    for size in range(1, len(text) + 1):
        yield f"size {size}", [text[i : i + size] for i in range(0, len(text), size)]
    rng = random.Random(20)
    for n in range(50):
        cuts = sorted(rng.sample(range(1, len(text)), rng.randint(1, min(60, len(text) - 1))))
        yield f"random cut {n}", [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]


def _streamed(redactor: StreamRedactor, pieces: list[str]) -> str:
    return "".join(redactor.feed(p) for p in pieces) + redactor.flush()


def test_a_key_in_a_long_run_without_whitespace_is_removed_however_it_is_chunked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The probe of the issue: compact JSON, the key after 600 characters without whitespace, streamed in pieces."""
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    monkeypatch.setenv("MY_LLM_CRED", "cred-" + "p" * 20 + "-end")  # a key that starts like its padding
    text = (
        json.dumps(
            {"pad": "p" * 600, "auth": CANARY, "again": f"x{CANARY}{CANARY}y", "cred": "cred-" + "p" * 20 + "-end"},
            separators=(",", ":"),
        )
        + "q" * 700
    )
    expected = text.replace(CANARY, "***").replace("cred-" + "p" * 20 + "-end", "***")
    for how, pieces in _every_chunking(text):
        for redactor in (
            StreamRedactor(variables=["MY_LLM_CRED"]),
            StreamRedactor(variables=["MY_LLM_CRED"], shapes=True),
        ):
            assert _streamed(redactor, pieces) == expected, how


def test_overlapping_keys_are_each_removed_however_the_stream_is_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    """The end of one key is the start of another: cutting before the second must not free the first one's start."""
    monkeypatch.setenv("FIRST_KEY", "abcdef123")
    monkeypatch.setenv("SECOND_KEY", "123xyzuvw")
    text = "zz" + "abcdef123" + "zz" + "abcdef123xyzuvw" + "abcdef12" + "3xyz" + "123xyzu"
    for how, pieces in _every_chunking(text):
        shown = _streamed(StreamRedactor(), pieces)
        assert shown == redact(text, shapes=False), how
        assert "abcdef" not in shown and "xyzuvw" not in shown, how


def test_key_shaped_tokens_are_removed_from_a_long_run(monkeypatch: pytest.MonkeyPatch) -> None:
    text = "a" * 300 + "/sk-" + "k" * 700 + "/Bearer " + "t" * 40 + "," + "b" * 300
    for how, pieces in _every_chunking(text):
        shown = _streamed(StreamRedactor(shapes=True), pieces)
        assert shown == "a" * 300 + "/***/Bearer ***," + "b" * 300, how


def test_the_redactor_holds_back_only_what_could_start_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """A long answer without whitespace is not held until its end: the stream keeps flowing."""
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    redactor = StreamRedactor()
    shown = "".join(redactor.feed(c) for c in "p" * 5000 + CANARY[:10])
    assert shown == "p" * 5000  # the key's first characters are held, nothing else
    assert redactor.flush() == CANARY[:10]  # not a key after all


LONG_RUN = '{"pad":"' + "p" * 600 + '","auth":"' + CANARY + '","tail":"' + "q" * 700 + '"}'
"""An answer holding the key inside a long run without whitespace (compact JSON), as in the issue's probe."""


def _echo_in_a_long_run(chunk_chars: int) -> ModelBehavior:
    return ModelBehavior(reply=LONG_RUN, echo_authorization=True, chunk_chars=chunk_chars)


async def test_every_stream_mode_of_the_graph_is_redacted_at_the_source(monkeypatch: pytest.MonkeyPatch) -> None:
    """The graph's own model calls emit redacted chunks: no stream mode, event or checkpoint holds the key,
    and no concatenation of a call's chunks gives it back."""
    from langchain_core.load import dumpd
    from langgraph.checkpoint.memory import InMemorySaver

    from langgraph_moa import create_moa_graph

    with SimulatedOpenAIServer(default=_echo_in_a_long_run(3)) as sim:
        monkeypatch.setenv("OPENAI_API_KEY", CANARY)
        monkeypatch.setenv("OPENAI_BASE_URL", sim.base_url)
        saver = InMemorySaver()
        graph = create_moa_graph().compile(checkpointer=saver)
        context = _config(["ok", "ok2"], "agg", layers=3, provisional_answers=True)
        seen: list[tuple[str, str]] = []
        streamed: dict[str, str] = {}
        modes = ["messages", "values", "updates", "custom", "debug", "checkpoints", "tasks"]
        config = {"configurable": {"thread_id": "modes"}}
        async for namespace, mode, part in graph.astream(
            {"messages": [("user", "hi")]}, config, context=context, stream_mode=modes, subgraphs=True
        ):
            seen.append((f"{mode} {namespace}", json.dumps(part, default=lambda o: repr(dumpd(o)))))
            if mode == "messages":
                chunk, _ = part
                streamed[chunk.id] = streamed.get(chunk.id, "") + chunk.text
        events: dict[str, str] = {}
        async for event in graph.astream_events(
            {"messages": [("user", "again")]}, {"configurable": {"thread_id": "events"}}, context=context
        ):
            seen.append((event["event"], json.dumps(event, default=lambda o: repr(dumpd(o)))))
            if event["event"] == "on_chat_model_stream":
                events[event["run_id"]] = events.get(event["run_id"], "") + event["data"]["chunk"].text
        for thread in ("modes", "events"):
            for checkpoint in saver.list({"configurable": {"thread_id": thread}}):
                seen.append((f"checkpoint {thread}", repr(checkpoint)))
    assert CANARY in sim.api_keys and sim.calls("agg") >= 2
    expected = LONG_RUN.replace(CANARY, "***")
    assert streamed and all(text.startswith(expected) for text in streamed.values()), streamed
    assert events and all(text.startswith(expected) for text in events.values()), events
    seen += [(f"messages {i}, reassembled", t) for i, t in streamed.items()]
    seen += [(f"events {i}, reassembled", t) for i, t in events.items()]
    _assert_clean(seen)


def test_a_key_in_a_long_run_is_removed_from_every_served_stream_and_the_cli(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """The issue's probe on every stream that showed the key: /v1, /moa/stream_log, /moa/stream_events,
    ``moa ask`` stdout and ``--provisional`` stderr; the key in a custom ``api_key_env`` too."""
    with SimulatedOpenAIServer(default=_echo_in_a_long_run(3)) as sim:
        monkeypatch.setenv("OPENAI_API_KEY", CANARY)
        monkeypatch.setenv("OPENAI_BASE_URL", sim.base_url)
        monkeypatch.setenv("MY_LLM_CRED", CANARY)
        custom = {"model": "openai:agg", "api_key_env": "MY_LLM_CRED", "base_url": sim.base_url}
        assistants = {"long": _config(["ok"], "agg"), "custom": MoAConfig(proposers=[custom], aggregator=custom)}
        seen: list[tuple[str, str]] = []
        question = {"input": {"messages": [{"type": "human", "content": "hi"}]}}
        for name in assistants:
            settings = ServeSettings(assistants=assistants, default_assistant=name)
            with running(create_app(settings, checkpoint=":memory:")) as base:
                payload = {"model": name, "messages": _ask("hi"), "stream": True}
                raw = httpx.post(f"{base}/v1/chat/completions", json=payload, timeout=30).text
                deltas = [
                    json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
                    for line in raw.splitlines()
                    if line.startswith("data: {") and json.loads(line[6:])["choices"]
                ]
                seen.append((f"/v1 {name}, joined", "".join(deltas)))
                assert "".join(deltas).startswith(LONG_RUN.replace(CANARY, "***"))
                for route in ("stream_log", "stream_events"):
                    text = httpx.post(f"{base}/moa/{route}", json=question, timeout=30).text
                    seen += [
                        (f"/moa/{route} {name} {run}, joined", t) for run, t in _streamed_texts(route, text).items()
                    ]
        runner = CliRunner()
        options = ["--proposer", "openai:ok", "--aggregator", "openai:agg"]
        result = runner.invoke(cli_app, ["ask", "hi", *options])
        assert result.exit_code == 0, result.output
        seen.append(("moa ask", result.output))
        result = runner.invoke(cli_app, ["ask", "hi", *options, "--layers", "3", "--provisional"])
        assert result.exit_code == 0, result.output
        seen.append(("moa ask --provisional", result.output))
        out, err = capfd.readouterr()
        seen.append(("stdout and stderr", out + err))
    assert CANARY in sim.api_keys
    assert any(text.startswith(LONG_RUN.replace(CANARY, "***")) for where, text in seen if "/moa/" in where)
    _assert_clean(seen)


def test_an_answer_about_bearer_tokens_keeps_its_words(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    answer = "Send 'Authorization: Bearer <token>': the Bearer authentication scheme of RFC 6750."
    redactor = StreamRedactor()
    assert "".join(redactor.feed(c) for c in answer) + redactor.flush() == answer


@pytest.mark.postgres
def test_postgres_checkpoints_hold_no_key(echoing: SimulatedOpenAIServer) -> None:
    """Needs MOA_TEST_POSTGRES_URL (`.ci/run` starts a database)."""
    import psycopg

    url = os.environ.get("MOA_TEST_POSTGRES_URL")
    if not url:
        pytest.fail("set MOA_TEST_POSTGRES_URL=postgresql://... to run the PostgreSQL test")
    settings = ServeSettings(assistants=ASSISTANTS)
    with running(create_app(settings, checkpoint=url, langserve_path=None)) as base:
        for model in ASSISTANTS:
            payload = {"model": model, "messages": _ask("pg"), "store": True}
            httpx.post(base + "/v1/chat/completions", json=payload, timeout=30)
    with psycopg.connect(url) as conn:
        dumped = [
            str(row)
            for table in ("checkpoints", "checkpoint_writes", "checkpoint_blobs")
            for row in conn.execute(f"SELECT * FROM {table}").fetchall()
        ]
    assert dumped and not [row for row in dumped if CANARY in row]


def test_a_connection_error_names_its_endpoint_without_credentials() -> None:
    import httpx
    import openai

    from langgraph_moa.providers.redaction import describe_error

    request = httpx.Request("POST", "http://user:hunter22secret@10.0.0.7:8080/v1/chat/completions?api_key=abcdef123456")
    error_type, message = describe_error(openai.APIConnectionError(request=request))
    assert error_type == "APIConnectionError"
    assert message == "Connection error (http://10.0.0.7:8080/v1/chat/completions)"
