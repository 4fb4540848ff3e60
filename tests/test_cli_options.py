"""The model options the moa commands share: one RunOptions, named as MoAConfig's fields."""

from __future__ import annotations

from dataclasses import fields

import pytest
import typer
from typer.testing import CliRunner

from langgraph_moa import MoAConfig
from langgraph_moa.cli import app
from langgraph_moa.cli_options import CLI_ONLY_FIELDS, RunOptions
from langgraph_moa.testing import SimulatedOpenAIServer

LATENCY_AND_COST = [
    "--seed", "7", "--straggler-timeout", "3", "--provisional", "--early-stop", "0.9", "--keep-top", "2",
    "--aggregation-window", "2", "--max-cost", "0.5",
]  # fmt: skip


def test_every_option_but_the_preset_and_gguf_is_a_moaconfig_field() -> None:
    names = {f.name for f in fields(RunOptions)}
    assert names - CLI_ONLY_FIELDS <= set(MoAConfig.model_fields)
    given = RunOptions(early_stop=0.9, max_cost_usd=0.5, provisional_answers=True, preset="moa", proposers=["a"])
    assert given.overrides() == {"early_stop": 0.9, "max_cost_usd": 0.5, "provisional_answers": True}
    assert RunOptions(provisional_answers=False) == RunOptions() and not RunOptions().given()  # an off flag


def test_run_options_take_keywords_only() -> None:
    with pytest.raises(TypeError):
        RunOptions("moa", 3)  # type: ignore[misc]  # a new field could shift positional arguments silently


def test_serve_takes_every_model_option_ask_takes() -> None:
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)

    def flags(command: str) -> set[str]:
        return {opt for param in group.commands[command].params for opt in param.opts}

    assert flags("ask") - {"--system", "--json", "--cache"} - {"PROMPT", "prompt"} <= flags("serve")
    assert flags("chat") - {"--thread", "--db"} <= flags("serve")


def test_serve_serves_the_latency_and_cost_options(
    server: SimulatedOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    from langgraph_moa.serve import app as serve_app

    settings = []
    create_app = serve_app.create_app
    monkeypatch.setattr(serve_app, "create_app", lambda s, **kw: settings.append(s) or create_app(s, **kw))
    monkeypatch.setattr(uvicorn, "run", lambda app_, **_: None)
    models = ["--base-url", server.base_url, "--proposer", "p1", "--proposer", "p2", "--aggregator", "agg"]
    result = CliRunner().invoke(app, ["serve", *models, "--layers", "3", "--db", ":memory:", *LATENCY_AND_COST])
    assert result.exit_code == 0, result.output
    served = settings[0].assistants["default"]
    chosen = (served.seed, served.straggler_timeout, served.provisional_answers, served.early_stop)
    assert chosen == (7, 3.0, True, 0.9)
    assert (served.keep_top, served.aggregation_window, served.max_cost_usd) == (2, 2, 0.5)
