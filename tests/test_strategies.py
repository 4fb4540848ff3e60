"""The cost-saving options: early stop, keep_top selection and the budget (the ``steer`` node)."""

from __future__ import annotations

import pytest
from langgraph.cache.memory import InMemoryCache
from pydantic import ValidationError

from langgraph_moa import ConfigError, MoAConfig, create_moa_graph
from langgraph_moa.agreement import agreement
from langgraph_moa.selection import parse_ranking, rank_by_rule
from langgraph_moa.testing import Fault, ModelBehavior, SimulatedOpenAIServer
from tests.conftest import sim_config, user

# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"early_stop": 1.5}, "early_stop"),
        ({"early_stop": -0.1}, "early_stop"),
        ({"keep_top": 0}, "keep_top"),
        ({"keep_top": 1, "min_proposals": 2}, "keep_top=1 is below min_proposals=2"),
        ({"ranker": "openai:judge"}, "ranker ranks proposals for keep_top"),
        ({"max_cost_usd": -1}, "max_cost_usd"),
        ({"aggregation_window": 0}, "aggregation_window"),
        ({"aggregation_window": 1}, "aggregation_window"),
    ],
)
def test_invalid_options_name_the_field(fields: dict, named: str) -> None:
    with pytest.raises(ValidationError, match=named):
        MoAConfig(proposers=["openai:a", "openai:b"], **fields)


def test_options_are_off_by_default_and_plain_runs_skip_steer() -> None:
    config = MoAConfig()
    assert (config.early_stop, config.keep_top, config.ranker, config.max_cost_usd) == (None, None, None, None)


async def test_plain_moa_does_not_route_through_steer(server: SimulatedOpenAIServer) -> None:
    graph = create_moa_graph().compile()
    nodes = []
    async for update in graph.astream(user("q"), context=sim_config(server, ["p1", "p2"], layers=3)):
        nodes += list(update)
    assert "steer" not in nodes and nodes.count("join_layer") == 2


# ---------------------------------------------------------------- early stop


def test_agreement_measure() -> None:
    assert agreement(["Paris", "paris.", "The answer is: Paris"]) == (1.0, "short_answers")
    assert agreement(["Paris", "Lyon", "Paris"])[0] == pytest.approx(2 / 3)
    assert agreement(["Long reasoning, step by step. Answer: 42", "42"]) == (1.0, "short_answers")
    long = "a long answer that explains the reasoning in many more words than a short one"
    assert agreement([long, long]) == (1.0, "similarity")
    assert agreement([long, "something else entirely, with other words and another meaning"])[0] < 0.6


async def test_early_stop_skips_the_remaining_layers(server: SimulatedOpenAIServer) -> None:
    for name in ("p1", "p2", "p3"):
        server.set_behavior(name, ModelBehavior(reply="Paris"))
    graph = create_moa_graph().compile()
    config = sim_config(server, ["p1", "p2", "p3"], layers=4, early_stop=0.9)
    events, state = [], {}
    async for mode, chunk in graph.astream(user("q"), context=config, stream_mode=["custom", "values"]):
        if mode == "custom" and chunk["event"] == "strategy":
            events.append(chunk)
        elif mode == "values":
            state = chunk
    assert server.calls() == 4  # 3 proposers of layer 1 + the aggregator, instead of 10
    assert state["stopped_after"] == 1
    assert state["messages"][-1].content == "agg answer to: q [refs=3]"  # layer 1's references
    (decision,) = state["decisions"]
    assert decision["option"] == "early_stop" and decision["action"] == "skipped_layers"
    assert decision["detail"]["skipped_layers"] == [2, 3] and decision["detail"]["agreement"] == 1.0
    assert "layer 1 agrees 1.00 >= 0.9" in events[0]["reason"]


async def test_early_stop_at_one_fires_when_the_proposals_agree_fully(server: SimulatedOpenAIServer) -> None:
    # the threshold is inclusive: 1.0 means "stop when they agree completely", not "never"
    for name in ("p1", "p2"):
        server.set_behavior(name, ModelBehavior(reply="Paris"))
    config = sim_config(server, ["p1", "p2"], layers=3, early_stop=1.0)
    state = await create_moa_graph().compile().ainvoke(user("q"), context=config)
    assert state["stopped_after"] == 1 and server.calls() == 3  # layer 1 and the aggregator
    assert state["decisions"][0]["detail"]["agreement"] == 1.0


