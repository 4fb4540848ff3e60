"""``moa serve``: MoA as an OpenAI-compatible API (/v1) and LangServe routes (/moa)."""

from __future__ import annotations

import signal
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.markup import escape

from langgraph_moa.cli_options import RunOptions, err, fail, open_config, with_run_options
from langgraph_moa.config import describe_validation_error
from langgraph_moa.errors import ConfigError, MoAError
from langgraph_moa.presets import PRESETS


@with_run_options
def serve(
    host: Annotated[
        str, typer.Option("--host", help="Interface to bind; keep 127.0.0.1 unless you set API keys.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
    *,
    options: RunOptions,
    name: Annotated[str, typer.Option("--name", help="Model id under which the model options are served.")] = "default",
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
        raise fail(f"serving needs the serve extra: pip install 'langgraph-moa[serve]' ({exc})") from None
    if db is not None and checkpoint_url:
        raise typer.BadParameter("give --db (SQLite) or --checkpoint-url (PostgreSQL), not both")
    if checkpoint_url and not checkpoint_url.startswith(("postgresql://", "postgres://")):
        raise typer.BadParameter("must start with postgresql://", param_hint="--checkpoint-url")
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
            raise fail(str(exc), code=2) from None
        except MoAError as exc:
            raise fail(str(exc)) from None
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
            raise fail(
                f"{cancelled} request(s) were cancelled at shutdown: they did not finish within "
                f"--graceful-timeout {graceful_timeout} s"
            )
