"""The graph over HTTP: langchain-openai against the simulated OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import time

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from langgraph_moa import (
    AggregatorError,
    ConfigError,
    LayerFailedError,
    MissingCredentialsError,
    MoAConfig,
    ModelSpec,
    create_moa_graph,
)
from langgraph_moa.testing import Fault, ModelBehavior, SimulatedOpenAIServer
from tests.conftest import answer_once_all_arrived, sim_config, user, wait_idle


async def warm_up(server: SimulatedOpenAIServer, graph) -> None:
    """One tiny run so client start-up cost is not measured."""
    await graph.ainvoke(user("warm"), context=sim_config(server, ["w"], layers=2))
    server.reset()


async def test_two_layers_end_to_end_over_http(server: SimulatedOpenAIServer) -> None:
    graph = create_moa_graph().compile()
    state = await graph.ainvoke(user("What is MoA?"), context=sim_config(server, ["p1", "p2", "p3"]))
    assert state["messages"][-1].content == "agg answer to: What is MoA? [refs=3]"
    assert server.calls() == 4
    sent = server.requests_for("agg")[0]
    assert sent["temperature"] == 0.7 and sent["max_tokens"] == 512
    # usage comes from the server's usage fields, for every call
    assert {r["model"] for r in state["usage"]} == {"openai:p1", "openai:p2", "openai:p3", "openai:agg"}
    assert all(r["output_tokens"] > 0 and r["reported"] for r in state["usage"])
    assert state["usage_summary"]["unreported_calls"] == 0


async def test_six_proposers_run_in_parallel(server: SimulatedOpenAIServer) -> None:
    graph = create_moa_graph().compile()
    names = [f"p{i}" for i in range(6)]
    for name in names:
        server.set_behavior(name, ModelBehavior(reply=answer_once_all_arrived(server, 6)))
    config = sim_config(server, names)
    events = [
        chunk["event"]
        async for mode, chunk in graph.astream(user("q"), context=config, stream_mode=["custom", "values"])
        if mode == "custom"
    ]
    assert server.max_concurrency == 6  # all six requests were in flight at once
    assert events[: events.index("proposer_done")].count("proposer_started") == 6  # every one began first


async def test_rate_limit_is_retried_honouring_retry_after(server: SimulatedOpenAIServer) -> None:
    server.set_behavior("p", ModelBehavior(faults=[Fault(429, retry_after=0.6)]))
    graph = create_moa_graph().compile()
    await warm_up(server, graph)
    state = await graph.ainvoke(user("q"), context=sim_config(server, ["p"], max_retries=2))
    assert server.calls("p") == 2 and state["failures"] == []
    first, retry = [at for model, at in server.arrivals if model == "p"]
    assert retry - first >= 0.6  # the retry was sent after the wait the server asked for
    assert state["proposals"][0]["content"] == "p answer to: q [refs=0]"


@pytest.mark.parametrize("fault", [Fault(500), Fault(503), Fault(0)], ids=["500", "503", "dropped-connection"])
async def test_transient_errors_are_retried(server: SimulatedOpenAIServer, fault: Fault) -> None:
    server.set_behavior("p", ModelBehavior(faults=[fault]))
    graph = create_moa_graph().compile()
    state = await graph.ainvoke(user("q"), context=sim_config(server, ["p"], max_retries=2))
    assert server.calls("p") == 2 and len(state["proposals"]) == 1


@pytest.mark.parametrize(
    ("status", "error_type"), [(401, "AuthenticationError"), (400, "BadRequestError"), (404, "NotFoundError")]
)
async def test_errors_that_cannot_succeed_are_not_retried(
    server: SimulatedOpenAIServer, status: int, error_type: str
) -> None:
    server.set_behavior("bad", ModelBehavior(faults=[Fault(status, times=5)]))
    graph = create_moa_graph().compile()
    state = await graph.ainvoke(user("q"), context=sim_config(server, ["ok", "bad"], max_retries=3))
    assert server.calls("bad") == 1
    assert [(f["model"], f["error_type"]) for f in state["failures"]] == [("openai:bad", error_type)]
    assert state["messages"][-1].content.endswith("[refs=1]")


async def test_retries_give_up_after_max_retries(server: SimulatedOpenAIServer) -> None:
    server.set_behavior("p", ModelBehavior(faults=[Fault(500, times=10)]))
    graph = create_moa_graph().compile()
    with pytest.raises(LayerFailedError, match="openai:p \\(slot 0\\): InternalServerError"):
        await graph.ainvoke(user("q"), context=sim_config(server, ["p"], max_retries=1))
    assert server.calls("p") == 2


async def test_slow_proposer_times_out_and_the_layer_goes_on(server: SimulatedOpenAIServer) -> None:
    """The timeout is 30 s, so the calls that answer never race it; the test skips the clock past it instead.

    Once "ok" has answered and the "stuck" request (which never answers) is at
    the server, the event loop's clock jumps 31 s: the stuck call's timeout
    fires however fast the machine is, and the aggregator's call after it has
    a whole timeout of its own.
    """
    server.set_behavior("stuck", ModelBehavior(hang=True))
    graph = create_moa_graph().compile()
    config = sim_config(server, ["ok", "stuck"], timeout=30, max_retries=0)
    loop = asyncio.get_running_loop()
    clock = loop.time
    skipped = 0.0
    loop.time = lambda: clock() + skipped  # type: ignore[method-assign]
    state: dict = {}
    try:
        async with asyncio.timeout(90):  # a safety net (31 s of it skipped): a run the timeout fails to cut fails
            async for mode, chunk in graph.astream(user("q"), context=config, stream_mode=["custom", "values"]):
                if mode == "custom" and chunk["event"] == "proposer_done":
                    assert chunk["model"] == "openai:ok" and not skipped
                    assert await asyncio.to_thread(server.wait_for_calls, 1, "stuck")
                    skipped = 31.0  # the stuck call's timeout is due
                elif mode == "values":
                    state = chunk
    finally:
        del loop.time  # the loop's own clock again
    # the stuck call never answers: the run ended because the timeout cut it, and closed its request
    assert skipped and [(f["model"], f["error_type"]) for f in state["failures"]] == [("openai:stuck", "TimeoutError")]
    assert server.calls("stuck") == 1 and wait_idle(server)
    assert state["messages"][-1].content.endswith("[refs=1]")


async def test_failed_aggregator_over_http(server: SimulatedOpenAIServer) -> None:
    server.set_behavior("agg", ModelBehavior(faults=[Fault(500, times=10)]))
    graph = create_moa_graph().compile()
    with pytest.raises(AggregatorError, match="aggregator openai:agg failed: InternalServerError"):
        await graph.ainvoke(user("q"), context=sim_config(server, ["p"], max_retries=1))


async def test_only_aggregator_tokens_stream(server: SimulatedOpenAIServer) -> None:
    server.set_behavior("agg", ModelBehavior(chunk_words=1))
    graph = create_moa_graph().compile()
    tokens, nodes = [], set()
    async for message, metadata in graph.astream(
        user("tell me"), context=sim_config(server, ["p1", "p2"], layers=3), stream_mode="messages"
    ):
        nodes.add(metadata["langgraph_node"])
        tokens.append(message.content)
    assert nodes == {"aggregate"}
    assert "".join(tokens) == "agg answer to: tell me [refs=2]"
    assert len([t for t in tokens if t]) > 3  # streamed in pieces, not as one message
    # proposers never use the streaming API; the aggregator does, with usage
    assert all(not r.get("stream") for r in server.requests_for("p1") + server.requests_for("p2"))
    agg_request = server.requests_for("agg")[0]
    assert agg_request["stream"] is True and agg_request["stream_options"] == {"include_usage": True}


async def test_streamed_aggregator_usage_is_recorded(server: SimulatedOpenAIServer) -> None:
    graph = create_moa_graph().compile()
    final = {}
    async for mode, chunk in graph.astream(
        user("q"), context=sim_config(server, ["p"]), stream_mode=["messages", "values"]
    ):
        if mode == "values":
            final = chunk
    agg = [r for r in final["usage"] if r["role"] == "aggregator"]
    assert len(agg) == 1 and agg[0]["output_tokens"] == len("agg answer to: q [refs=1]".split())


async def test_multi_turn_over_http_does_not_leak_references(server: SimulatedOpenAIServer) -> None:
    graph = create_moa_graph().compile(checkpointer=InMemorySaver())
    thread = {"configurable": {"thread_id": "t"}}
    config = sim_config(server, ["p1", "p2"])
    await graph.ainvoke(user("first question"), thread, context=config)
    await graph.ainvoke(user("second question"), thread, context=config)
    second = server.requests_for("agg")[1]["messages"]
    system = second[0]["content"]
    assert "first question [refs=0]" not in system
    assert system.count("second question [refs=0]") == 2
    assert [m["role"] for m in second] == ["system", "user", "assistant", "user"]


async def test_resume_after_interruption_mid_layer_skips_finished_proposers(
    server: SimulatedOpenAIServer, tmp_path
) -> None:
    server.set_behavior("slow", ModelBehavior(latency=30))
    config = sim_config(server, ["fast1", "slow", "fast2"])
    thread = {"configurable": {"thread_id": "resume"}}
    async with AsyncSqliteSaver.from_conn_string(str(tmp_path / "ckpt.sqlite")) as saver:
        graph = create_moa_graph().compile(checkpointer=saver)
        run = asyncio.create_task(graph.ainvoke(user("q"), thread, context=config, durability="sync"))
        # wait until both fast proposers have finished and their writes are saved
        for _ in range(200):
            snapshot = await graph.aget_state(thread)
            done = [t for t in snapshot.tasks if t.name == "propose" and t.result is not None]
            if len(done) == 2:
                break
            await asyncio.sleep(0.05)
        assert len(done) == 2 and server.calls("slow") == 1
        run.cancel()  # the process is interrupted in the middle of layer 1
        with pytest.raises(asyncio.CancelledError):
            await run

    server.set_behavior("slow", ModelBehavior())
    async with AsyncSqliteSaver.from_conn_string(str(tmp_path / "ckpt.sqlite")) as saver:
        graph = create_moa_graph().compile(checkpointer=saver)
        state = await graph.ainvoke(None, thread, context=config)
    assert server.calls("fast1") == 1 and server.calls("fast2") == 1  # not called again
    assert server.calls("slow") == 2 and server.calls("agg") == 1
    assert [p["model"] for p in state["proposals"]] == ["openai:fast1", "openai:slow", "openai:fast2"]
    assert state["messages"][-1].content == "agg answer to: q [refs=3]"


async def test_secrets_stay_out_of_state_checkpoints_and_errors(
    server: SimulatedOpenAIServer, tmp_path, monkeypatch
) -> None:
    secret = "sk-test-" + "S3CR3T" * 4
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)  # the user's OpenAI-compatible endpoint
    server.set_behavior("bad", ModelBehavior(faults=[Fault(401, message=f"Incorrect API key provided: {secret}")]))
    db = tmp_path / "ckpt.sqlite"
    config = MoAConfig(proposers=["openai:ok", "openai:bad"], aggregator="openai:agg")
    async with AsyncSqliteSaver.from_conn_string(str(db)) as saver:
        graph = create_moa_graph().compile(checkpointer=saver)
        state = await graph.ainvoke(user("q"), {"configurable": {"thread_id": "s"}}, context=config)
    assert set(server.api_keys) == {secret}  # OPENAI_BASE_URL gets OPENAI_API_KEY, as the SDK does
    assert state["failures"][0]["error_type"] == "AuthenticationError"
    assert secret not in repr(state) and "***" in state["failures"][0]["message"]
    assert secret.encode() not in db.read_bytes()


async def test_a_named_base_url_never_receives_the_openai_key(server: SimulatedOpenAIServer, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-real-openai-key-123456")
    monkeypatch.setenv("VLLM_KEY", "server-key-42")
    graph = create_moa_graph().compile()
    config = MoAConfig(
        proposers=["openai:p", ModelSpec(model="openai:q", base_url=server.base_url, api_key_env="VLLM_KEY")],
        aggregator="openai:agg",
        base_url=server.base_url,
    )
    await graph.ainvoke(user("q"), context=config)
    keys = dict(zip([r["model"] for r in server.requests], server.api_keys, strict=True))
    assert keys == {"p": "not-needed", "q": "server-key-42", "agg": "not-needed"}


async def test_unknown_provider_and_missing_key_stop_before_any_call(server: SimulatedOpenAIServer) -> None:
    graph = create_moa_graph().compile()
    typo = MoAConfig(proposers=["openai:p"], aggregator="opnai:agg", base_url=server.base_url)
    with pytest.raises(ConfigError, match="unknown provider 'opnai'"):
        await graph.ainvoke(user("q"), context=typo)
    no_key = MoAConfig(
        proposers=["openai:p"], aggregator="together:Qwen/Qwen2.5-72B-Instruct-Turbo", base_url=server.base_url
    )
    with pytest.raises(MissingCredentialsError, match="needs TOGETHER_API_KEY"):
        await graph.ainvoke(user("q"), context=no_key)
    assert server.calls() == 0


async def test_two_event_loops_each_get_working_clients(server: SimulatedOpenAIServer) -> None:
    """A second ``asyncio.run`` in one process (scripts, notebooks) must not reuse dead connections."""
    import threading

    graph = create_moa_graph().compile()
    config = sim_config(server, ["p"])
    answers: list[str] = []

    def run_twice() -> None:
        for _ in range(2):
            answers.append(asyncio.run(graph.ainvoke(user("q"), context=config))["messages"][-1].content)

    thread = threading.Thread(target=run_twice)
    thread.start()
    thread.join(timeout=30)
    assert answers == ["agg answer to: q [refs=1]"] * 2


async def test_provider_environment_variables_are_honoured(server: SimulatedOpenAIServer, monkeypatch) -> None:
    """Together through langchain-together and OpenAI through langchain-openai, both over HTTP."""
    monkeypatch.setenv("TOGETHER_API_KEY", "tgp-test-key-0000")
    monkeypatch.setenv("TOGETHER_API_BASE", server.base_url)
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    graph = create_moa_graph().compile()
    config = MoAConfig(
        proposers=["together:Qwen/Qwen2.5-72B-Instruct-Turbo", "openai:local-model"],
        aggregator="together:Qwen/Qwen2.5-72B-Instruct-Turbo",
    )
    state = await graph.ainvoke(user("q"), context=config)
    assert server.calls("Qwen/Qwen2.5-72B-Instruct-Turbo") == 2 and server.calls("local-model") == 1
    assert state["messages"][-1].content == "Qwen/Qwen2.5-72B-Instruct-Turbo answer to: q [refs=2]"
    priced = state["usage_summary"]
    assert priced["cost_usd"] > 0 and priced["unpriced_models"] == ["openai:local-model"]


async def test_requests_per_second_spaces_calls_to_one_model(
    server: SimulatedOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from langchain_core.rate_limiters import InMemoryRateLimiter

    acquired: list[tuple[InMemoryRateLimiter, int]] = []  # (limiter, requests that had arrived) per acquisition
    original = InMemoryRateLimiter.aacquire

    async def aacquire(self: InMemoryRateLimiter, *, blocking: bool = True) -> bool:
        got = await original(self, blocking=blocking)
        acquired.append((self, server.calls("limited")))
        return got

    monkeypatch.setattr(InMemoryRateLimiter, "aacquire", aacquire)
    limited = ModelSpec(model="openai:limited", requests_per_second=4)
    config = MoAConfig(proposers=[limited] * 3, aggregator="openai:agg", base_url=server.base_url)
    state = await create_moa_graph().compile().ainvoke(user("q"), context=config)
    assert len(state["proposals"]) == 3 and server.calls("limited") == 3
    (limiter,) = {limiter for limiter, _ in acquired}  # one limiter, shared by the three calls
    assert limiter.requests_per_second == 4
    assert [sent <= i for i, (_, sent) in enumerate(acquired)] == [True] * 3  # each request waited for it


async def test_model_cache_is_bounded_and_keeps_the_recent_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    from langgraph_moa.providers import ModelResolver
    from langgraph_moa.providers import resolver as models_module

    monkeypatch.setattr(models_module, "MODEL_CACHE_SIZE", 3)
    resolve = ModelResolver()
    spec = ModelSpec(model="openai:m", base_url="http://127.0.0.1:9/v1")

    def model(timeout: float, **settings: object) -> object:
        redacted = resolve(spec, MoAConfig(timeout=timeout, **settings), streaming=True)
        return redacted.model.bound  # type: ignore[attr-defined]  # the provider's model inside RedactedChatModel

    built = [model(t + 1) for t in range(6)]  # the timeout is the client's: one model each
    assert len({id(m) for m in built}) == 6
    assert len(models_module._models_of_this_loop()) == 3
    assert model(6) is built[5]  # recent: reused
    assert model(6, temperature=0.1, max_tokens=9) is built[5]  # per-call settings are bound, not built
    assert model(1) is not built[0]  # evicted: rebuilt


async def test_a_named_server_never_gets_a_provider_key_whatever_the_prefix(
    server: SimulatedOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOGETHER_API_KEY", "tgp_v1_secret_together_key_123")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-openai-key-1234567")
    config = MoAConfig(
        proposers=[ModelSpec(model="together:p1", base_url=server.base_url), "openai:p2"],
        aggregator="openai:agg",
        base_url=server.base_url,
    )
    state = await create_moa_graph().compile().ainvoke(user("hi"), context=config)
    assert state["failures"] == [] and len(state["proposals"]) == 2
    assert "tgp_v1_secret_together_key_123" not in server.api_keys
    assert "sk-secret-openai-key-1234567" not in server.api_keys


def test_redact_removes_key_variables_and_named_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    from langgraph_moa.providers import describe_error, redact

    monkeypatch.setenv("MOA_API_KEYS", "team-one-key-aaaa,team-two-key-bbbb")
    monkeypatch.setenv("VLLM_AUTH", "vllm-0123456789abcdef")
    text = "got team-two-key-bbbb and vllm-0123456789abcdef and Bearer abcdefghijkl"
    assert redact(text, variables=["VLLM_AUTH"]) == "got *** and *** and Bearer ***"
    long = RuntimeError("x" * 290 + " vllm-0123456789abcdef")
    assert "vllm-01" not in describe_error(long, variables=["VLLM_AUTH"])[1]  # redacted before it is cut


async def test_a_client_configured_graph_refuses_endpoints_it_was_not_given(server: SimulatedOpenAIServer) -> None:
    graph = create_moa_graph(allowed_base_urls=["https://api.example.org/v1", server.base_url]).compile()
    local = sim_config(server, ["a"])  # loopback: allowed because it is listed
    assert (await graph.ainvoke(user("hi"), context=local))["messages"][-1].text == "agg answer to: hi [refs=1]"
    elsewhere = MoAConfig(
        proposers=[ModelSpec(model="openai:a", base_url="http://attacker.example/v1")],
        aggregator="openai:agg",
        base_url=server.base_url,
    )
    with pytest.raises(ConfigError, match="'http://attacker.example/v1' is not allowed.*MOA_ALLOWED_BASE_URLS"):
        await graph.ainvoke(user("hi"), context=elsewhere)
    unlisted = create_moa_graph(allowed_base_urls=["https://api.example.org/v1"]).compile()
    # loopback too, unless listed: tests/test_endpoint_policy.py
    with pytest.raises(ConfigError, match="is not allowed on this server"):
        await unlisted.ainvoke(user("hi"), context=local)


def test_closed_loops_leave_the_model_cache(server: SimulatedOpenAIServer) -> None:
    from langgraph_moa.providers import resolver as models_module

    graph = create_moa_graph().compile()
    for _ in range(3):
        asyncio.run(graph.ainvoke(user("hi"), context=sim_config(server, ["a"])))
    assert sum(1 for loop in models_module._PER_LOOP if loop.is_closed()) <= 1  # only the last one, until next use


async def test_per_request_settings_share_one_client_and_its_connections(server: SimulatedOpenAIServer) -> None:
    graph = create_moa_graph().compile()
    for i in range(5):  # as an API server's clients send them: each request its own settings
        config = sim_config(server, ["c1", "c2"], "cagg", temperature=0.1 * i, max_tokens=50 + i)
        await graph.ainvoke(user(f"q{i}"), context=config)
    sent = {(r["temperature"], r["max_tokens"]) for r in server.requests_for("c1")}
    assert len(sent) == 5  # every request's own settings reached the server
    assert server.calls() == 15 and server.connections <= 3  # no connection pool per setting
    assert server.max_open_connections <= 3


def test_the_server_counts_open_connections_and_their_peak(server: SimulatedOpenAIServer) -> None:
    import httpx

    def settle(expected: int) -> None:  # the server notices a closed connection on its next read
        deadline = time.monotonic() + 30  # a safety net; it takes milliseconds
        while server.open_connections != expected and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.open_connections == expected

    first, second = httpx.Client(), httpx.Client()
    for client in (first, second, first):  # keep-alive: the third request reuses the first connection
        assert client.get(f"{server.base_url}/models").status_code == 200
    settle(2)
    assert server.connections == 2 and server.max_open_connections == 2
    first.close()
    settle(1)
    assert server.max_open_connections == 2  # the peak stays
    server.reset()
    assert server.max_open_connections == 1  # restarts from the connections open now
    second.close()
    settle(0)
    assert server.connections == 2 and server.max_open_connections == 1
