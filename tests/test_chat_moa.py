"""``ChatMoA`` behaviour beyond the standard tests: sync calls, cancellation, stop
sequences, call arguments, usage, and aggregators or proposers that are not plain models."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import tool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

from langgraph_moa import ChatMoA, ConfigError, MoAConfig, create_moa_graph
from langgraph_moa.errors import AggregatorError
from langgraph_moa.testing import ModelBehavior, SimulatedOpenAIServer, _usage
from tests.conftest import sim_config, user, wait_idle


def _prompt_words(server: SimulatedOpenAIServer, model: str) -> int:
    """What the simulator reported as prompt tokens over every request for ``model``."""
    return sum(_usage(r["messages"], "")["prompt_tokens"] for r in server.requests_for(model))


def _eventually(condition: Any, seconds: float = 10.0) -> bool:
    """Poll ``condition`` until it holds (True) or ``seconds`` pass (False)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_sync_calls_reuse_ready_models(server: SimulatedOpenAIServer) -> None:
    ready = ChatOpenAI(model="ready", base_url=server.base_url, api_key="x")
    llm = ChatMoA(config=sim_config(server, ["a", "ready"]), models={"openai:ready": ready})
    answers = [llm.invoke("hi").text for _ in range(3)] + ["".join(c.text for c in llm.stream("hi"))]
    assert answers == ["agg answer to: hi [refs=2]"] * 4
    assert server.calls("ready") == 4


def test_usage_counts_every_call_of_the_run(server: SimulatedOpenAIServer) -> None:
    answer = ChatMoA(config=sim_config(server, ["a", "b"])).invoke("hi there")
    everything = sum(_prompt_words(server, m) for m in ("a", "b", "agg"))
    assert answer.usage_metadata["input_tokens"] == everything > _prompt_words(server, "agg")
    summary = answer.response_metadata["moa"]["usage_summary"]
    assert summary["total"]["input_tokens"] == everything and len(answer.response_metadata["moa"]["proposals"]) == 2


def held_answer() -> ModelBehavior:
    """An aggregator that streams one word, then holds its stream until the client leaves (or the server stops).

    Its answer never ends on its own: a run that is idle again was cancelled, however slow the machine.
    """
    return ModelBehavior(reply="word " * 400, hold=threading.Event())


def test_closing_a_sync_stream_cancels_the_run(server: SimulatedOpenAIServer) -> None:
    # a streaming answer (20 s whole) rather than a held one: a blocking call notices the cancellation when bytes
    # arrive, and with a held stream close() was seen to wait for the 120 s timeout
    server.set_behavior("agg", ModelBehavior(reply="word " * 400, chunk_delay=0.05))
    stream = ChatMoA(config=sim_config(server, ["a"])).stream("hi")
    assert next(c for c in stream if c.text)
    stream.close()  # the aggregator's 20 s answer is cut, not waited for
    assert _eventually(lambda: server.abandoned("agg") == 1) and server.calls() == 2
    assert wait_idle(server)  # within 10 s: the aggregator had 20 s of words left


