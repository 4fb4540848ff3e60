"""Mixture-of-Agents as a LangGraph graph.

Public API: :func:`create_moa_graph`, :class:`ChatMoA` (MoA as a chat model),
:class:`MoAConfig`, :class:`ModelSpec`, the presets (:data:`PRESETS`, :func:`get_preset`), the state types and the errors,
and for reading a run's streams :func:`is_aggregator_token`, :data:`AGGREGATOR_NODE` and :func:`summarize_usage`
(also in :mod:`langgraph_moa.stream`).
"""

from langgraph_moa.chat_model import ChatMoA
from langgraph_moa.config import MoAConfig, ModelSpec
from langgraph_moa.errors import (
    AggregatorError,
    ConfigError,
    EmptyResponseError,
    LayerFailedError,
    MissingCredentialsError,
    MoAError,
    StragglerTimeout,
)
from langgraph_moa.graph import create_moa_graph
from langgraph_moa.presets import PRESETS, get_preset
from langgraph_moa.pricing import DEFAULT_PRICES, ModelPrice, estimate_cost
from langgraph_moa.prompts import AGGREGATE_AND_SYNTHESIZE, inject_references
from langgraph_moa.state import (
    Failure,
    InputState,
    MoAOutput,
    MoAState,
    Proposal,
    ProvisionalAnswer,
    UsageRecord,
    UsageSummary,
)
from langgraph_moa.stream import AGGREGATOR_NODE, is_aggregator_token, summarize_usage

__all__ = [
    "AGGREGATE_AND_SYNTHESIZE",
    "AGGREGATOR_NODE",
    "DEFAULT_PRICES",
    "PRESETS",
    "AggregatorError",
    "ChatMoA",
    "ConfigError",
    "EmptyResponseError",
    "Failure",
    "InputState",
    "LayerFailedError",
    "MissingCredentialsError",
    "MoAConfig",
    "MoAError",
    "MoAOutput",
    "MoAState",
    "ModelPrice",
    "ModelSpec",
    "Proposal",
    "ProvisionalAnswer",
    "StragglerTimeout",
    "UsageRecord",
    "UsageSummary",
    "create_moa_graph",
    "estimate_cost",
    "get_preset",
    "inject_references",
    "is_aggregator_token",
    "summarize_usage",
]
