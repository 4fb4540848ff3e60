"""One FastAPI app that serves MoA to OpenAI clients and to LangServe clients.

:func:`create_app` puts together:

- the OpenAI-compatible API of :mod:`langgraph_moa.openai_api` under ``/v1``;
- the LangServe routes of :mod:`langgraph_moa.langserve_routes` under ``/moa``
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
  with its upstream calls, as ``/v1`` requests are.

``moa serve`` runs it with uvicorn; to run it yourself::

    import uvicorn
    from langgraph_moa.server import LOOPBACK_HOSTS, ServeSettings, create_app, load_api_keys

    settings = ServeSettings(api_keys=load_api_keys(), allowed_hosts=LOOPBACK_HOSTS)
    app = create_app(settings, checkpoint="postgresql://...")
    uvicorn.run(app, host="127.0.0.1", port=8000)
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI
from pydantic import Field, SecretStr

from langgraph_moa.concurrency import ProviderConcurrencyLimit
from langgraph_moa.config import ConfigError, MoAConfig, config_from
from langgraph_moa.models import LOOPBACK_HOSTS  # for ServeSettings.allowed_hosts; exported here too
from langgraph_moa.openai_api import APISettings, OpenAIError, create_openai_router

__all__ = [
    "API_KEYS_VARIABLE",
    "LOOPBACK_HOSTS",
    "ServeSettings",
    "create_app",
    "default_checkpoint_path",
    "describe_checkpoint",
    "load_api_keys",
    "load_assistants",
    "loopback_host",
]

logger = logging.getLogger(__name__)

API_KEYS_VARIABLE = "MOA_API_KEYS"
"""Environment variable with the accepted API keys, comma-separated."""

_OPEN_PATHS = frozenset({"/health"})


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


def load_assistants(file: Path) -> dict[str, MoAConfig]:
    """Assistants from a JSON file: ``{"name": {MoAConfig fields, optional "preset"}, ...}``.

    Example file::

        {"fast": {"preset": "moa-lite", "temperature": 0.2},
         "local": {"proposers": ["openai:llama3", "openai:qwen2"], "aggregator": "openai:llama3",
                   "base_url": "http://127.0.0.1:11434/v1"}}

    Raises:
        ConfigError: the file cannot be read, or an entry is invalid (named).
    """
    try:
        data = json.loads(Path(file).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the assistants file {file}: {exc}") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ConfigError(f"{file} must hold a JSON object of assistant name -> MoAConfig fields")
    assistants = {}
    for name, fields in data.items():
        try:
            assistants[name] = config_from(fields)
        except ConfigError as exc:
            raise ConfigError(f"{file}: assistant {name!r}: {exc}") from None
    return assistants


def default_checkpoint_path() -> Path:
    """Where ``moa serve`` keeps its SQLite checkpoints unless told otherwise."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "langgraph-moa" / "serve.sqlite"


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
            saver = AsyncPostgresSaver(pool)
            await saver.setup()
            yield saver
        return
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    path = str(checkpoint if checkpoint is not None else default_checkpoint_path())
    path = path.removeprefix("sqlite:///") if path.startswith("sqlite:///") else path
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    async with AsyncSqliteSaver.from_conn_string(path) as saver:
        yield saver


_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def loopback_host(host: str) -> bool:
    """True when ``host`` (an interface to bind) is only reachable from this machine."""
    return host.strip("[]").lower() in LOOPBACK_HOSTS or host.startswith("127.")


def _host_name(header: bytes) -> str:
    """The name of a ``Host`` header, without its port (``[::1]:8000`` -> ``::1``)."""
    host = header.decode("latin-1").strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class _TooLarge(Exception):
    """The body read so far is over the limit; the guard answers 413."""


class _Guard:
    """ASGI middleware run before any route: host names, bearer keys, content type and body size.

    - ``Host`` must be one of ``allowed_hosts`` (``"*"`` allows any), so a web
      page whose name was rebound to a loopback address cannot reach a server
      bound to loopback (DNS rebinding);
    - a body must be declared ``application/json`` (415 otherwise): browsers send
      ``text/plain`` and form bodies cross-site without asking the server first;
    - the body is counted as it is read, with or without ``Content-Length``, and
      a body over ``max_bytes`` is answered with 413 whichever route reads it.
    """

    def __init__(
        self, app: Any, keys: tuple[SecretStr, ...], max_bytes: int, allowed_hosts: tuple[str, ...] = ("*",)
    ) -> None:
        self.app = app
        self._keys = [k.get_secret_value().encode() for k in keys]
        self._max_bytes = max_bytes
        hosts = {h.strip("[]").lower() for h in allowed_hosts}
        self._hosts = None if "*" in hosts else frozenset(hosts)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        if self._hosts is not None and _host_name(headers.get(b"host", b"")) not in self._hosts:
            error = OpenAIError(
                400,
                "this server does not answer to the host name of this request; connect to it by one of its "
                "allowed host names (moa serve --allowed-host)",
                type="invalid_request_error",
                code="invalid_host",
            )
            await _send_error(send, error)
            return
        if scope["path"] in _OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        if self._keys and not self._authorized(headers.get(b"authorization", b"")):
            error = OpenAIError(
                401,
                "missing or invalid API key: send the header 'Authorization: Bearer <key>' "
                "with a key this server accepts",
                type="invalid_request_error",
                code="invalid_api_key",
            )
            await _send_error(send, error, {"www-authenticate": "Bearer"})
            return
        if scope["method"] in _BODY_METHODS and not _is_json(headers.get(b"content-type", b"")):
            error = OpenAIError(
                415,
                "the body must be JSON: send the header 'Content-Type: application/json'",
                type="invalid_request_error",
                code="unsupported_media_type",
            )
            await _send_error(send, error)
            return
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > self._max_bytes:
            await _send_error(send, self._too_large())
            return
        await self._limited(scope, receive, send)

    async def _limited(self, scope: Any, receive: Any, send: Any) -> None:
        """Run the app, answering 413 as soon as the body it reads passes the limit."""
        read = 0
        over = started = False

        async def counting_receive() -> dict[str, Any]:
            nonlocal read, over
            message = await receive()
            if message["type"] == "http.request":
                read += len(message.get("body", b""))
                if read > self._max_bytes:
                    over = True
                    raise _TooLarge
            return message

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal started
            if over:  # the app's answer to a body it could not read whole: the 413 replaces it
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except Exception:
            if not over:
                raise
        if over and not started:
            await _send_error(send, self._too_large())

    def _too_large(self) -> OpenAIError:
        return OpenAIError(
            413, f"the request body is larger than this server's limit of {self._max_bytes} bytes",
            type="invalid_request_error", code="request_too_large",
        )

    def _authorized(self, header: bytes) -> bool:
        scheme, _, token = header.partition(b" ")
        if scheme.lower() != b"bearer":
            return False
        token = token.strip()
        matched = False
        for key in self._keys:  # every key is compared, so timing tells nothing about which one
            matched |= hmac.compare_digest(token, key)
        return matched