async def test_no_early_stop_when_proposals_disagree(server: SimulatedOpenAIServer) -> None:
    graph = create_moa_graph().compile()
    replies = {"p1": "Paris", "p2": "Lyon", "p3": "Nice"}
    for name, reply in replies.items():
        server.set_behavior(name, ModelBehavior(reply=reply))
    state = await graph.ainvoke(user("q"), context=sim_config(server, list(replies), layers=4, early_stop=0.9))
    assert server.calls() == 10 and state["stopped_after"] is None
    assert [d["action"] for d in state["decisions"]] == ["continued", "continued"]


# ---------------------------------------------------------------- keep_top


def test_rule_ranks_consensus_first_and_near_duplicates_last() -> None:
    a = "The capital of France is Paris, a city on the Seine."
    texts = [a, a + " ", "The capital of France is Paris.", "Bananas are yellow fruit grown in the tropics."]
    order = rank_by_rule(texts)
    assert order[:2] == [0, 2]  # the most agreed-upon answer, then the next distinct one
    assert order[-1] == 1 or order[-2] == 1  # the near-duplicate of 0 comes after the distinct ones
    assert order.index(3) > order.index(2)  # the outlier after the agreeing answer


def test_parse_ranking() -> None:
    assert parse_ranking("3, 1, 2", 3, 2) == [2, 0, 1]
    assert parse_ranking("Best: [2]. Then 2 again, 9 and 1.", 3, 2) == [1, 0, 2]
    assert parse_ranking("I like them all", 3, 2) is None
    assert parse_ranking("2", 3, 2) is None


async def test_keep_top_by_rule_cuts_the_aggregators_references(server: SimulatedOpenAIServer) -> None:
    replies = {
        "p1": "Paris is the capital of France.",
        "p2": "Paris is the capital of France.",
        "p3": "The capital of France is Paris.",
        "p4": "I do not know anything about geography at all.",
    }
    for name, reply in replies.items():
        server.set_behavior(name, ModelBehavior(reply=reply))
    graph = create_moa_graph().compile()
    state = await graph.ainvoke(user("q"), context=sim_config(server, list(replies), keep_top=2))
    assert state["messages"][-1].content == "agg answer to: q [refs=2]"
    assert [p["model"] for p in state["proposals"]] == ["openai:p1", "openai:p3"]
    assert sorted(p["model"] for p in state["dropped"]) == ["openai:p2", "openai:p4"]
    (decision,) = state["decisions"]
    assert decision["detail"]["method"] == "rule" and decision["detail"]["kept_slots"] == [0, 2]


async def test_keep_top_with_a_ranker(server: SimulatedOpenAIServer) -> None:
    server.set_behavior("judge", ModelBehavior(reply="3, 1, 2"))
    graph = create_moa_graph().compile()
    config = sim_config(server, ["p1", "p2", "p3"], keep_top=2, ranker="openai:judge")
    state = await graph.ainvoke(user("q"), context=config)
    assert [p["model"] for p in state["proposals"]] == ["openai:p1", "openai:p3"]  # kept, in proposer order
    assert state["decisions"][0]["detail"]["method"] == "ranker"
    assert state["decisions"][0]["detail"]["ranking_slots"] == [2, 0, 1]
    judge_prompt = server.requests_for("judge")[0]["messages"][-1]["content"]
    assert "[1]\np1 answer to: q" in judge_prompt and "[3]\np3 answer to: q" in judge_prompt
    assert [r["role"] for r in state["usage"]].count("ranker") == 1


@pytest.mark.parametrize(
    ("behavior", "why"),
    [
        (ModelBehavior(reply="They are all wonderful."), "named fewer than 2 of the 3 candidates"),
        (ModelBehavior(faults=[Fault(400, message="no such model")]), "ranker openai:judge failed"),
    ],
)
async def test_a_ranker_without_a_ranking_falls_back_to_the_rule(
    server: SimulatedOpenAIServer, behavior: ModelBehavior, why: str
) -> None:
    server.set_behavior("judge", behavior)
    graph = create_moa_graph().compile()
    config = sim_config(server, ["p1", "p2", "p3"], keep_top=2, ranker="openai:judge")
    state = await graph.ainvoke(user("q"), context=config)
    assert state["messages"][-1].content == "agg answer to: q [refs=2]"
    decision = state["decisions"][0]
    assert decision["detail"]["method"] == "rule_fallback" and why in decision["reason"]


