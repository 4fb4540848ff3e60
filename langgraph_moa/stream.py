"""What a caller needs to read a MoA run from outside: the answer's tokens and the usage.

The ways in (the CLI, :class:`~langgraph_moa.ChatMoA`, the servers) use these
names instead of the nodes' internals:

- :func:`is_aggregator_token`: whether a ``stream_mode="messages"`` token is
  part of the answer (it comes from the final aggregator);
- :data:`AGGREGATOR_NODE`: the name of the node that writes the answer (for
  ``update_state(..., as_node=...)`` and stream metadata);
- :func:`summarize_usage`: usage per layer, per model and in total, with the
  cost estimate, from a run's ``usage`` records (a finished run has it in its
  ``usage_summary``).

Example:
    ```python
    from langgraph_moa.stream import is_aggregator_token

    async for token, metadata in graph.astream(inputs, context=config, stream_mode="messages"):
        if is_aggregator_token(metadata):
            print(token.text, end="")
    ```
"""

from collections.abc import Mapping
from typing import Any

from langgraph_moa.node_names import AGGREGATOR_NODE, STAIRCASE_NODE
from langgraph_moa.usage import summarize_usage

__all__ = ["AGGREGATOR_NODE", "is_aggregator_token", "summarize_usage"]


def is_aggregator_token(metadata: Mapping[str, Any]) -> bool:
    """Whether a ``stream_mode="messages"`` token comes from the final aggregator.

    That is, from the ``aggregate`` node (or ``staircase``, which writes the
    answer with ``MoAConfig.staircase``), or from a model inside it (an agent or
    subgraph used as the aggregator, whose tokens carry its own node names).
    """
    if metadata.get("langgraph_node") in (AGGREGATOR_NODE, STAIRCASE_NODE):
        return True
    return str(metadata.get("langgraph_checkpoint_ns", "")).startswith(f"{AGGREGATOR_NODE}:")
