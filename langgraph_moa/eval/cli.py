"""``moa eval``: measure a MoA configuration against its own proposers.

Commands: ``exact`` (exact-answer JSONL or ``--builtin arithmetic``),
``mt-bench``, ``alpaca-eval`` and ``flask``. Each takes the model options of ``moa ask``,
``--compare``, ``--system NAME=PRESET``, ``--variant FIELD=VALUE,...``, ``--concurrency``, ``--out DIR``
(resumable) and ``--json``. See docs/evaluation.md.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Coroutine, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from langgraph_moa.cache import proposal_cache
from langgraph_moa.cli_options import RunOptions, err, fail, open_config, with_option_group, with_run_options
from langgraph_moa.config import MoAConfig
from langgraph_moa.errors import MoAError
from langgraph_moa.providers import check_credentials

from .alpaca_eval import (
    PAPER_MAX_TOKENS,
    PAPER_TEMPERATURE,
    cover,
    load_instructions,
    load_outputs,
    load_outputs_file,
    matched_outputs,
    mean_lengths,
    run_alpaca_eval,
)
from .exact import EvalResult, run_exact
from .flask import JUDGE_MAX_TOKENS as FLASK_JUDGE_MAX_TOKENS
from .flask import REVIEW_PROMPT_ID as FLASK_PROMPT_ID
from .flask import SKILL_ORDER as FLASK_SKILL_ORDER
from .flask import breakdown_tables, load_flask, load_flask_outputs, load_review_prompt, load_rubrics, run_flask
from .grading import extract_answer, grade_exact, load_grader
from .items import EvalInputError, ExactItem, builtin_suite, load_exact
from .judge import JUDGE_MAX_TOKENS, judge_config
from .mt_bench import (
    MAX_NEW_TOKENS,
    find_judge_prompts,
    first_per_category,
    load_answer_file,
    load_judge_prompts,
    load_questions,
    load_reference_answers,
    run_mt_bench,
    unparseable_counts,
    with_settings,
)
from .report import PlotUnavailable, collaborativeness_table, markdown_table, plot_score_vs_cost
from .systems import variant_config

eval_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Measure a configuration against its own proposers: exact answers, MT-Bench, AlpacaEval, FLASK.",
)
"""``moa eval``: :mod:`langgraph_moa.cli` adds it to the ``moa`` command."""

PLOT_FILE = "score_vs_cost.png"
TABLE_FILE = "summary.md"

CompareOpt = Annotated[
    bool,
    typer.Option("--compare", help="Also run each distinct proposer alone (and, for exact answers, a majority vote)."),
]
CollaborativenessOpt = Annotated[
    bool,
    typer.Option(
        "--collaborativeness",
        help="Each distinct proposer alone and as the aggregator of the other proposers' answers, with a table "
        "of the paired differences (the MoA paper's Figure 2 for your models).",
    ),
]
SystemOpt = Annotated[
    list[str] | None,
    typer.Option("--system", help="Another configuration to compare, NAME=PRESET; repeatable."),
]
VariantOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--variant",
        help="The configuration with fields changed, FIELD=VALUE[,FIELD=VALUE...] (e.g. early_stop=0.9), "
        "compared item by item with moa; repeatable.",
    ),
]
ConcurrencyOpt = Annotated[int, typer.Option("--concurrency", "-j", min=1, help="(system, item) pairs in flight.")]
OutOpt = Annotated[
    Path | None,
    typer.Option("--out", "-o", help="Directory for results.jsonl, summary.json, the table and plot; reuse to resume."),
]
LimitOpt = Annotated[int | None, typer.Option("--limit", min=1, help="Only the first N items.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print summary.json to stdout instead of the table.")]
CacheOpt = Annotated[
    bool,
    typer.Option(
        "--cache",
        help="Reuse the proposals of an item seen before with the same settings (the proposal cache, SQLite in the "
        "data directory); with temperature > 0 the cached samples are reused. Cached calls are not counted in cost. "
        "Hits need --seed: without one every run draws fresh seeds.",
    ),
]


T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class EvalOptions:
    """The options every ``moa eval`` command takes besides its files, its judge and the model options."""

    limit: LimitOpt = None
    compare: CompareOpt = False
    collaborativeness: CollaborativenessOpt = False
    systems: SystemOpt = None
    variants: VariantOpt = None
    concurrency: ConcurrencyOpt = 4
    out: OutOpt = None
    as_json: JsonOpt = False
    cache: CacheOpt = False

    def first(self, items: list[T]) -> list[T]:
        """The items ``--limit`` keeps."""
        return items[: self.limit] if self.limit else items

    def generates(self, options: RunOptions, scored: Mapping[str, Any]) -> bool:
        """Whether to generate: nothing is given to score, or a configuration to run is.

        A configuration is named by the model options, ``--layers``, ``--system``
        or ``--variant``; other settings alone (``--timeout``, ``--seed``) do not
        start a run beside the files to score.
        """
        models = options.chooses_models() or "layers" in options.settings
        return not scored or models or self.systems is not None or self.variants is not None

    def runner_arguments(self) -> dict[str, Any]:
        """The keyword arguments every ``run_*`` function takes from these options."""
        return {
            "compare": self.compare,
            "collaborativeness": self.collaborativeness,
            "out_dir": self.out,
            "concurrency": self.concurrency,
            "cache": proposal_cache() if self.cache else None,
        }


with_eval_options = with_option_group("run", EvalOptions)
"""Gives a ``moa eval`` command the :class:`EvalOptions`, gathered in its keyword parameter ``run``."""


class BarProgress:
    """A rich progress bar on stderr: pairs done, ETA, errors and running cost."""

    def __init__(self) -> None:
        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("${task.fields[cost]:.4f}  {task.fields[errors]} error(s)"),
            console=err,
            transient=False,
        )
        self.task: Any = None
        self.cost = 0.0
        self.errors = 0

    def start(self, total: int, done: int) -> None:
        """Show the bar; ``done`` pairs were finished by an earlier run."""
        if done:
            err.print(f"resuming: {done} finished result(s) kept, {total} to run")
        self.bar.start()
        self.task = self.bar.add_task("eval", total=total, cost=0.0, errors=0)

    def advance(self, record: dict[str, Any]) -> None:
        """Count one finished pair."""
        self.cost += float(record.get("cost_usd") or 0.0)
        if record.get("error"):
            self.errors += 1
            err.print(
                f"[red]failed[/red] {escape(record['system'])} on {escape(record['id'])}: {escape(record['error'])}"
            )
        self.bar.update(self.task, advance=1, cost=self.cost, errors=self.errors)

    def stop(self) -> None:
        """Remove the live display."""
        self.bar.stop()


def extra_configs(specs: list[str] | None, options: RunOptions, stack: ExitStack) -> dict[str, MoAConfig]:
    """``--system NAME=PRESET`` configurations, with the run's temperature, max_tokens, timeout and endpoint."""
    configs: dict[str, MoAConfig] = {}
    for spec in specs or []:
        name, sep, preset = spec.partition("=")
        if not sep or not name.strip() or not preset.strip():
            raise typer.BadParameter(f"{spec!r} must be NAME=PRESET, e.g. lite=moa-lite", param_hint="--system")
        if name in configs:
            raise typer.BadParameter(f"{name!r} is given twice", param_hint="--system")
        shared = {k: v for k, v in options.settings.items() if k in {"temperature", "max_tokens", "timeout"}}
        extra = RunOptions(preset=preset.strip(), base_url=options.base_url, settings=shared)
        configs[name.strip()] = open_config(extra, stack)
    return configs


