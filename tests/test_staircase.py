"""Staircase streaming (MoAConfig.staircase) over HTTP, on the simulated server.

Nothing here races a clock. Each proposer's stream is held at the server after
its first chunk until the test releases it, and each aggregator piece is held
at the server until the test lets it through; the test acts on what the run has
streamed (``staircase_piece_started``, ``proposer_done``, ...). So what every
piece is built from is fixed by the order of the test's releases, however fast
or slow the machine. Ordering is read from the order of the graph's stream
events, never from clocks.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Callable
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
SAFETY = 30.0  # seconds: a safety net for waits that take milliseconds, so a broken run fails instead of hanging


def words(prefix: str, n: int) -> str:
    return " ".join(f"{prefix}{i}" for i in range(n))


FULL = len(words("p0w", 20))  # the characters of a complete proposal
FIRST = len("p0w0")  # the characters of a proposal's first chunk


class Upstream:
    """The proposers and the aggregator on the simulated server, advanced by the test.

    Each proposer streams 20 words, one a chunk, and holds its stream after the
    first chunk until `release` lets it finish. The aggregator writes ANSWER in
    pieces (it honours ``max_tokens`` and continues the answer so far). With
    ``held_pieces``, its k-th request waits at the server until `let_pieces`
    has let k through. With ``release_at=k``, its k-th request releases every
    proposer: for runs the test cannot step through, pieces 1 to k were then
    written from the proposals' first chunks, whatever the machine's speed.
    """

    def __init__(
        self,
        server: SimulatedOpenAIServer,
        *,
        held_pieces: bool = False,
        release_at: int | None = None,
        agg: dict[str, Any] | None = None,
        **proposer: dict[str, Any],
    ) -> None:
        self.holds = {name: threading.Event() for name in PROPOSERS}
        for name in PROPOSERS:
            behavior = {"reply": words(f"{name}w", 20), "hold": self.holds[name], **proposer.get(name, {})}
            server.set_behavior(name, ModelBehavior(**behavior))
        self._continue = continuing(ANSWER)
        self._changed = threading.Condition()
        self._requests = 0
        self._let: float = 0 if held_pieces else math.inf
        self._release_at = release_at
        server.set_behavior("agg", ModelBehavior(**{"reply": self._piece, "honour_max_tokens": True, **(agg or {})}))

    def _piece(self, messages: list[dict]) -> str:
        """The aggregator's reply (on the server's thread): held until this request is let through."""
        with self._changed:
            self._requests += 1
            number = self._requests
            if number == self._release_at:
                self.release()
            self._changed.wait_for(lambda: self._let >= number, SAFETY)
        return self._continue(messages)

    def release(self, *names: str) -> None:
        """Let these proposers (all if none is named) stream the rest of their proposals."""
        for name in names or PROPOSERS:
            self.holds[name].set()

    def let_pieces(self, count: float) -> None:
        """Let the aggregator's first ``count`` requests be answered (``math.inf``: all of them)."""
        with self._changed:
            self._let = max(self._let, count)
            self._changed.notify_all()


def config(server: SimulatedOpenAIServer, **kw: Any) -> MoAConfig:
    # a broken run that waits for a held stream fails at the SAFETY timeout instead of the default 120 s
    fields: dict[str, Any] = {"staircase": True, "staircase_piece_tokens": 4, "timeout": SAFETY, **kw}
    return MoAConfig(
        proposers=[f"openai:{p}" for p in PROPOSERS],
        aggregator="openai:agg",
        base_url=server.base_url,
        max_retries=0,
        **fields,
    )


