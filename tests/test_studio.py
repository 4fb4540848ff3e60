"""The graph langgraph.json serves: the local preset for a first run with no key (no server started here)."""

from __future__ import annotations

import pytest

from langgraph_moa import get_preset, studio
from langgraph_moa.graph import graph


async def test_a_configured_run_gets_the_plain_graph(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(studio, "LOCAL_AVAILABLE", True)
    assert await studio.make_graph({"configurable": {"preset": "moa-lite"}}) is graph
    monkeypatch.setenv("TOGETHER_API_KEY", "tgp-test")
    assert await studio.make_graph({"configurable": {}}) is graph


async def test_without_a_key_a_run_that_configures_nothing_runs_the_local_preset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(studio, "LOCAL_AVAILABLE", True)
    started = []
    monkeypatch.setattr(studio, "local_urls", lambda *, start: started.append(start) or {})
    served = await studio.make_graph({"configurable": {"thread_id": "t"}})  # a schema read: no server
    assert served is not graph and served.config["configurable"] == {"moa_default_preset": "local"}
    assert started == []
    await studio.make_graph({"configurable": {"__is_for_execution__": True}})  # a run: the server starts
    assert started == [True]
    monkeypatch.setattr(studio, "LOCAL_AVAILABLE", False)  # without the local extra: the default, and its error
    assert await studio.make_graph({"configurable": {}}) is graph


def test_local_is_a_preset_and_says_when_its_server_is_not_running(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(KeyError, match="moa-lite, .*local"):
        get_preset("nope")
    monkeypatch.setattr(studio, "_started", None)
    with pytest.raises(studio.LocalModelError, match="not running"):
        get_preset("local")
