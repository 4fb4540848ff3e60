"""The :class:`MoAConfig` of a run, from its runtime context or ``configurable``.

A run is configured by its runtime context (``context=MoAConfig(...)``), or, where
only ``config["configurable"]`` reaches the graph (LangServe, the LangGraph API),
by a mapping of the same fields, optionally starting from a ``"preset"``.

A turn keeps the configuration it started with: ``prepare`` stores it in the
state (``moa_config``, with its fingerprint), and every later step of the turn
reads it from there (:func:`turn_moa_config`). So a run resumed without a
configuration (after an interrupt, an error, or an edit of the state in
LangGraph Studio) continues as the turn began; one that names another
configuration is refused rather than mixing two.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.runtime import Runtime
from pydantic import ValidationError

from langgraph_moa.config import MoAConfig, describe_validation_error
from langgraph_moa.errors import ConfigError
from langgraph_moa.presets import get_preset

DEFAULT_PRESET_KEY = "moa_default_preset"
"""A ``configurable`` key naming the preset a run uses when nothing else configures it
(how the served graph runs the ``local`` preset when no provider key is set). Unlike
``"preset"``, it is not a configuration the run asked for: a resumed turn keeps its own."""


def fingerprint(cfg: MoAConfig) -> str:
    """A short hash of ``cfg``; equal configurations have equal fingerprints."""
    return hashlib.sha256(cfg.model_dump_json().encode()).hexdigest()[:16]


def _sets_nothing(context: Any) -> bool:
    """A context that sets no field (the LangGraph server validates an empty one into ``MoAConfig()``)."""
    if isinstance(context, MoAConfig):
        return not context.model_fields_set
    return isinstance(context, Mapping) and not context


def configures_run(context: Any, configurable: Mapping[str, Any] | None = None) -> bool:
    """Whether a run names a configuration: a context setting a field, or MoA fields or a preset in ``configurable``."""
    if context is not None and not _sets_nothing(context):
        return True
    return bool(set(configurable or {}) & (set(MoAConfig.model_fields) | {"preset"}))


def moa_config_from(context: Any, configurable: Mapping[str, Any] | None = None) -> MoAConfig:
    """Build the run's :class:`MoAConfig` from a runtime context or ``configurable``.

    Args:
        context: ``runtime.context``: a ``MoAConfig``, a mapping of its fields,
            or ``None``. (LangGraph validates a mapping given as ``context=``
            against ``MoAConfig`` itself, so a ``"preset"`` key works only
            through ``configurable``.)
        configurable: ``config["configurable"]``, read when ``context`` is ``None``.
            Keys that are not ``MoAConfig`` fields (``thread_id`` and the like)
            are ignored. A ``"preset"`` here also applies under a context: the
            run starts from the preset and the fields the context set win
            (the LangGraph server copies ``configurable`` into the context
            without the preset). A ``"moa_default_preset"`` applies when nothing
            else configures the run. A context that sets no field counts as none.

    Raises:
        ConfigError: naming the invalid field and why.
    """
    if _sets_nothing(context):
        context = None
    if context is None and not configures_run(None, configurable) and (configurable or {}).get(DEFAULT_PRESET_KEY):
        configurable = {"preset": (configurable or {})[DEFAULT_PRESET_KEY]}
    preset = (configurable or {}).get("preset")
    if preset is not None and context is not None:
        # The LangGraph server copies `configurable` into the context, keeping only MoAConfig
        # fields: the preset is lost there. Start from it, and apply the fields the context set.
        explicit = context.model_dump(exclude_unset=True) if isinstance(context, MoAConfig) else context
        if not isinstance(explicit, Mapping):
            raise ConfigError(f"context must be a MoAConfig or a mapping of its fields, got {type(context).__name__}")
        return moa_config_from(None, {**(configurable or {}), **explicit})
    if isinstance(context, MoAConfig):
        return context
    if context is not None and not isinstance(context, Mapping):
        raise ConfigError(f"context must be a MoAConfig or a mapping of its fields, got {type(context).__name__}")
    source = dict(context) if context is not None else {}
    if context is None and configurable:
        known = set(MoAConfig.model_fields) | {"preset"}
        source = {k: v for k, v in configurable.items() if k in known}
    preset = source.pop("preset", None)
    try:
        if preset is None:
            return MoAConfig.model_validate(source)
        return get_preset(preset, **source)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None
    except KeyError as exc:
        raise ConfigError(str(exc.args[0])) from None


def moa_config_of_run(runtime: Runtime[MoAConfig] | None, config: RunnableConfig | None) -> MoAConfig:
    """The run's :class:`MoAConfig`: the runtime context, else ``config["configurable"]``."""
    context = runtime.context if runtime is not None else None
    return moa_config_from(context, (config or {}).get("configurable"))


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
            assistants[name] = moa_config_from(fields)
        except ConfigError as exc:
            raise ConfigError(f"{file}: assistant {name!r}: {exc}") from None
    return assistants


def turn_moa_config(
    runtime: Runtime[MoAConfig] | None, config: RunnableConfig | None, stored: Mapping[str, Any] | None
) -> MoAConfig:
    """The configuration of the turn a step belongs to.

    Args:
        runtime: The step's runtime (``None`` where LangGraph gives none, as in
            ``update_state``, which runs the routing of the node it writes as).
        config: The step's config.
        stored: The configuration the turn started with (``state["moa_config"]``),
            or ``None`` before ``prepare`` has stored one.

    Returns:
        The stored configuration; without one, the run's own (:func:`moa_config_of_run`).

    Raises:
        ConfigError: the run names a configuration other than the stored one.
    """
    if stored is None:
        return moa_config_of_run(runtime, config)
    turn = MoAConfig.model_validate(stored)
    context = runtime.context if runtime is not None else None
    configurable = (config or {}).get("configurable")
    if configures_run(context, configurable) and fingerprint(moa_config_from(context, configurable)) != fingerprint(
        turn
    ):
        raise ConfigError(
            "this turn was started with another MoA configuration: resume it without one (the turn's own, "
            "stored in the state as moa_config, applies) or with the same one, or start a new turn"
        )
    return turn


def new_turn_moa_config(
    runtime: Runtime[MoAConfig] | None, config: RunnableConfig | None, stored: Mapping[str, Any] | None
) -> MoAConfig:
    """The configuration of a new turn: the run's, or, when the run names none, the thread's last turn's.

    So a conversation continued without a configuration (a follow-up question
    from the LangGraph SDK or Studio) keeps the one it was started with.
    """
    context = runtime.context if runtime is not None else None
    if stored is not None and not configures_run(context, (config or {}).get("configurable")):
        return MoAConfig.model_validate(stored)
    return moa_config_of_run(runtime, config)


def stored_config(cfg: MoAConfig) -> dict[str, Any]:
    """``cfg`` as the state stores it (``moa_config``): JSON-ready, read back by :func:`turn_moa_config`.

    A configuration holds no secret: keys are named by their variables (``api_key_env``), never given.
    """
    return cfg.model_dump(mode="json", exclude_unset=False)
