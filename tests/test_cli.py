"""The ``moa`` command, run as a subprocess against the simulated server."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from langgraph_moa.testing import Fault, ModelBehavior, SimulatedOpenAIServer
from tests.conftest import PROVIDER_VARIABLES


def moa_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in PROVIDER_VARIABLES}
    env.update({"LANGSMITH_TRACING": "false", "COLUMNS": "200", **extra})
    return env


def moa(
    *args: str, stdin: str = "", env: dict[str, str] | None = None, timeout: float = 60, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "langgraph_moa", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env or moa_env(PYTHONPATH=str(Path(__file__).parent.parent)),
        timeout=timeout,
        cwd=cwd,
    )


def sim_args(server: SimulatedOpenAIServer, *proposers: str, aggregator: str = "agg") -> list[str]:
    args = ["--base-url", server.base_url, "--aggregator", aggregator]
    for p in proposers:
        args += ["--proposer", p]
    return args


def test_ask_streams_the_answer_and_reports_progress(server: SimulatedOpenAIServer) -> None:
    server.set_behavior("bad", ModelBehavior(faults=[Fault(401, message="invalid key")]))
    result = moa("ask", "What is MoA?", *sim_args(server, "p1", "bad", "p2"))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "agg answer to: What is MoA? [refs=2]\n"
    assert "done   openai:p1" in result.stderr
    assert "failed openai:bad: AuthenticationError" in result.stderr
    assert "layer 2: aggregating with openai:agg" in result.stderr


def test_answer_reaches_stdout_while_it_is_generated(server: SimulatedOpenAIServer) -> None:
    words = "one two three four five six seven eight nine ten eleven twelve"
    server.set_behavior("agg", ModelBehavior(reply=words, chunk_delay=0.25))
    process = subprocess.Popen(
        [sys.executable, "-m", "langgraph_moa", "ask", "q", *sim_args(server, "p")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=moa_env(),
    )
    assert process.stdout is not None
    first = process.stdout.read(3)
    server.reset()  # max_concurrency becomes the requests in flight now
    answering = server.max_concurrency
    rest = process.stdout.read()
    process.wait(timeout=30)
    assert (first + rest).decode() == words + "\n"
    assert answering == 1, "the answer arrived in one piece at the end"


def test_json_output_has_every_layer_usage_and_cost(server: SimulatedOpenAIServer) -> None:
    server.set_behavior("bad", ModelBehavior(faults=[Fault(400, times=9)]))
    result = moa("ask", "q", "--layers", "3", "--json", *sim_args(server, "p1", "bad"))
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["answer"] == "agg answer to: q [refs=1]"
    assert [layer["layer"] for layer in doc["layers"]] == [1, 2]
    assert [p["model"] for p in doc["layers"][0]["proposals"]] == ["openai:p1"]
    assert doc["layers"][1]["failures"][0]["error_type"] == "BadRequestError"
    assert doc["usage"]["total"]["total_tokens"] == sum(
        c["input_tokens"] + c["output_tokens"] for c in doc["usage"]["calls"]
    )
    assert set(doc["usage"]["by_layer"]) == {"1", "2", "3"}
    assert doc["cost_usd"] == 0 and "openai:agg" in doc["unpriced_models"]
    # the keys the README and docs/cli.md name are the document's
    root = Path(__file__).parent.parent
    for page in ("README.md", "docs/cli.md"):
        (named,) = re.findall(r"--json +# one JSON object: (.+)", (root / page).read_text())
        for path in named.split(", "):
            value: object = doc
            for part in path.split("."):
                assert isinstance(value, dict) and part.removesuffix("[]") in value, (page, path)
                value = value[part.removesuffix("[]")]
                if part.endswith("[]"):
                    assert isinstance(value, list) and value, (page, path)
                    value = value[-1]


def test_missing_key_says_which_variable_to_set() -> None:
    result = moa("ask", "hi", "--preset", "moa-lite")
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "needs TOGETHER_API_KEY" in lines[0] and "--base-url" in lines[0]


def documented_errors() -> list[tuple[str, int, str]]:
    """The rows of the error table in docs/cli.md: (command, exit status, text of the error line)."""
    doc = (Path(__file__).parent.parent / "docs" / "cli.md").read_text()
    table = doc.split("## Errors and exit status", 1)[1]
    rows = re.findall(r"^\| `(moa[^`]*)` \| (\d+) \| `([^`]*)` \|$", table, flags=re.M)
    assert len(rows) >= 10, "the error table of docs/cli.md was not found"
    return [(command, int(code), text) for command, code, text in rows]


@pytest.mark.parametrize(("command", "code", "text"), documented_errors())
def test_each_documented_error_is_one_line_with_its_exit_status(
    command: str, code: int, text: str, tmp_path: Path
) -> None:
    result = moa(*shlex.split(command)[1:], cwd=tmp_path)
    assert result.returncode == code, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert errors == [result.stderr.splitlines()[-1]], result.stderr  # one error line, the last
    assert errors[0].startswith("error: ") and text in errors[0]
    assert "Traceback" not in result.stderr and result.stdout == ""
    if code == 2:  # a bad option is found before anything runs or prints
        assert result.stderr.count("\n") == 1


def test_bad_local_options_are_refused_before_a_model_server_starts(tmp_path: Path) -> None:
    fake_gguf = tmp_path / "m.gguf"
    fake_gguf.write_bytes(b"not a model")  # a server for it would fail to start with another message
    result = moa("ask", "hi", "--gguf", str(fake_gguf), "--temperature", "-1")
    assert result.returncode == 2
    assert "temperature" in result.stderr and "llama.cpp" not in result.stderr


def test_failed_layer_exits_1_with_one_line(server: SimulatedOpenAIServer) -> None:
    server.set_behavior("x", ModelBehavior(faults=[Fault(401, times=9)]))
    result = moa("ask", "q", *sim_args(server, "x"))
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: layer 1 failed") and "openai:x (slot 0): AuthenticationError" in last


def test_chat_history_persists_across_processes(server: SimulatedOpenAIServer, tmp_path: Path) -> None:
    db = tmp_path / "chat.sqlite"
    args = ["chat", "--thread", "t1", "--db", str(db), *sim_args(server, "p1", "p2")]
    first = moa(*args, stdin="first question\n")
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "agg answer to: first question [refs=2]"
    second = moa(*args, stdin="second question\n/exit\n")
    assert second.returncode == 0, second.stderr
    assert "(2 earlier message(s))" in second.stderr
    request = server.requests_for("agg")[-1]["messages"]
    assert [m["role"] for m in request] == ["system", "user", "assistant", "user"]
    assert request[1]["content"] == "first question"
    assert "first question [refs=0]" not in request[0]["content"]  # no leaked references
    other = moa("chat", "--thread", "t2", "--db", str(db), *sim_args(server, "p1"), stdin="")
    assert "(0 earlier message(s))" in other.stderr


def test_a_failed_chat_turn_can_be_retried_or_left(server: SimulatedOpenAIServer, tmp_path: Path) -> None:
    db = str(tmp_path / "c.sqlite")
    server.set_behavior("agg", ModelBehavior(faults=[Fault(401, message="no [auth]")]))
    result = moa("chat", "--db", db, *sim_args(server, "p1"), stdin="first\n/retry\nsecond\n")
    assert result.returncode == 0, result.stderr  # the failed turn was retried, so nothing failed in the end
    assert "error: aggregator openai:agg failed: AuthenticationError" in result.stderr
    assert "no [auth]" in result.stderr  # provider text is printed as it is, not as markup
    assert result.stdout.splitlines() == ["agg answer to: first [refs=1]", "agg answer to: second [refs=1]"]
    assert server.calls("p1") == 2  # /retry resumed at the aggregator: layer 1 was not asked again

    server.set_behavior("agg", ModelBehavior(faults=[Fault(401)]))
    left = moa("chat", "--db", db, *sim_args(server, "p1"), stdin="third\nfourth\n")
    assert left.returncode == 1
    assert "(the unanswered question was left out of the history)" in left.stderr
    assert left.stderr.strip().splitlines()[-1] == "error: 1 turn(s) failed; see the errors above"
    roles = [m["role"] for m in server.requests_for("agg")[-1]["messages"]]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user"]  # no two user turns in a row


def sigint_as_default() -> None:
    """In the child before exec: SIGINT acts, even if pytest runs as a background job (which ignores it)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_at_the_chat_prompt_ends_the_chat(server: SimulatedOpenAIServer, tmp_path: Path) -> None:
    import signal

    process = subprocess.Popen(
        [sys.executable, "-m", "langgraph_moa", "chat", "--db", str(tmp_path / "c.sqlite"), *sim_args(server, "p")],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=moa_env(),
        preexec_fn=sigint_as_default,
    )
    assert process.stderr is not None
    assert "earlier message(s)" in process.stderr.readline()  # waiting at the prompt, stdin still open
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=10) == 130
    process.stdin.close()


