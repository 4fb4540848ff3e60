"""``moa chat``: turns from stdin, the history kept per thread in a SQLite checkpoint."""

from __future__ import annotations

import asyncio
import hashlib
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from langchain_core.messages import BaseMessage, HumanMessage, RemoveMessage
from langchain_core.runnables import RunnableConfig
from rich.markup import escape

from langgraph_moa.cli.progress import Progress
from langgraph_moa.cli.running import CUT_NOTICE, CLIError, finish_reason, stream_turn, with_config
from langgraph_moa.cli_options import RunOptions, err, with_run_options
from langgraph_moa.config import MoAConfig
from langgraph_moa.errors import MoAError
from langgraph_moa.graph import create_moa_graph
from langgraph_moa.paths import data_dir
from langgraph_moa.providers import redact
from langgraph_moa.stream import AGGREGATOR_NODE


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


@with_run_options
def chat(
    thread: Annotated[str, typer.Option("--thread", help="Conversation id; reuse it to continue.")] = "default",
    db: Annotated[Path | None, typer.Option("--db", help="SQLite file for the history.")] = None,
    *,
    options: RunOptions,
) -> None:
    """Chat over several turns; one line of stdin is one turn. History persists per --thread.

    One chat at a time per thread: a second one on the same --thread and --db is refused.
    """
    path = db or default_chat_db()
    with_config(options, lambda config: _chat(config, thread, path, interactive=sys.stdin.isatty()))
