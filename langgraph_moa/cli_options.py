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

import functools
import inspect
import math
import os
import re
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args, get_origin, get_type_hints

import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.markup import escape

from langgraph_moa.config import CommandLine, MoAConfig, describe_validation_error
from langgraph_moa.local import BUNDLED_MODEL_NAME, local_config, local_servers, model_name
from langgraph_moa.presets import PRESETS, get_preset
from langgraph_moa.providers import redact

err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)
"""stderr: progress, notes and the one ``error:`` line of a failure."""


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print one ``error:`` line (whitespace folded, secrets removed) and return the exit to raise."""
    err.print(f"[red]error:[/red] {escape(redact(' '.join(message.split())))}")
    return typer.Exit(code=code)


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
ProposerOpt = Annotated[
    list[str] | None,
    typer.Option("--proposer", help="A proposer 'provider:model'; repeat for several. Replaces the preset's."),
]
AggregatorOpt = Annotated[str | None, typer.Option("--aggregator", "-a", help="The aggregator 'provider:model'.")]
BaseUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--base-url",
        help="OpenAI-compatible server for 'openai:' models (vLLM, Ollama, llama.cpp, LM Studio). "
        "Bare model names then mean 'openai:<name>'.",
    ),
]
GgufOpt = Annotated[
    list[Path] | None,
    typer.Option("--gguf", help="A local GGUF model for the local preset; repeat so each is a proposer."),
]

MODEL_OPTIONS: dict[str, Any] = {
    "preset": PresetOpt,
    "proposers": ProposerOpt,
    "aggregator": AggregatorOpt,
    "base_url": BaseUrlOpt,
    "gguf": GgufOpt,
}
"""The options that choose the models, by :class:`RunOptions` field: the preset, its models, the local GGUF files."""


@dataclass(frozen=True)
class SettingOption:
    """One command-line option derived from a :class:`MoAConfig` field marked :class:`CommandLine`."""

    field: str
    flag: str
    short: str | None
    help: str
    kind: type
    choices: tuple[str, ...] = ()

    def annotation(self) -> Any:
        """The typer parameter's annotation: the value's type and its ``typer.Option``."""
        decls = [self.flag, *([self.short] if self.short else [])]
        if self.kind is bool:
            return Annotated[bool, typer.Option(*decls, help=self.help)]
        help = f"{self.help} One of: {', '.join(self.choices)}." if self.choices else self.help
        callback = finite if self.kind is float else None
        return Annotated[self.kind | None, typer.Option(*decls, help=help, callback=callback)]


def _first_sentence(text: str) -> str:
    match = re.search(r"(?<!\be\.g)(?<!\bi\.e)(?<!\bal)\.(?=\s+[A-Z(])", text)
    return text[: match.end()] if match else text


def _value_kind(annotation: Any) -> tuple[type, tuple[str, ...]]:
    """The Python type a command line gives for a field's annotation (``int | None`` is ``int``)."""
    if get_origin(annotation) is Literal:
        return str, tuple(str(choice) for choice in get_args(annotation))
    if get_origin(annotation) is Annotated:
        return _value_kind(get_args(annotation)[0])
    members = [a for a in get_args(annotation) if a is not type(None)]
    if members:
        return _value_kind(members[0])
    if annotation in (bool, int, float, str):
        return annotation, ()
    raise TypeError(f"a command-line option cannot hold {annotation!r}")


def setting_options(config: type[BaseModel] = MoAConfig) -> list[SettingOption]:
    """Every field of ``config`` marked :class:`CommandLine`, as a command-line option, in field order."""
    options = []
    for name, info in config.model_fields.items():
        mark = next((m for m in info.metadata if isinstance(m, CommandLine)), None)
        if mark is None:
            continue
        kind, choices = _value_kind(info.annotation)
        flag = mark.flag or "--" + name.replace("_", "-")
        options.append(
            SettingOption(name, flag, mark.short, mark.help or _first_sentence(info.description or ""), kind, choices)
        )
    return options


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """The options of a ``moa`` command that shape its run, by keyword only.

    ``preset``, ``proposers``, ``aggregator``, ``base_url`` and ``gguf`` choose
    the models (see :func:`open_config`); ``settings`` holds the
    :class:`MoAConfig` fields given on the command line, by field name. A
    setting that is None, or a switch that is off, was not given and is left
    out, so ``moa serve`` can tell whether any option was.

    Raises:
        ValueError: a setting is not a ``MoAConfig`` field.
    """

    preset: str | None = None
    proposers: list[str] | None = None
    aggregator: str | None = None
    base_url: str | None = None
    gguf: list[Path] | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.settings) - set(MoAConfig.model_fields))
        if unknown:
            raise ValueError(f"MoAConfig has no field {', '.join(unknown)}")
        given = {k: v for k, v in self.settings.items() if v is not None and v is not False}
        object.__setattr__(self, "settings", given)

    def wants_local(self) -> bool:
        """The local preset: asked for, GGUF files given, or nothing else configured."""
        if self.preset == LOCAL_PRESET or self.gguf:
            return True
        chosen = self.preset or self.proposers or self.aggregator or self.base_url
        return not chosen and not os.environ.get("TOGETHER_API_KEY")

    def chooses_models(self) -> bool:
        """Whether a model option was given: ``--preset``, ``--proposer``, ``--aggregator``, ``--base-url``, ``--gguf``."""
        return any(getattr(self, name) is not None for name in MODEL_OPTIONS)

    def given(self) -> bool:
        """Whether any option was given."""
        return bool(self.settings) or self.chooses_models()

    def overrides(self) -> dict[str, Any]:
        """The settings given on the command line, as ``MoAConfig`` fields (the models' own aside)."""
        return dict(self.settings)


