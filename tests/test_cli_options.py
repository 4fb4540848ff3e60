"""The options the moa commands share: the models, and one option per MoAConfig field marked CommandLine."""

from __future__ import annotations

from typing import Annotated

import pytest
import typer
from pydantic import Field
from typer.testing import CliRunner

from langgraph_moa import MoAConfig
from langgraph_moa.cli import app
from langgraph_moa.cli_options import RunOptions, setting_options, with_option_group, with_run_options
from langgraph_moa.config import CommandLine
from langgraph_moa.eval.cli import EvalOptions
from langgraph_moa.strict_types import Whole
from langgraph_moa.testing import SimulatedOpenAIServer

LATENCY_AND_COST = [
    "--seed", "7", "--straggler-timeout", "3", "--provisional", "--early-stop", "0.9", "--keep-top", "2",
    "--aggregation-window", "2", "--max-cost", "0.5",
]  # fmt: skip

COMMANDS = {
    ("ask",): {"--system", "--json", "--cache"},
    ("chat",): {"--thread", "--db"},
    ("eval", "exact"): None,
    ("eval", "mt-bench"): None,
    ("eval", "alpaca-eval"): None,
    ("eval", "flask"): None,
    ("serve",): None,
}


def _flags(path: tuple[str, ...]) -> set[str]:
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    return {opt for param in command.params for opt in param.opts}


def _model_flags() -> set[str]:
    return {"--preset", "-p", "--proposer", "--aggregator", "-a", "--base-url", "--gguf"}


def test_every_marked_moaconfig_field_is_an_option_of_every_command() -> None:
    marked = {
        name for name, info in MoAConfig.model_fields.items() if any(isinstance(m, CommandLine) for m in info.metadata)
    }
    assert {option.field for option in setting_options()} == marked
    assert {"early_stop", "staircase", "max_cost_usd", "layers"} <= marked
    setting_flags = {flag for option in setting_options() for flag in (option.flag, option.short) if flag}
    assert {"--max-cost", "--provisional", "--staircase-continuation", "-l", "-t"} <= setting_flags
    for path, own in COMMANDS.items():
        flags = _flags(path)
        assert setting_flags | _model_flags() <= flags, path
        if own is not None:  # nothing else: no option is declared a second time by hand
            assert flags - {"--help", "PROMPT", "prompt"} == own | setting_flags | _model_flags(), path


def test_an_option_takes_the_fields_name_type_and_first_sentence() -> None:
    options = {option.field: option for option in setting_options()}
    assert options["early_stop"].flag == "--early-stop" and options["early_stop"].kind is float
    assert options["keep_top"].kind is int and options["staircase"].kind is bool
    assert options["staircase_continuation"].choices == ("prompt", "prefill", "vllm")
    description = MoAConfig.model_fields["seed"].description or ""
    assert options["seed"].help == description.split(". ")[0] + "." != description
    assert options["provisional_answers"].flag == "--provisional"  # a mark may name its flag and help
    assert "stderr" in options["provisional_answers"].help


def test_a_new_field_with_the_mark_is_a_new_option() -> None:
    class Extended(MoAConfig):
        new_knob: Annotated[Whole | None, CommandLine()] = Field(
            default=None,
            ge=1,
            description="As in Wang et al. (2025), e.g. a knob. More.",
        )

    (knob,) = [o for o in setting_options(Extended) if o.field == "new_knob"]
    assert (knob.flag, knob.kind, knob.help) == ("--new-knob", int, "As in Wang et al. (2025), e.g. a knob.")


def test_a_command_receives_the_options_it_was_given_by_field_name() -> None:
    seen: list[RunOptions] = []
    demo = typer.Typer()

    @demo.command()
    @with_run_options
    def run(word: str, *, options: RunOptions, loud: bool = False) -> None:
        seen.append(options)
        print(word.upper() if loud else word)

    args = ["hi", "--loud", "--early-stop", "0.9", "--staircase", "--staircase-continuation", "prefill"]
    args += ["--max-cost", "0.5", "-l", "3", "--proposer", "a", "--proposer", "b", "-p", "moa"]
    result = CliRunner().invoke(demo, args)
    assert result.exit_code == 0, result.output
    assert result.output == "HI\n"
    (options,) = seen
    assert options.settings == {
        "early_stop": 0.9, "staircase": True, "staircase_continuation": "prefill", "max_cost_usd": 0.5, "layers": 3,
    }  # fmt: skip
    assert (options.preset, options.proposers) == ("moa", ["a", "b"])
    result = CliRunner().invoke(demo, ["hi", "--early-stop", "inf"])
    assert result.exit_code == 2 and "finite" in result.output


