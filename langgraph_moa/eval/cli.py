"""``moa eval``: measure a MoA configuration against its own proposers.

Commands: ``exact`` (exact-answer JSONL or ``--builtin arithmetic``),
``mt-bench`` and ``alpaca-eval``. Each takes the model options of ``moa ask``,
``--compare``, ``--system NAME=PRESET``, ``--concurrency``, ``--out DIR``
(resumable) and ``--json``. See docs/evaluation.md.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Coroutine
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from langgraph_moa.cli import (
    AggregatorOpt,
    BaseUrlOpt,
    GgufOpt,
    LayersOpt,
    MaxTokensOpt,
    MinProposalsOpt,
    PresetOpt,
    ProposerOpt,
    RunOptions,
    TemperatureOpt,
    TimeoutOpt,
    err,
    eval_app,
    open_config,
)
from langgraph_moa.config import MoAConfig
from langgraph_moa.errors import MoAError
from langgraph_moa.providers import check_credentials, redact

from .exact import EvalResult, run_exact
from .grading import extract_answer, grade_exact, load_grader
from .items import EvalInputError, ExactItem, builtin_suite, load_exact
from .report import PlotUnavailable, markdown_table, plot_score_vs_cost

PLOT_FILE = "score_vs_cost.png"
TABLE_FILE = "summary.md"

CompareOpt = Annotated[
    bool,
    typer.Option("--compare", help="Also run each distinct proposer alone (and, for exact answers, a majority vote)."),
]
SystemOpt = Annotated[
    list[str] | None,
    typer.Option("--system", help="Another configuration to compare, NAME=PRESET; repeatable."),
]
ConcurrencyOpt = Annotated[int, typer.Option("--concurrency", "-j", min=1, help="(system, item) pairs in flight.")]
OutOpt = Annotated[
    Path | None,
    typer.Option("--out", "-o", help="Directory for results.jsonl, summary.json, the table and plot; reuse to resume."),
]
LimitOpt = Annotated[int | None, typer.Option("--limit", min=1, help="Only the first N items.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print summary.json to stdout instead of the table.")]


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


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print one ``error:`` line and return the exit to raise."""
    err.print(f"[red]error:[/red] {escape(redact(message))}")
    return typer.Exit(code=code)


def model_options(**kwargs: Any) -> RunOptions:
    """``RunOptions`` from the shared model options."""
    return RunOptions(**kwargs)


def extra_configs(specs: list[str] | None, options: RunOptions, stack: ExitStack) -> dict[str, MoAConfig]:
    """``--system NAME=PRESET`` configurations, with the run's temperature, max_tokens, timeout and endpoint."""
    configs: dict[str, MoAConfig] = {}
    for spec in specs or []:
        name, sep, preset = spec.partition("=")
        if not sep or not name.strip() or not preset.strip():
            raise typer.BadParameter(f"{spec!r} must be NAME=PRESET, e.g. lite=moa-lite", param_hint="--system")
        if name in configs:
            raise typer.BadParameter(f"{name!r} is given twice", param_hint="--system")
        extra = RunOptions(
            preset=preset.strip(),
            temperature=options.temperature,
            max_tokens=options.max_tokens,
            base_url=options.base_url,
            timeout=options.timeout,
        )
        configs[name.strip()] = open_config(extra, stack)
    return configs


def publish(result: EvalResult, out: Path | None, title: str, as_json: bool, *, percent: bool, label: str) -> None:
    """Print the table (or the summary JSON), and write the table and plot into ``out``."""
    table = markdown_table(result.rows, percent=percent, score_label=label)
    if out is not None:
        (out / TABLE_FILE).write_text(f"# {title}\n\n{table}", encoding="utf-8")
        try:
            plot_score_vs_cost(result.rows, out / PLOT_FILE, title=title, percent=percent)
        except PlotUnavailable as exc:
            err.print(f"no plot: {exc}")
    if as_json:
        sys.stdout.write(json.dumps(result.summary, indent=2) + "\n")
    else:
        sys.stdout.write(table)
    if out is not None:
        err.print(f"results in {escape(str(out))}: results.jsonl, summary.json, {TABLE_FILE}, {PLOT_FILE}")


def run_eval(
    options: RunOptions,
    systems: list[str] | None,
    make: Callable[[MoAConfig, dict[str, MoAConfig], BarProgress], Coroutine[Any, Any, EvalResult]],
    publish_result: Callable[[EvalResult], None],
) -> None:
    """Open the configurations (starting local servers), check keys, run with a progress bar, publish."""
    with ExitStack() as stack:
        try:
            config = open_config(options, stack)
            extra = extra_configs(systems, options, stack)
            for each in [config, *extra.values()]:
                check_credentials(each)
        except MoAError as exc:
            raise fail(str(exc)) from None
        progress = BarProgress()
        try:
            result = asyncio.run(make(config, extra, progress))
        except (MoAError, ValueError) as exc:
            raise fail(str(exc)) from None
        except KeyboardInterrupt:
            err.print("interrupted: finished results are saved; run the same command again to resume")
            raise typer.Exit(code=130) from None
        finally:
            progress.stop()
    publish_result(result)


@eval_app.command("exact")
def exact(
    file: Annotated[Path | None, typer.Argument(help='JSONL of {"id"?, "question", "answer"}.')] = None,
    builtin: Annotated[
        str | None, typer.Option("--builtin", help="A built-in suite instead of FILE: arithmetic.")
    ] = None,
    limit: LimitOpt = None,
    compare: CompareOpt = False,
    system: SystemOpt = None,
    concurrency: ConcurrencyOpt = 4,
    out: OutOpt = None,
    as_json: JsonOpt = False,
    grader: Annotated[
        str | None, typer.Option("--grader", help="module:function grade(response, answer) -> bool replacing the rule.")
    ] = None,
    template: Annotated[
        str, typer.Option("--template", help="The user message; {question} is replaced by the question.")
    ] = "{question}",
    preset: PresetOpt = None,
    layers: LayersOpt = None,
    proposer: ProposerOpt = None,
    aggregator: AggregatorOpt = None,
    temperature: TemperatureOpt = None,
    max_tokens: MaxTokensOpt = None,
    base_url: BaseUrlOpt = None,
    timeout: TimeoutOpt = None,
    min_proposals: MinProposalsOpt = None,
    gguf: GgufOpt = None,
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
    items = items[:limit] if limit else items
    suite = builtin or (file.stem if file else "exact")
    options = RunOptions(
        preset, layers, proposer, aggregator, temperature, max_tokens, base_url, timeout, min_proposals, gguf
    )

    async def make(config: MoAConfig, extra: dict[str, MoAConfig], progress: BarProgress) -> EvalResult:
        return await run_exact(
            items,
            config,
            suite=suite,
            compare=compare,
            extra_systems=extra,
            out_dir=out,
            concurrency=concurrency,
            grade=grade,
            extract=extract_answer,
            template=template,
            progress=progress,
        )

    run_eval(
        options,
        system,
        make,
        lambda result: publish(result, out, f"{suite}: exact answers", as_json, percent=True, label="accuracy %"),
    )