# ---------------------------------------------------------------- budget


def priced(*models: str) -> dict:
    # $0.001 per completion token (the simulated server counts words as tokens)
    return {f"openai:{m}": {"input": 0, "output": 1000} for m in models}


async def test_budget_skips_the_layer_it_cannot_pay_for(server: SimulatedOpenAIServer) -> None:
    graph = create_moa_graph().compile()
    # each answer is 5 words; before any call a proposer is estimated at max_tokens=10
    config = sim_config(server, ["p1", "p2", "p3"], layers=4, max_tokens=10, prices=priced("p1", "p2", "p3"))
    state = await graph.ainvoke(user("q"), context=config.model_copy(update={"max_cost_usd": 0.04}))
    # layer 1: 0 + 3 x 10 x $0.001 = $0.03 fits; layer 2: $0.015 spent + $0.015 fits;
    # layer 3: $0.03 spent + $0.015 = $0.045 > $0.04: skipped
    assert server.calls() == 7 and state["stopped_after"] == 2
    assert [d["action"] for d in state["decisions"]] == ["continued", "continued", "skipped_layers"]
    assert state["decisions"][-1]["detail"]["skipped_layers"] == [3]
    assert state["usage_summary"]["cost_usd"] <= 0.04
    assert state["messages"][-1].content == "agg answer to: q [refs=3]"


async def test_the_budget_does_not_count_cached_replays_as_spent(server: SimulatedOpenAIServer) -> None:
    graph = create_moa_graph().compile(cache=InMemoryCache())
    config = sim_config(server, ["p1", "p2"], layers=3, seed=7, max_tokens=10, prices=priced("p1", "p2"))
    first = await graph.ainvoke(user("q"), context=config.model_copy(update={"max_cost_usd": 1.0}))
    assert [d["detail"]["spent_usd"] for d in first["decisions"]] == [0.0, 0.01]  # layer 1's two 5-word answers
    second = await graph.ainvoke(user("q"), context=config.model_copy(update={"max_cost_usd": 1.0}))
    assert server.calls("p1") == server.calls("p2") == 2  # every proposal of the second run is a replay
    assert [d["detail"]["spent_usd"] for d in second["decisions"]] == [0.0, 0.0]  # replays cost nothing
    assert second["usage_summary"]["cost_usd"] == 0.0


async def test_budget_that_cannot_pay_for_the_aggregator_fails_before_any_call(
    server: SimulatedOpenAIServer,
) -> None:
    graph = create_moa_graph().compile()
    config = sim_config(server, ["p1"], max_tokens=10, prices=priced("agg"), max_cost_usd=0.005)
    with pytest.raises(ConfigError, match="max_cost_usd=0.005 cannot pay for the aggregator alone"):
        await graph.ainvoke(user("q"), context=config)
    assert server.calls() == 0


async def test_budget_for_the_aggregator_only(server: SimulatedOpenAIServer) -> None:
    graph = create_moa_graph().compile()
    config = sim_config(server, ["p1"], max_tokens=10, prices=priced("p1", "agg"), max_cost_usd=0.015)
    state = await graph.ainvoke(user("q"), context=config)
    assert server.calls() == 1 and state["stopped_after"] == 0
    assert state["messages"][-1].content == "agg answer to: q [refs=0]"


def test_steer_runs_under_invoke_too(server: SimulatedOpenAIServer) -> None:
    server.set_behavior("judge", ModelBehavior(reply="2, 1"))
    for name in ("p1", "p2", "p3"):
        server.set_behavior(name, ModelBehavior(reply="Paris"))
    graph = create_moa_graph().compile()
    config = sim_config(server, ["p1", "p2", "p3"], layers=3, early_stop=0.9, keep_top=2, ranker="openai:judge")
    state = graph.invoke(user("q"), context=config)
    assert server.calls() == 5  # 3 proposers, the ranker, the aggregator; layer 2 skipped
    assert [d["option"] for d in state["decisions"]] == ["keep_top", "early_stop"]
    assert state["decisions"][0]["detail"]["kept_slots"] == [0, 1]
    assert state["messages"][-1].content == "agg answer to: q [refs=2]"


