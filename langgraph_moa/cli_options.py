"""What the ``moa`` commands share: their model options, the run's configuration, the stderr console.

``moa ask``, ``chat`` and ``serve`` (:mod:`langgraph_moa.cli`) and the ``moa
eval`` commands (:mod:`langgraph_moa.eval.cli`) take the same model options
(``PresetOpt``, ``LayersOpt``, ...), gather them in :class:`RunOptions`, and
turn them into a validated :class:`~langgraph_moa.config.MoAConfig` with
:func:`open_config`, which starts the local preset's llama.cpp servers when
it is chosen. Bad options raise ``typer.BadParameter`` (exit status 2) before
any server starts.
"""

from __future__ import annotations

import math
import os
from contextlib import ExitStack
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console

from langgraph_moa.config import MoAConfig, describe_validation_error
from langgraph_moa.local import BUNDLED_MODEL_NAME, local_config, local_servers, model_name
from langgraph_moa.presets import PRESETS, get_preset

err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)
"""stderr: progress, notes and the one ``error:`` line of a failure."""


def finite(value: float | None) -> float | None:
    """Refuse ``inf``, ``nan`` and numbers too large for a float (``1e400``) for a number option."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a finite number")
    return value


DEFAULT_PRESET = "moa-current"
LOCAL_PRESET = "local"

PresetOpt = Annotated[
    str | None,
    typer.Option(
        "--preset",
        "-p",
        help=f"One of: {', '.join([*PRESETS, LOCAL_PRESET])}. Default: {DEFAULT_PRESET}, "
        f"or {LOCAL_PRESET} when TOGETHER_API_KEY is not set.",
    ),
]
LayersOpt = Annotated[int | None, typer.Option("--layers", "-l", help="Layers, counting the aggregator.")]
ProposerOpt = Annotated[
    list[str] | None,
    typer.Option("--proposer", help="A proposer 'provider:model'; repeat for several. Replaces the preset's."),
]
AggregatorOpt = Annotated[str | None, typer.Option("--aggregator", "-a", help="The aggregator 'provider:model'.")]
TemperatureOpt = Annotated[
    float | None, typer.Option("--temperature", "-t", callback=finite, help="Sampling temperature.")
]
SeedOpt = Annotated[
    int | None,
    typer.Option("--seed", min=0, help="Base sampling seed, for reproducible runs (default: fresh every run)."),
]
MaxTokensOpt = Annotated[int | None, typer.Option("--max-tokens", help="Completion token limit per call.")]
BaseUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--base-url",
        help="OpenAI-compatible server for 'openai:' models (vLLM, Ollama, llama.cpp, LM Studio). "
        "Bare model names then mean 'openai:<name>'.",
    ),
]
TimeoutOpt = Annotated[
    float | None, typer.Option("--timeout", callback=finite, help="Seconds per model call, retries included.")
]
MinProposalsOpt = Annotated[int | None, typer.Option("--min-proposals", help="Successes a layer needs.")]
GgufOpt = Annotated[
    list[Path] | None,
    typer.Option("--gguf", help="A local GGUF model for the local preset; repeat so each is a proposer."),
]
# Latency and cost options (docs/latency.md, docs/strategies.md); each is off unless given.
StragglerOpt = Annotated[
    float | None,
    typer.Option(
        "--straggler-timeout",
        callback=finite,
        help="Once a layer has --min-proposals proposals, seconds the others still get before they are cut.",
    ),
]
ProvisionalOpt = Annotated[
    bool,
    typer.Option(
        "--provisional",
        help="With 3+ layers, show an early answer from the previous layer's proposals on stderr, marked "
        "provisional, while the last proposer layer runs.",
    ),
]
EarlyStopOpt = Annotated[
    float | None,
    typer.Option(
        "--early-stop", callback=finite, help="Skip the remaining proposer layers once a layer agrees this much (0-1)."
    ),
]
KeepTopOpt = Annotated[
    int | None, typer.Option("--keep-top", help="Keep only the best K proposals of a layer as references.")
]
WindowOpt = Annotated[
    int | None,
    typer.Option("--aggregation-window", help="Aggregate at most N references per pass (Self-MoA-Seq)."),
]
MaxCostOpt = Annotated[
    float | None,
    typer.Option(
        "--max-cost", callback=finite, help="Budget per run in USD: skip proposer layers that would exceed it."
    ),
]


CLI_ONLY_FIELDS = frozenset({"preset", "gguf"})
"""``RunOptions`` fields that are not ``MoAConfig`` fields: the preset to start from, the local GGUF files."""
MODEL_FIELDS = frozenset({"proposers", "aggregator", "base_url"})
"""``MoAConfig`` fields that :func:`build_config` reads model names with (a bare name means ``openai:`` there)."""


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """The model options the ``moa`` commands share, by keyword only.

    Every field but ``preset`` and ``gguf`` is named as the ``MoAConfig`` field
    it sets, so :meth:`overrides` needs no list of its own: a new option is a
    ``MoAConfig`` field, a field here and its typer option.

    A field is None when its option was not given (a flag that is off, like
    ``--provisional``, is None too), so ``moa serve`` can tell whether any was.
    """

    preset: str | None = None
    layers: int | None = None
    proposers: list[str] | None = None
    aggregator: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    base_url: str | None = None
    timeout: float | None = None
    min_proposals: int | None = None
    gguf: list[Path] | None = None
    seed: int | None = None
    straggler_timeout: float | None = None
    provisional_answers: bool | None = None
    early_stop: float | None = None
    keep_top: int | None = None
    aggregation_window: int | None = None
    max_cost_usd: float | None = None

    def __post_init__(self) -> None:
        if self.provisional_answers is False:  # an off flag is an option not given
            object.__setattr__(self, "provisional_answers", None)

    def wants_local(self) -> bool:
        """The local preset: asked for, GGUF files given, or nothing else configured."""
        if self.preset == LOCAL_PRESET or self.gguf:
            return True
        chosen = self.preset or self.proposers or self.aggregator or self.base_url
        return not chosen and not os.environ.get("TOGETHER_API_KEY")

    def given(self) -> bool:
        """Whether any option was given."""
        return any(getattr(self, f.name) is not None for f in fields(self))

    def overrides(self) -> dict[str, Any]:
        """The settings given on the command line, as ``MoAConfig`` fields (the models' own aside)."""
        skip = CLI_ONLY_FIELDS | MODEL_FIELDS
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name not in skip and getattr(self, f.name) is not None
        }


