"""Staircase streaming (MoAConfig.staircase) over HTTP, on the simulated server.

Ordering is read from the order of the graph's stream events, never from clocks.
"""

from __future__ import annotations

import asyncio
from typing import Any

import openai
import pytest
from langgraph.checkpoint.memory import InMemorySaver
from pydantic import ValidationError

from langgraph_moa import ChatMoA, MoAConfig, create_moa_graph
from langgraph_moa.errors import AggregatorError, LayerFailedError
from langgraph_moa.pricing import ModelPrice
from langgraph_moa.serve.app import ServeSettings, create_app
from langgraph_moa.staircase import CONTINUE_INSTRUCTION, PARTIAL_MARK, piece_size
from langgraph_moa.stream import is_aggregator_token
from langgraph_moa.testing import Fault, ModelBehavior, SimulatedOpenAIServer, continuing
from tests.conftest import running, user

PROPOSERS = ["p0", "p1", "p2"]
ANSWER = " ".join(f"a{i}" for i in range(60))


def words(prefix: str, n: int) -> str:
    return " ".join(f"{prefix}{i}" for i in range(n))


def setup(server: SimulatedOpenAIServer, **proposer: Any) -> None:
    """Proposers streaming 20 words in about 0.6 s; an aggregator writing ANSWER in parts, in at least 1.2 s.

    So the proposals end while the answer is being written.
    """
    for name in PROPOSERS:
        behavior = {"latency": 0.02, "chunk_delay": 0.03, "reply": words(f"{name}w", 20), **proposer.get(name, {})}
        server.set_behavior(name, ModelBehavior(**behavior))
    agg = ModelBehavior(latency=0.01, chunk_delay=0.02, reply=continuing(ANSWER), honour_max_tokens=True)
    server.set_behavior("agg", agg)


def config(server: SimulatedOpenAIServer, **kw: Any) -> MoAConfig:
    fields: dict[str, Any] = {"staircase": True, "staircase_piece_tokens": 4, **kw}
    return MoAConfig(
        proposers=[f"openai:{p}" for p in PROPOSERS],
        aggregator="openai:agg",
        base_url=server.base_url,
        max_retries=0,
        **fields,
    )


async def run(graph: Any, cfg: MoAConfig, thread: dict | None = None, inputs: Any = None) -> tuple[list, str, dict]:
    """(events in stream order, the answer's streamed text, the final state)."""
    events: list[tuple[str, Any]] = []
    tokens: list[str] = []
    state: dict = {}
    async for mode, chunk in graph.astream(
        user("q") if inputs is None else inputs, thread, context=cfg, stream_mode=["custom", "messages", "values"]
    ):
        if mode == "custom":
            events.append(("custom", chunk))
        elif mode == "messages":
            if is_aggregator_token(chunk[1]) and chunk[0].text:
                events.append(("token", chunk[0].text))
                tokens.append(chunk[0].text)
        else:
            state = chunk
    return events, "".join(tokens), state


def first_token_index(events: list) -> int:
    return next(i for i, (kind, _) in enumerate(events) if kind == "token")


def last_proposer_done_index(events: list) -> int:
    return max(i for i, (kind, e) in enumerate(events) if kind == "custom" and e["event"] == "proposer_done")


async def test_the_answer_starts_before_the_last_proposer_finishes(server: SimulatedOpenAIServer) -> None:
    setup(server)
    graph = create_moa_graph().compile()
    events, streamed, state = await run(graph, config(server))
    assert first_token_index(events) < last_proposer_done_index(events)
    assert streamed == state["messages"][-1].content == ANSWER
    # plain MoA, same upstream: the answer's first token comes after every proposer is done
    plain_events, plain_streamed, _ = await run(graph, config(server, staircase=False))
    assert first_token_index(plain_events) > last_proposer_done_index(plain_events)
    assert plain_streamed == ANSWER


