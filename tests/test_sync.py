"""The graph's sync path: ``invoke`` and ``stream`` run every node, with fakes and over HTTP."""

from __future__ import annotations

from langchain_core.messages import AIMessageChunk

from langgraph_moa import MoAConfig, create_moa_graph
from langgraph_moa.stream import is_aggregator_token
from langgraph_moa.testing import ModelBehavior, SimulatedOpenAIServer
from tests.conftest import answer_once_all_arrived, sim_config, user
from tests.fakes import EchoModel


def _fakes() -> tuple[dict[str, EchoModel], MoAConfig]:
    models = {f"fake:{n}": EchoModel(name=n) for n in ("a", "b", "agg")}
    return models, MoAConfig(proposers=["fake:a", "fake:b"], aggregator="fake:agg", layers=3)


def test_invoke_runs_every_layer_with_fake_models() -> None:
    models, config = _fakes()
    state = create_moa_graph(models=models).compile().invoke(user("hi"), context=config)
    assert state["messages"][-1].text == "agg: hi (2 refs)"
    assert [(p["layer"], p["content"]) for p in state["proposals"]] == [
        (1, "a: hi (0 refs)"),
        (1, "b: hi (0 refs)"),
        (2, "a: hi (2 refs)"),
        (2, "b: hi (2 refs)"),
    ]
    assert len(models["fake:a"].prompts) == 2 and len(models["fake:agg"].prompts) == 1


def test_stream_yields_aggregator_tokens_and_progress_with_fake_models() -> None:
    models, config = _fakes()
    graph = create_moa_graph(models=models).compile()
    tokens, events = [], []
    for mode, data in graph.stream(user("hi"), context=config, stream_mode=["messages", "custom"]):
        if mode == "custom":
            events.append(data["event"])
        else:
            token, metadata = data
            assert is_aggregator_token(metadata)  # the proposers stay off the token stream
            tokens.append(token.text)
    assert "".join(tokens).strip() == "agg: hi (2 refs)"
    assert events[0] == "run_started" and events[-1] == "aggregator_started"
    assert events.count("proposer_done") == 4 and events.count("layer_done") == 2


def test_invoke_and_stream_over_http(server: SimulatedOpenAIServer) -> None:
    graph = create_moa_graph().compile()
    state = graph.invoke(user("What is MoA?"), context=sim_config(server, ["p1", "p2"]))
    assert state["messages"][-1].text == "agg answer to: What is MoA? [refs=2]"
    assert server.calls() == 3 and all(r["reported"] for r in state["usage"])
    server.reset()
    chunks = [
        data[0]
        for mode, data in graph.stream(
            user("q"), context=sim_config(server, ["p1"]), stream_mode=["messages", "custom"]
        )
        if mode == "messages"
    ]
    assert all(isinstance(c, AIMessageChunk) for c in chunks) and len(chunks) > 2
    assert "".join(c.text for c in chunks) == "agg answer to: q [refs=1]"
    assert server.requests_for("agg")[0]["stream"] is True and not server.requests_for("p1")[0].get("stream")


def test_sync_proposers_run_in_parallel(server: SimulatedOpenAIServer) -> None:
    names = [f"p{i}" for i in range(4)]
    for name in names:
        server.set_behavior(name, ModelBehavior(reply=answer_once_all_arrived(server, 4)))
    create_moa_graph().compile().invoke(user("q"), context=sim_config(server, names))
    assert server.max_concurrency == 4  # all four were in flight at once