def publish(
    result: EvalResult,
    run: EvalOptions,
    title: str,
    *,
    percent: bool,
    label: str,
    extra: dict[str, dict[str, str]] | None = None,
    more: str = "",
) -> None:
    """Print the table (or, with ``--json``, the summary JSON), and write the table and plot into ``--out``.

    ``more`` (FLASK's difficulty and domain tables) goes after the tables.
    """
    out = run.out
    table = markdown_table(result.rows, percent=percent, score_label=label, extra=extra)
    collaboration = collaborativeness_table(result.rows, result.records, percent=percent, score_label=label)
    if collaboration:
        table += f"\nEach model alone and given the other models' answers (collaborativeness):\n\n{collaboration}"
    table += f"\n{more}" if more else ""  # FLASK's difficulty and domain tables
    if out is not None:
        (out / TABLE_FILE).write_text(f"# {title}\n\n{table}", encoding="utf-8")
        try:
            plot_score_vs_cost(result.rows, out / PLOT_FILE, title=title, percent=percent)
        except PlotUnavailable as exc:
            err.print(f"no plot: {exc}")
    if run.as_json:
        sys.stdout.write(json.dumps(result.summary, indent=2) + "\n")
    else:
        sys.stdout.write(table)
    if out is not None:
        err.print(f"results in {escape(str(out))}: results.jsonl, summary.json, {TABLE_FILE}, {PLOT_FILE}")
    by_system: dict[str, list[dict[str, Any]]] = {system.name: [] for system in result.systems}
    for record in result.records:
        by_system.setdefault(record["system"], []).append(record)
    failed = {name: own for name, own in by_system.items() if own and all(r.get("error") for r in own)}
    if failed:
        kinds = {system.name: system.kind for system in result.systems}
        names = "; ".join(
            f"{name}: all {len(own)} item(s) failed (e.g. {own[0]['error']})"
            + (" (its file answers none of them)" if kinds.get(name) == "outputs" else "")
            for name, own in failed.items()
        )
        retry = f"the same command retries them, keeping the results in {out}" if out else "check the models and keys"
        raise fail(f"nothing was measured for {names}: {retry}")


