"""The ``moa`` command: ask one question, or chat with a persistent history.

``moa ask PROMPT`` streams the final answer to stdout and layer progress to
stderr; ``--json`` prints one JSON object instead. ``moa chat`` keeps each
``--thread``'s history in a SQLite checkpoint, so a chat continues after the
process exits; a second ``moa chat`` on a thread that one already holds is
refused, so no turn of either is lost. ``moa presets`` lists the presets. The
exit status is 0 on success, 1 when the run fails, 2 for bad options; the
reason is one line on stderr.

Exit status: 0 on success; 1 when the run fails (a layer or the aggregator
failed, a key is missing, the local model cannot start); 2 for a bad option or
configuration (checked before any model server starts or any model is called);
130 when interrupted (Ctrl-C). Every error is one line on stderr that starts
with ``error:``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from langchain_core.messages import AIMessageChunk, BaseMessage, HumanMessage, RemoveMessage
from langchain_core.runnables import RunnableConfig
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from langgraph_moa.cache import proposal_cache
from langgraph_moa.cli_options import (
    LOCAL_PRESET,
    AggregatorOpt,
    BaseUrlOpt,
    EarlyStopOpt,
    GgufOpt,
    KeepTopOpt,
    LayersOpt,
    MaxCostOpt,
    MaxTokensOpt,
    MinProposalsOpt,
    PresetOpt,
    ProposerOpt,
    ProvisionalOpt,
    RunOptions,
    SeedOpt,
    StragglerOpt,
    TemperatureOpt,
    TimeoutOpt,
    WindowOpt,
    err,
    open_config,
)
from langgraph_moa.config import MoAConfig, describe_validation_error
from langgraph_moa.errors import ConfigError, MoAError
from langgraph_moa.eval.cli import eval_app
from langgraph_moa.graph import create_moa_graph
from langgraph_moa.local import BUNDLED_MODEL_NAME, kill_servers
from langgraph_moa.paths import data_dir
from langgraph_moa.presets import PRESETS
from langgraph_moa.providers import StreamRedactor, check_credentials, redact
from langgraph_moa.stream import AGGREGATOR_NODE, is_aggregator_token, summarize_usage

try:  # typer 0.2x ships its own copy of click; older releases use click itself
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover
    from click import exceptions as click_errors  # type: ignore[no-redef]


class WholeHelpGroup(typer.core.TyperGroup):
    """A command group whose ``--help`` lists each command with its whole first sentence.

    (click cuts it to what fits the terminal's width beside the names, mid-word;
    here the sentence wraps onto the next lines instead.)
    """

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        """The Commands section: every visible command and the first sentence of its help."""
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=1_000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


class OneLineErrors(WholeHelpGroup):
    """The ``moa`` group: a usage error is one ``error:`` line (exit status 2), not click's usage block."""

    def main(  # type: ignore[override]
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """Run the command; in standalone mode, report click's errors as one line and exit."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click_errors.NoArgsIsHelpError as exc:  # bare `moa`: the help, as asked for
            exc.show()
            sys.exit(exc.exit_code)
        except click_errors.ClickException as exc:
            message = " ".join(exc.format_message().split()).rstrip(".")
            message = message.removeprefix("Invalid value: ")
            message = message[:1].lower() + message[1:]
            ctx = getattr(exc, "ctx", None)
            if isinstance(exc, click_errors.UsageError) and ctx is not None:
                message += f" (see '{ctx.command_path} --help')"
            err.print(f"[red]error:[/red] {escape(redact(message))}")
            sys.exit(exc.exit_code)
        except typer.Abort:
            _report_interrupted()
            result = 130
        if result == 130:  # Ctrl-C: the run and its model servers are stopped
            _exit_130()
        sys.exit(result if isinstance(result, int) else 0)


app = typer.Typer(
    cls=OneLineErrors,
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,  # plain help text; errors are one "error: ..." line (OneLineErrors)
    pretty_exceptions_enable=False,
    help="Mixture-of-Agents on LangGraph: several models propose, one aggregates.",
)

app.add_typer(eval_app, name="eval", cls=WholeHelpGroup)


class CLIError(Exception):
    """A failure reported as one line on stderr with exit status 1."""


# --------------------------------------------------------------------------- options
# --------------------------------------------------------------------------- progress


def slot_labels(models: list[str]) -> dict[int, str]:
    """Name each proposer of a layer; a model that appears several times gets ``#1``, ``#2``, ... (Self-MoA)."""
    labels = {}
    for slot, model in enumerate(models):
        same = [i for i, m in enumerate(models) if m == model]
        labels[slot] = f"{model} #{same.index(slot) + 1}" if len(same) > 1 else model
    return labels


class Progress:
    """Renders the ``custom`` progress events of a run on stderr: done, failed, pending.

    A proposer's line gives the seconds since its layer started (the run, or
    the previous layer's end: one clock for the whole layer), so the lines,
    printed as the proposers finish, read in order. While a provisional answer streams (``--provisional``), the layer's
    other lines wait and follow it, so the two never interleave. While the
    aggregator has not sent its first token, a terminal shows a spinner with
    the seconds waited first (:meth:`waiting`, until :meth:`first_token`), so a
    narrow terminal cuts the model's name, not the wait.

    Args:
        console: Where to print (stderr).
        clock: Seconds from any fixed point (``time.monotonic``); a test gives its own.
    """

    def __init__(self, console: Console, clock: Callable[[], float] = time.monotonic) -> None:
        self.console = console
        self.clock = clock
        self.labels: dict[int, dict[int, str]] = {}
        self.pending: dict[int, dict[int, str]] = {}
        self.done: dict[int, int] = {}
        self.failed: dict[int, int] = {}
        self.succeeded: dict[int, list[int]] = {}
        self.layer_started: dict[int, float] = {}
        self._held: list[str] | None = None  # lines waiting for a streaming provisional answer
        self._status: Any = None
        self._ticker: asyncio.Task[None] | None = None
        self._waiting_for = ""
        self._waiting_since = 0.0

    def _label(self, event: dict[str, Any]) -> str:
        return self.labels.get(event["layer"], {}).get(event["slot"], event["model"])

    def _print(self, line: str) -> None:
        if self._held is not None:
            self._held.append(line)
        else:
            self.console.print(line)

    def _release(self) -> None:
        held, self._held = self._held or [], None
        for line in held:
            self.console.print(line)

    def _elapsed(self, layer: int) -> float:
        return self.clock() - self.layer_started.setdefault(layer, self.clock())

    def _finish(self, event: dict[str, Any], counter: dict[int, int], what: str) -> None:
        layer = event["layer"]
        self.pending.get(layer, {}).pop(event["slot"], None)
        counter[layer] = counter.get(layer, 0) + 1
        waiting = self.pending.get(layer, {})
        names = f" ({escape(', '.join(waiting.values()))})" if waiting else ""
        self._print(
            f"  layer {layer}: {what} - {self.done.get(layer, 0)} done, "
            f"{self.failed.get(layer, 0)} failed, {len(waiting)} pending{names}"
        )

    def _built_from(self, event: dict[str, Any]) -> list[str]:
        """The provisional answer's references as the progress lines named them (``#1``, ``#2`` for samples)."""
        layer, models = event["layer"], list(event["built_from"])
        slots = sorted(self.succeeded.get(layer, []))
        labels = [self.labels.get(layer, {}).get(slot, "") for slot in slots]
        if len(labels) == len(models) and all(
            label.split(" #")[0] == m for label, m in zip(labels, models, strict=True)
        ):
            return labels
        return models

    def __call__(self, event: dict[str, Any]) -> None:
        """Show one progress event of the ``custom`` stream."""
        kind = event.get("event")
        if kind == "run_started":
            self._release()
            for record in (self.done, self.failed, self.succeeded, self.layer_started):
                record.clear()
            self.labels = {int(layer): slot_labels(list(models)) for layer, models in event["proposers"].items()}
            self.pending = {layer: dict(labels) for layer, labels in self.labels.items()}
            self.layer_started[1] = self.clock()
            self.console.print(
                f"[bold]MoA[/bold]: {event['layers']} layer(s), aggregator {escape(event['aggregator'])}"
            )
        elif kind == "proposer_started":
            self.layer_started.setdefault(event["layer"], self.clock())
        elif kind == "proposer_done":
            self.succeeded.setdefault(event["layer"], []).append(event["slot"])
            seconds = self._elapsed(event["layer"])
            what = f"[green]done[/green]   {escape(self._label(event))} after {seconds:.2f}s"
            self._finish(event, self.done, what)
        elif kind == "proposer_failed":
            reason = escape(f"{self._label(event)}: {event['error_type']}: {event['message']}")
            self._finish(event, self.failed, f"[red]failed[/red] {reason}")
        elif kind == "layer_done":
            self.layer_started[event["layer"] + 1] = self.clock()
            cached = f" ({event['cached']} from the cache)" if event.get("cached") else ""
            self._print(
                f"layer {event['layer']} complete: {event['succeeded']} proposal(s){cached}, {event['failed']} failed"
            )
        elif kind == "strategy":
            self._print(f"layer {event['layer']}: {escape(event['option'])}: {escape(event['reason'])}")
        elif kind == "provisional_started":
            self._release()
            built_from = escape(", ".join(self._built_from(event)))
            self.console.print(f"layer {event['layer']}: [dim]provisional answer from {built_from}:[/dim]")
            self._held = []
        elif kind == "provisional_token":
            self.console.print(event["text"], end="", style="dim", markup=False)
        elif kind == "provisional_answer":
            self.console.print("\n[dim](provisional; the final answer follows on stdout)[/dim]")
            self._release()
        elif kind == "provisional_failed":
            reason = escape(f"{event['error_type']}: {event['message']}")
            if self._held is not None:
                self.console.print()
            self.console.print(f"layer {event['layer']}: [yellow]no provisional answer[/yellow] ({reason})")
            self._release()
        elif kind == "aggregator_started":
            self._release()
            self.console.print(f"layer {event['layer']}: aggregating with {escape(event['model'])}")
            self.waiting(f"waiting for the first token of {event['model']}")

    def waiting_text(self) -> str:
        """The spinner's text: the seconds waited first, so a narrow terminal never cuts them off."""
        return f"{self.clock() - self._waiting_since:.0f}s {escape(self._waiting_for)}"

    def waiting(self, what: str) -> None:
        """On a terminal, show a spinner with the seconds waited until :meth:`first_token` or :meth:`stop`."""
        self.stop()
        if not self.console.is_terminal:
            return
        self._waiting_for, self._waiting_since = what, self.clock()
        status = self._status = self.console.status(self.waiting_text(), spinner="dots")
        status.start()

        async def tick() -> None:
            while True:
                await asyncio.sleep(0.5)
                self.tick()

        try:
            self._ticker = asyncio.get_running_loop().create_task(tick())
        except RuntimeError:  # no running loop: the spinner turns without the clock
            self._ticker = None

    def tick(self) -> None:
        """Show the seconds waited now (the spinner's task calls this twice a second)."""
        if self._status is not None:
            self._status.update(self.waiting_text())

    def first_token(self) -> None:
        """The answer has started: the spinner goes away."""
        self.stop()

    def stop(self) -> None:
        """Remove the spinner, if one is shown, and print any line still held."""
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        if self._status is not None:
            self._status.stop()
            self._status = None
        self._release()


# --------------------------------------------------------------------------- running


async def stream_turn(
    graph: Any,
    inputs: dict[str, Any] | None,
    run_config: RunnableConfig,
    config: MoAConfig,
    progress: Progress,
) -> AsyncIterator[str | dict[str, Any]]:
    """Run one turn (``inputs=None`` resumes one); yield answer tokens, then the final state ``dict``."""
    final: dict[str, Any] = {}
    redactor = StreamRedactor()  # a key an upstream echoes is removed, even split across tokens
    try:
        async for mode, chunk in graph.astream(
            inputs, run_config, context=config, stream_mode=["messages", "custom", "values"]
        ):
            if mode == "custom":
                progress(chunk)
            elif mode == "messages":
                message, metadata = chunk
                if is_aggregator_token(metadata) and isinstance(message, AIMessageChunk):
                    if message.text:
                        progress.first_token()
                    if message.text and (text := redactor.feed(message.text)):
                        yield text
            elif mode == "values":
                final = chunk
    finally:
        progress.stop()
    if rest := redactor.flush():
        yield rest
    yield final


def finish_reason(state: dict[str, Any]) -> str | None:
    """The final answer's finish reason as the aggregator's provider reported it (``stop``, ``length``, ...)."""
    messages: list[BaseMessage] = state.get("messages", [])
    if not messages or messages[-1].type != "ai":
        return None
    return (messages[-1].response_metadata or {}).get("finish_reason")


CUT_NOTICE = "[cut at max_tokens: the answer is incomplete; raise --max-tokens for a longer one]"


def result_json(state: dict[str, Any], config: MoAConfig) -> dict[str, Any]:
    """The ``--json`` document of a finished turn."""
    messages: list[BaseMessage] = state.get("messages", [])
    layers: dict[int, dict[str, Any]] = {
        n: {"layer": n, "proposals": [], "failures": []} for n in range(1, config.layers)
    }
    for proposal in state.get("proposals", []):
        layers[proposal["layer"]]["proposals"].append(proposal)
    for failure in state.get("failures", []):
        layers[failure["layer"]]["failures"].append(failure)
    summary = state.get("usage_summary") or summarize_usage(state.get("usage", []), config)
    reason = finish_reason(state)
    return {
        "answer": messages[-1].text if messages else "",
        "finish_reason": reason,
        "truncated": reason == "length",
        "aggregator": config.aggregator.model,
        "layers": [layers[n] for n in sorted(layers)],
        "usage": {
            "total": summary["total"],
            "by_layer": summary["by_layer"],
            "by_model": summary["by_model"],
            "calls": state.get("usage", []),
        },
        "cost_usd": summary["cost_usd"],
        "unpriced_models": summary["unpriced_models"],
        "unreported_usage_calls": summary["unreported_calls"],
    }


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]error:[/red] {escape(redact(' '.join(message.split())))}")
    return typer.Exit(code=code)


