"""The :class:`MoAConfig` of a run, from its runtime context or ``configurable``.

A run is configured by its runtime context (``context=MoAConfig(...)``), or, where
only ``config["configurable"]`` reaches the graph (LangServe, the LangGraph API),
by a mapping of the same fields, optionally starting from a ``"preset"``.
"""

from __future__ import annotations

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
            without the preset).

    Raises:
        ConfigError: naming the invalid field and why.
    """
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