Configs = dict[str, MoAConfig]


def run_eval(
    options: RunOptions,
    run: EvalOptions,
    make: Callable[[MoAConfig, Configs, Configs, BarProgress], Coroutine[Any, Any, EvalResult]],
    publish_result: Callable[[EvalResult], None],
) -> None:
    """Open the configurations (starting local servers), check keys, run with a progress bar, publish."""
    with ExitStack() as stack:
        try:
            config = open_config(options, stack)
            extra = extra_configs(run.systems, options, stack)
            changed = {spec: variant_config(config, spec) for spec in run.variants or []}
            for each in [config, *extra.values(), *changed.values()]:
                check_credentials(each)
        except (MoAError, ValueError) as exc:
            raise fail(str(exc)) from None
        progress = BarProgress()
        try:
            result = asyncio.run(make(config, extra, changed, progress))
        except (MoAError, ValueError) as exc:
            raise fail(str(exc)) from None
        except KeyboardInterrupt:
            err.print("interrupted: finished results are saved; run the same command again to resume")
            raise typer.Exit(code=130) from None
        finally:
            progress.stop()
    publish_result(result)


@eval_app.command("exact")
@with_run_options
@with_eval_options
def exact(
    file: Annotated[Path | None, typer.Argument(help='JSONL of {"id"?, "question", "answer"}.')] = None,
    builtin: Annotated[
        str | None, typer.Option("--builtin", help="A built-in suite instead of FILE: arithmetic.")
    ] = None,
    grader: Annotated[
        str | None, typer.Option("--grader", help="module:function grade(response, answer) -> bool replacing the rule.")
    ] = None,
    template: Annotated[
        str, typer.Option("--template", help="The user message; {question} is replaced by the question.")
    ] = "{question}",
    *,
    run: EvalOptions,
    options: RunOptions,
) -> None:
    """Exact-answer questions graded without a judge: numbers by the last number, text as a whole word."""
    if (file is None) == (builtin is None):
        raise typer.BadParameter("give a FILE or --builtin NAME (one of them)")
    if "{question}" not in template:
        raise typer.BadParameter("must contain {question}", param_hint="--template")
    try:
        items: list[ExactItem] = builtin_suite(builtin) if builtin else load_exact(file)  # type: ignore[arg-type]
        grade = load_grader(grader) if grader else grade_exact
    except (EvalInputError, ValueError) as exc:
        raise fail(str(exc)) from None
    items = run.first(items)
    suite = builtin or (file.stem if file else "exact")

    async def make(config: MoAConfig, extra: Configs, variants: Configs, progress: BarProgress) -> EvalResult:
        return await run_exact(
            items,
            config,
            suite=suite,
            extra_systems=extra,
            variants=variants,
            grade=grade,
            extract=extract_answer,
            template=template,
            progress=progress,
            **run.runner_arguments(),
        )

    run_eval(
        options,
        run,
        make,
        lambda result: publish(result, run, f"{suite}: exact answers", percent=True, label="accuracy %"),
    )