def _preflight(config: MoAConfig) -> None:
    try:
        check_credentials(config)
    except ConfigError as exc:  # a bad model name or endpoint: a bad option
        raise _fail(str(exc), code=2) from None
    except MoAError as exc:
        raise _fail(str(exc)) from None


async def _ask(prompt: str, config: MoAConfig, as_json: bool, system: str | None, cache: bool = False) -> None:
    graph = create_moa_graph().compile(name="moa", cache=proposal_cache() if cache else None)
    progress = Progress(err)
    messages: list[Any] = [("system", system)] if system else []
    messages.append(("user", prompt))
    final: dict[str, Any] = {}
    wrote = False
    async for item in stream_turn(graph, {"messages": messages}, {}, config, progress):
        if isinstance(item, str):
            if not as_json:
                sys.stdout.write(item)
                sys.stdout.flush()
                wrote = True
        else:
            final = item
    if as_json:
        sys.stdout.write(json.dumps(result_json(final, config), ensure_ascii=False, indent=2) + "\n")
    elif wrote:
        sys.stdout.write("\n")
    sys.stdout.flush()
    if not as_json and finish_reason(final) == "length":
        err.print(f"[yellow]{escape(CUT_NOTICE)}[/yellow]")


INTERRUPT_GRACE = 0.5
"""Seconds a run may take to wind down after Ctrl-C before the command exits anyway."""