R = TypeVar("R")


def with_parameters(
    command: Callable[..., R], name: str, parameters: list[inspect.Parameter], gather: Callable[[dict[str, Any]], Any]
) -> Callable[..., R]:
    """``command`` taking ``parameters`` as typer options in place of its parameter ``name``.

    The returned command's signature (which typer reads) is ``command``'s own
    parameters, keyword-only, then ``parameters``; it calls ``command`` with
    ``name=gather({parameter: value})`` and the rest. Decorators built on it
    stack, each gathering its own group.

    Raises:
        TypeError: ``command`` has no parameter ``name``, or one of its own
            parameters has the name of one of ``parameters``.
    """
    signature = inspect.signature(command, eval_str=True)
    if name not in signature.parameters:
        raise TypeError(f"{command.__name__} must take the keyword parameter {name!r} that gathers these options")
    own = [p for p in signature.parameters.values() if p.name != name]
    clashes = sorted({p.name for p in own} & {p.name for p in parameters})
    if clashes:
        raise TypeError(f"{command.__name__}: {', '.join(clashes)} would hide a shared option; rename it")
    names = [p.name for p in parameters]

    @functools.wraps(command)
    def with_group(**values: Any) -> R:
        group = {key: values.pop(key) for key in names}
        return command(**{name: gather(group)}, **values)

    own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) if p.kind is p.POSITIONAL_OR_KEYWORD else p for p in own]
    with_group.__signature__ = signature.replace(parameters=[*own, *parameters])  # type: ignore[attr-defined]
    return with_group


def with_run_options(command: Callable[..., R]) -> Callable[..., R]:
    """Give a typer command the model options and every :class:`CommandLine` field of :class:`MoAConfig`.

    The command declares ``options: RunOptions`` (keyword-only) and its own
    parameters; the returned command takes its own options, then
    ``--preset``, ``--proposer``, ``--aggregator``, ``--base-url``, ``--gguf``
    and one option per marked field, and calls ``command`` with them gathered in
    ``options``. Apply it below ``@app.command()``.

    Raises:
        TypeError: ``command`` has no ``options`` parameter, or one of its own
            parameters has the name of a generated one.
    """
    keyword = inspect.Parameter.KEYWORD_ONLY
    settings = setting_options()
    parameters = [
        *(inspect.Parameter(name, keyword, default=None, annotation=annotation)
          for name, annotation in MODEL_OPTIONS.items()),
        *(inspect.Parameter(option.field, keyword, default=False if option.kind is bool else None,
                            annotation=option.annotation())
          for option in settings),
    ]  # fmt: skip

    def gather(values: dict[str, Any]) -> RunOptions:
        models = {name: values.pop(name) for name in MODEL_OPTIONS}
        return RunOptions(**models, settings=values)

    return with_parameters(command, "options", parameters, gather)


def with_option_group(name: str, group: type[Any]) -> Callable[[Callable[..., R]], Callable[..., R]]:
    """A decorator giving a typer command the fields of the dataclass ``group`` as options, gathered in ``name``.

    Each field of ``group`` is annotated with its ``typer.Option`` and has a
    default; the command declares ``name: group`` (keyword-only).
    """
    hints = get_type_hints(group, include_extras=True)
    parameters = [
        inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=hints[f.name])
        for f in fields(group)
    ]

    def decorate(command: Callable[..., R]) -> Callable[..., R]:
        return with_parameters(command, name, parameters, lambda values: group(**values))

    return decorate


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
        local_config(dict.fromkeys(names, options.base_url or "http://127.0.0.1:1/v1"), **options.overrides())
    except ValidationError as exc:
        raise typer.BadParameter(describe_validation_error(exc)) from None
    bundled = not options.gguf and not options.base_url
    if bundled:
        err.print(
            f"moa: {BUNDLED_MODEL_NAME}, the bundled 135M-parameter model, shows that the pipeline runs; "
            "its answers are often wrong and say nothing about MoA's quality (set TOGETHER_API_KEY, or use "
            "--gguf or --base-url with a larger model)"
        )
    overrides = options.overrides()
    if options.base_url:
        urls = {BUNDLED_MODEL_NAME: options.base_url}
        where = f"your server at {options.base_url}"
        overrides.setdefault("staircase_continuation", "prompt")  # any server, not only llama.cpp's
    else:
        urls = stack.enter_context(local_servers(options.gguf or ()))
        where = "llama.cpp on " + ", ".join(urls.values())
    config = local_config(urls, **overrides)
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