async def test_each_piece_records_the_proposal_prefixes_it_was_built_from(server: SimulatedOpenAIServer) -> None:
    setup(server)
    graph = create_moa_graph().compile()
    events, _, state = await run(graph, config(server))
    record = state["staircase"]
    pieces = record["pieces"]
    assert len(pieces) >= 3 and server.calls("agg") == len(pieces)
    assert "".join(p["text"] for p in pieces) == ANSWER
    # the first piece saw a first chunk of every proposal, none complete
    assert [(b["slot"], b["complete"]) for b in pieces[0]["built_from"]] == [(0, False), (1, False), (2, False)]
    assert all(b["chunks"] >= 1 for b in pieces[0]["built_from"])
    # prefixes only grow; the last piece was written from the complete proposals
    for earlier, later in zip(pieces, pieces[1:], strict=False):
        for a, b in zip(earlier["built_from"], later["built_from"], strict=True):
            assert b["chars"] >= a["chars"] and b["chunks"] >= a["chunks"]
    assert pieces[-1]["final"] and not any(p["final"] for p in pieces[:-1])
    full = len(words("p0w", 20))
    assert [(b["chars"], b["complete"]) for b in pieces[-1]["built_from"]] == [(full, True)] * 3
    # non-final pieces have the piece size; answer_chars says where each piece starts
    assert [p["finish_reason"] for p in pieces[:-1]] == ["length"] * (len(pieces) - 1)
    assert all(p["output_tokens"] == piece_size(config(server), 1) for p in pieces[:-1])
    assert [p["answer_chars"] for p in pieces] == [
        len("".join(q["text"] for q in pieces[:i])) for i in range(len(pieces))
    ]
    # the same records on the custom stream, in order
    assert [e for kind, e in events if kind == "custom" and e["event"] == "staircase_piece"] == [
        {"event": "staircase_piece", **p} for p in pieces
    ]
    assert [p["content"] for p in state["proposals"]] == [words(f"{n}w", 20) for n in PROPOSERS]
    assert [s["status"] for s in record["proposers"]] == ["complete"] * 3


async def test_pieces_continue_the_answer_so_far_and_mark_unfinished_references(
    server: SimulatedOpenAIServer,
) -> None:
    setup(server)
    graph = create_moa_graph().compile()
    _, _, state = await run(graph, config(server))
    requests = server.requests_for("agg")
    pieces = state["staircase"]["pieces"]
    first, second, last = requests[0], requests[1], requests[-1]
    assert first["messages"][-1] == {"role": "user", "content": "q"}
    assert first["messages"][0]["content"].count(PARTIAL_MARK) == 3  # every reference still being written
    assert first["max_tokens"] == 4
    # prompt mode: the answer so far as an assistant turn, then the instruction to continue it
    assert second["messages"][-2:] == [
        {"role": "assistant", "content": pieces[0]["text"]},
        {"role": "user", "content": CONTINUE_INSTRUCTION},
    ]
    assert PARTIAL_MARK not in last["messages"][0]["content"]  # the final piece reads complete proposals
    assert last["messages"][-2]["content"] == "".join(p["text"] for p in pieces[:-1])


@pytest.mark.parametrize("mode", ["prefill", "vllm"])
async def test_prefill_continues_a_trailing_assistant_turn(server: SimulatedOpenAIServer, mode: str) -> None:
    setup(server)
    graph = create_moa_graph().compile()
    _, streamed, state = await run(graph, config(server, staircase_continuation=mode))
    assert streamed == ANSWER
    second = server.requests_for("agg")[1]
    assert second["messages"][-1] == {"role": "assistant", "content": state["staircase"]["pieces"][0]["text"]}
    vllm = {"continue_final_message": True, "add_generation_prompt": False}
    assert ({k: second.get(k) for k in vllm} == vllm) is (mode == "vllm")
    assert second["max_tokens"] == 4  # the piece's size survives vLLM's extra body


async def test_a_proposer_failing_mid_stream_is_dropped_from_later_pieces(server: SimulatedOpenAIServer) -> None:
    setup(server, p1={"drop_after": 6})
    graph = create_moa_graph().compile()
    events, streamed, state = await run(graph, config(server))
    assert streamed == ANSWER
    pieces = state["staircase"]["pieces"]
    slots = [[b["slot"] for b in p["built_from"]] for p in pieces]
    assert 1 in slots[0]  # read while it was streaming
    dropped_at = next(i for i, s in enumerate(slots) if 1 not in s)
    assert all(1 not in s for s in slots[dropped_at:])  # never read again
    assert slots[-1] == [0, 2]
    [failure] = state["failures"]
    assert failure["slot"] == 1 and failure["layer"] == 1 and "after streaming" in failure["message"]
    assert [p["slot"] for p in state["proposals"]] == [0, 2]
    assert [s["status"] for s in state["staircase"]["proposers"]] == ["complete", "failed", "complete"]
    assert state["staircase"]["proposers"][1]["text"]  # what it had streamed is kept
    assert any(kind == "custom" and e["event"] == "proposer_failed" and e["slot"] == 1 for kind, e in events)


