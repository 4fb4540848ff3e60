"""The ``moa`` command group: its commands, one-line errors, ``moa presets`` and ``--version``."""

from __future__ import annotations

import signal
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from langgraph_moa.cli import ask, chat, serve
from langgraph_moa.cli.interrupt import exit_130, report_interrupted
from langgraph_moa.cli_options import LOCAL_PRESET, err
from langgraph_moa.eval.cli import eval_app
from langgraph_moa.local import BUNDLED_MODEL_NAME
from langgraph_moa.presets import PRESETS
from langgraph_moa.providers import redact

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
            report_interrupted()
            result = 130
        if result == 130:  # Ctrl-C: the run and its model servers are stopped
            exit_130()
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
app.command()(ask.ask)
app.command()(chat.chat)
app.command()(serve.serve)


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
