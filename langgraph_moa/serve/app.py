"""One FastAPI app that serves MoA to OpenAI clients and to LangServe clients.

:func:`create_app` puts together:

- the OpenAI-compatible API of :mod:`langgraph_moa.serve.openai_api` under ``/v1``;
- the LangServe routes of :mod:`langgraph_moa.serve.langserve_routes` under ``/moa``
  (for ``langserve.RemoteRunnable``), when LangServe is installed;
- ``GET /health``, which answers ``{"status": "ok"}`` without a key;
- a checkpointer for completions requested with ``store: true``: SQLite by
  default (a file under ``~/.local/share/langgraph-moa/``), PostgreSQL when
  given a ``postgresql://`` URL (the ``postgres`` extra);
- API keys: when any are configured, every request but ``/health`` needs
  ``Authorization: Bearer <key>`` and gets 401 without a valid one. Keys are
  compared in constant time and never logged or echoed;
- checks before any route runs: the ``Host`` must be one of
  :attr:`ServeSettings.allowed_hosts` (400 otherwise), a body must be
  ``application/json`` (415) and at most ``max_request_bytes`` long, counted
  as it is read (413);
- cancellation: a LangServe request whose client disconnects is cancelled
  with its upstream calls, as ``/v1`` requests are;
- at start-up, the objects alive then are frozen out of garbage collection
  (:func:`freeze_startup_objects`), so a full collection during a burst of
  requests does not stall every request for a fifth of a second;
- ``app.state.in_flight`` (:class:`~langgraph_moa.serve.shutdown.InFlight`):
  the requests in flight and those a shutdown cancelled; the checkpointer is
  closed once the cancelled runs have written their state.

``moa serve`` runs it with uvicorn; to run it yourself::

    import uvicorn
    from langgraph_moa.serve.app import LOOPBACK_HOSTS, ServeSettings, create_app, load_api_keys

    settings = ServeSettings(api_keys=load_api_keys(), allowed_hosts=LOOPBACK_HOSTS)
    app = create_app(settings, checkpoint="postgresql://...")
    uvicorn.run(app, host="127.0.0.1", port=8000)
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI
from pydantic import Field, SecretStr

from langgraph_moa.context import load_assistants
from langgraph_moa.errors import ConfigError
from langgraph_moa.paths import data_dir
from langgraph_moa.providers import (
    LOOPBACK_HOSTS,  # for ServeSettings.allowed_hosts; exported here too
    key_variables,
)
from langgraph_moa.serve.concurrency import ProviderConcurrencyLimit
from langgraph_moa.serve.guard import CancelOnDisconnect, RequestGuard, add_error_handlers, loopback_host
from langgraph_moa.serve.openai_api import APISettings, create_openai_router
from langgraph_moa.serve.openai_errors import add_openai_error_handlers, error_for
from langgraph_moa.serve.shutdown import CountInFlight, InFlight

__all__ = [
    "API_KEYS_VARIABLE",
    "LOOPBACK_HOSTS",
    "ServeSettings",
    "create_app",
    "default_checkpoint_path",
    "describe_checkpoint",
    "freeze_startup_objects",
    "load_api_keys",
    "load_assistants",
    "loopback_host",
]

logger = logging.getLogger(__name__)

_UNWIND_SECONDS = 5.0  # how long the checkpointer waits, at shutdown, for cancelled runs to write their state

API_KEYS_VARIABLE = "MOA_API_KEYS"
"""Environment variable with the accepted API keys, comma-separated."""


class ServeSettings(APISettings):
    """Everything :func:`create_app` serves: the API's settings, keys and defaults."""

    api_keys: tuple[SecretStr, ...] = Field(
        default=(), description="Accepted bearer keys; empty serves without authentication."
    )
    default_assistant: str | None = Field(
        default=None,
        description="The assistant whose configuration LangServe requests start from; None: the graph's defaults.",
    )
    allowed_hosts: tuple[str, ...] = Field(
        default=("*",),
        description="Host names requests may be addressed to ('Host' header, any port); '*' allows any. "
        "A server bound to loopback should allow only loopback names (LOOPBACK_HOSTS), "
        "so that web pages cannot reach it by DNS rebinding.",
    )
    freeze_startup_objects: bool = Field(
        default=True,
        description="At start-up, move every object alive then (modules, the graphs) out of the garbage "
        "collector's reach (gc.freeze), so that its full collections, which stop every request, walk only the "
        "objects created since; see freeze_startup_objects().",
    )


