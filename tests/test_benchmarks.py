"""The benchmarks' shared helpers, and the "before" that benchmarks/shared_clients.py measures against."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from langgraph_moa import MoAConfig
from langgraph_moa.testing import SimulatedOpenAIServer

BENCHMARKS = Path(__file__).parent.parent / "benchmarks"


@pytest.fixture
def benchmarks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The benchmarks import each other as top-level modules, as ``python benchmarks/x.py`` does."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))


def test_write_table_and_save_plot_write_into_the_results_folder(benchmarks: None, tmp_path: Path) -> None:
    from _report import save_plot, write_table

    out = write_table("demo", ["| a |", "|---|"], results=tmp_path / "results")
    assert out == tmp_path / "results" / "demo.md" and out.read_text() == "| a |\n|---|\n"

    def draw(plt: Any) -> Any:
        fig, ax = plt.subplots(figsize=(2, 2))
        ax.plot([1, 2], [3, 4])
        return fig

    png = save_plot("demo", draw, results=tmp_path / "results")
    assert png == tmp_path / "results" / "demo.png"
    assert png.read_bytes().startswith(b"\x89PNG")


async def test_per_settings_clients_open_a_pool_per_setting_shared_clients_do_not(benchmarks: None) -> None:
    """Mode (a) of shared_clients.py really is the old behaviour: a model and connection per (model, settings)."""
    import shared_clients

    opened = {}
    for mode in ("per-settings", "shared"):
        with SimulatedOpenAIServer() as server:
            graph, built = shared_clients.build_graph(mode)
            for run in range(3):
                temperature, max_tokens = shared_clients.settings_of(run)
                config = MoAConfig(
                    layers=2,
                    proposers=["openai:p1", "openai:p2"],
                    aggregator="openai:agg",
                    base_url=server.base_url,
                    temperature=temperature,
                    max_tokens=max_tokens,
                )
                await graph.ainvoke({"messages": [("user", "q")]}, context=config)
            sent = {(r["temperature"], r["max_tokens"]) for r in server.requests}
            assert server.calls() == 9 and len(sent) == 3  # both send each run's own settings
            opened[mode] = (server.connections, built())
    assert opened["per-settings"] == (9, 9)  # 3 models x 3 settings, each with its own connection
    assert opened["shared"][0] <= 2 and opened["shared"][1] is None


def test_start_moa_serve_returns_once_health_answers(benchmarks: None, server: SimulatedOpenAIServer) -> None:
    import httpx
    from _serve import start_moa_serve

    process, url = start_moa_serve("--base-url", server.base_url, "--proposer", "openai:p", "--aggregator", "openai:a")
    try:
        assert process.poll() is None
        assert httpx.get(f"{url}/health", timeout=5).status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=30)
    with pytest.raises(RuntimeError, match="exited with status 2"):
        start_moa_serve("--no-such-option")
