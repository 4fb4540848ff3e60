"""Serve the MoA graph with LangServe, for ``langserve.RemoteRunnable`` clients.

:func:`add_moa_routes` adds LangServe's routes for a compiled MoA graph to a
FastAPI app. Under ``path`` (``/moa`` by default) they are ``/invoke``,
``/batch``, ``/stream``, ``/stream_log``, ``/stream_events``,
``/input_schema``, ``/output_schema``, ``/config_schema`` and ``/playground/``.

LangServe is stateless: every request is one turn, given the whole conversation
as ``{"messages": [...]}``. ``/invoke`` and ``/batch`` return the final state
(:class:`MoAOutput`); ``/stream`` yields the state after every step, so each
layer's proposals appear as the layer finishes; the aggregator's tokens are the
``on_chat_model_stream`` events of the ``aggregate`` node on ``/stream_events``.

LangServe passes configuration only as ``config["configurable"]``, never as a
runtime context, so a run is configured with the
:class:`~langgraph_moa.config.MoAConfig` fields (and an optional ``"preset"``)
in ``configurable``::

    from langserve import RemoteRunnable

    moa = RemoteRunnable("http://127.0.0.1:8000/moa")
    state = moa.invoke(
        {"messages": [("user", "What are 3 fun things to do in SF?")]},
        {"configurable": {"preset": "moa-lite", "temperature": 0.2}},
    )
    print(state["messages"][-1].content)

What this module does beyond a bare ``langserve.add_routes(app, graph)``:

- The input and output types are given explicitly (:class:`MoAInput`,
  :class:`MoAOutput`), so the schemas, the request validation and the
  playground do not depend on how the graph's state types are declared.
- ``/config_schema`` lists every ``MoAConfig`` field with its description, plus
  ``preset``. (LangServe builds its config validation from the runnable's
  configurable fields; a compiled graph declares none, so without this every
  ``configurable`` value would be dropped silently.) Fields a request leaves
  out are not passed on, so the graph's defaults, or the preset's, apply.
- A configuration that cannot work is refused with HTTP 422 and a message
  naming the field, before anything runs; so is ``review``, whose pause needs a
  thread to resume on.
- The graph fans proposers out with LangGraph ``Send`` objects, which
  LangServe's serializer cannot encode; the serializer used here writes them as
  ``{"type": "send", "node": ..., "arg": ...}``, so ``/stream_log``,
  ``/stream_events`` and the playground work.

Needs the ``serve`` extra: ``pip install 'langgraph-moa[serve]'`` (``fastapi``,
``uvicorn``, ``sse-starlette`` and plain ``langserve``; LangServe's own
``[server]`` extra pins an ``sse-starlette`` older than LangGraph's server needs).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Annotated, Any, Literal

import orjson
from fastapi import FastAPI, HTTPException, Request
from langchain_core.messages import AnyMessage, convert_to_messages
from langchain_core.runnables import ConfigurableFieldSpec, Runnable, RunnableBinding
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.types import Send
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from langgraph_moa.config import ConfigError, MoAConfig, config_from
from langgraph_moa.presets import PRESETS

try:
    from langserve import add_routes
    from langserve.serialization import WellKnownLCSerializer
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "serving MoA with LangServe needs the serve extra: pip install 'langgraph-moa[serve]'"
    ) from exc

__all__ = ["MoAInput", "MoAOutput", "add_moa_routes", "create_langserve_app"]


def _shorthand_messages(value: Any) -> Any:
    """Accept what the graph accepts: ``("user", "hi")`` pairs, strings and role dicts."""
    if not isinstance(value, list):
        return value
    return [
        convert_to_messages([m])[0]
        if isinstance(m, (list, tuple, str)) or (isinstance(m, dict) and "role" in m and "type" not in m)
        else m
        for m in value
    ]


class MoAInput(BaseModel):
    """What a LangServe client sends: the whole conversation of this turn.

    Messages are LangChain messages or their JSON form; ``("user", "...")``
    pairs and ``{"role": ..., "content": ...}`` dicts are accepted as well.
    """

    messages: Annotated[list[AnyMessage], BeforeValidator(_shorthand_messages)] = Field(
        description="The conversation, oldest first; the last message is the user's question.",
        json_schema_extra={"widget": {"type": "chat", "input": "messages"}},
    )


class MoAOutput(BaseModel):
    """What a run returns: the graph's final state (see ``langgraph_moa.state.MoAState``)."""

    model_config = ConfigDict(extra="allow")

    messages: list[AnyMessage] = Field(description="The conversation; the last message is MoA's answer.")
    layer: int | None = Field(default=None, description="The aggregator's layer number.")
    proposals: list[dict[str, Any]] = Field(
        default_factory=list, description="Successful proposals: layer, slot, model and content."
    )
    failures: list[dict[str, Any]] = Field(
        default_factory=list, description="Failed proposer calls: layer, slot, model, error_type and message."
    )
    usage: list[dict[str, Any]] = Field(default_factory=list, description="Token usage of every model call.")
    usage_summary: dict[str, Any] | None = Field(
        default=None, description="Usage per layer, per model and in total, with a cost estimate in USD."
    )


_PRESET_DESCRIPTION = (
    "Start from this named configuration (see `moa presets`); the other fields given override it."
)


@cache
def _configurable_specs() -> list[ConfigurableFieldSpec]:
    """One configurable field per ``MoAConfig`` field, plus ``preset``; all optional."""
    preset_type = Literal[tuple(PRESETS)]  # type: ignore[valid-type]
    specs = [
        ConfigurableFieldSpec(
            id="preset", annotation=preset_type | None, name="preset", description=_PRESET_DESCRIPTION
        )
    ]
    for name, field in MoAConfig.model_fields.items():
        specs.append(
            ConfigurableFieldSpec(
                id=name, annotation=field.annotation | None, name=name, description=field.description
            )
        )
    return specs