def load_api_keys(file: Path | None = None, environ: Mapping[str, str] | None = None) -> tuple[SecretStr, ...]:
    """The API keys from ``MOA_API_KEYS`` (comma-separated) and ``file`` (one per line).

    Blank lines and lines starting with ``#`` in the file are skipped.

    Raises:
        ConfigError: ``file`` cannot be read (the message names the file, never a key).
    """
    environ = os.environ if environ is None else environ
    keys = [k.strip() for k in environ.get(API_KEYS_VARIABLE, "").split(",")]
    if file is not None:
        try:
            lines = Path(file).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ConfigError(f"cannot read the API key file {file}: {exc.strerror}") from None
        keys += [line.strip() for line in lines if not line.strip().startswith("#")]
    unique = dict.fromkeys(k for k in keys if k)
    return tuple(SecretStr(k) for k in unique)


def default_checkpoint_path() -> Path:
    """Where ``moa serve`` keeps its SQLite checkpoints unless told otherwise."""
    return data_dir() / "serve.sqlite"


def _is_postgres(checkpoint: str | Path) -> bool:
    return isinstance(checkpoint, str) and checkpoint.startswith(("postgresql://", "postgres://"))


def describe_checkpoint(checkpoint: str | Path | None) -> str:
    """Where checkpoints go, for logs: PostgreSQL without user or password, or the SQLite path."""
    if checkpoint is None:
        checkpoint = default_checkpoint_path()
    if _is_postgres(checkpoint):
        parts = urlsplit(str(checkpoint))
        return f"PostgreSQL at {parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path}"
    return f"SQLite at {checkpoint}"