class Run:
    """A graph run streamed in the background (``graph.astream``, or ``graph.stream`` on a thread).

    It asks ``"q"`` (``resume``: resumes ``thread`` instead).

    ``events`` are ``("custom", event)`` and ``("token", text)`` in stream order;
    `until` waits for what the run has streamed so far to satisfy a condition.
    """

    def __init__(
        self, graph: Any, cfg: MoAConfig, thread: dict | None = None, resume: bool = False, sync: bool = False
    ) -> None:
        self.events: list[tuple[str, Any]] = []
        self.tokens: list[str] = []
        self.state: dict = {}
        self._changed = asyncio.Event()
        args = (None if resume else user("q"), thread)
        kwargs = {"context": cfg, "stream_mode": ["custom", "messages", "values"]}
        self._task = asyncio.create_task(
            self._pump(graph, args, kwargs) if sync else self._consume(graph, args, kwargs)
        )

    def _add(self, mode: str, chunk: Any) -> None:
        if mode == "custom":
            self.events.append(("custom", chunk))
        elif mode == "messages":
            if is_aggregator_token(chunk[1]) and chunk[0].text:
                self.events.append(("token", chunk[0].text))
                self.tokens.append(chunk[0].text)
        else:
            self.state = chunk
        self._changed.set()

    async def _consume(self, graph: Any, args: tuple, kwargs: dict) -> None:
        try:
            async for mode, chunk in graph.astream(*args, **kwargs):
                self._add(mode, chunk)
        finally:
            self._changed.set()

    async def _pump(self, graph: Any, args: tuple, kwargs: dict) -> None:
        loop = asyncio.get_running_loop()

        def iterate() -> None:
            for mode, chunk in graph.stream(*args, **kwargs):
                loop.call_soon_threadsafe(self._add, mode, chunk)

        try:
            await asyncio.to_thread(iterate)
        finally:
            self._changed.set()

    def custom(self, name: str) -> list[dict]:
        return [e for kind, e in self.events if kind == "custom" and e["event"] == name]

    def started(self, piece: int) -> bool:
        """Piece ``piece`` has been asked for: what it is built from is fixed."""
        return any(e["piece"] == piece for e in self.custom("staircase_piece_started"))

    def ended(self, *slots: int) -> bool:
        """These streaming proposers (all if none is named) have ended, complete or failed.

        Only the staircase layer's proposers count: the layers before it report the same slots.
        """
        started = [e["layer"] for e in self.custom("staircase_started")]
        ends = self.custom("proposer_done") + self.custom("proposer_failed")
        done = {e["slot"] for e in ends if started and e["layer"] == started[0]}
        return set(slots or range(len(PROPOSERS))) <= done

    async def until(self, ready: Callable[[], bool]) -> None:
        """Wait until ``ready()``; fail (stopping the run) if the run ends or SAFETY seconds pass first."""
        try:
            async with asyncio.timeout(SAFETY):
                while not ready():
                    if self._task.done():
                        self._task.result()  # the run's error, if it failed
                        raise AssertionError(f"the run ended before the condition held: {self.custom_names()}")
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            self._task.cancel()
            raise AssertionError(f"the condition did not hold within {SAFETY} s: {self.custom_names()}") from None

    async def result(self) -> tuple[list, str, dict]:
        """(events in stream order, the answer's streamed text, the final state)."""
        try:
            async with asyncio.timeout(SAFETY):
                await asyncio.shield(self._task)
        except TimeoutError:
            self._task.cancel()
            raise AssertionError(f"the run did not end within {SAFETY} s: {self.custom_names()}") from None
        return self.events, "".join(self.tokens), self.state

    def custom_names(self) -> list[str]:
        return [e["event"] for kind, e in self.events if kind == "custom"]


async def stepped(run: Run, upstream: Upstream) -> tuple[list, str, dict]:
    """Pieces 1 and 2 from every proposal's first chunk, then the last piece from the complete proposals."""
    await run.until(lambda: run.started(1))
    upstream.let_pieces(1)
    await run.until(lambda: run.started(2))  # built from the same first chunks: the proposers are held
    upstream.release()
    await run.until(run.ended)
    upstream.let_pieces(math.inf)  # piece 3 follows piece 2 and reads the complete proposals
    return await run.result()