_interrupted = threading.Event()


def _report_interrupted() -> None:
    if not _interrupted.is_set():
        _interrupted.set()
        err.print("interrupted")


def _exit_130() -> NoReturn:
    """After Ctrl-C: exit with status 130 at once, skipping the slow interpreter teardown."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(130)


def _exit_interrupted() -> NoReturn:  # runs on a timer thread when the run has not wound down in time
    kill_servers()
    _report_interrupted()
    _exit_130()


async def _interruptible(coro: Any) -> Any:
    """Await ``coro`` with Ctrl-C stopping it promptly.

    asyncio.run's own handler cancels the run, which then waits for whatever its
    libraries do on cancellation (closing streams, at the next ``await`` only). In
    front of it, Ctrl-C kills the local model servers at once (a generating
    llama.cpp server keeps the cores busy meanwhile) and starts a timer: if the
    run has not wound down after :data:`INTERRUPT_GRACE` seconds, the command
    exits with status 130 anyway.
    """
    cancel_run = signal.getsignal(signal.SIGINT)
    if not callable(cancel_run) or threading.current_thread() is not threading.main_thread():
        return await coro

    def interrupt(signum: int, frame: Any) -> None:
        kill_servers()
        timer = threading.Timer(INTERRUPT_GRACE, _exit_interrupted)
        timer.daemon = True
        timer.start()
        cancel_run(signum, frame)

    signal.signal(signal.SIGINT, interrupt)
    try:
        return await coro
    finally:
        signal.signal(signal.SIGINT, cancel_run)


def _run(coro: Any) -> None:
    try:
        asyncio.run(_interruptible(coro))
    except (MoAError, ConfigError, CLIError) as exc:
        raise _fail(str(exc)) from None
    except KeyboardInterrupt:
        _report_interrupted()
        raise typer.Exit(code=130) from None
    except Exception as exc:  # an unexpected failure still gets one line, secrets removed
        raise _fail(f"{type(exc).__name__}: {' '.join(str(exc).split())}") from None


def _with_config(options: RunOptions, run: Any) -> None:
    """Open the config (starting local servers if needed), check keys, run, clean up."""
    with ExitStack() as stack:
        try:
            config = open_config(options, stack)
        except MoAError as exc:
            raise _fail(str(exc)) from None
        _preflight(config)
        if note := provisional_note(config):
            err.print(f"[yellow]note:[/yellow] {escape(note)}")
        _run(run(config))


def provisional_note(config: MoAConfig) -> str | None:
    """What to say when ``--provisional`` cannot do anything with the run's number of layers."""
    if not config.provisional_answers or config.layers >= 3:
        return None
    return (
        f"--provisional does nothing with {config.layers} layer(s): a provisional answer is written from one "
        "proposer layer while the next proposer layer runs, so it needs --layers 3 or more"
    )


