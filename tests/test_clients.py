"""MoA behind real agent frameworks: each client package's own tool loop and structured output.

``moa serve`` (and the Agent Server's ``/v1`` app) run on loopback over the
simulated upstream, which calls the first offered tool when the conversation
has no tool result yet, answers with text naming the tool results after one,
and writes JSON (strings set to the tool results) when a format asks for it.
So an answer that ends with ``sunny in ...`` proves the tool ran and its result
reached the final answer through MoA (proposers, then the aggregator).

instructor is not here: its releases pin ``openai<3.4``, below the ``openai``
this project's server types need.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import openai
import pydantic
import pytest

from langgraph_moa import MoAConfig
from langgraph_moa.serve.agent_server import create_agent_server_app
from langgraph_moa.serve.app import ServeSettings, create_app
from langgraph_moa.serve.openai_api import APISettings
from langgraph_moa.testing import SimulatedOpenAIServer
from tests.conftest import running

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # LiteLLM reads its bundled price map, offline

pytestmark = pytest.mark.clients  # `python -m pytest -m clients`; .ci/run runs them

QUESTION = "weather in Paris?"
RESULT = f"sunny in {QUESTION}"  # what get_weather returns for the simulated upstream's call
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather of a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


class Weather(pydantic.BaseModel):
    summary: str
    sunny: bool


def get_weather(city: str) -> str:
    """Weather of a city."""
    calls.append(city)
    return f"sunny in {city}"


calls: list[str] = []  # every run of get_weather, in order


@pytest.fixture(autouse=True)
def _no_calls_yet() -> None:
    calls.clear()


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatedOpenAIServer]:
    with SimulatedOpenAIServer() as server:
        yield server


def _assistants(sim: SimulatedOpenAIServer) -> dict[str, MoAConfig]:
    config = MoAConfig(
        proposers=["openai:p1", "openai:p2"], aggregator="openai:agg", base_url=sim.base_url, max_retries=0
    )
    return {"moa": config}


@pytest.fixture(scope="module", params=["moa serve", "agent server"])
def url(request: pytest.FixtureRequest, sim: SimulatedOpenAIServer) -> Iterator[str]:
    """``/v1`` of ``moa serve``'s app, or of the app ``langgraph.json`` mounts in the Agent Server."""
    if request.param == "moa serve":
        app = create_app(ServeSettings(assistants=_assistants(sim)))
    else:
        app = create_agent_server_app(APISettings(assistants=_assistants(sim)))
    with running(app) as base:
        yield base + "/v1"


@pytest.fixture(scope="module")
def serve_url(sim: SimulatedOpenAIServer) -> Iterator[str]:
    """``moa serve``'s ``/v1`` only, for the clients tried once."""
    with running(create_app(ServeSettings(assistants=_assistants(sim)))) as base:
        yield base + "/v1"


# --------------------------------------------------------------------------- openai SDK


def test_openai_sdk_tool_loop(url: str, sim: SimulatedOpenAIServer) -> None:
    client = openai.OpenAI(base_url=url, api_key="-", max_retries=0)
    messages: list = [{"role": "user", "content": QUESTION}]
    while True:
        answer = client.chat.completions.create(model="moa", messages=messages, tools=[WEATHER_TOOL])
        message = answer.choices[0].message
        messages.append(message.model_dump(exclude_none=True))
        if not message.tool_calls:
            break
        for call in message.tool_calls:
            result = get_weather(**json.loads(call.function.arguments))
            messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
    assert calls == [QUESTION] and message.content.endswith(f"[tool results: {RESULT}]")


def test_openai_sdk_parse(url: str) -> None:
    client = openai.OpenAI(base_url=url, api_key="-", max_retries=0)
    parsed = client.chat.completions.parse(
        model="moa", messages=[{"role": "user", "content": "Paris"}], response_format=Weather
    )
    assert parsed.choices[0].message.parsed == Weather(summary="Paris", sunny=True)


def test_openai_sdk_responses_with_a_function_tool(url: str) -> None:
    client = openai.OpenAI(base_url=url, api_key="-", max_retries=0)
    tool = {"type": "function", **WEATHER_TOOL["function"]}
    first = client.responses.create(model="moa", input=QUESTION, tools=[tool])
    (call,) = first.output
    result = get_weather(**json.loads(call.arguments))
    output = {"type": "function_call_output", "call_id": call.call_id, "output": result}
    with client.responses.stream(model="moa", input=[output], tools=[tool], previous_response_id=first.id) as events:
        final = events.get_final_response()
    assert calls == [QUESTION] and final.output_text.endswith(f"[tool results: {RESULT}]")


