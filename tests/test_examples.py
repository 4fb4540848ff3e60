"""The scripts in examples/ run as documented (against the simulated server)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_subgraph_example_reviews_then_signs_off() -> None:
    texts = load("moa_subgraph").main(["Why is the sky blue?", "--keep", "0,2"])
    assert texts[0] == "Why is the sky blue?"
    assert texts[1] == "model answer to: Why is the sky blue? [refs=2]"  # two proposals kept of three
    assert texts[2] == f"(reviewed answer, {len(texts[1])} chars)"


def test_subgraph_example_stops_on_a_choice_it_cannot_use() -> None:
    import pytest

    with pytest.raises(SystemExit, match="review kept 0 proposal"):
        load("moa_subgraph").main(["Why?", "--keep", "7"])


def test_chat_model_example_calls_the_tool_and_uses_the_agent_proposer() -> None:
    results = load("chat_model_agent").main([])
    assert results["tool calls by the aggregator"] == "1"
    assert results["moa answer"].endswith("[refs=3]")  # two models and the researcher agent
    assert results["researcher proposal"].startswith("model answer to: How many people live in Paris?")