@app.command()
def ask(
    prompt: Annotated[str, typer.Argument(help="The question or instruction.")],
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
    seed: SeedOpt = None,
    straggler_timeout: StragglerOpt = None,
    provisional: ProvisionalOpt = False,
    early_stop: EarlyStopOpt = None,
    keep_top: KeepTopOpt = None,
    aggregation_window: WindowOpt = None,
    max_cost: MaxCostOpt = None,
    system: Annotated[str | None, typer.Option("--system", help="A system message for every model.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object with every layer.")] = False,
    cache: Annotated[
        bool,
        typer.Option(
            "--cache",
            help="Reuse proposals of an identical earlier question (a SQLite cache in the data directory). "
            "With temperature > 0 the cached samples are reused, not drawn again; runs hit the cache only "
            "with --seed (without it every run draws fresh seeds).",
        ),
    ] = False,
) -> None:
    """Answer PROMPT with Mixture-of-Agents; the answer streams to stdout."""
    if not prompt.strip():
        raise typer.BadParameter("the prompt is empty", param_hint="PROMPT")
    options = RunOptions(
        preset=preset, layers=layers, proposers=proposer, aggregator=aggregator, temperature=temperature,
        max_tokens=max_tokens, base_url=base_url, timeout=timeout, min_proposals=min_proposals, gguf=gguf, seed=seed,
        straggler_timeout=straggler_timeout, provisional_answers=provisional, early_stop=early_stop,
        keep_top=keep_top, aggregation_window=aggregation_window, max_cost_usd=max_cost,
    )  # fmt: skip
    _with_config(options, lambda config: _ask(prompt, config, as_json, system, cache))


