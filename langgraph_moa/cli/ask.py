"""``moa ask``: one question, the answer streamed to stdout."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.markup import escape

from langgraph_moa.cache import proposal_cache
from langgraph_moa.cli.progress import Progress
from langgraph_moa.cli.running import CUT_NOTICE, finish_reason, result_json, stream_turn, with_config
from langgraph_moa.cli_options import RunOptions, err, with_run_options
from langgraph_moa.config import MoAConfig
from langgraph_moa.graph import create_moa_graph


async def _answer(prompt: str, config: MoAConfig, as_json: bool, system: str | None, cache: bool = False) -> None:
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


@with_run_options
def ask(
    prompt: Annotated[str, typer.Argument(help="The question or instruction.")],
    *,
    options: RunOptions,
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
    with_config(options, lambda config: _answer(prompt, config, as_json, system, cache))
