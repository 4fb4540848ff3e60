"""The names of the MoA graph's nodes, in one place.

The graph (:mod:`langgraph_moa.graph`), its routing (:mod:`langgraph_moa.routing`),
the nodes that name themselves and the proposal cache's error handler (which sends
a failed proposer on to ``join_layer``) all use these; a caller reading a run uses
:data:`~langgraph_moa.stream.AGGREGATOR_NODE`.
"""

from typing import Literal

PREPARE_NODE = "prepare"
"""Starts a turn: stores its configuration, checks the input and every model (:func:`~langgraph_moa.nodes.make_prepare`)."""
PROPOSER_NODE = "propose"
"""Calls one proposer of one layer, one task per proposer (:func:`~langgraph_moa.nodes.make_propose`)."""
JOIN_NODE = "join_layer"
"""Closes a proposer layer (:func:`~langgraph_moa.nodes.make_join_layer`)."""
PROVISIONAL_NODE = "provisional"
"""A provisional answer from an earlier layer while the next one runs (:mod:`langgraph_moa.provisional`)."""
STEER_NODE: Literal["steer"] = "steer"
"""The cost-saving options between layers (:mod:`langgraph_moa.strategies`)."""
REVIEW_NODE = "review"
"""Pauses the run for a reviewer before the aggregation (:func:`~langgraph_moa.nodes.make_review`)."""
AGGREGATOR_NODE = "aggregate"
"""Writes the final answer (:func:`~langgraph_moa.nodes.make_aggregate`)."""
STAIRCASE_NODE: Literal["staircase"] = "staircase"
"""The last proposer layer and the answer, pipelined (:mod:`langgraph_moa.staircase`)."""