def test_ctrl_c_stops_a_sync_invoke(server: SimulatedOpenAIServer) -> None:
    # a streaming answer (20 s whole) rather than a held one: with no bytes arriving, SIGINT was seen not to end
    # the blocking call within 30 s (see test_closing_a_sync_stream_cancels_the_run)
    server.set_behavior("agg", ModelBehavior(reply="word " * 400, chunk_delay=0.05))
    script = (
        "import sys\nfrom langgraph_moa import ChatMoA, MoAConfig\n"
        "config = MoAConfig(proposers=['openai:a'], aggregator='openai:agg', base_url=sys.argv[1])\n"
        "try:\n    ChatMoA(config=config).invoke('hi')\nexcept KeyboardInterrupt:\n    sys.exit(42)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script, server.base_url], cwd=Path(__file__).parents[1])
    try:
        assert _eventually(lambda: server.calls("agg") == 1, seconds=30)  # the aggregator is answering
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 42  # the 20 s answer was not waited for
    finally:
        process.kill()
    assert _eventually(lambda: server.abandoned("agg") == 1)  # and its request was closed


async def test_closing_astream_stops_the_run(server: SimulatedOpenAIServer) -> None:
    server.set_behavior("agg", held_answer())
    stream = ChatMoA(config=sim_config(server, ["a"])).astream("hi")
    async for chunk in stream:
        if chunk.text:
            break
    await stream.aclose()
    # waited for in a thread: the loop must run for the cancellation to happen
    assert await asyncio.to_thread(wait_idle, server, 30)  # the held answer, which never ends, was abandoned


@pytest.mark.parametrize("stop", [["agg answer"], ["to: hi"], ["[refs"]])
def test_stop_sequences_cut_invoke_and_stream_alike(server: SimulatedOpenAIServer, stop: list[str]) -> None:
    llm = ChatMoA(config=sim_config(server, ["a"]), stop=stop)
    full = "agg answer to: hi [refs=1]"
    expected = full[: full.index(stop[0])]
    assert llm.invoke("hi").text == expected
    assert "".join(c.text for c in llm.stream("hi")) == expected


def test_call_arguments_are_honoured_or_refused(server: SimulatedOpenAIServer) -> None:
    llm = ChatMoA(config=sim_config(server, ["a"]), temperature=0.3, max_tokens=50)
    llm.invoke("hi")
    assert {(r["temperature"], r["max_tokens"]) for r in server.requests} == {(0.3, 50)}
    server.reset()
    llm.invoke("hi", temperature=0.0, max_tokens=7)
    assert {(r["temperature"], r["max_tokens"]) for r in server.requests} == {(0.0, 7)}
    with pytest.raises(ValueError, match="ChatMoA does not support logprobs"):
        llm.invoke("hi", logprobs=True)


class Weather(BaseModel):
    city: str
    sunny: bool


@tool
def get_weather(city: str) -> str:
    """Weather of a city."""
    return f"sunny in {city}"


def test_the_tool_bound_aggregator_keeps_every_call_setting(server: SimulatedOpenAIServer) -> None:
    llm = ChatMoA(config=sim_config(server, ["a"], seed=3), temperature=0.2, max_tokens=100)
    plain = llm.invoke("hi")
    plain_agg = server.requests_for("agg")[-1]
    with_tools = llm.bind_tools([get_weather], parallel_tool_calls=False).invoke("hi")
    agg = server.requests_for("agg")[-1]
    assert plain.tool_calls == [] and with_tools.tool_calls[0]["name"] == "get_weather"
    assert (agg["temperature"], agg["max_tokens"], agg["seed"]) == (0.2, 100, plain_agg["seed"])
    assert agg["parallel_tool_calls"] is False and "tools" not in plain_agg


def test_response_format_is_accepted_like_chatopenai(server: SimulatedOpenAIServer) -> None:
    llm = ChatMoA(config=sim_config(server, ["a"]))
    answer = llm.invoke("Paris?", response_format=Weather)
    assert answer.additional_kwargs["parsed"] == Weather(city="Paris?", sunny=True)
    assert server.requests_for("agg")[-1]["response_format"]["json_schema"]["name"] == "Weather"
    as_dict = llm.invoke("hi", response_format={"type": "json_object"})
    assert json.loads(as_dict.text) == {"answer": "agg answer to: hi"}
    with pytest.raises(ConfigError, match="response_format.json_schema.schema"):
        llm.invoke("hi", response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": 1}}})


class ToolCallingFake(BaseChatModel):
    """A chat model without OpenAI's response_format: it calls the tool it is told to (or the first)."""

    bound: list[dict[str, Any]] = []
    arguments: dict[str, Any] = {}

    @property
    def _llm_type(self) -> str:
        return "tool-calling-fake"

    def bind_tools(self, tools: Any, *, tool_choice: Any = None, **kwargs: Any) -> Any:
        self.bound.append({"tools": tools, "tool_choice": tool_choice})
        return self.bind(tool_choice=tool_choice, names=[t["function"]["name"] for t in tools])

    def _generate(self, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any) -> ChatResult:
        name = kwargs.get("tool_choice") if kwargs.get("tool_choice") not in (None, "any") else kwargs["names"][0]
        call = {"name": name, "args": self.arguments, "id": "call_1"}
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content="", tool_calls=[call]))])


@pytest.mark.parametrize(
    ("arguments", "valid"), [({"city": "Paris", "sunny": True}, True), ({"city": 1, "sunny": True}, False)]
)
def test_structured_output_without_response_format_is_a_forced_tool_call(
    server: SimulatedOpenAIServer, arguments: dict, valid: bool
) -> None:
    fake = ToolCallingFake(arguments=arguments)
    config = MoAConfig(proposers=["openai:a"], aggregator="fake:agg", base_url=server.base_url, max_retries=0)
    llm = ChatMoA(config=config, models={"fake:agg": fake})
    if not valid:
        with pytest.raises(AggregatorError, match="does not match the JSON schema at city"):
            llm.invoke("Paris?", response_format=Weather)
        return
    answer = llm.invoke("Paris?", response_format=Weather)
    assert answer.additional_kwargs["parsed"] == Weather(city="Paris", sunny=True) and answer.tool_calls == []
    (bound,) = fake.bound
    assert bound["tool_choice"] == "Weather" and bound["tools"][0]["function"]["parameters"]["required"] == [
        "city",
        "sunny",
    ]