async def test_an_answer_that_ends_first_cancels_the_proposers_still_writing(server: SimulatedOpenAIServer) -> None:
    setup(server, p0={"chunk_delay": 0.3}, p1={"chunk_delay": 0.3}, p2={"chunk_delay": 0.3})
    server.set_behavior("agg", ModelBehavior(reply=continuing("short answer"), honour_max_tokens=True))
    graph = create_moa_graph().compile()
    events, streamed, state = await run(graph, config(server))
    assert streamed == state["messages"][-1].content == "short answer"
    [piece] = state["staircase"]["pieces"]
    assert piece["finish_reason"] == "stop" and not piece["final"]
    streams = state["staircase"]["proposers"]
    assert [s["status"] for s in streams] == ["cancelled"] * 3
    assert all(s["text"] and s["chars"] == len(s["text"]) for s in streams)
    assert state["proposals"] == [] and state["failures"] == []
    assert not any(kind == "custom" and e["event"] == "proposer_done" for kind, e in events)


async def test_too_few_proposals_left_stops_the_run(server: SimulatedOpenAIServer) -> None:
    setup(server, p1={"drop_after": 3})
    graph = create_moa_graph().compile()
    with pytest.raises(LayerFailedError, match="min_proposals=3"):
        await run(graph, config(server, min_proposals=3))


async def test_a_straggler_is_cut_and_the_final_piece_follows(server: SimulatedOpenAIServer) -> None:
    setup(server, p2={"chunk_delay": 0.5})
    graph = create_moa_graph().compile()
    events, streamed, state = await run(graph, config(server, min_proposals=2, straggler_timeout=0.05))
    assert streamed == ANSWER
    [failure] = state["failures"]
    assert failure["slot"] == 2 and failure["error_type"] == "StragglerTimeout"
    assert [b["slot"] for b in state["staircase"]["pieces"][-1]["built_from"]] == [0, 1]
    names = [e["event"] for kind, e in events if kind == "custom"]
    assert names.index("quorum_reached") < names.index("proposer_failed")


async def test_every_piece_is_counted_and_priced(server: SimulatedOpenAIServer) -> None:
    setup(server)
    graph = create_moa_graph().compile()
    price = ModelPrice(input=1.0, output=2.0)
    prices = {f"openai:{m}": price for m in [*PROPOSERS, "agg"]}
    _, _, state = await run(graph, config(server, prices=prices))
    pieces = state["staircase"]["pieces"]
    records = [r for r in state["usage"] if r["role"] == "aggregator"]
    assert [r["slot"] for r in records] == [p["piece"] for p in pieces]
    # each piece's prompt tokens are what the server counted for that request (it counts words)
    counted = [sum(len(str(m["content"]).split()) for m in r["messages"]) for r in server.requests_for("agg")]
    assert [r["input_tokens"] for r in records] == [p["input_tokens"] for p in pieces] == counted
    assert state["staircase"]["reread_input_tokens"] == sum(counted[:-1]) > 0
    proposer_records = [r for r in state["usage"] if r["role"] == "proposer"]
    assert [r["output_tokens"] for r in proposer_records] == [20, 20, 20]
    summary = state["usage_summary"]
    total_in = sum(r["input_tokens"] for r in state["usage"])
    total_out = sum(r["output_tokens"] for r in state["usage"])
    assert summary["total"]["input_tokens"] == total_in and summary["total"]["output_tokens"] == total_out
    assert summary["cost_usd"] == pytest.approx((total_in * 1.0 + total_out * 2.0) / 1e6)
    assert state["messages"][-1].usage_metadata["input_tokens"] == sum(counted)


async def test_with_three_layers_the_staircase_is_the_last_layer(server: SimulatedOpenAIServer) -> None:
    setup(server)
    graph = create_moa_graph().compile()
    cfg = config(server, layers=3)
    _, streamed, state = await run(graph, cfg)
    assert streamed == ANSWER
    assert [(p["layer"], p["slot"]) for p in state["proposals"]] == [(1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2)]
    assert state["staircase"]["layer"] == 2
    assert server.calls("p0") == 2  # layer 1 (plain) and layer 2 (streamed)
    layer_two = [r for r in server.requests_for("p0") if r.get("stream")]
    assert len(layer_two) == 1 and layer_two[0]["messages"][0]["content"].count("\n1. ") == 1