def open_config(options: RunOptions, stack: ExitStack) -> MoAConfig:
    """The run's config; for the local preset, start the llama.cpp servers on ``stack``.

    Raises:
        typer.BadParameter: an option is invalid (exit status 2).
        MoAError: the local model cannot be served.
    """
    if not options.wants_local():
        return build_config(options)
    if options.proposers or options.aggregator:
        raise typer.BadParameter("the local preset picks its own models: use --gguf instead of --proposer/--aggregator")
    why = (
        "asked for"
        if options.preset == LOCAL_PRESET or options.gguf
        else f"no TOGETHER_API_KEY is set for the default preset {DEFAULT_PRESET}"
    )
    names = [model_name(Path(p).expanduser()) for p in options.gguf] if options.gguf else [BUNDLED_MODEL_NAME]
    try:  # every option is checked before a model server starts
        local_config(dict.fromkeys(names, "http://127.0.0.1:1/v1"), **options.overrides())
    except ValidationError as exc:
        raise typer.BadParameter(describe_validation_error(exc)) from None
    bundled = not options.gguf and not options.base_url
    if bundled:
        err.print(
            f"moa: {BUNDLED_MODEL_NAME}, the bundled 135M-parameter model, shows that the pipeline runs; "
            "its answers are often wrong and say nothing about MoA's quality (set TOGETHER_API_KEY, or use "
            "--gguf or --base-url with a larger model)"
        )
    if options.base_url:
        urls = {BUNDLED_MODEL_NAME: options.base_url}
        where = f"your server at {options.base_url}"
    else:
        urls = stack.enter_context(local_servers(options.gguf or ()))
        where = "llama.cpp on " + ", ".join(urls.values())
    config = local_config(urls, **options.overrides())
    models = ", ".join(urls)
    shape = f"Self-MoA, {len(config.proposers)} samples of {models}" if len(urls) == 1 else f"proposers {models}"
    err.print(
        f"moa: local preset ({why}): {shape}{' (bundled)' if bundled else ''}, "
        f"aggregator {config.aggregator.name}; {where}"
    )
    return config


def build_config(options: RunOptions) -> MoAConfig:
    """Turn command-line options into a validated :class:`MoAConfig` from a hosted preset.

    Raises:
        typer.BadParameter: an option is invalid (exit status 2).
    """

    def model_name(name: str) -> str:
        return f"openai:{name}" if options.base_url and ":" not in name else name

    overrides = options.overrides()
    if options.base_url:
        overrides["base_url"] = options.base_url
    if options.proposers:
        overrides["proposers"] = [model_name(p) for p in options.proposers]
        overrides["layer_proposers"] = None
    if options.aggregator:
        overrides["aggregator"] = model_name(options.aggregator)
    try:
        return get_preset(options.preset or DEFAULT_PRESET, **overrides)
    except KeyError as exc:
        raise typer.BadParameter(str(exc.args[0]), param_hint="--preset") from None
    except ValidationError as exc:
        raise typer.BadParameter(describe_validation_error(exc)) from None
