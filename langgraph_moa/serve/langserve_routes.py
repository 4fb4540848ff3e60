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
- Clients choose presets, models (``"provider:model"`` names) and tuning
  (:data:`CLIENT_FIELDS`; ``client_fields=TUNING_FIELDS`` leaves the models to
  the server). Endpoints and key variables never come from a client, since a
  client that could name an endpoint would receive the server's provider keys
  there; ``max_tokens``, ``layers``, proposers per layer and ``timeout`` are
  capped (:class:`ClientLimits`). ``review`` is refused too: its pause needs a
  thread to resume on, and LangServe keeps none.
- A configuration that cannot work, or that the policy refuses, gets HTTP 422
  with a message naming the field, before anything runs.
- The graph fans proposers out with LangGraph ``Send`` objects, which
  LangServe's serializer cannot encode; the serializer used here writes them as
  ``{"type": "send", "node": ..., "arg": ...}``, so ``/stream_log``,
  ``/stream_events`` and the playground work.

Needs the ``serve`` extra: ``pip install 'langgraph-moa[serve]'`` (``fastapi``,
``uvicorn``, ``sse-starlette`` and plain ``langserve``; LangServe's own
``[server]`` extra pins an ``sse-starlette`` older than LangGraph's server needs).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Collection, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, ClassVar, Literal

import orjson
from fastapi import Depends, FastAPI, HTTPException, Request
from langchain_core.messages import AnyMessage, BaseMessage, convert_to_messages
from langchain_core.runnables import ConfigurableFieldSpec, Runnable, RunnableBinding, RunnableConfig
from langchain_core.runnables.schema import StreamEvent
from langchain_core.tracers.log_stream import RunLog, RunLogPatch
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.types import Send
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from langgraph_moa.config import MoAConfig, describe_validation_error
from langgraph_moa.context import moa_config_from
from langgraph_moa.errors import ConfigError
from langgraph_moa.local import LocalModelError
from langgraph_moa.presets import PRESETS
from langgraph_moa.providers import key_variables, redact
from langgraph_moa.serve.redacted_streams import redact_run_log, redact_stream_events
from langgraph_moa.state import MoAOutput as RunOutput

try:
    from langserve import add_routes
    from langserve.lzstring import LZString
    from langserve.serialization import WellKnownLCSerializer
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError("serving MoA with LangServe needs the serve extra: pip install 'langgraph-moa[serve]'") from exc

__all__ = [
    "CLIENT_FIELDS",
    "SERVER_ONLY_FIELDS",
    "TUNING_FIELDS",
    "ClientLimits",
    "MoAInput",
    "MoAOutput",
    "add_moa_routes",
    "create_langserve_app",
]


def _shorthand_messages(value: Any) -> Any:
    """Accept what the graph accepts: ``("user", "hi")`` pairs, strings and role dicts.

    Anything else (``null``, a number, an empty pair, a tool message without
    its ``tool_call_id``) is a ``ValueError`` naming the message, which
    LangServe answers with a 422.
    """
    if not isinstance(value, list):
        return value
    messages = []
    for index, message in enumerate(value):
        if isinstance(message, BaseMessage) or (isinstance(message, dict) and "type" in message):
            messages.append(message)  # LangChain's JSON form: pydantic validates it
            continue
        if not isinstance(message, (list, tuple, str, dict)):
            raise ValueError(
                f"messages[{index}]: expected a message (an object with role and content, a "
                f"[role, content] pair or a string), got {type(message).__name__}"
            )
        try:
            messages.append(convert_to_messages([message])[0])
        except Exception as exc:  # LangChain raises several types for a malformed message
            raise ValueError(f"messages[{index}]: not a valid message: {exc}") from None
    return messages


async def _readable_json(request: Request) -> None:
    """Refuse a body that is not readable JSON with a 400 naming why, before LangServe reads it.

    Invalid UTF-8 or an integer of thousands of digits is a ``ValueError`` that
    LangServe does not catch, and so is a ``config`` that is not an object
    (``null``): it would answer 500 and drop the connection. (A
    body nested too deeply raises ``RecursionError``, answered by the app's
    error handlers: see :func:`~langgraph_moa.serve.guard.add_error_handlers`.)
    """
    if request.method != "POST" or not await request.body():
        return  # the schema and playground pages; an empty POST is LangServe's 422
    try:
        body = await request.json()
    except ValueError as exc:  # json.JSONDecodeError, UnicodeDecodeError, an int too long to convert
        raise HTTPException(400, f"the body is not valid JSON: {str(exc)[:200]}") from None
    if isinstance(body, Mapping) and "config" in body and not isinstance(body["config"], (Mapping, list)):
        raise HTTPException(
            422, 'config: must be an object such as {"configurable": {...}}; leave it out for the defaults'
        )


class MoAInput(BaseModel):
    """What a LangServe client sends: the whole conversation of this turn.

    Messages are LangChain messages or their JSON form; ``("user", "...")``
    pairs and ``{"role": ..., "content": ...}`` dicts are accepted as well.
    """

    messages: Annotated[list[AnyMessage], BeforeValidator(_shorthand_messages)] = Field(
        min_length=1,
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
    "Start from this named configuration (see `moa presets`); the other fields given override it. "
    "'local' runs the bundled SmolLM2-135M on llama.cpp (the local extra; it shows the pipeline runs, not MoA's quality)."
)
LOCAL_PRESET = "local"
"""The preset of the bundled model (:mod:`langgraph_moa.studio`), started by the first request naming it."""


CLIENT_FIELDS: frozenset[str] = frozenset(
    {
        "preset",
        "layers",
        "proposers",
        "layer_proposers",
        "aggregator",
        "temperature",
        "max_tokens",
        "min_proposals",
        "timeout",
        "max_retries",
        "aggregation_prompt",
    }
)
"""The ``configurable`` keys a client may send by default: presets, models and tuning."""

TUNING_FIELDS: frozenset[str] = CLIENT_FIELDS - {"proposers", "layer_proposers", "aggregator"}
"""The keys a client may send when the server alone chooses the models (``moa serve``)."""

SERVER_ONLY_FIELDS: frozenset[str] = frozenset(MoAConfig.model_fields) - CLIENT_FIELDS
"""Never taken from a client: endpoints (``base_url``), prices, tools and ``review``.

A client that could name an endpoint would receive the server's provider keys
there. Per-model ``base_url`` and ``api_key_env`` are refused for the same reason.
"""


@dataclass(frozen=True)
class ClientLimits:
    """Upper bounds on what one request may ask for, so a client cannot run up costs.

    Attributes:
        max_tokens: Largest ``max_tokens`` (run-wide or per model).
        max_layers: Largest ``layers``.
        max_proposers: Most proposers in one layer.
        max_timeout: Largest ``timeout`` in seconds.
        max_messages: Most messages in one input (400 above).
        max_chars: Most characters of message text in one input (400 above).
    """

    max_tokens: int = 4096
    max_layers: int = 4
    max_proposers: int = 8
    max_timeout: float = 600.0
    max_messages: int = 256
    max_chars: int = 400_000


@cache
def _configurable_specs(fields: frozenset[str]) -> tuple[ConfigurableFieldSpec, ...]:
    """One optional configurable field per ``MoAConfig`` field in ``fields``, and ``preset``."""
    specs = []
    if "preset" in fields:
        preset_type = Literal[(*PRESETS, LOCAL_PRESET)]  # type: ignore[valid-type]
        specs.append(
            ConfigurableFieldSpec(
                id="preset", annotation=preset_type | None, name="preset", description=_PRESET_DESCRIPTION
            )
        )
    for name, field in MoAConfig.model_fields.items():
        if name in fields:
            specs.append(
                ConfigurableFieldSpec(
                    id=name,
                    annotation=field.annotation | None,  # type: ignore[operator]  # every MoAConfig field has one
                    name=name,
                    description=field.description,
                )
            )
    return tuple(specs)


class _ConfigurableGraph(RunnableBinding):
    """The graph, declaring the ``MoAConfig`` fields clients may set as its configurable fields.

    LangServe validates ``config["configurable"]`` against the runnable's
    ``config_specs`` and drops what is not declared there.
    """

    client_fields: ClassVar[frozenset[str]] = CLIENT_FIELDS  # set per app by a subclass: copies keep it
    secret_variables: ClassVar[tuple[str, ...]] = ()  # the served models' api_key_env, set the same way

    @property
    def config_specs(self) -> list[ConfigurableFieldSpec]:
        return list(_configurable_specs(self.client_fields))

    def astream_log(  # type: ignore[override]
        self, input: Any, config: RunnableConfig | None = None, *, diff: bool = True, **kwargs: Any
    ) -> AsyncIterator[RunLogPatch] | AsyncIterator[RunLog]:
        """The graph's run log, with each model call's streamed text redacted across its chunks."""
        patches = super().astream_log(input, config, diff=True, **kwargs)
        return redact_run_log(patches, diff=diff, variables=self.secret_variables)

    def astream_events(  # type: ignore[override]
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[StreamEvent]:
        """The graph's events, with each model call's streamed text redacted across its chunks."""
        events = super().astream_events(input, config, **kwargs)
        return redact_stream_events(events, variables=self.secret_variables)


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
    """LangServe's serializer, extended to LangGraph's ``Send`` objects, and without secrets.

    LangGraph objects that are dataclasses (``Command``, ``Interrupt``,
    ``Overwrite``) are encoded field by field; a ``Send`` becomes
    ``{"type": "send", "node": ..., "arg": ...}``. Decoding is LangServe's.

    Every response and stream event of the routes passes through :meth:`dumps`,
    which removes secrets (:func:`~langgraph_moa.providers.redact`): the logs of
    ``/stream_log`` and the events of ``/stream_events`` carry what the models
    returned, error bodies included, and an upstream may echo the key it was
    sent.
    """

    def __init__(self, variables: Collection[str] = ()) -> None:
        """``variables``: more environment variables whose values must not appear (models' ``api_key_env``)."""
        super().__init__()
        self.variables = tuple(variables)

    def dumps(self, obj: Any) -> bytes:
        """Dump ``obj`` to a JSON byte string, secrets and the turn's configuration removed."""
        # by value: failure messages were redacted when recorded, and answers keep words such as "Bearer"
        text = orjson.dumps(obj, default=_encode).decode()
        if RUN_CONFIG_KEY in text:  # node updates and Send payloads in /stream_events and /stream_log
            text = orjson.dumps(_without_run_config(orjson.loads(text))).decode()
        return redact(text, variables=self.variables, shapes=False).encode()


RUN_CONFIG_KEY = "moa_config"
"""The state key of the turn's configuration: it names the operator's endpoints, so no response carries it."""


def _without_run_config(value: Any) -> Any:
    """``value`` without ``moa_config`` keys, and without run-log patches that write one."""
    if isinstance(value, dict):
        if value.get("op") and RUN_CONFIG_KEY in str(value.get("path", "")).split("/"):
            return None
        return {k: _without_run_config(v) for k, v in value.items() if k != RUN_CONFIG_KEY}
    if isinstance(value, list):
        kept = [_without_run_config(v) for v in value]
        return [v for v, old in zip(kept, value, strict=True) if not (v is None and isinstance(old, dict))]
    return value


def _base_configurable(graph: Runnable) -> dict[str, Any]:
    config = getattr(graph, "config", None) or {}
    return dict(config.get("configurable") or {})


def _sent_configurables(body: Any) -> list[Mapping[str, Any]]:
    """The ``configurable`` mappings of a raw LangServe request body (one, or one per batch input)."""
    configs = body.get("config") if isinstance(body, Mapping) else None
    configs = configs if isinstance(configs, list) else [configs]
    return [c["configurable"] for c in configs if isinstance(c, Mapping) and isinstance(c.get("configurable"), Mapping)]


def _text_length(message: Any) -> int:
    """Characters of text in one message of a raw input (LangChain JSON, role dict or pair)."""
    if isinstance(message, (list, tuple)):
        return sum(len(part) for part in message if isinstance(part, str))
    content = message.get("content") if isinstance(message, Mapping) else message
    if isinstance(content, list):
        return sum(
            _text_length(part) if not isinstance(part, Mapping) else len(str(part.get("text", ""))) for part in content
        )
    return len(content) if isinstance(content, str) else 0


def _check_sizes(body: Any, limits: ClientLimits) -> None:
    """Refuse an input of more messages or characters than ``limits`` allow (400)."""
    if not isinstance(body, Mapping):
        return
    batch = body.get("inputs")
    inputs: list[Any] = batch if isinstance(batch, list) else [body.get("input")]
    for one in inputs:
        messages = one.get("messages") if isinstance(one, Mapping) else None
        if not isinstance(messages, list):
            continue
        if len(messages) > limits.max_messages:
            raise HTTPException(
                400,
                f"input.messages: {len(messages)} messages are more than this server's limit of "
                f"{limits.max_messages}; send a shorter conversation",
            )
        chars = sum(_text_length(m) for m in messages)
        if chars > limits.max_chars:
            raise HTTPException(
                400,
                f"input.messages: {chars} characters of text are more than this server's limit of "
                f"{limits.max_chars}; send a shorter conversation",
            )


def _config_from_path(config_hash: str | None) -> Any:
    """The config a ``/c/<config_hash>/...`` route carries in its path (LangServe's compressed JSON)."""
    if not config_hash:
        return None
    try:
        return json.loads(LZString.decompressFromEncodedURIComponent(config_hash) or "null")
    except (ValueError, TypeError):
        return None  # LangServe answers 400 for a hash it cannot read


def _refuse(detail: str) -> HTTPException:
    return HTTPException(status_code=422, detail=f"configurable: {detail}")


def _check_client_models(configurable: Mapping[str, Any], limits: ClientLimits) -> None:
    """Refuse model entries that name an endpoint or a key variable, or exceed the limits."""
    layers = configurable.get("layer_proposers") or []
    entries = [
        *(configurable.get("proposers") or []),
        *(e for layer in layers if isinstance(layer, list) for e in layer),
    ]
    if configurable.get("aggregator") is not None:
        entries.append(configurable["aggregator"])
    for entry in entries:
        if not isinstance(entry, Mapping):
            continue
        named = sorted(k for k in ("base_url", "api_key_env") if entry.get(k) is not None)
        if named:
            raise _refuse(
                f"{' and '.join(named)} of model {entry.get('model')!r} cannot come from a client: the server "
                "chooses endpoints and keys (models are 'provider:model' names it resolves)"
            )
        if (entry.get("max_tokens") or 0) > limits.max_tokens:
            raise _refuse(f"max_tokens of model {entry.get('model')!r} is above this server's {limits.max_tokens}")


def _check_limits(cfg: MoAConfig, sent: Mapping[str, Any], limits: ClientLimits) -> None:
    if "max_tokens" in sent and cfg.max_tokens > limits.max_tokens:
        raise _refuse(f"max_tokens={cfg.max_tokens} is above this server's limit of {limits.max_tokens}")
    if "timeout" in sent and cfg.timeout > limits.max_timeout:
        raise _refuse(f"timeout={cfg.timeout:g} is above this server's limit of {limits.max_timeout:g} s")
    if sent.keys() & {"layers", "preset"} and cfg.layers > limits.max_layers:
        raise _refuse(f"layers={cfg.layers} is above this server's limit of {limits.max_layers}")
    if sent.keys() & {"proposers", "layer_proposers", "preset"}:
        widest = max((len(cfg.proposers_for(n)) for n in range(1, cfg.layers)), default=0)
        if widest > limits.max_proposers:
            raise _refuse(f"a layer has {widest} proposers, above this server's limit of {limits.max_proposers}")


def _check_strictly(sent: Mapping[str, Any]) -> None:
    """Validate each value a client sent as it was sent: a value of the wrong kind is a 422 naming it.

    LangServe's own validation of ``configurable`` is lax (``true`` becomes ``1``,
    ``"0.5"`` becomes ``0.5``) and runs first, so the raw body is checked here.
    """
    fields = {k: v for k, v in sent.items() if v is not None and k in MoAConfig.model_fields}
    errors = []
    for name, value in fields.items():
        try:
            MoAConfig.__pydantic_validator__.validate_assignment(MoAConfig.model_construct(), name, value)
        except ValidationError as exc:
            errors.append(describe_validation_error(exc))
    if errors:
        raise _refuse("; ".join(errors))


async def _start_local_model() -> None:
    """Start the bundled model's llama.cpp server for the ``local`` preset (once; it stops with the process)."""
    from langgraph_moa import studio

    if not studio.LOCAL_AVAILABLE:
        raise _refuse("preset 'local' needs the local extra on the server: pip install 'langgraph-moa[local]'")
    try:
        await asyncio.to_thread(studio.local_urls, start=True)
    except LocalModelError as exc:
        raise HTTPException(503, f"the local preset cannot run: {exc}") from None


def _make_config_check(base: Mapping[str, Any], client_fields: frozenset[str], limits: ClientLimits) -> Any:
    """Validate a request's ``configurable`` against the client policy and the graph's bound defaults.

    Keys outside ``client_fields`` are refused (LangServe would drop them
    silently), and so are model entries naming an endpoint or a key variable,
    and values above ``limits``. Fields left out (or ``None``) are dropped, so
    the defaults apply. A request naming a ``preset`` gets that preset with its
    own overrides and none of the defaults: it is passed on as every field of
    the resulting config, which overrides whatever is bound to the graph.
    """

    async def check(config: dict[str, Any], request: Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            body = None
        _check_sizes(body, limits)
        raw = _sent_configurables(body)
        raw += _sent_configurables({"config": _config_from_path(request.path_params.get("config_hash"))})
        for sent in raw:
            refused = sorted(k for k, v in sent.items() if v is not None and k not in client_fields)
            if refused:
                raise _refuse(
                    f"{', '.join(refused)} cannot be set by a client of this server "
                    f"(allowed: {', '.join(sorted(client_fields))}). Endpoints, keys, prices, tools and review "
                    "are the server's to choose"
                )
            _check_strictly(sent)
        configurable = {k: v for k, v in (config.get("configurable") or {}).items() if v is not None}
        _check_client_models(configurable, limits)
        if configurable.get("preset") == LOCAL_PRESET:
            await _start_local_model()
        try:
            cfg = moa_config_from(None, configurable if "preset" in configurable else {**base, **configurable})
        except ConfigError as exc:
            raise _refuse(str(exc)) from None
        _check_limits(cfg, configurable, limits)
        if "preset" in configurable:
            request.state.moa_preset = configurable["preset"]  # what an error of the run names (serve/app.py)
            configurable = cfg.model_dump(mode="json")
        return {**config, "configurable": configurable}

    return check


def add_moa_routes(
    app: FastAPI,
    graph: Runnable | None = None,
    *,
    path: str = "/moa",
    client_fields: Collection[str] = CLIENT_FIELDS,
    limits: ClientLimits | None = None,
    secret_variables: Collection[str] = (),
) -> None:
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
        client_fields: The ``configurable`` keys clients may send
            (:data:`CLIENT_FIELDS`: presets, models and tuning;
            :data:`TUNING_FIELDS` when the server alone picks the models). Other
            keys get HTTP 422. Endpoints and keys (:data:`SERVER_ONLY_FIELDS`,
            per-model ``base_url`` and ``api_key_env``) are never allowed: a
            client that could name an endpoint would receive the server's keys.
        limits: Caps on ``max_tokens``, ``layers``, proposers per layer and
            ``timeout`` in a request (default :class:`ClientLimits`).
        secret_variables: Environment variables whose values are removed
            from every response and stream event, besides the provider keys and
            the variables named like secrets (see
            :func:`~langgraph_moa.providers.redact`): the ``api_key_env`` of
            the models served. Those of the configuration bound to ``graph``
            are added.

    Raises:
        ValueError: ``path`` does not start with ``/``, ``graph`` was compiled
            with a checkpointer, or ``client_fields`` has a server-only key.
        TypeError: ``graph`` is not compiled (a ``StateGraph`` builder).

    Example:
        ```python
        import uvicorn
        from fastapi import FastAPI
        from langgraph_moa.serve.langserve_routes import add_moa_routes

        app = FastAPI()
        add_moa_routes(app)  # /moa/invoke, /moa/stream, /moa/playground/, ...
        uvicorn.run(app, host="127.0.0.1", port=8000)
        ```
    """
    if not path.startswith("/"):
        raise ValueError(f"path {path!r} must start with '/', e.g. '/moa'")
    fields = frozenset(client_fields)
    if fields - CLIENT_FIELDS:
        raise ValueError(
            f"client_fields may not include {', '.join(sorted(fields - CLIENT_FIELDS))}: "
            f"choose among {', '.join(sorted(CLIENT_FIELDS))}"
        )
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
    base = _base_configurable(graph)
    variables = set(secret_variables)
    try:
        variables.update(key_variables(moa_config_from(None, base)))
    except ConfigError:
        pass  # an invalid bound configuration is refused per request, with a 422 naming the field
    secrets = tuple(sorted(variables))
    runnable_type = type(
        "ConfigurableMoAGraph", (_ConfigurableGraph,), {"client_fields": fields, "secret_variables": secrets}
    )
    runnable = runnable_type(
        bound=graph,
        # /stream chunks are whole states, like /invoke's output: without the turn's configuration (its endpoints)
        kwargs={
            "stream_mode": "values",
            "output_keys": sorted(RunOutput.__required_keys__ | RunOutput.__optional_keys__),
        },
        custom_input_type=MoAInput,
        custom_output_type=MoAOutput,
    )
    add_routes(
        app,
        runnable,
        path=path.rstrip("/"),
        config_keys=("configurable",),
        per_req_config_modifier=_make_config_check(base, fields, limits or ClientLimits()),
        serializer=GraphSerializer(secrets),
        dependencies=[Depends(_readable_json)],
    )


def create_langserve_app(graph: Runnable | None = None, *, path: str = "/moa") -> FastAPI:
    """A FastAPI app serving only the LangServe routes of :func:`add_moa_routes`.

    Failed runs are answered as ``moa serve`` answers them (a missing provider
    key is a 503 ``missing_credentials`` naming the variable; see
    ``docs/serving.md``), a client that disconnects cancels its run, and
    ``preset: local`` starts the bundled model on first use.

    Serve it with ``uvicorn``:
    ``uvicorn --factory langgraph_moa.serve.langserve_routes:create_langserve_app``.
    """
    from langgraph_moa.serve.guard import CancelOnDisconnect, add_error_handlers
    from langgraph_moa.serve.openai_errors import error_for

    app = FastAPI(title="Mixture-of-Agents (LangServe)")
    add_moa_routes(app, graph, path=path)
    # a failed run is answered as moa serve answers it (503 missing_credentials, 502 proposers_failed, ...)
    add_error_handlers(app, "moa")
    app.add_middleware(CancelOnDisconnect, prefix=path, error_for=lambda exc: error_for(exc, "moa"))
    return app