JudgeOpt = Annotated[
    str,
    typer.Option(
        "--judge",
        help="The judge 'provider:model' (a bare name with --judge-base-url), or 'local': the local preset's model.",
    ),
]
JudgeBaseUrlOpt = Annotated[str | None, typer.Option("--judge-base-url", help="OpenAI-compatible server of the judge.")]
JudgeMaxTokensOpt = Annotated[int, typer.Option("--judge-max-tokens", min=1, help="Completion limit of a judgment.")]


def make_judge(name: str, base_url: str | None, max_tokens: int, config: MoAConfig | None) -> MoAConfig:
    """The judge's configuration; ``local`` is the model the local preset serves (its aggregator).

    Args:
        name: ``--judge``.
        base_url: ``--judge-base-url``.
        max_tokens: ``--judge-max-tokens``.
        config: The evaluated configuration (None when only outputs files are scored).

    Raises:
        MoAError: the judge's key is missing, or ``local`` without a local model.
    """
    timeout = config.timeout if config is not None else MoAConfig.model_fields["timeout"].default
    if name == "local":
        spec = config.aggregator if config is not None else None
        if spec is None or spec.base_url is None:
            raise EvalInputError("--judge local needs the local preset (--preset local or --gguf)")
        judge = judge_config(spec.model, base_url=spec.base_url, timeout=timeout, max_tokens=max_tokens, seed=0)
    else:
        try:
            judge = judge_config(name, base_url=base_url, timeout=timeout, max_tokens=max_tokens)
        except ValueError as exc:
            raise EvalInputError(f"--judge: {exc}") from None
    check_credentials(judge)
    return judge


def _counts(pairs: dict[str, tuple[int, int]]) -> dict[str, str]:
    return {name: f"{bad}/{total}" for name, (bad, total) in pairs.items()}