def test_the_prompt_estimate_counts_tool_calls_and_their_results() -> None:
    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

    from langgraph_moa.budget import CostEstimator

    config = MoAConfig(proposers=["openai:a"], aggregator="openai:b")
    question = [HumanMessage("How many people live in Paris?")]
    call = {"name": "lookup_population", "args": {"city": "Paris " * 100}, "id": "c1"}
    with_tools = [*question, AIMessage("", tool_calls=[call]), ToolMessage("2,102,650", tool_call_id="c1")]
    grown = CostEstimator(config, with_tools, []).prompt - CostEstimator(config, question, []).prompt
    assert grown > 600 / 4  # the 600 characters of arguments count, though the AI message has no text


def test_the_estimate_is_calibrated_by_the_turns_reported_tokens() -> None:
    from langchain_core.messages import HumanMessage

    from langgraph_moa.budget import CostEstimator
    from langgraph_moa.state import Proposal, UsageRecord

    config = MoAConfig(proposers=["openai:a"], aggregator="openai:b", prices=priced("a", "b"))
    text = "x" * 400  # 100 estimated tokens
    proposal = Proposal(layer=1, slot=0, model="openai:a", content=text)
    usage = UsageRecord(
        layer=1, slot=0, model="openai:a", role="proposer", input_tokens=5, output_tokens=50, reported=True
    )
    before = CostEstimator(config, [HumanMessage("q")], [])
    after = CostEstimator(config, [HumanMessage("q")], [usage], [proposal])
    assert before.scale == 1.0 and after.scale == 0.5
    assert after.tokens_of(text) == 50 and before.completion(config.aggregator) == 512
    assert after.completion(config.aggregator) == 50  # the turn's mean completion


# ---------------------------------------------------------------- Self-MoA-Seq


async def test_aggregation_window_carries_the_synthesis_forward(server: SimulatedOpenAIServer) -> None:
    graph = create_moa_graph().compile()
    config = sim_config(server, ["p1", "p2", "p3", "p4", "p5"], aggregation_window=3)
    tokens, state = [], {}
    async for mode, chunk in graph.astream(user("q"), context=config, stream_mode=["messages", "values"]):
        if mode == "messages" and chunk[1].get("langgraph_node") == "aggregate":
            tokens.append(chunk[0].content)
        elif mode == "values":
            state = chunk
    first, last = (r["messages"][0]["content"] for r in server.requests_for("agg"))
    assert "1. p1 answer to: q" in first and "3. p3 answer to: q" in first and "p4" not in first
    # the last pass: the first pass's synthesis as reference 1, then the two references left
    assert "1. agg answer to: q [refs=3]" in last and "2. p4 answer" in last and "3. p5 answer" in last
    assert state["messages"][-1].content == "agg answer to: q [refs=3]"
    assert "".join(tokens) == "agg answer to: q [refs=3]"  # only the last pass streams
    aggregator = [(r["slot"], r["output_tokens"] > 0) for r in state["usage"] if r["role"] == "aggregator"]
    assert aggregator == [(1, True), (0, True)]
    (decision,) = state["decisions"]
    assert decision["option"] == "aggregation_window" and decision["detail"]["passes"] == 2


async def test_aggregation_window_of_two_and_a_window_that_fits(server: SimulatedOpenAIServer) -> None:
    graph = create_moa_graph().compile()
    four = ["p1", "p2", "p3", "p4"]
    state = await graph.ainvoke(user("q"), context=sim_config(server, four, aggregation_window=2))
    assert server.calls("agg") == 3  # [p1 p2], [s1 p3], [s2 p4]
    assert state["decisions"][0]["detail"] == {"references": 4, "passes": 3, "window": 2}
    server.reset()
    state = await graph.ainvoke(user("q"), context=sim_config(server, four, aggregation_window=4))
    assert server.calls("agg") == 1 and state["decisions"] == []


def test_the_budget_counts_every_aggregation_pass() -> None:
    from langchain_core.messages import HumanMessage

    from langgraph_moa.budget import CostEstimator

    plain = MoAConfig(proposers=["openai:a"], aggregator="openai:b", prices=priced("b"), max_tokens=10)
    windowed = plain.model_copy(update={"aggregation_window": 2})
    one = CostEstimator(plain, [HumanMessage("q")], []).aggregation([5, 5, 5, 5])
    passes = CostEstimator(windowed, [HumanMessage("q")], []).aggregation([5, 5, 5, 5])
    assert one == pytest.approx(10 * 0.001)  # one call: 10 completion tokens at $0.001
    assert passes == pytest.approx(3 * 10 * 0.001)  # [a b], [s c], [s d]: three calls