# --------------------------------------------------------------------------- OpenAI Agents SDK


async def test_agents_sdk_default_model_with_a_function_tool_and_output_type(url: str) -> None:
    from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled

    set_tracing_disabled(True)  # no trace export to OpenAI
    client = openai.AsyncOpenAI(base_url=url, api_key="-", max_retries=0)
    model = OpenAIResponsesModel(model="moa", openai_client=client)  # the SDK's default model: the Responses API
    agent = Agent(name="weather", instructions="Use the tool.", model=model, tools=[function_tool(get_weather)])
    text = await Runner.run(agent, QUESTION)
    assert text.final_output.endswith(f"[tool results: {RESULT}]")
    typed = agent.clone(output_type=Weather)
    result = await Runner.run(typed, QUESTION)
    assert result.final_output == Weather(summary=RESULT, sunny=True) and calls == [QUESTION, QUESTION]


async def test_agents_sdk_chat_completions_model_with_a_handoff(serve_url: str) -> None:
    from agents import Agent, OpenAIChatCompletionsModel, Runner, set_tracing_disabled

    set_tracing_disabled(True)
    client = openai.AsyncOpenAI(base_url=serve_url, api_key="-", max_retries=0)
    model = OpenAIChatCompletionsModel(model="moa", openai_client=client)
    forecaster = Agent(name="forecaster", model=model, output_type=Weather)
    triage = Agent(name="triage", model=model, handoffs=[forecaster])  # a handoff is a tool call
    result = await Runner.run(triage, QUESTION)
    # the forecaster's request holds the handoff call and its result; its answer is the JSON asked for
    assert result.last_agent.name == "forecaster"
    # (an aggregator without tools reads the tool turns as text: the simulated JSON quotes that text)
    assert isinstance(result.final_output, Weather) and '{"assistant": "forecaster"}' in result.final_output.summary


# --------------------------------------------------------------------------- LangChain


def test_langchain_chat_openai_tools_structured_output_and_create_agent(serve_url: str) -> None:
    from langchain.agents import create_agent
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model="moa", base_url=serve_url, api_key="-", max_retries=0)
    weather = tool(get_weather)
    (call,) = llm.bind_tools([weather]).invoke(QUESTION).tool_calls
    assert call["name"] == "get_weather" and call["args"] == {"city": QUESTION}
    for method in ("json_schema", "function_calling"):
        assert llm.with_structured_output(Weather, method=method).invoke("Paris") == Weather(
            summary="Paris", sunny=True
        )
    for responses_api in (False, True):
        agent = create_agent(llm.model_copy(update={"use_responses_api": responses_api}), tools=[weather])
        final = agent.invoke({"messages": [("user", QUESTION)]})["messages"][-1]
        assert final.text.endswith(f"[tool results: {RESULT}]")
    assert calls == [QUESTION, QUESTION]


# --------------------------------------------------------------------------- pydantic-ai


async def test_pydantic_ai_tool_and_output_type(serve_url: str) -> None:
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    model = OpenAIChatModel("moa", provider=OpenAIProvider(base_url=serve_url, api_key="-"))
    agent = Agent(model, output_type=Weather, tools=[get_weather])  # the output is a tool call by default
    result = await agent.run(QUESTION)
    assert result.output == Weather(summary=RESULT, sunny=True) and calls == [QUESTION]


# --------------------------------------------------------------------------- LiteLLM


def test_litellm_with_tools(serve_url: str) -> None:
    import litellm

    messages: list = [{"role": "user", "content": QUESTION}]
    options = {"model": "openai/moa", "api_base": serve_url, "api_key": "-", "tools": [WEATHER_TOOL]}
    first = litellm.completion(messages=messages, **options).choices[0].message
    (call,) = first.tool_calls
    messages += [first.model_dump(exclude_none=True)]
    messages += [
        {"role": "tool", "tool_call_id": call.id, "content": get_weather(**json.loads(call.function.arguments))}
    ]
    final = litellm.completion(messages=messages, **options).choices[0].message
    assert calls == [QUESTION] and final.content.endswith(f"[tool results: {RESULT}]")