def default_chat_db() -> Path:
    """Where ``moa chat`` keeps its history unless ``--db`` says otherwise."""
    return data_dir() / "chat.sqlite"


def _stdin_lines(loop: asyncio.AbstractEventLoop) -> asyncio.Queue[str]:
    """Lines of stdin, read on a daemon thread so Ctrl-C at the prompt ends the chat at once."""
    queue: asyncio.Queue[str] = asyncio.Queue()

    def pump() -> None:
        try:
            for line in iter(sys.stdin.readline, ""):
                loop.call_soon_threadsafe(queue.put_nowait, line)
            loop.call_soon_threadsafe(queue.put_nowait, "")
        except RuntimeError:  # the loop closed while the user was typing
            pass

    threading.Thread(target=pump, name="moa-stdin", daemon=True).start()
    return queue


async def _drop_unanswered_turn(graph: Any, run_config: RunnableConfig) -> None:
    """Remove the user message(s) a failed turn left without an answer."""
    snapshot = await graph.aget_state(run_config)
    messages: list[BaseMessage] = snapshot.values.get("messages", [])
    unanswered = []
    for message in reversed(messages):
        if message.type == "ai":
            break
        unanswered.append(RemoveMessage(id=str(message.id)))
    if unanswered:
        await graph.aupdate_state(run_config, {"messages": unanswered}, as_node=AGGREGATOR_NODE)