class _ConfigurableGraph(RunnableBinding):
    """The graph, declaring the ``MoAConfig`` fields as its configurable fields.

    LangServe validates ``config["configurable"]`` against the runnable's
    ``config_specs`` and drops what is not declared there.
    """

    @property
    def config_specs(self) -> list[ConfigurableFieldSpec]:
        return list(_configurable_specs())


def _encode(obj: Any) -> Any:
    """JSON form of the objects a LangGraph run puts on LangServe's streams."""
    if isinstance(obj, Send):
        return {"type": "send", "node": obj.node, "arg": obj.arg}
    if isinstance(obj, BaseModel):
        return obj.model_dump()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=repr)
    raise TypeError(f"cannot encode an object of type {type(obj).__name__} as JSON")


class GraphSerializer(WellKnownLCSerializer):
    """LangServe's serializer, extended to LangGraph's ``Send`` objects.

    LangGraph objects that are dataclasses (``Command``, ``Interrupt``,
    ``Overwrite``) are encoded field by field; a ``Send`` becomes
    ``{"type": "send", "node": ..., "arg": ...}``. Decoding is LangServe's.
    """

    def dumps(self, obj: Any) -> bytes:
        """Dump ``obj`` to a JSON byte string."""
        return orjson.dumps(obj, default=_encode)


def _base_configurable(graph: Runnable) -> dict[str, Any]:
    config = getattr(graph, "config", None) or {}
    return dict(config.get("configurable") or {})


def _make_config_check(base: Mapping[str, Any]) -> Any:
    """Validate a request's ``configurable`` against the graph's bound defaults.

    Fields left out (or ``None``) are dropped, so the defaults apply. A request
    naming a ``preset`` gets that preset with its own overrides and none of the
    defaults: it is passed on as every field of the resulting config, which
    overrides whatever is bound to the graph.
    """

    def check(config: dict[str, Any], request: Request) -> dict[str, Any]:
        configurable = {k: v for k, v in (config.get("configurable") or {}).items() if v is not None}
        try:
            cfg = config_from(None, configurable if "preset" in configurable else {**base, **configurable})
        except ConfigError as exc:
            raise HTTPException(status_code=422, detail=f"configurable: {exc}") from None
        if getattr(cfg, "review", False):
            raise HTTPException(
                status_code=422,
                detail="configurable: review pauses the run until it is resumed on its thread, and LangServe "
                "keeps no threads; leave review off here, or use the LangGraph API (langgraph dev) for reviews",
            )
        if "preset" in configurable:
            configurable = cfg.model_dump(mode="json")
        return {**config, "configurable": configurable}

    return check


def add_moa_routes(app: FastAPI, graph: Runnable | None = None, *, path: str = "/moa") -> None:
    """Add LangServe routes for a MoA graph to ``app``.

    Args:
        app: The FastAPI app (or ``APIRouter``) to add the routes to.
        graph: A compiled MoA graph, for example
            ``create_moa_graph(models=...).compile()``. ``None`` builds the
            default one from :func:`~langgraph_moa.graph.create_moa_graph`.
            LangServe keeps no threads, so compile it without a checkpointer.
            Configuration bound to it with ``graph.with_config(configurable={...})``
            is the default: requests override it field by field, and a request
            naming a ``preset`` replaces it.
        path: Where the routes go; must start with ``/``.

    Raises:
        ValueError: ``path`` does not start with ``/``, or ``graph`` was compiled
            with a checkpointer.
        TypeError: ``graph`` is not compiled (a ``StateGraph`` builder).

    Example:
        ```python
        import uvicorn
        from fastapi import FastAPI
        from langgraph_moa.langserve_routes import add_moa_routes

        app = FastAPI()
        add_moa_routes(app)  # /moa/invoke, /moa/stream, /moa/playground/, ...
        uvicorn.run(app, host="127.0.0.1", port=8000)
        ```
    """
    if not path.startswith("/"):
        raise ValueError(f"path {path!r} must start with '/', e.g. '/moa'")
    if graph is None:
        from langgraph_moa.graph import create_moa_graph

        graph = create_moa_graph().compile(name="moa")
    if not isinstance(graph, Runnable):
        raise TypeError(
            f"graph must be a compiled graph, got {type(graph).__name__}: pass create_moa_graph().compile()"
        )
    keeps_threads = isinstance(getattr(graph, "checkpointer", None), BaseCheckpointSaver)
    if keeps_threads:
        raise ValueError(
            "graph has a checkpointer, but LangServe keeps no threads and cannot pass a thread_id: "
            "compile the graph for these routes without one"
        )
    runnable = _ConfigurableGraph(
        bound=graph,
        kwargs={"stream_mode": "values"},  # /stream chunks are whole states, like /invoke's output
        custom_input_type=MoAInput,
        custom_output_type=MoAOutput,
    )
    add_routes(
        app,
        runnable,
        path=path.rstrip("/"),
        config_keys=("configurable",),
        per_req_config_modifier=_make_config_check(_base_configurable(graph)),
        serializer=GraphSerializer(),
    )


def create_langserve_app(graph: Runnable | None = None, *, path: str = "/moa") -> FastAPI:
    """A FastAPI app serving only the LangServe routes of :func:`add_moa_routes`.

    Serve it with ``uvicorn``:
    ``uvicorn --factory langgraph_moa.langserve_routes:create_langserve_app``.
    """
    app = FastAPI(title="Mixture-of-Agents (LangServe)")
    add_moa_routes(app, graph, path=path)
    return app
