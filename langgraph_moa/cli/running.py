"""Running a turn for the ``moa`` commands: the streamed answer, the ``--json`` document, one-line failures."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import ExitStack
from typing import Any

import typer
from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.runnables import RunnableConfig
from rich.markup import escape

from langgraph_moa.cli.interrupt import interruptible, report_interrupted
from langgraph_moa.cli.progress import Progress
from langgraph_moa.cli_options import RunOptions, err, fail, open_config
from langgraph_moa.config import MoAConfig
from langgraph_moa.errors import ConfigError, MoAError
from langgraph_moa.providers import StreamRedactor, check_credentials
from langgraph_moa.stream import is_aggregator_token, summarize_usage


class CLIError(Exception):
    """A failure reported as one line on stderr with exit status 1."""


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


def preflight(config: MoAConfig) -> None:
    """Check every model's provider and key before anything runs: a bad name exits 2, a missing key 1."""
    try:
        check_credentials(config)
    except ConfigError as exc:  # a bad model name or endpoint: a bad option
        raise fail(str(exc), code=2) from None
    except MoAError as exc:
        raise fail(str(exc)) from None


def run_command(coro: Any) -> None:
    """Run the command's coroutine; a failure is one ``error:`` line (exit 1), Ctrl-C exits 130."""
    try:
        asyncio.run(interruptible(coro))
    except (MoAError, ConfigError, CLIError) as exc:
        raise fail(str(exc)) from None
    except KeyboardInterrupt:
        report_interrupted()
        raise typer.Exit(code=130) from None
    except Exception as exc:  # an unexpected failure still gets one line, secrets removed
        raise fail(f"{type(exc).__name__}: {' '.join(str(exc).split())}") from None


def with_config(options: RunOptions, run: Any) -> None:
    """Open the config (starting local servers if needed), check keys, run, clean up."""
    with ExitStack() as stack:
        try:
            config = open_config(options, stack)
        except MoAError as exc:
            raise fail(str(exc)) from None
        preflight(config)
        if note := provisional_note(config):
            err.print(f"[yellow]note:[/yellow] {escape(note)}")
        run_command(run(config))


def provisional_note(config: MoAConfig) -> str | None:
    """What to say when ``--provisional`` cannot do anything with the run's number of layers."""
    if not config.provisional_answers or config.layers >= 3:
        return None
    return (
        f"--provisional does nothing with {config.layers} layer(s): a provisional answer is written from one "
        "proposer layer while the next proposer layer runs, so it needs --layers 3 or more"
    )