def _is_json(content_type: bytes) -> bool:
    return content_type.split(b";", 1)[0].strip().lower() == b"application/json"


async def _send_error(send: Any, error: OpenAIError, extra: dict[str, str] | None = None) -> None:
    await error.response().__call__({"type": "http"}, _no_receive, _with_headers(send, extra or {}))


async def _no_receive() -> dict[str, Any]:  # pragma: no cover - a JSONResponse never reads the request
    return {"type": "http.disconnect"}


def _with_headers(send: Any, extra: dict[str, str]) -> Any:
    async def wrapped(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start" and extra:
            message = {**message, "headers": [*message["headers"], *((k.encode(), v.encode()) for k, v in extra.items())]}
        await send(message)

    return wrapped


class _CancelOnDisconnect:
    """ASGI middleware: a POST under ``prefix`` is cancelled when its client goes away.

    LangServe's ``/invoke`` and ``/batch`` only answer once the run is over and
    never look at the connection meanwhile, so a client that gives up would
    leave its run (and the provider slots it holds) going until the end. Here
    the app runs on a task; the request's messages reach it through a queue,
    and an ``http.disconnect`` that arrives before the response is complete
    cancels the task.
    """

    def __init__(self, app: Any, prefix: str) -> None:
        self.app = app
        self._prefix = prefix.rstrip("/") + "/"

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].startswith(self._prefix):
            await self.app(scope, receive, send)
            return
        messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        complete = False

        async def sending(message: dict[str, Any]) -> None:
            nonlocal complete
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                complete = True
            await send(message)

        task = asyncio.ensure_future(self.app(scope, messages.get, sending))
        try:
            while not task.done():
                incoming = asyncio.ensure_future(receive())
                await asyncio.wait({incoming, task}, return_when=asyncio.FIRST_COMPLETED)
                if not incoming.done():
                    incoming.cancel()
                    break
                message = incoming.result()  # a body over the limit raises here, for the guard to answer
                messages.put_nowait(message)
                if message["type"] == "http.disconnect":
                    if not complete:
                        task.cancel()
                    break
            await asyncio.wait({task})
            if not task.cancelled():
                task.result()  # the app's own errors go on to the server
        finally:
            task.cancel()


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

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with _open_saver(checkpoint) as saver:
            stored.checkpointer = saver
            logger.info("checkpoints of stored completions: %s", describe_checkpoint(checkpoint))
            try:
                yield
            finally:
                stored.checkpointer = None

    app = FastAPI(title="Mixture-of-Agents", version="1", lifespan=lifespan)
    app.state.store_graph = stored
    limit = ProviderConcurrencyLimit(settings.provider_concurrency)  # one bound for both ways in
    app.include_router(create_openai_router(settings, graph=stateless, store_graph=stored, limit=limit))

    @app.get("/health", include_in_schema=False)
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    if langserve_path is not None:
        _add_langserve(app, stateless.with_config(callbacks=[limit]), settings, langserve_path)
        app.add_middleware(_CancelOnDisconnect, prefix=langserve_path)
    app.add_middleware(  # added last, so it runs first
        _Guard, keys=settings.api_keys, max_bytes=settings.max_request_bytes, allowed_hosts=settings.allowed_hosts
    )
    return app


def _add_langserve(app: FastAPI, graph: Any, settings: ServeSettings, path: str) -> None:
    try:
        from langgraph_moa.langserve_routes import TUNING_FIELDS, ClientLimits, add_moa_routes
    except ImportError as exc:
        logger.warning("LangServe routes are not served: %s", exc)
        return
    if settings.default_assistant is not None:
        default = settings.assistants[settings.default_assistant].model_dump(mode="json", exclude_defaults=True)
        graph = graph.with_config(configurable=default)
    # as on /v1, the server chooses the models: clients pick a preset and tune it
    limits = ClientLimits(max_tokens=settings.max_tokens)
    add_moa_routes(app, graph, path=path, client_fields=TUNING_FIELDS, limits=limits)