@contextmanager
def thread_lock(db: Path, thread: str) -> Iterator[None]:
    """Hold ``thread`` of ``db`` for one chat: a second writer would lose a turn of the history.

    A :class:`filelock.FileLock` on ``<db>.locks/<hash of the thread>.lock`` is
    held while the chat runs; the OS releases it when the process ends, however
    it ends. A second chat on the thread is refused at once, in this process or
    another.

    Raises:
        CLIError: another chat holds the thread.
    """
    from filelock import FileLock, Timeout

    folder = Path(f"{db}.locks")
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(folder / f"{hashlib.sha256(thread.encode()).hexdigest()[:32]}.lock", timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise CLIError(
            f"thread {thread!r} of {db} is open in another moa chat; finish that chat first, or use another --thread"
        ) from None
    try:
        yield
    finally:
        lock.release()


async def _chat(config: MoAConfig, thread: str, db: Path, interactive: bool) -> None:
    db.parent.mkdir(parents=True, exist_ok=True)
    with thread_lock(db, thread):  # two chats on one thread would each write a history missing the other's turn
        await _chat_turns(config, thread, db, interactive)


async def _chat_turns(config: MoAConfig, thread: str, db: Path, interactive: bool) -> None:
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    failed_turns = 0
    async with AsyncSqliteSaver.from_conn_string(str(db)) as saver:
        graph = create_moa_graph().compile(checkpointer=saver, name="moa")
        run_config: RunnableConfig = {"configurable": {"thread_id": thread}}
        snapshot = await graph.aget_state(run_config)
        history = snapshot.values.get("messages", []) if snapshot.values else []
        can_retry = bool(snapshot.next)  # a turn of an earlier run stopped part-way
        err.print(
            f"thread [bold]{escape(thread)}[/bold] ({len(history)} earlier message(s)) in {escape(str(db))}; "
            "type /exit or press Ctrl-D to leave" + (", /retry to finish the interrupted turn" if can_retry else "")
        )
        progress = Progress(err)
        lines = _stdin_lines(asyncio.get_running_loop())
        while True:
            if interactive:
                err.print("[bold cyan]you>[/bold cyan] ", end="")
            text = (line := await lines.get()).strip()
            if not line or text in {"/exit", "/quit"}:
                break
            if not text:
                continue
            inputs: dict[str, Any] | None = {"messages": [HumanMessage(content=text)]}
            if text == "/retry":
                if not can_retry:
                    err.print("nothing to retry")
                    continue
                inputs = None  # resume: proposals that finished are not asked again
            elif can_retry:
                await _drop_unanswered_turn(graph, run_config)
                err.print("(the unanswered question was left out of the history)")
            try:
                async for item in stream_turn(graph, inputs, run_config, config, progress):
                    if isinstance(item, str):
                        sys.stdout.write(item)
                        sys.stdout.flush()
                    elif finish_reason(item) == "length":
                        sys.stdout.write("\n")
                        sys.stdout.flush()
                        err.print(f"[yellow]{escape(CUT_NOTICE)}[/yellow]", end="")
            except MoAError as exc:  # one failed turn does not end the chat; its history is kept
                if inputs is not None:
                    failed_turns += 1
                can_retry = True
                err.print(f"[red]error:[/red] {escape(redact(str(exc)))}")
                err.print("type /retry to finish this turn (answers already received are kept)")
                continue
            if inputs is None and failed_turns:
                failed_turns -= 1  # a retried turn is no longer a failure
            can_retry = False
            sys.stdout.write("\n")
            sys.stdout.flush()
    if failed_turns:
        raise CLIError(f"{failed_turns} turn(s) failed; see the errors above")


@app.command()
def chat(
    thread: Annotated[str, typer.Option("--thread", help="Conversation id; reuse it to continue.")] = "default",
    db: Annotated[Path | None, typer.Option("--db", help="SQLite file for the history.")] = None,
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
    straggler_timeout: StragglerOpt = None,
    provisional: ProvisionalOpt = False,
    early_stop: EarlyStopOpt = None,
    keep_top: KeepTopOpt = None,
    aggregation_window: WindowOpt = None,
    max_cost: MaxCostOpt = None,
) -> None:
    """Chat over several turns; one line of stdin is one turn. History persists per --thread.

    One chat at a time per thread: a second one on the same --thread and --db is refused.
    """
    options = RunOptions(
        preset=preset, layers=layers, proposers=proposer, aggregator=aggregator, temperature=temperature,
        max_tokens=max_tokens, base_url=base_url, timeout=timeout, min_proposals=min_proposals, gguf=gguf,
        straggler_timeout=straggler_timeout, provisional_answers=provisional, early_stop=early_stop,
        keep_top=keep_top, aggregation_window=aggregation_window, max_cost_usd=max_cost,
    )  # fmt: skip
    path = db or default_chat_db()
    _with_config(options, lambda config: _chat(config, thread, path, interactive=sys.stdin.isatty()))


@app.command()
def serve(
    host: Annotated[
        str, typer.Option("--host", help="Interface to bind; keep 127.0.0.1 unless you set API keys.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
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
    seed: SeedOpt = None,
    straggler_timeout: StragglerOpt = None,
    provisional: ProvisionalOpt = False,
    early_stop: EarlyStopOpt = None,
    keep_top: KeepTopOpt = None,
    aggregation_window: WindowOpt = None,
    max_cost: MaxCostOpt = None,
    name: Annotated[str, typer.Option("--name", help="Model id under which the options above are served.")] = "default",
    assistants: Annotated[
        Path | None,
        typer.Option("--assistants", help="JSON file of more model ids: {name: {MoAConfig fields, 'preset'}}."),
    ] = None,
    api_key_file: Annotated[
        Path | None,
        typer.Option("--api-key-file", help="File of accepted API keys, one per line (adds to MOA_API_KEYS)."),
    ] = None,
    db: Annotated[
        Path | None, typer.Option("--db", help="SQLite file for stored completions (default under ~/.local/share).")
    ] = None,
    checkpoint_url: Annotated[
        str | None,
        typer.Option(
            "--checkpoint-url",
            envvar="MOA_CHECKPOINT_URL",
            show_envvar=True,
            help="postgresql://... to keep stored completions in PostgreSQL instead of SQLite.",
        ),
    ] = None,
    max_request_tokens: Annotated[
        int, typer.Option("--max-request-tokens", help="Largest max_tokens a request may ask for.")
    ] = 4096,
    max_request_bytes: Annotated[
        int, typer.Option("--max-request-bytes", help="Largest request body in bytes.")
    ] = 1_000_000,
    max_messages: Annotated[
        int, typer.Option("--max-messages", help="Most messages in one request (400 above).")
    ] = 256,
    max_request_chars: Annotated[
        int, typer.Option("--max-request-chars", help="Most characters of message text in one request (400 above).")
    ] = 400_000,
    provider_concurrency: Annotated[
        int, typer.Option("--provider-concurrency", help="Upstream calls in flight per provider, over all requests.")
    ] = 16,
    max_concurrent_runs: Annotated[
        int,
        typer.Option("--max-concurrent-runs", help="MoA runs executing at once; later requests wait to start."),
    ] = 32,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-host",
            help="A host name clients may address the server by; repeat for several. Default: the loopback "
            "names when --host is loopback, any name otherwise.",
        ),
    ] = None,
    graceful_timeout: Annotated[
        int,
        typer.Option(
            "--graceful-timeout",
            min=0,
            help="On SIGTERM or Ctrl-C, seconds the requests in flight may take to finish before they are "
            "cancelled; the exit status is 0 if all finished, 1 if some were cancelled.",
        ),
    ] = 25,
    log_level: Annotated[str, typer.Option("--log-level", help="uvicorn log level.")] = "info",
) -> None:
    """Serve MoA as an OpenAI-compatible API (/v1) and LangServe routes (/moa).

    The model options configure the model id --name, served when model options
    are given or there is no --assistants file; the assistants of --assistants
    and the hosted presets are served too. LangServe requests start from the
    first of them. API keys come from MOA_API_KEYS (comma-separated) and
    --api-key-file; without any, the server is open.
    """
    try:
        import uvicorn

        from langgraph_moa.serve.app import (
            LOOPBACK_HOSTS,
            ServeSettings,
            create_app,
            describe_checkpoint,
            load_api_keys,
            load_assistants,
            loopback_host,
        )
        from langgraph_moa.serve.shutdown import keep_streams_during_grace
    except ImportError as exc:
        raise _fail(f"serving needs the serve extra: pip install 'langgraph-moa[serve]' ({exc})") from None
    if db is not None and checkpoint_url:
        raise typer.BadParameter("give --db (SQLite) or --checkpoint-url (PostgreSQL), not both")
    if checkpoint_url and not checkpoint_url.startswith(("postgresql://", "postgres://")):
        raise typer.BadParameter("must start with postgresql://", param_hint="--checkpoint-url")
    options = RunOptions(
        preset=preset, layers=layers, proposers=proposer, aggregator=aggregator, temperature=temperature,
        max_tokens=max_tokens, base_url=base_url, timeout=timeout, min_proposals=min_proposals, gguf=gguf, seed=seed,
        straggler_timeout=straggler_timeout, provisional_answers=provisional, early_stop=early_stop,
        keep_top=keep_top, aggregation_window=aggregation_window, max_cost_usd=max_cost,
    )  # fmt: skip
    configured = options.given()
    with ExitStack() as stack:
        try:
            served = load_assistants(assistants) if assistants else {}
            keys = load_api_keys(api_key_file)
            if configured or not assistants:
                if name in served:
                    raise ConfigError(
                        f"--name {name!r} is also an assistant of {assistants}: give the model options another "
                        "--name, or rename that assistant"
                    )
                served = {name: open_config(options, stack), **served}
            if not served:
                raise ConfigError(
                    f"{assistants} holds no assistants: add at least one, "
                    'e.g. {"fast": {"preset": "moa-lite"}}, or give model options'
                )
            if allowed_host:
                hosts = tuple(allowed_host)
            elif loopback_host(host):
                hosts = LOOPBACK_HOSTS
            else:
                hosts = ("*",)
            settings = ServeSettings(
                assistants={**served, **{k: v for k, v in PRESETS.items() if k not in served}},
                api_keys=keys,
                default_assistant=next(iter(served)),
                allowed_hosts=hosts,
                max_tokens=max_request_tokens,
                max_request_bytes=max_request_bytes,
                max_messages=max_messages,
                max_request_chars=max_request_chars,
                provider_concurrency=provider_concurrency,
                max_concurrent_runs=max_concurrent_runs,
            )
        except ConfigError as exc:
            raise _fail(str(exc), code=2) from None
        except MoAError as exc:
            raise _fail(str(exc)) from None
        except ValidationError as exc:
            raise typer.BadParameter(describe_validation_error(exc)) from None
        checkpoint = checkpoint_url or db
        app_ = create_app(settings, checkpoint=checkpoint)
        url = f"http://{host}:{port}"
        err.print(
            f"moa: serving {escape(', '.join(settings.assistants))}\n"
            f"  OpenAI API: {url}/v1   LangServe: {url}/moa   checkpoints: {escape(describe_checkpoint(checkpoint))}"
        )
        idle = [name for name in settings.assistants if name not in settings.runnable()]
        if idle:
            err.print(f"  left out of /v1/models until their provider keys are set: {escape(', '.join(idle))}")
        if keys:
            err.print(f"  {len(keys)} API key(s) accepted")
        else:
            err.print("  [yellow]no API keys[/yellow]: anyone who can reach the port can use your provider keys")
        keep_streams_during_grace()
        # uvicorn handles the signals while it serves, then raises them again: they have done their work by then
        for stop in (signal.SIGTERM, signal.SIGINT):
            signal.signal(stop, lambda *_: None)
        uvicorn.run(app_, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=graceful_timeout)
        cancelled = app_.state.in_flight.cancelled
        if cancelled:
            raise _fail(
                f"{cancelled} request(s) were cancelled at shutdown: they did not finish within "
                f"--graceful-timeout {graceful_timeout} s"
            )


@app.command()
def presets() -> None:
    """List the presets: layers, proposers and aggregator of each."""
    out = Console(highlight=False, emoji=False)
    for name, config in PRESETS.items():
        counts: dict[str, int] = {}
        for spec in config.proposers:
            counts[spec.model] = counts.get(spec.model, 0) + 1
        proposers = ", ".join(m if n == 1 else f"{m} x{n}" for m, n in counts.items())
        out.print(f"[bold]{name}[/bold]: {config.layers} layers; aggregator {config.aggregator.model}")
        out.print(f"    proposers: {proposers}")
    out.print(
        f"[bold]{LOCAL_PRESET}[/bold]: 2 layers; Self-MoA of the bundled {BUNDLED_MODEL_NAME} (or --gguf files) "
        "on llama.cpp servers started on loopback; the default when no provider key is set"
    )
    out.print("Keys are read from the environment (TOGETHER_API_KEY, OPENAI_API_KEY; OPENAI_BASE_URL).")


def main() -> None:  # pragma: no cover - console entry point
    """Run the ``moa`` command."""
    app()


def _print_version(value: bool) -> None:
    if value:
        print(f"moa {package_version()}")
        raise typer.Exit()


def package_version() -> str:
    """The installed version of langgraph-moa."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("langgraph-moa")
    except PackageNotFoundError:  # pragma: no cover - run from a checkout that was never installed
        return "unknown (not installed)"


@app.callback()
def _setup(
    version: Annotated[
        bool,
        typer.Option("--version", help="Print the version and exit.", is_eager=True, callback=_print_version),
    ] = False,
) -> None:
    # SIGTERM unwinds like Ctrl-C, so local model servers are stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