@eval_app.command("mt-bench")
@with_run_options
@with_eval_options
def mt_bench(
    questions: Annotated[Path, typer.Argument(help="FastChat's question.jsonl.")],
    judge: JudgeOpt,
    judge_base_url: JudgeBaseUrlOpt = None,
    judge_max_tokens: JudgeMaxTokensOpt = JUDGE_MAX_TOKENS,
    judge_prompts: Annotated[
        Path | None,
        typer.Option("--judge-prompts", help="FastChat's judge_prompts.jsonl (default: beside QUESTIONS or one up)."),
    ] = None,
    reference_answers: Annotated[
        Path | None,
        typer.Option(
            "--reference-answers", help="Reference answers for math/reasoning/coding (FastChat answer format)."
        ),
    ] = None,
    outputs: Annotated[
        list[Path] | None,
        typer.Option(
            "--outputs",
            help="Grade this FastChat answer file (model_answer/<model>.jsonl) as a system named by its model_id, "
            "with no generation (repeatable). With --outputs only the files are graded, unless model options are "
            "given too.",
        ),
    ] = None,
    answer_max_tokens: Annotated[
        int, typer.Option("--answer-max-tokens", min=1, help="New tokens per call (FastChat: 1024).")
    ] = MAX_NEW_TOKENS,
    per_category: Annotated[
        int | None, typer.Option("--per-category", min=1, help="Only the first N questions of each category.")
    ] = None,
    *,
    run: EvalOptions,
    options: RunOptions,
) -> None:
    """MT-Bench: two turns per question, FastChat's temperatures, single-answer grading 1-10 by --judge."""
    try:
        items = load_questions(questions)
        prompts = load_judge_prompts(judge_prompts or find_judge_prompts(questions))
        references = load_reference_answers(reference_answers) if reference_answers else {}
        graded = answer_files(outputs or [])
    except EvalInputError as exc:
        raise fail(str(exc)) from None
    if per_category:
        items = first_per_category(items, per_category)
    items = run.first(items)
    if "temperature" in options.settings:
        err.print("note: MT-Bench sets the temperature per category; --temperature is not used")

    generate = run.generates(options, graded)
    for name, answers in graded.items():
        missing = [q.id for q in items if q.id not in answers]
        if missing:
            err.print(
                f"[yellow]{escape(name)}: no answer to {len(missing)} of {len(items)} question(s) "
                f"(e.g. {escape(missing[0])}): counted as its errors[/yellow]"
            )

    async def make(config: MoAConfig | None, extra: Configs, variants: Configs, progress: BarProgress) -> EvalResult:
        judge_cfg = make_judge(judge, judge_base_url, judge_max_tokens, config)
        return await run_mt_bench(
            items,
            config,
            judge=judge_cfg,
            judge_prompts=prompts,
            reference_answers=references,
            extra_systems=extra,
            variants=variants,
            max_tokens=answer_max_tokens,
            outputs=graded,
            progress=progress,
            **run.runner_arguments(),
        )

    def show(result: EvalResult) -> None:
        counts = unparseable_counts(result.records)
        bad = sum(b for b, _ in counts.values())
        if bad:
            err.print(f"[yellow]{bad} judgment(s) had no {escape('[[rating]]')}[/yellow]: left out of the scores")
        title = f"MT-Bench ({len(items)} questions), judge {judge}, scored as FastChat's show_result.py"
        turns = {name: entry.get("turns", {}) for name, entry in result.summary["systems"].items()}

        def turn(n: str) -> dict[str, str]:
            return {k: "-" if v.get(n) is None else f"{v[n]:.2f}" for k, v in turns.items()}

        extra = {"turn 1": turn("1"), "turn 2": turn("2"), "unparseable judgments": _counts(counts)}
        publish(result, run, title, percent=False, label="score (1-10)", extra=extra)

    if generate:
        run_eval(options, run, make, show)
    else:
        run_scoring(lambda progress: make(None, {}, {}, progress), show)


def answer_files(paths: list[Path]) -> dict[str, dict[str, list[str]]]:
    """``--outputs`` FastChat answer files as ``{model_id: {question_id: turns}}``.

    Raises:
        EvalInputError: a file is malformed, or two files name the same model.
    """
    graded: dict[str, dict[str, list[str]]] = {}
    origin: dict[str, Path] = {}
    for path in paths:
        name, answers = load_answer_file(path)
        if name in graded:
            raise EvalInputError(f"--outputs: {origin[name]} and {path} both name model {name!r}: one file per model")
        graded[name], origin[name] = answers, path
    return graded


AnnotatorOpt = Annotated[
    str,
    typer.Option(
        "--annotator",
        help="weighted: AlpacaEval 2.0's weighted_alpaca_eval_gpt4_turbo (one judgment, preference from the judge's "
        "logprobs; the judge must return them). pairwise: FastChat's pair-v2, both orders, for judges without logprobs.",
    ),
]