def test_a_command_without_options_or_with_a_clashing_name_is_refused() -> None:
    def no_options(word: str) -> None: ...

    def clash(layers: int, *, options: RunOptions) -> None: ...

    with pytest.raises(TypeError, match="must take the keyword parameter 'options'"):
        with_run_options(no_options)
    with pytest.raises(TypeError, match="layers would hide a shared option"):
        with_run_options(clash)


def test_run_options_keep_only_the_settings_given() -> None:
    given = RunOptions(preset="moa", proposers=["a"], settings={"early_stop": 0.9, "provisional_answers": True})
    assert given.overrides() == {"early_stop": 0.9, "provisional_answers": True} and given.given()
    off = RunOptions(settings={"provisional_answers": False, "keep_top": None})
    assert off == RunOptions() and not off.given()  # an off switch and a missing number are options not given
    assert RunOptions(gguf=[]).given()
    with pytest.raises(ValueError, match="no field early_stopp"):
        RunOptions(settings={"early_stopp": 0.9})
    with pytest.raises(TypeError):
        RunOptions("moa")  # type: ignore[misc]  # keywords only


def test_a_bad_choice_names_the_field_before_any_call(server: SimulatedOpenAIServer) -> None:
    models = ["--base-url", server.base_url, "--proposer", "p1", "--aggregator", "agg"]
    result = CliRunner().invoke(app, ["ask", "hi", *models, "--staircase", "--staircase-continuation", "later"])
    assert result.exit_code == 2, result.output
    assert "staircase_continuation" in result.output and "'prefill'" in result.output
    assert server.calls() == 0


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


def test_a_field_marked_for_the_command_line_changes_the_run(server: SimulatedOpenAIServer) -> None:
    # --staircase has no code of its own in the CLI: the mark on MoAConfig.staircase made it an option
    models = ["--base-url", server.base_url, "--proposer", "p1", "--proposer", "p2", "--aggregator", "agg"]
    plain = CliRunner().invoke(app, ["ask", "hi", *models, "--max-tokens", "64"])
    assert plain.exit_code == 0, plain.output
    assert [r.get("stream") for r in server.requests_for("p1")] == [False]
    assert [r["max_tokens"] for r in server.requests_for("agg")] == [64]
    staircase = CliRunner().invoke(app, ["ask", "hi", *models, "--max-tokens", "64", "--staircase"])
    assert staircase.exit_code == 0, staircase.output
    assert server.requests_for("p1")[-1]["stream"] is True  # the proposers stream to the aggregator
    assert server.requests_for("agg")[1]["max_tokens"] == 40  # its first piece: staircase_piece_tokens


def test_every_eval_command_takes_the_eval_options_once_declared() -> None:
    shared = {
        "--limit",
        "--compare",
        "--collaborativeness",
        "--system",
        "--variant",
        "-j",
        "--out",
        "--json",
        "--cache",
    }
    for command in ("exact", "mt-bench", "alpaca-eval", "flask"):
        assert shared <= _flags(("eval", command)), command
    seen: list[EvalOptions] = []
    demo = typer.Typer()

    @demo.command()
    @with_run_options
    @with_option_group("run", EvalOptions)
    def run(*, run: EvalOptions, options: RunOptions) -> None:
        seen.append(run)

    result = CliRunner().invoke(demo, ["--limit", "3", "--variant", "early_stop=0.9", "-j", "2", "--json", "-l", "3"])
    assert result.exit_code == 0, result.output
    assert seen == [EvalOptions(limit=3, variants=["early_stop=0.9"], concurrency=2, as_json=True)]
    assert seen[0].first([1, 2, 3, 4]) == [1, 2, 3]


def test_the_local_preset_on_your_server_checks_its_url_before_starting() -> None:
    result = CliRunner().invoke(app, ["ask", "hi", "--preset", "local", "--base-url", "localhost:8080/v1"])
    assert result.exit_code == 2, result.output
    assert "must start with http:// or https://" in result.output and "Traceback" not in result.output