def first_token_index(events: list) -> int:
    return next(i for i, (kind, _) in enumerate(events) if kind == "token")


def last_proposer_done_index(events: list) -> int:
    return max(i for i, (kind, e) in enumerate(events) if kind == "custom" and e["event"] == "proposer_done")


def prefixes(piece: dict) -> list[tuple[int, int, int, bool]]:
    """(slot, chars, chunks, complete) of each proposal a piece was built from."""
    return [(b["slot"], b["chars"], b["chunks"], b["complete"]) for b in piece["built_from"]]


def first_chunks(*slots: int) -> list[tuple[int, int, int, bool]]:
    return [(slot, FIRST, 1, False) for slot in slots]


def complete(*slots: int) -> list[tuple[int, int, int, bool]]:
    return [(slot, FULL, 20, True) for slot in slots]


async def test_the_answer_starts_before_the_last_proposer_finishes(server: SimulatedOpenAIServer) -> None:
    upstream = Upstream(server, held_pieces=True)
    graph = create_moa_graph().compile()
    run = Run(graph, config(server))
    await run.until(lambda: run.started(1))  # every proposer has streamed one chunk and is held there
    upstream.let_pieces(1)
    await run.until(lambda: any(kind == "token" for kind, _ in run.events) and run.started(2))
    upstream.release()
    await run.until(run.ended)
    upstream.let_pieces(math.inf)
    events, streamed, state = await run.result()
    assert first_token_index(events) < last_proposer_done_index(events)
    assert streamed == state["messages"][-1].content == ANSWER
    # plain MoA, same upstream: the answer's first token comes after every proposer is done
    plain_events, plain_streamed, _ = await Run(graph, config(server, staircase=False)).result()
    assert first_token_index(plain_events) > last_proposer_done_index(plain_events)
    assert plain_streamed == ANSWER


async def test_each_piece_records_the_proposal_prefixes_it_was_built_from(server: SimulatedOpenAIServer) -> None:
    upstream = Upstream(server, held_pieces=True)
    graph = create_moa_graph().compile()
    run = Run(graph, config(server))
    await run.until(lambda: run.started(1))
    upstream.let_pieces(1)
    await run.until(lambda: run.started(2))  # the proposers are still held: the same prefixes
    upstream.release("p0")
    await run.until(lambda: run.ended(0))
    upstream.let_pieces(2)
    await run.until(lambda: run.started(3))  # p0 complete, the others still at their first chunk
    upstream.release()
    await run.until(run.ended)
    upstream.let_pieces(math.inf)  # piece 4 reads the complete proposals and ends the answer
    events, _, state = await run.result()
    record = state["staircase"]
    pieces = record["pieces"]
    assert [prefixes(p) for p in pieces] == [
        first_chunks(0, 1, 2),
        first_chunks(0, 1, 2),
        complete(0) + first_chunks(1, 2),
        complete(0, 1, 2),
    ]
    assert server.calls("agg") == 4
    assert "".join(p["text"] for p in pieces) == ANSWER
    assert [p["final"] for p in pieces] == [False, False, False, True]
    # pieces from partial proposals have the piece size; the final one writes the rest and ends the answer
    size = piece_size(config(server), 1)
    assert [p["finish_reason"] for p in pieces] == ["length", "length", "length", "stop"]
    assert [p["output_tokens"] for p in pieces] == [size, size, size, 60 - 3 * size]
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
    upstream = Upstream(server, held_pieces=True)
    graph = create_moa_graph().compile()
    _, _, state = await stepped(Run(graph, config(server)), upstream)
    first, second, last = server.requests_for("agg")
    pieces = state["staircase"]["pieces"]
    assert first["messages"][-1] == {"role": "user", "content": "q"}
    assert first["messages"][0]["content"].count(PARTIAL_MARK) == 3  # every reference still being written
    assert second["messages"][0]["content"].count(PARTIAL_MARK) == 3
    assert first["max_tokens"] == second["max_tokens"] == 4
    # prompt mode: the answer so far as an assistant turn, then the instruction to continue it
    assert second["messages"][-2:] == [
        {"role": "assistant", "content": pieces[0]["text"]},
        {"role": "user", "content": CONTINUE_INSTRUCTION},
    ]
    assert PARTIAL_MARK not in last["messages"][0]["content"]  # the final piece reads complete proposals
    assert all(words(f"{n}w", 20) in last["messages"][0]["content"] for n in PROPOSERS)
    assert last["messages"][-2]["content"] == "".join(p["text"] for p in pieces[:-1])