@eval_app.command("alpaca-eval")
@with_run_options
@with_eval_options
def alpaca_eval(
    instructions: Annotated[Path, typer.Argument(help='JSON list of {"instruction", "dataset"?}.')],
    judge: JudgeOpt,
    baseline: Annotated[
        Path, typer.Option("--baseline", help="The baseline's outputs (AlpacaEval model-outputs JSON).")
    ],
    annotator: AnnotatorOpt = "weighted",
    paper_settings: Annotated[
        bool,
        typer.Option(
            "--paper-settings",
            help=f"Generate as the MoA paper did for AlpacaEval: temperature {PAPER_TEMPERATURE} and max_tokens "
            f"{PAPER_MAX_TOKENS} on every call of every system (per-model settings replaced).",
        ),
    ] = False,
    outputs: Annotated[
        list[Path] | None,
        typer.Option(
            "--outputs",
            help="Score this model-outputs file as a system named by its generator, with no generation (repeatable). "
            "With --outputs only the files are scored, unless model options are given too.",
        ),
    ] = None,
    reference_outputs: Annotated[
        Path | None,
        typer.Option("--reference-outputs", help="Precomputed outputs added to MoA's first layer as a proposal."),
    ] = None,
    judge_base_url: JudgeBaseUrlOpt = None,
    judge_max_tokens: JudgeMaxTokensOpt = JUDGE_MAX_TOKENS,
    *,
    run: EvalOptions,
    options: RunOptions,
) -> None:
    """Win rate against --baseline: AlpacaEval 2.0's weighted annotator (default) or FastChat's pairwise judge."""
    if annotator not in ("weighted", "pairwise"):
        raise typer.BadParameter(f"{annotator!r}: choose weighted or pairwise", param_hint="--annotator")
    try:
        items = load_instructions(instructions)
        items = run.first(items)
        base_file = load_outputs_file(baseline)
        base = matched_outputs(items, base_file.outputs, baseline)
        refs = matched_outputs(items, load_outputs(reference_outputs), reference_outputs) if reference_outputs else None
        scored = scored_outputs(items, outputs or [])
    except EvalInputError as exc:
        raise fail(str(exc)) from None
    generate = run.generates(options, scored)

    if paper_settings and {"temperature", "max_tokens"} & set(options.settings):
        raise typer.BadParameter(
            "sets temperature and max_tokens: drop --temperature/--max-tokens", param_hint="--paper-settings"
        )

    async def make(config: MoAConfig | None, extra: Configs, variants: Configs, progress: BarProgress) -> EvalResult:
        judge_cfg = make_judge(judge, judge_base_url, judge_max_tokens, config)
        if paper_settings and config is not None:
            config = with_settings(config, PAPER_TEMPERATURE, PAPER_MAX_TOKENS)
            extra = {k: with_settings(v, PAPER_TEMPERATURE, PAPER_MAX_TOKENS) for k, v in extra.items()}
            variants = {k: with_settings(v, PAPER_TEMPERATURE, PAPER_MAX_TOKENS) for k, v in variants.items()}
        return await run_alpaca_eval(
            items,
            config,
            judge=judge_cfg,
            baseline=base,
            baseline_generator=base_file.generator,
            annotator=annotator,  # type: ignore[arg-type]
            outputs=scored,
            reference_outputs=refs,
            reference_name=reference_outputs.stem if reference_outputs else "outputs",
            extra_systems=extra,
            variants=variants,
            progress=progress,
            **run.runner_arguments(),
        )

    def show(result: EvalResult) -> None:
        lengths = {name: f"{value:.0f}" for name, value in mean_lengths(result.records).items()}
        if annotator == "pairwise":
            verdicts = [{**r, "ratings": r.get("verdicts", [])} for r in result.records]
            counts = unparseable_counts(verdicts)
        else:
            counts = unparseable_counts([{**r, "ratings": [r.get("preference")]} for r in result.records])
        what = "AlpacaEval 2.0 weighted annotator" if annotator == "weighted" else "pairwise, both orders"
        title = f"Win rate against {base_file.generator} ({len(items)} instructions), judge {judge}, {what}"
        extra = {"mean length (chars)": lengths, "unparseable judgments": _counts(counts)}
        board = getattr(result, "leaderboard", {})
        if board:
            extra = {**leaderboard_columns(board), **extra}
            for note in dict.fromkeys(m["lc_note"] for m in board.values() if m.get("lc_note")):
                err.print(escape(note))
        publish(result, run, title, percent=True, label="win rate %", extra=extra)

    if generate:
        run_eval(options, run, make, show)
    else:
        run_scoring(lambda progress: make(None, {}, {}, progress), show)