STUBBORN_RUN = """
import asyncio, subprocess, sys
from langgraph_moa import local
from langgraph_moa.cli.running import run_command

server = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
local._running.add(server)  # stands for a llama.cpp server of the local preset

async def stubborn() -> None:
    print(server.pid, flush=True)
    while True:
        try:
            await asyncio.sleep(600)
        except asyncio.CancelledError:  # a library that does not give up when cancelled
            print(server.wait(timeout=60), flush=True)

run_command(stubborn())
"""


def test_ctrl_c_kills_the_local_servers_first_and_exits_if_the_run_does_not_wind_down() -> None:
    import signal

    process = subprocess.Popen(
        [sys.executable, "-c", STUBBORN_RUN],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=moa_env(PYTHONPATH=str(Path(__file__).parent.parent)),
        preexec_fn=sigint_as_default,
    )
    assert process.stdout is not None and process.stderr is not None
    server = int(process.stdout.readline())
    try:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 130
        assert process.stdout.read().split() == ["-9"]  # the server was SIGKILLed before the run saw the cancellation
        assert process.stderr.read().strip().splitlines() == ["interrupted"]
    finally:
        if process.poll() is None:  # the feature is broken: leave no process behind
            process.kill()
            process.wait()
            os.kill(server, signal.SIGKILL)