@pytest.mark.parametrize("mode", ["prefill", "vllm"])
async def test_prefill_continues_a_trailing_assistant_turn(server: SimulatedOpenAIServer, mode: str) -> None:
    upstream = Upstream(server, held_pieces=True)
    graph = create_moa_graph().compile()
    _, streamed, state = await stepped(Run(graph, config(server, staircase_continuation=mode)), upstream)
    assert streamed == ANSWER
    second = server.requests_for("agg")[1]
    assert second["messages"][-1] == {"role": "assistant", "content": state["staircase"]["pieces"][0]["text"]}
    vllm = {"continue_final_message": True, "add_generation_prompt": False}
    assert ({k: second.get(k) for k in vllm} == vllm) is (mode == "vllm")
    assert second["max_tokens"] == 4  # the piece's size survives vLLM's extra body


async def test_a_proposer_failing_mid_stream_is_dropped_from_later_pieces(server: SimulatedOpenAIServer) -> None:
    upstream = Upstream(server, held_pieces=True, p1={"drop_after": 6})  # p1 streams 6 chunks, then drops
    graph = create_moa_graph().compile()
    run = Run(graph, config(server))
    await run.until(lambda: run.started(1))
    upstream.let_pieces(1)
    await run.until(lambda: run.started(2))
    upstream.release("p1")
    await run.until(lambda: run.ended(1))
    upstream.let_pieces(2)
    await run.until(lambda: run.started(3))  # after the failure, from p0 and p2 only
    upstream.release()
    await run.until(run.ended)
    upstream.let_pieces(math.inf)
    events, streamed, state = await run.result()
    assert streamed == ANSWER
    pieces = state["staircase"]["pieces"]
    # read while it was streaming, never again after it failed
    assert [prefixes(p) for p in pieces] == [
        first_chunks(0, 1, 2),
        first_chunks(0, 1, 2),
        first_chunks(0, 2),
        complete(0, 2),
    ]
    [failure] = state["failures"]
    assert failure["slot"] == 1 and failure["layer"] == 1
    assert f"after streaming {len(words('p1w', 6))} characters" in failure["message"]
    assert [p["slot"] for p in state["proposals"]] == [0, 2]
    assert [s["status"] for s in state["staircase"]["proposers"]] == ["complete", "failed", "complete"]
    assert state["staircase"]["proposers"][1]["text"] == words("p1w", 6)  # what it had streamed is kept
    assert [e["slot"] for kind, e in events if kind == "custom" and e["event"] == "proposer_failed"] == [1]


async def test_an_answer_that_ends_first_cancels_the_proposers_still_writing(server: SimulatedOpenAIServer) -> None:
    # the proposers are never released: held after their first chunk, they are still writing when the answer ends
    Upstream(server, agg={"reply": continuing("short answer")})
    graph = create_moa_graph().compile()
    events, streamed, state = await Run(graph, config(server)).result()
    assert streamed == state["messages"][-1].content == "short answer"
    [piece] = state["staircase"]["pieces"]
    assert piece["finish_reason"] == "stop" and not piece["final"]
    assert prefixes(piece) == first_chunks(0, 1, 2)
    streams = state["staircase"]["proposers"]
    assert [(s["status"], s["text"], s["chars"]) for s in streams] == [
        ("cancelled", f"{n}w0", FIRST) for n in PROPOSERS
    ]
    assert state["proposals"] == [] and state["failures"] == []
    assert not any(kind == "custom" and e["event"] == "proposer_done" for kind, e in events)
    # their requests were closed
    assert server.wait_idle(SAFETY) and all(server.abandoned(p) == 1 for p in PROPOSERS)