def test_a_preset_per_call(server: SimulatedOpenAIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOGETHER_API_KEY", "tgp-test-key-0123456789")
    monkeypatch.setenv("TOGETHER_API_BASE", server.base_url)
    answer = ChatMoA(config=sim_config(server, ["a"])).invoke("hi", model="self-moa")
    assert answer.text == "Qwen/Qwen2.5-72B-Instruct-Turbo answer to: hi [refs=6]" and server.calls("a") == 0


def test_tool_choice_reaches_the_aggregator(server: SimulatedOpenAIServer) -> None:
    @tool
    def first(x: int) -> int:
        """First tool."""
        return x

    @tool
    def second(x: int) -> int:
        """Second tool."""
        return x

    llm = ChatMoA(config=sim_config(server, ["a"])).bind_tools([first, second], tool_choice="second")
    llm.invoke("hi")
    request = server.requests_for("agg")[-1]
    assert request["tool_choice"] == {"type": "function", "function": {"name": "second"}}
    assert [t["function"]["name"] for t in request["tools"]] == ["first", "second"]
    assert "tools" not in server.requests_for("a")[-1]


def test_settings_errors_are_config_errors(server: SimulatedOpenAIServer) -> None:
    with pytest.raises(ConfigError, match="unknown preset 'nope'"):
        ChatMoA(preset="nope")
    with pytest.raises(ConfigError, match="temperature"):
        ChatMoA(config=sim_config(server, ["a"]), temperature=5.0)
    with pytest.raises(ConfigError, match="cannot pause for review"):
        ChatMoA(config=sim_config(server, ["a"], review=True))


async def test_an_agent_aggregator_streams_its_answer(server: SimulatedOpenAIServer) -> None:
    agent = create_agent(ChatOpenAI(model="boss", base_url=server.base_url, api_key="x"), tools=[])
    llm = ChatMoA(
        config=MoAConfig(proposers=["openai:a"], aggregator="agent:boss", base_url=server.base_url),
        models={"agent:boss": agent},
    )
    invoked = (await llm.ainvoke("hi")).text
    streamed = "".join([c.text async for c in llm.astream("hi")])
    assert invoked == streamed == "boss answer to: hi [refs=1]"


async def test_wrapped_ready_models_are_called_with_messages(server: SimulatedOpenAIServer) -> None:
    retrying = ChatOpenAI(model="r", base_url=server.base_url, api_key="x").with_retry(stop_after_attempt=2)
    fallback = ChatOpenAI(model="f", base_url=server.base_url, api_key="x").with_fallbacks([retrying])
    graph = create_moa_graph(models={"x:retrying": retrying, "x:fallback": fallback}).compile()
    config = MoAConfig(proposers=["x:retrying", "x:fallback"], aggregator="openai:agg", base_url=server.base_url)
    state = await graph.ainvoke(user("hi"), context=config)
    assert [p["content"] for p in state["proposals"]] == ["r answer to: hi [refs=0]", "f answer to: hi [refs=0]"]


async def test_a_runnable_without_messages_is_a_recorded_failure(server: SimulatedOpenAIServer) -> None:
    from langchain_core.runnables import RunnableLambda

    odd = RunnableLambda(lambda inputs: {"answer": "42"})
    graph = create_moa_graph(models={"x:odd": odd}).compile()
    config = MoAConfig(proposers=["x:odd", "openai:a"], aggregator="openai:agg", base_url=server.base_url)
    state = await graph.ainvoke(user("hi"), context=config)
    (failure,) = state["failures"]
    assert failure["model"] == "x:odd" and "without a 'messages' list" in failure["message"]
    assert state["messages"][-1].text == "agg answer to: hi [refs=1]"


async def test_an_aggregator_without_tools_sees_tool_turns_as_text(server: SimulatedOpenAIServer) -> None:
    from langchain_core.messages import AIMessage, ToolMessage

    history: list[Any] = [
        HumanMessage("weather?"),
        AIMessage(content="", tool_calls=[{"name": "w", "args": {"c": "Paris"}, "id": "1"}]),
        ToolMessage(content="sunny", tool_call_id="1", name="w"),
    ]
    await create_moa_graph().compile().ainvoke({"messages": history}, context=sim_config(server, ["a"]))
    roles = [m["role"] for m in server.requests_for("agg")[0]["messages"]]
    assert roles == ["system", "user", "assistant", "user"]


def test_the_tools_proposers_are_shown_key_their_cached_proposals(server: SimulatedOpenAIServer) -> None:
    from langgraph_moa.cache import answer_settings

    plain = sim_config(server, ["a"])
    tooled = plain.model_copy(update={"aggregator_tools": [convert_to_openai_tool(get_weather)]})
    spec = plain.proposers[0]
    assert answer_settings(spec, plain) != answer_settings(spec, tooled)
    assert "answer_format" not in answer_settings(spec, plain)  # caches of runs without tools keep their keys
