"""Shared fixtures and helpers: a clean environment, the simulated OpenAI-compatible
server, and an app served by uvicorn on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from langgraph_moa import MoAConfig
from langgraph_moa.testing import SimulatedOpenAIServer

PROVIDER_VARIABLES = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "OPENAI_API_BASE",
    "TOGETHER_API_KEY",
    "TOGETHER_API_BASE",
    "LANGSMITH_TRACING",
    "LANGCHAIN_TRACING_V2",
)


HOME_VARIABLES = ("HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME")
_saved_env: dict[str, str | None] = {}


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """A throwaway home for the whole session, subprocesses included, and no ``.benchmarks`` in the repository.

    Nothing a test runs (the CLI's chat history, the server's stored completions,
    caches) can write into the real home directory.
    """
    root = Path(tempfile.mkdtemp(prefix="moa-tests-home-"))
    config.stash[_home_key] = root
    for name in HOME_VARIABLES:
        _saved_env[name] = os.environ.get(name)
        path = root if name == "HOME" else root / name.removeprefix("XDG_").removesuffix("_HOME").lower()
        path.mkdir(exist_ok=True)
        os.environ[name] = str(path)
    if hasattr(config.option, "benchmark_storage"):  # pytest-benchmark, used by langchain-tests
        config.option.benchmark_storage = f"file://{root / 'benchmarks'}"


def pytest_unconfigure(config: pytest.Config) -> None:
    """Restore the environment and remove the throwaway home."""
    for name, value in _saved_env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    root = config.stash.get(_home_key, None)
    if root is not None:
        shutil.rmtree(root, ignore_errors=True)


_home_key = pytest.StashKey[Path]()


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test sees the developer's keys or endpoints; none leaves objects frozen out of garbage collection.

    (An app served by a test freezes the objects alive at its start-up: see
    ``langgraph_moa.serve.app.freeze_startup_objects``.)
    """
    for name in PROVIDER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    yield
    gc.unfreeze()


@pytest.fixture
def server() -> Iterator[SimulatedOpenAIServer]:
    """A simulated OpenAI-compatible server on a free loopback port."""
    with SimulatedOpenAIServer() as srv:
        yield srv


def sim_config(server: SimulatedOpenAIServer, proposers: list[str], aggregator: str = "agg", **kw: Any) -> MoAConfig:
    """A MoAConfig whose models are ``openai:<name>`` on the simulated server."""
    return MoAConfig(
        proposers=[f"openai:{p}" for p in proposers],
        aggregator=f"openai:{aggregator}",
        base_url=server.base_url,
        **kw,
    )


def user(text: str) -> dict[str, Any]:
    """Graph input with one user message."""
    return {"messages": [("user", text)]}


@contextmanager
def running(app, log_level: str = "warning") -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port, in a thread; yield its base URL; stop it."""
    import uvicorn  # the serve extra: only the tests that serve an app need it

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60  # a safety net: on a loaded machine start-up can take seconds
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the app did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def answer_once_all_arrived(sim: SimulatedOpenAIServer, count: int) -> Callable[[list[dict[str, Any]]], None]:
    """A ``ModelBehavior.reply`` that holds each request until ``count`` requests have arrived.

    A barrier instead of a latency: the requests are in flight at once however
    slowly the machine starts them (past 10 s the request answers anyway, and a
    concurrency check fails instead of hanging).
    """

    def reply(messages: list[dict[str, Any]]) -> None:
        sim.wait_for_calls(count, timeout=10)
        return None  # the default reply

    return reply


def answer_at_peak(sim: SimulatedOpenAIServer, peak: int) -> Callable[[list[dict[str, Any]]], None]:
    """A ``ModelBehavior.reply`` that holds each request until ``peak`` requests have been in flight at once.

    For a test that a concurrency bound is reached and never exceeded: the peak
    is reached however slowly the machine starts the requests (instead of
    hoping a latency overlaps them); once it was, requests answer at once (past
    30 s they answer anyway, and the peak check fails instead of hanging). A
    latency beside it still keeps each request in flight for a while, so that
    a bound that let too many through would show.
    """

    def reply(messages: list[dict[str, Any]]) -> None:
        sim.wait_for_concurrency(peak, timeout=30)
        return None  # the default reply

    return reply


def wait_idle(sim: SimulatedOpenAIServer, seconds: float = 10.0) -> bool:
    """True once no upstream request is in flight, then ``reset`` (False if ``seconds`` passed first).

    ``seconds`` only bounds the wait: pass less than the upstream would take to
    finish on its own, so a run that was not cancelled fails the test.
    """
    idle = sim.wait_idle(seconds)
    sim.reset()
    return idle


def hang_up_when_called(
    request: Callable[[], Awaitable[Any]], sim: SimulatedOpenAIServer, calls: int, model: str | None = None
) -> None:
    """Start ``request`` (a client's call) and cancel it once ``sim`` has seen ``calls`` requests for ``model``.

    Cancelling closes the client's connection, so the server sees its client go
    away while the run is known to be calling its models, however slow the
    machine, instead of after a guessed client timeout.
    """

    async def call() -> None:
        task = asyncio.ensure_future(request())
        arrived = await asyncio.to_thread(sim.wait_for_calls, calls, model)
        assert arrived and not task.done(), f"the run never had {calls} upstream request(s) for {model} at once"
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(call())


def post_then_hang_up(url: str, body: Any, sim: SimulatedOpenAIServer, calls: int, model: str | None = None) -> None:
    """POST ``body`` to ``url`` with httpx and hang up as :func:`hang_up_when_called` does."""

    async def post() -> None:
        async with httpx.AsyncClient(timeout=None) as client:
            await client.post(url, json=body)

    hang_up_when_called(post, sim, calls, model)