async def test_too_few_proposals_left_stops_the_run(server: SimulatedOpenAIServer) -> None:
    upstream = Upstream(server, held_pieces=True, p1={"drop_after": 3})
    graph = create_moa_graph().compile()
    run = Run(graph, config(server, min_proposals=3))
    await run.until(lambda: run.started(1))
    upstream.release("p1")
    await run.until(lambda: run.ended(1))  # p1 failed while piece 1 was being written
    upstream.let_pieces(math.inf)
    with pytest.raises(LayerFailedError, match="min_proposals=3"):
        await run.result()
    assert server.calls("agg") == 1  # no piece was asked for after the failure


async def test_a_straggler_is_cut_and_the_final_piece_follows(server: SimulatedOpenAIServer) -> None:
    upstream = Upstream(server, held_pieces=True)  # p2 is never released: it cannot finish
    graph = create_moa_graph().compile()
    run = Run(graph, config(server, min_proposals=2, straggler_timeout=0.05))
    await run.until(lambda: run.started(1))
    upstream.let_pieces(1)
    await run.until(lambda: run.started(2))
    upstream.release("p0", "p1")
    await run.until(run.ended)  # p2 is cut once p0 and p1 are complete
    upstream.let_pieces(math.inf)
    events, streamed, state = await run.result()
    assert streamed == ANSWER
    [failure] = state["failures"]
    assert failure["slot"] == 2 and failure["error_type"] == "StragglerTimeout"
    assert [prefixes(p) for p in state["staircase"]["pieces"]] == [
        first_chunks(0, 1, 2),
        first_chunks(0, 1, 2),
        complete(0, 1),
    ]
    names = [e["event"] for kind, e in events if kind == "custom"]
    assert names.index("quorum_reached") < names.index("proposer_failed")


async def test_every_piece_is_counted_and_priced(server: SimulatedOpenAIServer) -> None:
    upstream = Upstream(server, held_pieces=True)
    graph = create_moa_graph().compile()
    price = ModelPrice(input=1.0, output=2.0)
    prices = {f"openai:{m}": price for m in [*PROPOSERS, "agg"]}
    _, _, state = await stepped(Run(graph, config(server, prices=prices)), upstream)
    pieces = state["staircase"]["pieces"]
    records = [r for r in state["usage"] if r["role"] == "aggregator"]
    assert [r["slot"] for r in records] == [p["piece"] for p in pieces] == [1, 2, 3]
    # each piece's prompt tokens are what the server counted for that request (it counts words)
    counted = [sum(len(str(m["content"]).split()) for m in r["messages"]) for r in server.requests_for("agg")]
    assert [r["input_tokens"] for r in records] == [p["input_tokens"] for p in pieces] == counted
    assert [r["output_tokens"] for r in records] == [4, 4, 52]
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
    upstream = Upstream(server, held_pieces=True)  # layer 1's calls are not streamed, so not held
    graph = create_moa_graph().compile()
    _, streamed, state = await stepped(Run(graph, config(server, layers=3)), upstream)
    assert streamed == ANSWER
    assert [(p["layer"], p["slot"]) for p in state["proposals"]] == [(1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2)]
    assert state["staircase"]["layer"] == 2 and len(state["staircase"]["pieces"]) == 3
    assert server.calls("p0") == 2  # layer 1 (plain) and layer 2 (streamed)
    layer_two = [r for r in server.requests_for("p0") if r.get("stream")]
    assert len(layer_two) == 1 and layer_two[0]["messages"][0]["content"].count("\n1. ") == 1