def scored_outputs(items: list[Any], paths: list[Path]) -> dict[str, dict[str, str]]:
    """``--outputs`` files as ``{generator: {instruction id: output}}``; what they miss or add is reported.

    Raises:
        EvalInputError: a file is malformed, or two files name the same generator.
    """
    scored: dict[str, dict[str, str]] = {}
    origin: dict[str, Path] = {}
    for path in paths:
        file = load_outputs_file(path)
        if file.generator in scored:
            raise EvalInputError(
                f"--outputs: {origin[file.generator]} and {path} both name generator {file.generator!r}: "
                "one file per system"
            )
        coverage = cover(items, file)
        if not coverage.outputs:
            raise EvalInputError(
                f"--outputs {path}: none of its {len(file.outputs)} outputs answers these instructions"
            )
        if coverage.missing:
            err.print(
                f"[yellow]{escape(str(path))}: no output for {len(coverage.missing)} of {len(items)} instruction(s) "
                f"(e.g. entry {coverage.missing[0]}): counted as errors of {escape(file.generator)}[/yellow]"
            )
        if coverage.extra:
            err.print(f"{escape(str(path))}: {coverage.extra} output(s) for instructions not in the set: ignored")
        scored[file.generator] = coverage.outputs
        origin[file.generator] = path
    return scored


def leaderboard_columns(board: dict[str, dict[str, Any]]) -> dict[str, dict[str, str]]:
    """The leaderboard's numbers as table columns."""

    def num(value: Any, digits: int = 1) -> str:
        return "-" if value is None or value != value else f"{value:.{digits}f}"  # None or NaN

    return {
        "SE": {k: num(m["standard_error"], 2) for k, m in board.items()},
        "discrete %": {k: num(m["discrete_win_rate"]) for k, m in board.items()},
        "wins/losses/draws": {k: f"{m['n_wins']}/{m['n_wins_base']}/{m['n_draws']}" for k, m in board.items()},
        "LC %": {k: num(m["length_controlled_winrate"]) for k, m in board.items()},
    }


def run_scoring(
    make: Callable[[BarProgress], Coroutine[Any, Any, EvalResult]], publish_result: Callable[[EvalResult], None]
) -> None:
    """Score existing outputs (no configuration to open), with a progress bar, then publish."""
    progress = BarProgress()
    try:
        result = asyncio.run(make(progress))
    except (MoAError, ValueError) as exc:
        raise fail(str(exc)) from None
    except KeyboardInterrupt:
        err.print("interrupted: finished results are saved; run the same command again to resume")
        raise typer.Exit(code=130) from None
    finally:
        progress.stop()
    publish_result(result)


