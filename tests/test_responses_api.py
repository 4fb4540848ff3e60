"""``/v1/responses`` through the official ``openai`` SDK, on a real server on loopback.

The models are ``openai:<name>`` on the simulated upstream, which answers tool
calls and JSON when asked.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import openai
import pydantic
import pytest

from langgraph_moa import MoAConfig
from langgraph_moa.serve.app import ServeSettings, create_app
from langgraph_moa.testing import ModelBehavior, SimulatedOpenAIServer
from tests.conftest import running

TOOLS = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "Weather of a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
]


class Weather(pydantic.BaseModel):
    city: str
    sunny: bool


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatedOpenAIServer]:
    with SimulatedOpenAIServer({"notjson": ModelBehavior(reply="not JSON at all")}) as server:
        yield server


@pytest.fixture(scope="module")
def client(sim: SimulatedOpenAIServer) -> Iterator[openai.OpenAI]:
    def cfg(aggregator: str = "agg") -> MoAConfig:
        return MoAConfig(
            proposers=["openai:p1", "openai:p2"],
            aggregator=f"openai:{aggregator}",
            base_url=sim.base_url,
            max_retries=0,
        )

    settings = ServeSettings(assistants={"sim": cfg(), "not-json": cfg("notjson")})
    with running(create_app(settings)) as url, openai.OpenAI(base_url=url + "/v1", api_key="-", max_retries=0) as c:
        yield c


def test_plain_input_and_instructions(client: openai.OpenAI, sim: SimulatedOpenAIServer) -> None:
    sim.reset()
    response = client.responses.create(model="sim", input="What is MoA?", instructions="Be brief.", temperature=0.1)
    assert response.object == "response" and response.status == "completed" and response.id.startswith("resp_")
    assert response.output_text == "agg answer to: What is MoA? [refs=2]"
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens > 0
    assert [p["model"] for p in response.moa["proposals"]] == ["openai:p1", "openai:p2"]
    agg = sim.requests_for("agg")[0]
    assert agg["temperature"] == 0.1 and agg["messages"][0]["content"].startswith("Be brief.")


def test_streamed_events(client: openai.OpenAI) -> None:
    with client.responses.stream(model="sim", input="stream me") as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds.count("response.output_text.delta") > 3  # token by token
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert final.output_text == "agg answer to: stream me [refs=2]"


@pytest.mark.parametrize("stream", [False, True])
def test_a_function_tool_loop(client: openai.OpenAI, sim: SimulatedOpenAIServer, stream: bool) -> None:
    if stream:
        with client.responses.stream(model="sim", input="weather in Paris?", tools=TOOLS) as events:
            kinds = [event.type for event in events]
            first = events.get_final_response()
        assert "response.function_call_arguments.done" in kinds
    else:
        first = client.responses.create(model="sim", input="weather in Paris?", tools=TOOLS)
    (call,) = first.output
    assert call.type == "function_call" and call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "weather in Paris?"}
    sim.reset()
    items = [
        {"role": "user", "content": "weather in Paris?"},
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"},
    ]
    final = client.responses.create(model="sim", input=items, tools=TOOLS)
    assert final.output_text == "agg answer to: weather in Paris? [refs=2] [tool results: sunny]"
    assert [m["role"] for m in sim.requests_for("agg")[0]["messages"]] == ["system", "user", "assistant", "tool"]


def test_text_format_json_schema(client: openai.OpenAI, sim: SimulatedOpenAIServer) -> None:
    sim.reset()
    parsed = client.responses.parse(model="sim", input="Paris", text_format=Weather)
    assert parsed.output_parsed == Weather(city="Paris", sunny=True)
    assert sim.requests_for("agg")[0]["response_format"]["json_schema"]["name"] == "Weather"
    with pytest.raises(openai.APIError, match="not JSON"):
        client.responses.parse(model="not-json", input="Paris", text_format=Weather)


def test_previous_response_id_continues_a_stored_response(client: openai.OpenAI, sim: SimulatedOpenAIServer) -> None:
    first = client.responses.create(model="sim", input="first question", instructions="Be brief.")
    sim.reset()
    second = client.responses.create(model="sim", input="second question", previous_response_id=first.id)
    assert second.output_text == "agg answer to: second question [refs=2]"
    sent = sim.requests_for("agg")[0]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert sent[2]["content"] == first.output_text and "Be brief." not in sent[0]["content"]
    assert client.responses.retrieve(first.id).output_text == first.output_text
    unstored = client.responses.create(model="sim", input="x", store=False)
    with pytest.raises(openai.NotFoundError) as caught:
        client.responses.create(model="sim", input="y", previous_response_id=unstored.id)
    assert caught.value.body["param"] == "previous_response_id"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "x", "tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"input": [{"type": "function_call_output", "call_id": "nope", "output": "x"}]}, "input[0].call_id"),
        (
            {
                "input": [
                    {"role": "user", "content": "x"},
                    {"type": "function_call", "call_id": "1", "name": "get_weather", "arguments": "{}"},
                    {"type": "function_call", "call_id": "2", "name": "get_weather", "arguments": "{city"},
                ],
                "tools": TOOLS,
            },
            "input[2].arguments",
        ),
        ({"input": [{"type": "item_reference", "id": "x"}]}, "input[0].type"),
        ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]}, "input[0].content[0]"),
        (
            {"input": "x", "text": {"format": {"type": "json_schema", "name": "a", "schema": {"type": 3}}}},
            "text.format.schema",
        ),
        ({"input": "x", "tools": [{**TOOLS[0], "parameters": {"type": 3}}]}, "tools[0].parameters"),
        ({"input": "x", "max_output_tokens": 10**6}, "max_output_tokens"),
        ({}, "input"),
    ],
)
def test_bad_requests_get_400_before_any_model_call(
    client: openai.OpenAI, sim: SimulatedOpenAIServer, body: dict, param: str | None
) -> None:
    sim.reset()
    answer = httpx.post(f"{client.base_url}responses", json={"model": "sim", **body})
    assert answer.status_code == 400, answer.text
    if param:
        assert answer.json()["error"]["param"] == param
    assert sim.calls() == 0


def test_the_agent_servers_v1_serves_responses_too(sim: SimulatedOpenAIServer) -> None:
    from langgraph_moa.serve.agent_server import create_agent_server_app
    from langgraph_moa.serve.openai_api import APISettings

    config = MoAConfig(proposers=["openai:p1"], aggregator="openai:agg", base_url=sim.base_url, max_retries=0)
    with running(create_agent_server_app(APISettings(assistants={"sim": config}))) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="-", max_retries=0)
        assert client.responses.create(model="sim", input="hi").output_text == "agg answer to: hi [refs=1]"
        missing = httpx.get(f"{url}/v1/files")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "unknown_url"