def freeze_startup_objects() -> int:
    """Collect the garbage, then exclude every object alive now from future garbage collections.

    Python's full collection (generation 2) walks every tracked object, and the
    event loop serves nobody while it runs. After start-up a server holds about
    200,000 such objects (modules, classes, the compiled graphs), none of which
    will ever be garbage, and a burst of requests triggers a few full
    collections: in ``benchmarks/serving_load.py`` on a shared 2-core machine,
    each took 160-290 ms, among the worst ``/health`` latencies of the run.
    Frozen (:func:`gc.freeze`), those objects are skipped and a full collection
    of the same load took 31-75 ms. Objects frozen are never freed; call this
    when nothing but long-lived objects exists (``create_app`` does it once at
    start-up, before the first request).

    Returns:
        How many objects were frozen.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


@asynccontextmanager
async def _open_saver(checkpoint: str | Path | None) -> AsyncIterator[Any]:
    if checkpoint is not None and _is_postgres(checkpoint):
        try:
            from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
            from psycopg.rows import dict_row
            from psycopg_pool import AsyncConnectionPool
        except ImportError:
            raise ConfigError(
                "a PostgreSQL checkpointer needs the postgres extra: pip install 'langgraph-moa[postgres]'"
            ) from None
        kwargs = {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}
        async with AsyncConnectionPool(str(checkpoint), kwargs=kwargs, open=False) as pool:
            saver = AsyncPostgresSaver(pool)  # type: ignore[arg-type]  # the pool's rows are dicts (row_factory)
            await saver.setup()
            yield saver
        return
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    path = str(checkpoint if checkpoint is not None else default_checkpoint_path())
    path = path.removeprefix("sqlite:///") if path.startswith("sqlite:///") else path
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    async with AsyncSqliteSaver.from_conn_string(path) as sqlite_saver:
        await sqlite_saver.setup()  # the tables exist from start-up, not from the first stored completion
        yield sqlite_saver


def create_app(
    settings: ServeSettings | None = None,
    *,
    checkpoint: str | Path | None = None,
    graph: Any = None,
    langserve_path: str | None = "/moa",
) -> FastAPI:
    """Create the FastAPI app serving MoA over the OpenAI API and LangServe.

    Args:
        settings: Served assistants (default: every preset), limits, API keys.
            ``ServeSettings(api_keys=load_api_keys())`` reads ``MOA_API_KEYS``.
        checkpoint: Where ``store: true`` completions are checkpointed: a
            ``postgresql://`` URL (needs the ``postgres`` extra), a SQLite file
            path (``sqlite:///`` prefix optional), ``":memory:"``, or ``None`` for
            :func:`default_checkpoint_path`. It is opened when the app starts
            and closed when it stops.
        graph: An uncompiled MoA ``StateGraph`` (``create_moa_graph(models=...)``,
            for custom chat models); ``None`` builds the default.
        langserve_path: Where the LangServe routes go; ``None`` leaves them out.
            They are also left out, with a warning in the log, when LangServe
            is not installed.

    Returns:
        The app; run it with uvicorn. ``app.state.store_graph`` is the
        checkpointed graph while the app runs.

    Raises:
        ConfigError: ``default_assistant`` is not one of the assistants.
    """
    settings = settings or ServeSettings()
    if settings.default_assistant is not None and settings.default_assistant not in settings.assistants:
        raise ConfigError(
            f"default_assistant {settings.default_assistant!r} is not served; use one of: "
            f"{', '.join(settings.assistants)}"
        )
    if graph is None:
        from langgraph_moa.graph import create_moa_graph

        graph = create_moa_graph()
    stateless = graph.compile(name="moa")
    stored = graph.compile(name="moa")  # its checkpointer is set while the app runs

    in_flight = InFlight()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with _open_saver(checkpoint) as saver:
            stored.checkpointer = saver
            logger.info("checkpoints of stored completions: %s", describe_checkpoint(checkpoint))
            if settings.freeze_startup_objects:
                logger.debug("%d start-up objects frozen out of garbage collection", freeze_startup_objects())
            try:
                yield
            finally:
                # runs cancelled at the end of a graceful shutdown write their checkpoint as they unwind
                if not await in_flight.wait_idle(_UNWIND_SECONDS):
                    logger.warning("closing the checkpointer with %d run(s) still unwinding", in_flight.active)
                stored.checkpointer = None

    app = FastAPI(title="Mixture-of-Agents", version="1", lifespan=lifespan)
    app.state.store_graph = stored
    app.state.in_flight = in_flight
    limit = ProviderConcurrencyLimit(settings.provider_concurrency)  # one bound for both ways in
    slots = asyncio.Semaphore(settings.max_concurrent_runs)  # and one on runs executing at once
    app.include_router(create_openai_router(settings, graph=stateless, store_graph=stored, limit=limit, slots=slots))

    @app.get("/health", include_in_schema=False)
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    if langserve_path is not None:
        _add_langserve(app, stateless.with_config(callbacks=[limit]), settings, langserve_path)
        assistant = settings.default_assistant or "moa"
        app.add_middleware(
            CancelOnDisconnect, prefix=langserve_path, error_for=lambda exc: error_for(exc, assistant), slots=slots
        )
    add_error_handlers(app, settings.default_assistant or "moa")
    add_openai_error_handlers(app)
    app.add_middleware(
        RequestGuard, keys=settings.api_keys, max_bytes=settings.max_request_bytes, allowed_hosts=settings.allowed_hosts
    )
    app.add_middleware(CountInFlight, in_flight=in_flight)  # added last, so it runs first
    return app


def _add_langserve(app: FastAPI, graph: Any, settings: ServeSettings, path: str) -> None:
    try:
        from langgraph_moa.serve.langserve_routes import TUNING_FIELDS, ClientLimits, add_moa_routes
    except ImportError as exc:
        logger.warning("LangServe routes are not served: %s", exc)
        return
    if settings.default_assistant is not None:
        default = settings.assistants[settings.default_assistant].model_dump(mode="json", exclude_defaults=True)
        graph = graph.with_config(configurable=default)
    # as on /v1, the server chooses the models: clients pick a preset and tune it
    limits = ClientLimits(
        max_tokens=settings.max_tokens, max_messages=settings.max_messages, max_chars=settings.max_request_chars
    )
    secrets = key_variables(*settings.assistants.values())  # a model's own key variable, whatever its name
    add_moa_routes(app, graph, path=path, client_fields=TUNING_FIELDS, limits=limits, secret_variables=secrets)