@eval_app.command("flask")
@with_run_options
@with_eval_options
def flask(
    evaluation_set: Annotated[
        Path, typer.Argument(help="FLASK's evaluation_set/flask_evaluation.jsonl (or flask_hard_evaluation.jsonl).")
    ],
    judge: JudgeOpt,
    rubrics: Annotated[
        Path,
        typer.Option("--rubrics", help="FLASK's metadata_annotation/skillset/src/skillset_description.json."),
    ],
    review_prompts: Annotated[Path, typer.Option("--review-prompts", help="FLASK's gpt_review/src/prompt.jsonl.")],
    outputs: Annotated[
        list[Path] | None,
        typer.Option(
            "--outputs",
            help="Review this FLASK model-outputs file ({question_id, text} lines) as a system named by its model_id "
            "or file stem, with no generation (repeatable). With --outputs only the files are reviewed, unless model "
            "options are given too.",
        ),
    ] = None,
    prompt_id: Annotated[
        int, typer.Option("--prompt-id", help="The review prompt (gpt4_eval.py uses 2: with the reference answer).")
    ] = FLASK_PROMPT_ID,
    judge_base_url: JudgeBaseUrlOpt = None,
    judge_max_tokens: Annotated[
        int, typer.Option("--judge-max-tokens", min=1, help="Completion limit of a review (FLASK: 1024).")
    ] = FLASK_JUDGE_MAX_TOKENS,
    *,
    run: EvalOptions,
    options: RunOptions,
) -> None:
    """FLASK: each answer reviewed 1-5 on the three skills its item names, FLASK's rubrics and review prompt."""
    try:
        items = load_flask(evaluation_set)
        rubric_list = load_rubrics(rubrics)
        prompt = load_review_prompt(review_prompts, prompt_id)
        reviewed: dict[str, dict[str, str]] = {}
        for path in outputs or []:
            name, texts = load_flask_outputs(path)
            if name in reviewed:
                raise EvalInputError(f"--outputs {path}: another file already names model {name!r}")
            reviewed[name] = texts
    except EvalInputError as exc:
        raise fail(str(exc)) from None
    items = run.first(items)
    for name, texts in reviewed.items():
        missing = [i.id for i in items if i.id not in texts]
        if missing:
            err.print(
                f"[yellow]{escape(name)}: no output for {len(missing)} of {len(items)} item(s) "
                f"(e.g. {escape(missing[0])}): counted as its errors[/yellow]"
            )
    generate = run.generates(options, reviewed)

    async def make(config: MoAConfig | None, extra: Configs, variants: Configs, progress: BarProgress) -> EvalResult:
        judge_cfg = make_judge(judge, judge_base_url, judge_max_tokens, config)
        return await run_flask(
            items,
            config,
            judge=judge_cfg,
            rubrics=rubric_list,
            prompt=prompt,
            extra_systems=extra,
            variants=variants,
            outputs=reviewed,
            progress=progress,
            **run.runner_arguments(),
        )

    def show(result: EvalResult) -> None:
        bad = sum(int(r.get("unparseable", 0)) for r in result.records if not r.get("error"))
        if bad:
            err.print(f"[yellow]{bad} review(s) had no score dictionary[/yellow]: left out of the scores")
        skills = {name: entry.get("skills", {}) for name, entry in result.summary["systems"].items()}
        names = [s for s in FLASK_SKILL_ORDER if any(s in v for v in skills.values())]
        extra = {skill: {k: f"{v[skill]:.2f}" for k, v in skills.items() if skill in v} for skill in names}
        counts = {name: (b, n) for name, b, n in _review_counts(result.records)}
        extra["unparseable reviews"] = _counts(counts)
        title = f"FLASK ({len(items)} items, {evaluation_set.name}), judge {judge}, 1-5 per skill"
        more = breakdown_tables(result.summary["systems"])  # FLASK's difficulty and domain breakdowns
        publish(result, run, title, percent=False, label="score (1-5)", extra=extra, more=more)

    if generate:
        run_eval(options, run, make, show)
    else:
        run_scoring(lambda progress: make(None, {}, {}, progress), show)


def _review_counts(records: list[dict[str, Any]]) -> list[tuple[str, int, int]]:
    out: dict[str, tuple[int, int]] = {}
    for r in records:
        if not r.get("error"):
            bad, total = out.get(r["system"], (0, 0))
            out[r["system"]] = (bad + int(r.get("unparseable", 0)), total + 1)
    return [(name, bad, total) for name, (bad, total) in out.items()]