async def test_resume_after_a_failed_piece_does_not_repeat_earlier_layers(server: SimulatedOpenAIServer) -> None:
    Upstream(server, agg={"faults": [Fault(400, times=1)]})
    graph = create_moa_graph().compile(checkpointer=InMemorySaver())
    thread = {"configurable": {"thread_id": "t"}}
    cfg = config(server, layers=3)
    with pytest.raises(AggregatorError, match="piece 1"):
        await graph.ainvoke(user("q"), thread, context=cfg)
    assert server.calls("p0") == 2
    upstream = Upstream(server, held_pieces=True)
    _, _, state = await stepped(Run(graph, cfg, thread, resume=True), upstream)
    assert state["messages"][-1].content == ANSWER
    assert server.calls("p0") == 3  # layer 1 kept; the staircase layer's call made again
    assert [(p["layer"], p["slot"]) for p in state["proposals"]] == [(1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2)]


async def test_cancelling_the_run_closes_every_request(server: SimulatedOpenAIServer) -> None:
    # the proposers are held after their first chunk, the aggregator's piece after its first token
    held = threading.Event()
    Upstream(server, agg={"reply": words("a", 50), "hold": held})
    graph = create_moa_graph().compile()
    started = asyncio.Event()

    async def consume() -> None:
        async for _mode, chunk in graph.astream(user("q"), context=config(server), stream_mode=["messages"]):
            if is_aggregator_token(chunk[1]) and chunk[0].text:
                started.set()

    task = asyncio.create_task(consume())
    try:
        await asyncio.wait_for(started.wait(), SAFETY)
        assert server.in_flight == 4  # three proposals and a piece, all mid-stream
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # the server notices the closed connections while it holds the streams
        assert await asyncio.to_thread(server.wait_idle, SAFETY)
    finally:
        held.set()
    assert server.abandoned("agg") == 1 and all(server.abandoned(p) == 1 for p in PROPOSERS)


async def test_a_sync_run_streams_the_same_answer(server: SimulatedOpenAIServer) -> None:
    upstream = Upstream(server, held_pieces=True)
    graph = create_moa_graph().compile()
    _, streamed, state = await stepped(Run(graph, config(server), sync=True), upstream)
    assert streamed == state["messages"][-1].content == ANSWER
    pieces = state["staircase"]["pieces"]
    assert [prefixes(p) for p in pieces] == [first_chunks(0, 1, 2), first_chunks(0, 1, 2), complete(0, 1, 2)]
    assert server.calls("agg") == 3


async def test_chat_moa_streams_the_staircase_answer(server: SimulatedOpenAIServer) -> None:
    Upstream(server, release_at=2)  # pieces 1 and 2 from first chunks, however fast the proposers are
    chunks = [chunk async for chunk in ChatMoA(config=config(server)).astream("q")]
    assert "".join(c.text for c in chunks) == ANSWER
    assert server.calls("agg") >= 3  # the answer came in pieces, the last after the proposers were released


def test_the_openai_sdk_reads_the_staircase_answer_from_moa_serve(server: SimulatedOpenAIServer) -> None:
    Upstream(server, release_at=2)
    settings = ServeSettings(assistants={"stairs": config(server)}, max_tokens=1000)
    with running(create_app(settings, checkpoint=":memory:")) as url:
        with openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=30) as client:
            chunks = list(
                client.chat.completions.create(model="stairs", messages=[{"role": "user", "content": "q"}], stream=True)
            )
            assert server.calls("agg") >= 3  # the streamed answer came in pieces
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            whole = client.chat.completions.create(model="stairs", messages=[{"role": "user", "content": "q"}])
    assert text == whole.choices[0].message.content == ANSWER
    assert len({c.id for c in chunks}) == 1  # one completion, however many pieces


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
