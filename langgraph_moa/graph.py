"""Build the Mixture-of-Agents graph.

``create_moa_graph()`` returns the uncompiled ``StateGraph`` so you choose the
checkpointer, store and name at ``compile()``; ``graph`` is a compiled default,
which :mod:`langgraph_moa.studio` serves for ``langgraph.json`` (``langgraph dev``,
LangGraph Studio, the LangGraph API).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable
from langgraph.graph import END, START, StateGraph

from langgraph_moa.cache import PROPOSAL_CACHE_POLICY, record_failure
from langgraph_moa.config import MoAConfig
from langgraph_moa.node_names import (
    AGGREGATOR_NODE,
    JOIN_NODE,
    PREPARE_NODE,
    PROPOSER_NODE,
    PROVISIONAL_NODE,
    REVIEW_NODE,
    STAIRCASE_NODE,
    STEER_NODE,
)
from langgraph_moa.nodes import make_aggregate, make_join_layer, make_prepare, make_propose, make_review
from langgraph_moa.providers import EndpointPolicy, ModelResolver, served_graph_policy
from langgraph_moa.provisional import make_provisional
from langgraph_moa.routing import (
    ROUTES_AFTER_JOIN,
    ROUTES_AFTER_PREPARE,
    ROUTES_AFTER_STEER,
    route_after_steer,
    route_layer,
)
from langgraph_moa.staircase import make_staircase
from langgraph_moa.state import InputState, MoAOutput, MoAState
from langgraph_moa.strategies import make_steer

FAILURE_HANDLER = f"__error_handler__{PROPOSER_NODE}"
"""The node LangGraph adds for ``propose``'s error handler (:func:`~langgraph_moa.cache.record_failure`):
a proposer that failed goes there, its :class:`~langgraph_moa.state.Failure` is recorded, and the run
goes on to ``join_layer``."""


def create_moa_graph(
    *,
    models: Mapping[str, BaseChatModel | Runnable] | None = None,
    allowed_base_urls: Iterable[str] | EndpointPolicy | None = None,
) -> StateGraph[MoAState, MoAConfig, InputState, MoAOutput]:
    """Create the Mixture-of-Agents graph (uncompiled).

    The graph has these nodes::

        START -> prepare -> propose (x N, in parallel) -> join_layer -> ... -> [review] -> aggregate -> END

    (``review`` runs only when ``MoAConfig.review`` is set; ``provisional``, beside
    the proposers of layers 2 and up, only with ``MoAConfig.provisional_answers``;
    ``steer`` runs between layers only when a cost-saving option is on: ``keep_top``,
    ``early_stop``, ``max_cost_usd``, see :mod:`langgraph_moa.strategies` and
    ``docs/strategies.md``; with ``MoAConfig.staircase``, ``staircase`` replaces the
    last proposer layer and ``aggregate``: see :mod:`langgraph_moa.staircase`.)

    Its drawing (``graph.get_graph().draw_mermaid()``, what LangGraph Studio
    shows) names exactly where each node can go, each conditional edge labelled
    with when it is taken; ``docs/studio.md`` shows and explains it.

    Each proposer layer is a fan-out of ``propose`` tasks (one LangGraph ``Send``
    per proposer, run in the same step) joined by ``join_layer``; after the last
    proposer layer, ``aggregate`` writes the answer from that layer's references.
    The number of layers and the models are read per run from the runtime
    context, a :class:`~langgraph_moa.config.MoAConfig`, so one compiled graph
    serves any configuration. Without a context, the graph reads the same fields
    (and an optional ``"preset"``) from ``config["configurable"]``, and falls back
    to ``MoAConfig()``'s defaults.

    State (see :class:`~langgraph_moa.state.MoAState`): ``messages`` (merged with
    ``add_messages``, so it composes with ``MessagesState`` graphs; the answer is
    appended as an ``AIMessage``), ``proposals`` and ``failures`` keyed by layer and
    slot, ``usage`` per call and ``usage_summary`` with totals and cost.

    Run it with ``invoke``/``stream`` or ``ainvoke``/``astream``. Stream the
    answer with ``stream_mode="messages"`` (only the aggregator's tokens appear)
    and progress with ``stream_mode="custom"``.

    Args:
        models: Ready chat models or agents by ``"provider:model"`` name, used as
            they are in place of ``init_chat_model`` (custom clients, fakes in
            tests, agents with tools). Their own temperature and limits apply;
            the config's do not. A chat model (bound or not) is called with the
            messages; any other runnable, such as a ``create_agent`` graph, with
            ``{"messages": [...]}``, and its last message is its answer. The name
            is yours to choose (``"agent:researcher"``); use it in the config.
        allowed_base_urls: For graphs whose configuration comes from clients
            (a LangGraph server): an :class:`~langgraph_moa.providers.EndpointPolicy`
            (the endpoints and key variables the operator allows), or the URL
            prefixes a run's config may name as a ``base_url`` (loopback only if
            listed; no ``api_key_env``). A run naming anything else stops before
            any call, so a client cannot send requests (or any variable of the
            server's environment) to a host of its choosing. ``None`` (the
            default) allows any endpoint: the config is your own code's.

    Returns:
        The ``StateGraph``; call ``.compile(checkpointer=...)`` on it.

    Example:
        ```python
        from langgraph.checkpoint.memory import InMemorySaver
        from langgraph_moa import MoAConfig, create_moa_graph

        graph = create_moa_graph().compile(checkpointer=InMemorySaver())
        config = MoAConfig(
            layers=2,
            proposers=["openai:gpt-4o-mini", "together:Qwen/Qwen2.5-72B-Instruct-Turbo"],
            aggregator="openai:gpt-4o",
        )
        result = await graph.ainvoke(
            {"messages": [("user", "What are 3 fun things to do in SF?")]},
            {"configurable": {"thread_id": "1"}},
            context=config,
        )
        print(result["messages"][-1].content)
        ```
    """
    resolve = ModelResolver(models, allowed_base_urls=allowed_base_urls)
    builder = StateGraph(MoAState, context_schema=MoAConfig, input_schema=InputState, output_schema=MoAOutput)
    builder.add_node(PREPARE_NODE, make_prepare(resolve))
    # the node cache works once the graph is compiled with a cache; failures never enter it
    builder.add_node(
        PROPOSER_NODE,
        make_propose(resolve),
        cache_policy=PROPOSAL_CACHE_POLICY,
        error_handler=record_failure,
        destinations={FAILURE_HANDLER: "proposer failed"},  # drawn only; the handler runs on ProposerFailed
    )
    # LangGraph adds the handler as a node of its own, `__error_handler__propose`, and gives it no
    # destinations, so it would be drawn unconnected: it goes on to join_layer (cache.record_failure)
    builder.nodes[FAILURE_HANDLER].ends = {JOIN_NODE: "failure recorded"}
    builder.add_node(JOIN_NODE, make_join_layer())
    builder.add_node(REVIEW_NODE, make_review())
    builder.add_node(PROVISIONAL_NODE, make_provisional(resolve))
    builder.add_node(STEER_NODE, make_steer(resolve))
    builder.add_node(AGGREGATOR_NODE, make_aggregate(resolve))
    builder.add_node(STAIRCASE_NODE, make_staircase(resolve))
    builder.add_edge(START, PREPARE_NODE)
    # each path_map names exactly where its node can go, and why (the labels Studio draws on the edges)
    builder.add_conditional_edges(PREPARE_NODE, route_layer, ROUTES_AFTER_PREPARE)
    builder.add_edge(PROPOSER_NODE, JOIN_NODE)
    builder.add_edge(PROVISIONAL_NODE, JOIN_NODE)
    builder.add_conditional_edges(JOIN_NODE, route_layer, ROUTES_AFTER_JOIN)
    # through `steer` only when a cost-saving option is on (strategies.py)
    builder.add_conditional_edges(STEER_NODE, route_after_steer, ROUTES_AFTER_STEER)
    builder.add_edge(REVIEW_NODE, AGGREGATOR_NODE)
    builder.add_edge(AGGREGATOR_NODE, END)
    builder.add_edge(STAIRCASE_NODE, END)
    return builder


graph = create_moa_graph(allowed_base_urls=served_graph_policy()).compile(name="moa")
"""The compiled default graph, served for ``langgraph.json`` by :func:`langgraph_moa.studio.make_graph`
(no checkpointer: the LangGraph server provides one). Its runs are configured by the server's clients, so
their config may name only the endpoints and key variables the operator allowed
(:func:`~langgraph_moa.providers.served_graph_policy`: ``MOA_ALLOWED_BASE_URLS`` and the operator's models)."""