async def test_resume_after_a_failed_piece_does_not_repeat_earlier_layers(server: SimulatedOpenAIServer) -> None:
    setup(server)
    server.set_behavior("agg", ModelBehavior(faults=[Fault(400, times=1)]))
    graph = create_moa_graph().compile(checkpointer=InMemorySaver())
    thread = {"configurable": {"thread_id": "t"}}
    cfg = config(server, layers=3)
    with pytest.raises(AggregatorError, match="piece 1"):
        await graph.ainvoke(user("q"), thread, context=cfg)
    assert server.calls("p0") == 2
    setup(server)
    state = await graph.ainvoke(None, thread, context=cfg)
    assert state["messages"][-1].content == ANSWER
    assert server.calls("p0") == 3  # layer 1 kept; the staircase layer's call made again
    assert [(p["layer"], p["slot"]) for p in state["proposals"]] == [(1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2)]


async def test_cancelling_the_run_closes_every_request(server: SimulatedOpenAIServer) -> None:
    setup(server, p0={"chunk_delay": 0.2}, p1={"chunk_delay": 0.2}, p2={"chunk_delay": 0.2})
    server.set_behavior("agg", ModelBehavior(reply=words("a", 50), chunk_delay=0.2, honour_max_tokens=True))
    graph = create_moa_graph().compile()
    started = asyncio.Event()

    async def consume() -> None:
        async for _mode, chunk in graph.astream(user("q"), context=config(server), stream_mode=["messages"]):
            if is_aggregator_token(chunk[1]) and chunk[0].text:
                started.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(started.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(100):  # the server notices closed connections while it waits between chunks
        if server.in_flight == 0:
            break
        await asyncio.sleep(0.05)
    assert server.in_flight == 0
    assert server.abandoned("agg") == 1 and all(server.abandoned(p) == 1 for p in PROPOSERS)


def test_a_sync_run_streams_the_same_answer(server: SimulatedOpenAIServer) -> None:
    setup(server)
    graph = create_moa_graph().compile()
    state = graph.invoke(user("q"), context=config(server))
    assert state["messages"][-1].content == ANSWER
    assert len(state["staircase"]["pieces"]) == server.calls("agg") >= 2


def test_the_drawn_graph_reaches_the_staircase_node_after_any_layer() -> None:
    edges = {(e.source, e.target) for e in create_moa_graph().compile().get_graph().edges}
    assert {("prepare", "staircase"), ("join_layer", "staircase"), ("steer", "staircase")} <= edges
    assert ("staircase", "__end__") in edges


def test_staircase_is_off_by_default_and_refuses_what_needs_complete_proposals() -> None:
    assert MoAConfig().staircase is False
    with pytest.raises(ValidationError, match="layers to 2"):
        MoAConfig(layers=1, staircase=True)
    for clash in ({"review": True}, {"keep_top": 1}, {"aggregation_window": 2}, {"provisional_answers": True}):
        name = next(iter(clash))
        with pytest.raises(ValidationError, match=f"staircase=True cannot be combined with {name}"):
            MoAConfig(staircase=True, **clash)
    with pytest.raises(ValidationError, match="staircase_continuation"):
        MoAConfig(staircase=True, staircase_continuation="guess")
    with pytest.raises(ValidationError, match="staircase_growth"):
        MoAConfig(staircase=True, staircase_growth=0.5)
    assert [piece_size(MoAConfig(staircase_piece_tokens=10, staircase_growth=2), k) for k in (1, 2, 3)] == [10, 20, 40]


async def test_chat_moa_streams_the_staircase_answer(server: SimulatedOpenAIServer) -> None:
    setup(server)
    chunks = [chunk async for chunk in ChatMoA(config=config(server)).astream("q")]
    assert "".join(c.text for c in chunks) == ANSWER
    assert server.calls("agg") >= 3  # the answer came in pieces


def test_the_openai_sdk_reads_the_staircase_answer_from_moa_serve(server: SimulatedOpenAIServer) -> None:
    setup(server)
    settings = ServeSettings(assistants={"stairs": config(server)}, max_tokens=1000)
    with running(create_app(settings, checkpoint=":memory:")) as url:
        with openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=30) as client:
            chunks = list(
                client.chat.completions.create(model="stairs", messages=[{"role": "user", "content": "q"}], stream=True)
            )
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            whole = client.chat.completions.create(model="stairs", messages=[{"role": "user", "content": "q"}])
    assert text == whole.choices[0].message.content == ANSWER
    assert len({c.id for c in chunks}) == 1  # one completion, however many pieces