def test_kill_servers_kills_every_running_server_and_none_stopped() -> None:
    from langgraph_moa import local

    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    stopped = subprocess.Popen([sys.executable, "-c", "pass"])
    stopped.wait()
    local._running.update({running, stopped})
    try:
        local.kill_servers()
        assert running.wait(timeout=60) == -9 and stopped.returncode == 0
    finally:
        local._running.difference_update({running, stopped})
        running.kill()
        running.wait()


def test_an_answer_cut_at_max_tokens_is_marked(server: SimulatedOpenAIServer) -> None:
    server.set_behavior("cut", ModelBehavior(finish_reason="length"))
    result = moa("ask", "q", *sim_args(server, "p", aggregator="cut"))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "cut answer to: q [refs=1]\n"
    assert result.stderr.strip().splitlines()[-1].startswith("[cut at max_tokens")
    doc = json.loads(moa("ask", "q", "--json", *sim_args(server, "p", aggregator="cut")).stdout)
    assert doc["truncated"] is True and doc["finish_reason"] == "length"
    whole = json.loads(moa("ask", "q", "--json", *sim_args(server, "p")).stdout)
    assert whole["truncated"] is False and whole["finish_reason"] == "stop"
    chat = moa(
        "chat",
        "--db",
        str(Path(os.environ["HOME"]) / "cut.sqlite"),
        *sim_args(server, "p", aggregator="cut"),
        stdin="q\n",
    )
    assert "[cut at max_tokens" in chat.stderr


def test_samples_of_one_model_are_numbered(server: SimulatedOpenAIServer) -> None:
    result = moa("ask", "q", *sim_args(server, "p", "p", "other", "p"))
    assert result.returncode == 0, result.stderr
    for label in ("openai:p #1", "openai:p #2", "openai:p #3"):
        assert f"done   {label} after" in result.stderr
    assert "openai:other after" in result.stderr and "openai:other #" not in result.stderr


class FakeClock:
    """Seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _rendered(console: Any, renderable: Any) -> str:
    return "\n".join("".join(seg.text for seg in line) for line in console.render_lines(renderable, console.options))


async def test_a_terminal_shows_the_seconds_waited_for_the_first_token_even_at_80_columns() -> None:
    import io

    from rich.console import Console

    from langgraph_moa.cli.progress import Progress

    clock = FakeClock()
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=80)
    progress = Progress(console, clock=clock)
    model = "openai:" + "a-model-with-a-very-long-name-" * 3
    progress({"event": "aggregator_started", "layer": 2, "model": model})
    clock.now += 23.4
    progress.tick()  # what the spinner's task does twice a second
    shown = _rendered(console, progress._status.renderable)
    assert "23s waiting for the first token" in shown  # the seconds first: the model's name is what gets cut
    progress.first_token()
    assert progress._ticker is None and progress._status is None
    plain = io.StringIO()
    quiet = Progress(Console(file=plain, force_terminal=False), clock=clock)
    quiet({"event": "aggregator_started", "layer": 2, "model": "openai:agg"})
    assert "waiting" not in plain.getvalue() and quiet._status is None  # logs get no spinner


def _progress_lines(events: list[tuple[float, dict]]) -> list[str]:
    """Feed ``(seconds later, event)`` pairs to a Progress on a fake clock; the lines it printed."""
    import io

    from rich.console import Console

    from langgraph_moa.cli.progress import Progress

    clock = FakeClock()
    out = io.StringIO()
    progress = Progress(Console(file=out, force_terminal=False, width=200), clock=clock)
    for later, event in events:
        clock.now += later
        progress(event)
    progress.stop()
    return out.getvalue().splitlines()


def _started(layers: int, models: list[str]) -> dict:
    proposers = {str(n): models for n in range(1, layers)}
    return {"event": "run_started", "layers": layers, "proposers": proposers, "aggregator": "openai:agg"}


def _done(layer: int, slot: int, own_seconds: float) -> dict:
    return {"event": "proposer_done", "layer": layer, "slot": slot, "model": "openai:p", "seconds": own_seconds}


def test_proposer_lines_count_from_the_layers_start_so_they_read_in_order() -> None:
    lines = _progress_lines(
        [
            (0, _started(2, ["openai:p", "openai:p"])),
            (0.1, {"event": "proposer_started", "layer": 1, "slot": 0, "model": "openai:p"}),
            (0.5, {"event": "proposer_started", "layer": 1, "slot": 1, "model": "openai:p"}),
            # slot 0 took longer by its own clock but finished first
            (1.1, _done(1, 0, own_seconds=1.64)),
            (0.3, _done(1, 1, own_seconds=1.12)),
        ]
    )
    done = [line for line in lines if "done   " in line]
    assert [re.search(r"(#\d) after ([\d.]+)s", line).groups() for line in done] == [("#1", "1.70"), ("#2", "2.00")]


def test_a_provisional_answer_names_the_samples_and_no_progress_line_interleaves() -> None:
    models = ["openai:p", "openai:p", "openai:p"]
    provisional = {"event": "provisional_started", "layer": 1, "built_from": models}
    token = {"event": "provisional_token", "layer": 1}
    lines = _progress_lines(
        [
            (0, _started(3, models)),
            *[(0.1, _done(1, slot, 0.1)) for slot in range(3)],
            (0, {"event": "layer_done", "layer": 1, "succeeded": 3, "failed": 0, "cached": 0}),
            (0.1, provisional),
            (0.1, {**token, "text": "early "}),
            (0.1, _done(2, 1, 0.2)),  # a layer-2 proposer finishes while the provisional answer streams
            (0.1, {**token, "text": "answer"}),
            (0.1, _done(2, 0, 0.4)),
            (0.1, {"event": "provisional_answer", "layer": 1, "content": "early answer"}),
            (0.1, _done(2, 2, 0.6)),
        ]
    )
    at = lines.index("layer 1: provisional answer from openai:p #1, openai:p #2, openai:p #3:")
    assert lines[at + 1 : at + 3] == ["early answer", "(provisional; the final answer follows on stdout)"]
    layer_2 = [line for line in lines if line.startswith("  layer 2:")]
    assert [lines.index(line) for line in layer_2] == [at + 3, at + 4, at + 5]
    assert "#2 after" in layer_2[0] and "#1 after" in layer_2[1] and "#3 after" in layer_2[2]


def test_provisional_at_two_layers_says_it_does_nothing(server: SimulatedOpenAIServer) -> None:
    result = moa("ask", "q", "--layers", "2", "--provisional", *sim_args(server, "p1"))
    assert result.returncode == 0, result.stderr
    assert "note: --provisional does nothing with 2 layer(s)" in result.stderr and "--layers 3 or more" in result.stderr
    assert server.calls("agg") == 1
    three = moa("ask", "q", "--layers", "3", "--provisional", *sim_args(server, "p1"))
    assert "does nothing" not in three.stderr


def test_two_chats_on_one_thread_never_lose_a_turn(server: SimulatedOpenAIServer, tmp_path: Path) -> None:
    """The second `moa chat` on a thread that another one holds is refused, before it reads any question."""
    db = tmp_path / "c.sqlite"
    first = subprocess.Popen(
        [sys.executable, "-m", "langgraph_moa", "chat", "--thread", "t", "--db", str(db), *sim_args(server, "p")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=moa_env(),
    )
    assert first.stdin is not None and first.stderr is not None
    try:
        assert "(0 earlier message(s))" in first.stderr.readline()  # it holds the thread, waiting at the prompt
        second = moa("chat", "--thread", "t", "--db", str(db), *sim_args(server, "p"), stdin="second question\n")
        assert second.returncode == 1
        assert second.stderr.strip() == (
            f"error: thread 't' of {db} is open in another moa chat; finish that chat first, or use another --thread"
        )
        other = moa("chat", "--thread", "u", "--db", str(db), *sim_args(server, "p"), stdin="other thread\n")
        assert other.returncode == 0, other.stderr  # another thread of the same file is free
        stdout, stderr = first.communicate("first question\n", timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, stderr
    assert stdout.strip() == "agg answer to: first question [refs=1]"
    again = moa("chat", "--thread", "t", "--db", str(db), *sim_args(server, "p"), stdin="third question\n")
    assert again.returncode == 0 and "(2 earlier message(s))" in again.stderr  # free again; nothing was lost
    assert server.calls("agg") == 3 and "second question" not in json.dumps(server.requests)


def test_a_thread_lock_refuses_a_second_holder_in_the_same_process(tmp_path: Path) -> None:
    from langgraph_moa.cli.chat import thread_lock
    from langgraph_moa.cli.running import CLIError

    db = tmp_path / "c.sqlite"
    with thread_lock(db, "t"), thread_lock(db, "u"):  # threads of one file are held apart
        with pytest.raises(CLIError, match="thread 't' of .* is open in another moa chat"), thread_lock(db, "t"):
            pass
    with thread_lock(db, "t"):  # released on exit
        pass


def test_ask_cache_reuses_proposals_from_the_data_directory(server: SimulatedOpenAIServer, tmp_path: Path) -> None:
    env = moa_env(XDG_DATA_HOME=str(tmp_path))
    first = moa("ask", "q", *sim_args(server, "p1", "p2"), "--cache", "--seed", "7", env=env)
    assert first.returncode == 0, first.stderr
    second = moa("ask", "q", *sim_args(server, "p1", "p2"), "--cache", "--seed", "7", env=env)
    assert second.returncode == 0, second.stderr
    assert second.stdout == first.stdout == "agg answer to: q [refs=2]\n"
    assert server.calls("p1") == 1 and server.calls("p2") == 1 and server.calls("agg") == 2
    assert "2 proposal(s) (2 from the cache)" in second.stderr
    assert (tmp_path / "langgraph-moa" / "proposal-cache.sqlite").is_file()
    moa("ask", "q", *sim_args(server, "p1", "p2"), "--seed", "7", env=env)  # without --cache: called again
    assert server.calls("p1") == 2
    moa("ask", "q", *sim_args(server, "p1", "p2"), "--cache", env=env)  # no seed: fresh samples, a miss
    assert server.calls("p1") == 3


def test_straggler_timeout_flag_cuts_the_slow_proposer(server: SimulatedOpenAIServer) -> None:
    server.set_behavior("slow", ModelBehavior(hang=True))
    result = moa("ask", "q", "--json", "--straggler-timeout", "0.2", *sim_args(server, "p1", "slow"))
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert [f["error_type"] for f in doc["layers"][0]["failures"]] == ["StragglerTimeout"]
    assert doc["answer"] == "agg answer to: q [refs=1]"


def test_provisional_flag_shows_an_early_answer_on_stderr(server: SimulatedOpenAIServer) -> None:
    result = moa("ask", "q", "--layers", "3", "--provisional", *sim_args(server, "p1"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "agg answer to: q [refs=1]"  # the final answer alone on stdout
    assert "layer 1: provisional answer from openai:p1:" in result.stderr
    assert "(provisional; the final answer follows on stdout)" in result.stderr
    assert server.calls("agg") == 2  # the provisional answer and the final one


def test_strategy_flags_reach_the_configuration(server: SimulatedOpenAIServer) -> None:
    result = moa(
        "ask", "q", "--layers", "4", "--early-stop", "0.9", "--keep-top", "2", "--aggregation-window", "2",
        "--max-cost", "1", *sim_args(server, "same", "same", "same"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "early_stop" in result.stderr  # the strategy event names the option that acted
    assert server.calls("same") == 3  # identical proposals: layers 2 and 3 are skipped
    assert server.calls("agg") == 1  # keep_top=2 leaves 2 references: one window, one pass


def test_version_prints_the_installed_version() -> None:
    from importlib.metadata import version

    result = moa("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"moa {version('langgraph-moa')}\n"


@pytest.mark.parametrize("group", [[], ["eval"]])
def test_help_lists_each_command_with_its_whole_first_sentence(group: list[str]) -> None:
    result = moa(*group, "--help", env=moa_env(PYTHONPATH=str(Path(__file__).parent.parent), COLUMNS="80"))
    assert result.returncode == 0, result.stderr
    listing = result.stdout.split("Commands:", 1)[1]
    assert "..." not in listing
    assert max(len(line) for line in listing.splitlines()) <= 80
    import typer

    from langgraph_moa.cli import app

    command = typer.main.get_command(app)
    for name in group:
        command = command.commands[name]  # type: ignore[attr-defined]
    names = re.findall(r"^  (\S+)", listing, re.M)
    assert names == list(command.commands)  # type: ignore[attr-defined]
    for name in names:
        first = " ".join(command.commands[name].help.split()).split(". ")[0].rstrip(".")  # type: ignore[attr-defined]
        listed = " ".join(listing.split(f"  {name} ", 1)[1].split())
        assert listed.startswith(first), (name, first, listed)


def test_an_unknown_preset_lists_every_preset_local_included() -> None:
    result = moa("ask", "q", "--preset", "nope")
    assert result.returncode == 2
    assert "unknown preset 'nope'; choose one of: moa, moa-lite, moa-gpt4o, moa-current, self-moa, local" in (
        result.stderr
    )
