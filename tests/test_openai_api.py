"""The OpenAI-compatible API, through the official ``openai`` SDK, on a real server on loopback.

The app runs under uvicorn on a thread; its models are ``openai:<name>`` on the
simulated upstream, whose per-model behaviors (latency, faults, hangs) make
every error path and the concurrency bound observable.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import threading
from collections.abc import Iterator

import httpx
import openai
import pydantic
import pytest

from langgraph_moa import MoAConfig
from langgraph_moa.serve.app import ServeSettings, create_app
from langgraph_moa.testing import Fault, ModelBehavior, SimulatedOpenAIServer
from tests.conftest import answer_at_peak, hang_up_when_called, running, wait_idle

PROVIDER_CONCURRENCY = 4
LEAKED = "SIMULATED_UPSTREAM_KEY"  # its value must never reach a client
ALWAYS = 10**6  # a fault that never runs out


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatedOpenAIServer]:
    behaviors = {
        "f1": ModelBehavior(faults=[Fault(500, times=ALWAYS)]),
        "f2": ModelBehavior(faults=[Fault(503, times=ALWAYS)]),
        "r1": ModelBehavior(faults=[Fault(429, times=ALWAYS)]),
        "agg429": ModelBehavior(faults=[Fault(429, times=ALWAYS)]),
        "unauthorized": ModelBehavior(faults=[Fault(401, times=ALWAYS)]),
        "hang": ModelBehavior(hang=True),
        # two words, then held until the client leaves or the server stops: its answer never ends on its own
        "slowagg": ModelBehavior(reply="word " * 200, hold=threading.Event(), hold_after=2),
        "busy": ModelBehavior(latency=0.05),
        "cutagg": ModelBehavior(finish_reason="length"),
        # a careless upstream that echoes a secret into a tool call's arguments, 3 characters a chunk
        "leakyagg": ModelBehavior(
            tool_calls=lambda request: [{"name": "get_weather", "arguments": {"city": os.environ[LEAKED]}}],
            chunk_chars=3,
        ),
        "notjson": ModelBehavior(reply="Sure! Here is the weather: sunny."),
    }
    with SimulatedOpenAIServer(behaviors) as server:
        yield server


def assistants(sim: SimulatedOpenAIServer) -> dict[str, MoAConfig]:
    def cfg(proposers: list[str], aggregator: str = "agg", **kw) -> MoAConfig:
        return MoAConfig(
            proposers=[f"openai:{p}" for p in proposers],
            aggregator=f"openai:{aggregator}",
            base_url=sim.base_url,
            max_retries=0,
            **kw,
        )

    return {
        "sim": cfg(["p1", "p2"]),
        "failing": cfg(["f1", "f2"]),
        "refused": cfg(["unauthorized"]),
        "rate-limited": cfg(["r1"]),
        "agg-rate-limited": cfg(["p1"], "agg429"),
        "hanging": cfg(["hang"], timeout=60),
        "slow-stream": cfg(["p1"], "slowagg"),
        "busy": cfg(["busy", "busy"], "busy"),
        "cut": cfg(["p1"], "cutagg"),
        "leaky": cfg(["p1"], "leakyagg"),
        "not-json": cfg(["p1"], "notjson"),
        "needs-key": MoAConfig(
            proposers=["openai:p1"], aggregator="together:Qwen/Qwen2.5-72B-Instruct-Turbo", base_url=sim.base_url
        ),
    }


@pytest.fixture(scope="module")
def api(sim: SimulatedOpenAIServer) -> Iterator[str]:
    settings = ServeSettings(
        assistants=assistants(sim),
        max_tokens=1000,
        max_request_bytes=20_000,
        provider_concurrency=PROVIDER_CONCURRENCY,
    )
    with running(create_app(settings, checkpoint=":memory:")) as url:
        yield url + "/v1"


@pytest.fixture
def client(api: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=api, api_key="unused", max_retries=0, timeout=20) as c:
        yield c


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}]


# --------------------------------------------------------------------------- answers


def test_models_lists_the_assistants(client: openai.OpenAI, sim: SimulatedOpenAIServer) -> None:
    # `needs-key` is served but cannot run here (no TOGETHER_API_KEY): it is left out of the list
    assert [m.id for m in client.models.list()] == [name for name in assistants(sim) if name != "needs-key"]
    assert client.models.retrieve("sim").id == "sim"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4o")


def test_completion_with_sync_client(client: openai.OpenAI, sim: SimulatedOpenAIServer) -> None:
    sim.reset()
    completion = client.chat.completions.create(
        model="sim", messages=ask("What is MoA?"), temperature=0.2, max_tokens=100
    )
    assert completion.object == "chat.completion" and completion.model == "sim"
    assert completion.id.startswith("chatcmpl-")
    assert completion.choices[0].message.content == "agg answer to: What is MoA? [refs=2]"
    assert completion.choices[0].finish_reason == "stop"
    # temperature and max_tokens reach the aggregator only
    agg = sim.requests_for("agg")[0]
    assert (agg["temperature"], agg["max_tokens"]) == (0.2, 100)
    assert all(
        (r["temperature"], r["max_tokens"]) == (0.7, 512) for r in sim.requests_for("p1") + sim.requests_for("p2")
    )
    # usage counts every call of the turn; the details are in the `moa` extension
    moa = completion.moa
    assert [p["model"] for p in moa["proposals"]] == ["openai:p1", "openai:p2"]
    assert moa["failures"] == [] and moa["layers"] == 2 and moa["aggregator"] == "openai:agg"
    by_layer = moa["usage"]["by_layer"]
    assert set(by_layer) == {"1", "2"}
    assert completion.usage.prompt_tokens == sum(v["input_tokens"] for v in by_layer.values())
    assert completion.usage.completion_tokens == sum(v["output_tokens"] for v in by_layer.values())
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    assert len(moa["usage"]["calls"]) == 3


@pytest.mark.parametrize("stream", [False, True])
def test_an_answer_cut_at_max_tokens_says_so(client: openai.OpenAI, stream: bool) -> None:
    if stream:
        chunks = list(client.chat.completions.create(model="cut", messages=ask("q"), stream=True))
        (finish,) = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    else:
        finish = client.chat.completions.create(model="cut", messages=ask("q")).choices[0].finish_reason
    assert finish == "length"


def test_stream_with_sync_client(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="sim", messages=ask("stream this"), stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "agg answer to: stream this [refs=2]"
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 3  # token by token
    assert len({c.id for c in chunks}) == 1
    finish = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finish) == 1 and finish[0].choices[0].finish_reason == "stop"
    assert [p["model"] for p in finish[0].moa["proposals"]] == ["openai:p1", "openai:p2"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    assert all(c.usage is None for c in chunks[:-1])

    plain = list(client.chat.completions.create(model="sim", messages=ask("no usage"), stream=True))
    assert all(c.usage is None for c in plain) and plain[-1].choices[0].finish_reason == "stop"


async def test_completion_and_stream_with_async_client(api: str) -> None:
    async with openai.AsyncOpenAI(base_url=api, api_key="unused", max_retries=0) as client:
        completion = await client.chat.completions.create(model="sim", messages=ask("async?"))
        assert completion.choices[0].message.content == "agg answer to: async? [refs=2]"
        assert completion.usage.total_tokens > 0
        stream = await client.chat.completions.create(
            model="sim", messages=ask("async stream"), stream=True, stream_options={"include_usage": True}
        )
        chunks = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        "agg answer to: async stream [refs=2]"
    )
    assert chunks[-1].usage.total_tokens == chunks[-1].usage.prompt_tokens + chunks[-1].usage.completion_tokens


def test_requests_share_no_conversation(client: openai.OpenAI, sim: SimulatedOpenAIServer) -> None:
    client.chat.completions.create(model="sim", messages=ask("first secret topic"))
    sim.reset()
    history = [
        {"role": "developer", "content": "Answer in French."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "second"},
    ]
    answer = client.chat.completions.create(model="sim", messages=history)
    assert answer.choices[0].message.content == "agg answer to: second [refs=2]"
    sent = sim.requests_for("agg")[0]["messages"]
    assert "first secret topic" not in str(sent)
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert sent[0]["content"].startswith("Answer in French.")


def test_store_keeps_the_completion_for_retrieval(client: openai.OpenAI) -> None:
    stored = client.chat.completions.create(model="sim", messages=ask("keep me"), store=True)
    again = client.chat.completions.retrieve(stored.id)
    assert again.choices[0].message.content == stored.choices[0].message.content
    assert again.model == "sim" and again.moa["proposals"] == stored.moa["proposals"]
    assert again.usage.total_tokens == stored.usage.total_tokens
    not_stored = client.chat.completions.create(model="sim", messages=ask("forget me"))
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.retrieve(not_stored.id)


# --------------------------------------------------------------------------- errors


def tool(name: str = "get_weather", parameters: dict | None = None) -> dict:
    parameters = parameters or {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    return {
        "type": "function",
        "function": {"name": name, "description": "Weather of a city.", "parameters": parameters},
    }


def called(name: str = "get_weather", arguments: str = '{"city": "Paris"}', call_id: str = "call_1") -> dict:
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}],
    }


BAD_REQUESTS = {  # id: (request fields, the param the 400 names)
    "no-messages": ({"messages": []}, "messages"),
    "unknown-role": ({"messages": [{"role": "function", "content": "x"}]}, "messages[0].role"),
    "tool-result-without-call": (
        {"messages": [{"role": "user", "content": "x"}, {"role": "tool", "content": "x", "tool_call_id": "1"}]},
        "messages[1].tool_call_id",
    ),
    "tool-result-for-another-call": (
        {"messages": [*ask("x"), called(), {"role": "tool", "content": "x", "tool_call_id": "call_2"}]},
        "messages[3].tool_call_id",
    ),
    "tool-call-arguments-not-json": (
        {"messages": [*ask("x"), called(arguments="{city")], "tools": [tool()]},
        "messages[2].tool_calls[0].function.arguments",
    ),
    "tool-name": ({"messages": ask("x"), "tools": [tool("get weather!")]}, "tools[0].function.name"),
    "tool-type": ({"messages": ask("x"), "tools": [{"type": "web_search"}]}, "tools[0].type"),
    "tool-parameters-schema": (
        {"messages": ask("x"), "tools": [tool(parameters={"type": 5})]},
        "tools[0].function.parameters",
    ),
    "tool-names-twice": ({"messages": ask("x"), "tools": [tool(), tool()]}, "tools[1].function.name"),
    "tool-choice-without-tools": ({"messages": ask("x"), "tool_choice": "required"}, "tool_choice"),
    "tool-choice-unknown-function": (
        {"messages": ask("x"), "tools": [tool()], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
        "tool_choice.function.name",
    ),
    "n": ({"messages": ask("x"), "n": 2}, "n"),
    "max-tokens-limit": ({"messages": ask("x"), "max_tokens": 1001}, "max_tokens"),
    "temperature": ({"messages": ask("x"), "temperature": 3}, "temperature"),
    "image": ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}, None),
    "json-schema-missing": (
        {"messages": ask("x"), "response_format": {"type": "json_schema"}},
        "response_format.json_schema",
    ),
    "json-schema-invalid": (
        {
            "messages": ask("x"),
            "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "nope"}}},
        },
        "response_format.json_schema.schema",
    ),
    "logprobs": ({"messages": ask("x"), "logprobs": True}, "logprobs"),
    "audio": ({"messages": ask("x"), "audio": {"voice": "alloy", "format": "wav"}}, "audio"),
    "prediction": ({"messages": ask("x"), "prediction": {"type": "content", "content": "x"}}, "prediction"),
    "functions": ({"messages": ask("x"), "functions": [{"name": "f", "parameters": {}}]}, "functions"),
    "function-call": ({"messages": ask("x"), "function_call": {"name": "f"}}, "function_call"),
    "stop": ({"messages": ask("x"), "stop": ["a", "b", "c", "d", "e"]}, "stop"),
}


@pytest.mark.parametrize(("kwargs", "param"), list(BAD_REQUESTS.values()), ids=list(BAD_REQUESTS))
def test_bad_requests_get_400(client: openai.OpenAI, sim: SimulatedOpenAIServer, kwargs: dict, param) -> None:
    sim.reset()
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="sim", **kwargs)
    error = caught.value.body
    assert caught.value.status_code == 400 and error["type"] == "invalid_request_error"
    if param:
        assert error["param"] == param
        assert error["message"].startswith(param) or param.split("[")[0] in error["message"]
    assert sim.calls() == 0  # refused before any model call


# --------------------------------------------------------------------------- tools and structured output

WEATHER = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather of a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]


def test_tools_reach_the_aggregator_and_the_proposers_see_them_as_text(
    client: openai.OpenAI, sim: SimulatedOpenAIServer
) -> None:
    sim.reset()
    completion = client.chat.completions.create(
        model="sim", messages=ask("weather in Paris?"), tools=WEATHER, parallel_tool_calls=False, max_tokens=90
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "weather in Paris?"}
    agg = sim.requests_for("agg")[0]
    assert agg["tools"] == WEATHER and agg["parallel_tool_calls"] is False and agg["max_tokens"] == 90
    for proposer in sim.requests_for("p1") + sim.requests_for("p2"):
        assert "tools" not in proposer
        assert "get_weather" in proposer["messages"][0]["content"]  # the tool list, as text


def test_a_whole_tool_loop(client: openai.OpenAI, sim: SimulatedOpenAIServer) -> None:
    messages: list = ask("weather in Paris?")
    first = client.chat.completions.create(model="sim", messages=messages, tools=WEATHER, tool_choice="required")
    call = first.choices[0].message.tool_calls[0]
    city = json.loads(call.function.arguments)["city"]
    messages += [first.choices[0].message.model_dump(exclude_none=True)]
    messages += [{"role": "tool", "tool_call_id": call.id, "content": f"sunny in {city}"}]
    sim.reset()
    final = client.chat.completions.create(model="sim", messages=messages, tools=WEATHER)
    assert final.choices[0].finish_reason == "stop"
    assert final.choices[0].message.content.endswith("[tool results: sunny in weather in Paris?]")
    agg = sim.requests_for("agg")[0]["messages"]
    assert [m["role"] for m in agg] == ["system", "user", "assistant", "tool"]
    assert agg[2]["tool_calls"][0]["id"] == agg[3]["tool_call_id"] == call.id
    proposer = sim.requests_for("p1")[0]["messages"]
    assert [m["role"] for m in proposer] == ["system", "user", "assistant", "user"]
    assert proposer[3]["content"].startswith("[result of tool get_weather]")


def test_tool_choice_none_and_named(client: openai.OpenAI, sim: SimulatedOpenAIServer) -> None:
    sim.reset()
    none = client.chat.completions.create(model="sim", messages=ask("hi"), tools=WEATHER, tool_choice="none")
    assert none.choices[0].message.tool_calls is None and none.choices[0].finish_reason == "stop"
    named = {"type": "function", "function": {"name": "get_weather"}}
    forced = client.chat.completions.create(model="sim", messages=ask("hi"), tools=WEATHER, tool_choice=named)
    assert forced.choices[0].message.tool_calls[0].function.name == "get_weather"
    assert [r["tool_choice"] for r in sim.requests_for("agg")] == ["none", named]


def test_streamed_tool_calls_come_as_openai_sends_them(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(model="sim", messages=ask("weather?"), tools=WEATHER, stream=True))
    deltas = [d for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or []]
    assert deltas[0].id and deltas[0].type == "function" and deltas[0].function.name == "get_weather"
    assert {d.index for d in deltas} == {0}
    assert json.loads("".join(d.function.arguments or "" for d in deltas)) == {"city": "weather?"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]


@pytest.mark.parametrize("stream", [False, True])
def test_a_key_in_tool_call_arguments_is_redacted(
    client: openai.OpenAI, monkeypatch: pytest.MonkeyPatch, stream: bool
) -> None:
    secret = "sk-simulated-0123456789abcdef"
    monkeypatch.setenv(LEAKED, secret)
    if stream:
        chunks = client.chat.completions.create(model="leaky", messages=ask("x"), tools=WEATHER, stream=True)
        arguments = "".join(
            d.function.arguments or "" for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or []
        )
    else:
        answer = client.chat.completions.create(model="leaky", messages=ask("x"), tools=WEATHER)
        arguments = answer.choices[0].message.tool_calls[0].function.arguments
    assert secret[:10] not in arguments and json.loads(arguments) == {"city": "***"}


class Weather(pydantic.BaseModel):
    city: str
    sunny: bool


@pytest.mark.parametrize("stream", [False, True])
def test_json_schema_output(client: openai.OpenAI, sim: SimulatedOpenAIServer, stream: bool) -> None:
    sim.reset()
    if stream:
        with client.chat.completions.stream(model="sim", messages=ask("Paris?"), response_format=Weather) as events:
            parsed = events.get_final_completion().choices[0].message.parsed
    else:
        parsed = client.chat.completions.parse(model="sim", messages=ask("Paris?"), response_format=Weather)
        parsed = parsed.choices[0].message.parsed
    assert parsed == Weather(city="Paris?", sunny=True)
    fmt = sim.requests_for("agg")[0]["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    assert "JSON schema" in sim.requests_for("p1")[0]["messages"][0]["content"]  # proposers are told the format


def test_json_object_output(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(model="sim", messages=ask("hi"), response_format={"type": "json_object"})
    assert json.loads(answer.choices[0].message.content) == {"answer": "agg answer to: hi"}


@pytest.mark.parametrize("stream", [False, True])
def test_an_answer_that_is_not_the_json_asked_for_is_an_error(client: openai.OpenAI, stream: bool) -> None:
    fmt = {"type": "json_object"}
    with pytest.raises(openai.APIError) as caught:
        answer = client.chat.completions.create(model="not-json", messages=ask("x"), response_format=fmt, stream=stream)
        if stream:
            text = "".join(c.choices[0].delta.content or "" for c in answer if c.choices)
            assert "Sure" not in text  # nothing of an invalid answer is sent before the check
    assert "not JSON" in caught.value.message


@pytest.mark.parametrize("stream", [False, True])
def test_stop_is_applied(client: openai.OpenAI, stream: bool) -> None:
    if stream:
        chunks = client.chat.completions.create(model="sim", messages=ask("hi"), stop=["to:"], stream=True)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        text = client.chat.completions.create(model="sim", messages=ask("hi"), stop="to:").choices[0].message.content
    assert text == "agg answer "


def test_seed_is_the_runs_seed(client: openai.OpenAI, sim: SimulatedOpenAIServer) -> None:
    def seeds(seed: int) -> list[int]:
        sim.reset()
        client.chat.completions.create(model="sim", messages=ask("hi"), seed=seed)
        return [r["seed"] for r in sorted(sim.requests, key=lambda r: r["model"])]

    assert seeds(7) == seeds(7) != seeds(8)


def test_unknown_routes_and_methods_answer_in_openais_shape(api: str, client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.post("/embeddings", body={"model": "sim", "input": "x"}, cast_to=object)
    assert caught.value.body["code"] == "unknown_url" and "POST /v1/embeddings" in caught.value.message
    wrong_method = httpx.get(f"{api}/chat/completions")
    assert wrong_method.status_code == 405 and wrong_method.json()["error"]["code"] == "method_not_allowed"
    assert httpx.get(api.removesuffix("/v1") + "/nope").json() == {"detail": "Not Found"}  # not under /v1


def test_null_stands_for_the_default(api: str) -> None:
    body = {
        "model": "sim",
        "messages": ask("nulls"),
        "n": None,
        "stream": None,
        "store": None,
        "stream_options": None,
        "temperature": None,
        "tools": None,
        "response_format": {"type": "text"},
        "functions": [],
        "function_call": "none",
    }
    answer = httpx.post(f"{api}/chat/completions", json=body, timeout=20)
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"] == "agg answer to: nulls [refs=2]"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_tokens", True),
        ("max_tokens", "10"),
        ("max_completion_tokens", 1.5),
        ("stream", "true"),
        ("stream", 1),
        ("n", "1"),
        ("store", "false"),
        ("temperature", "0.5"),
        ("stream_options", {"include_usage": "yes"}),
    ],
)
def test_loosely_typed_values_get_400(api: str, sim: SimulatedOpenAIServer, field: str, value: object) -> None:
    """OpenAI refuses `"max_tokens": true`; so does this server, instead of running it as max_tokens=1."""
    sim.reset()
    answer = httpx.post(f"{api}/chat/completions", json={"model": "sim", "messages": ask("x"), field: value})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["param"].split(".")[0] == field and "valid" in answer.json()["error"]["message"]
    assert sim.calls() == 0


def test_two_host_headers_get_400(api: str) -> None:
    import http.client
    from urllib.parse import urlsplit

    url = urlsplit(api)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    conn.putrequest("GET", "/health", skip_host=True)
    conn.putheader("Host", "127.0.0.1")
    conn.putheader("Host", "evil.example")
    conn.endheaders()
    answer = conn.getresponse()
    assert answer.status == 400 and b"more than one Host header" in answer.read()
    conn.close()


def test_unknown_model_gets_404_listing_the_served_ids(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=ask("x"))
    assert caught.value.body["code"] == "model_not_found" and "sim" in caught.value.body["message"]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_every_proposer_failing_gets_502(client: openai.OpenAI, stream: bool) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="failing", messages=ask("x"), stream=stream)
    assert caught.value.status_code == 502
    body = caught.value.body
    assert body["code"] == "proposers_failed" and body["type"] == "server_error"
    assert "openai:f1" in body["message"] and "openai:f2" in body["message"]


def test_upstream_rate_limits_get_429(client: openai.OpenAI) -> None:
    for model in ("rate-limited", "agg-rate-limited"):
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(model=model, messages=ask("x"))
        assert caught.value.status_code == 429 and caught.value.body["code"] == "rate_limit_exceeded"


def test_missing_provider_key_names_the_variable(client: openai.OpenAI, sim: SimulatedOpenAIServer) -> None:
    sim.reset()
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="needs-key", messages=ask("x"))
    assert caught.value.status_code == 503
    assert "TOGETHER_API_KEY" in caught.value.body["message"] and caught.value.body["code"] == "missing_credentials"
    assert sim.calls() == 0


def test_malformed_and_oversized_bodies(api: str, sim: SimulatedOpenAIServer) -> None:
    json_type = {"content-type": "application/json"}
    bad = httpx.post(f"{api}/chat/completions", content=b"{not json", headers=json_type)
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    array = httpx.post(f"{api}/chat/completions", json=[1, 2])
    assert array.status_code == 400 and array.json()["error"]["message"].startswith("the body must be a JSON object")
    huge = {"model": "sim", "messages": [{"role": "user", "content": "x" * 30_000}]}
    assert httpx.post(f"{api}/chat/completions", json=huge).status_code == 413
    sim.reset()
    root = api.removesuffix("/v1")
    invoke = b'{"input": {"messages": [{"type": "human", "content": "' + b"x" * 25_000 + b'"}]}}'
    for path in ("/v1/chat/completions", "/moa/invoke", "/moa/batch"):  # no Content-Length: counted as read
        pieces = iter([invoke[i : i + 4096] for i in range(0, len(invoke), 4096)])
        chunked = httpx.post(root + path, content=pieces, headers=json_type)
        assert "content-length" not in chunked.request.headers
        assert chunked.status_code == 413 and chunked.json()["error"]["code"] == "request_too_large", path
    assert sim.calls() == 0


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/moa/invoke"])
def test_bodies_must_be_declared_json(api: str, path: str) -> None:
    """Browsers post text/plain and forms cross-site without asking first: those are refused."""
    url = api.removesuffix("/v1") + path
    body = '{"model": "sim", "messages": [{"role": "user", "content": "x"}]}'
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        refused = httpx.post(url, content=body, headers={"content-type": content_type} if content_type else {})
        assert refused.status_code == 415 and refused.json()["error"]["code"] == "unsupported_media_type"
    accepted = httpx.post(url, content=body, headers={"content-type": "application/json; charset=utf-8"})
    assert accepted.status_code not in (413, 415)


def test_errors_a_retry_cannot_fix_are_not_retried(api: str, sim: SimulatedOpenAIServer) -> None:
    sent = []
    counting = httpx.Client(event_hooks={"request": [sent.append]})
    with openai.OpenAI(base_url=api, api_key="unused", max_retries=2, http_client=counting) as patient:
        for model, status in (("needs-key", 503), ("refused", 502), ("gpt-4o", 404)):
            sent.clear()
            with pytest.raises(openai.APIStatusError) as caught:
                patient.chat.completions.create(model=model, messages=ask("x"))
            assert caught.value.status_code == status
            assert caught.value.response.headers["x-should-retry"] == "false"
            assert len(sent) == 1, f"{model}: {len(sent)} requests"
    assert caught.value.body["code"] == "model_not_found"
    for model in ("failing", "rate-limited"):  # upstream errors and rate limits may pass: retries allowed
        answer = httpx.post(f"{api}/chat/completions", json={"model": model, "messages": ask("x")}, timeout=20)
        assert answer.status_code in (502, 429) and "x-should-retry" not in answer.headers


# --------------------------------------------------------------------------- concurrency


async def test_fifty_concurrent_requests_all_succeed_within_the_provider_bound(
    api: str, sim: SimulatedOpenAIServer
) -> None:
    sim.reset()
    sim.set_behavior("busy", ModelBehavior(latency=0.05, reply=answer_at_peak(sim, PROVIDER_CONCURRENCY)))
    try:
        async with openai.AsyncOpenAI(base_url=api, api_key="unused", max_retries=0, timeout=60) as client:
            answers = await asyncio.gather(
                *(client.chat.completions.create(model="busy", messages=ask(f"question {i}")) for i in range(50))
            )
    finally:
        sim.set_behavior("busy", ModelBehavior(latency=0.05))
    assert [a.choices[0].message.content for a in answers] == [
        f"busy answer to: question {i} [refs=2]" for i in range(50)
    ]
    assert len({a.id for a in answers}) == 50
    assert sim.calls("busy") == 150
    assert sim.max_concurrency == PROVIDER_CONCURRENCY  # reached, never exceeded


def test_disconnect_cancels_the_upstream_calls(api: str, sim: SimulatedOpenAIServer) -> None:
    assert wait_idle(sim)
    for n, stream in enumerate((False, True), start=1):

        async def create(stream: bool = stream) -> None:
            async with openai.AsyncOpenAI(base_url=api, api_key="unused", max_retries=0, timeout=60) as leaving:
                answer = await leaving.chat.completions.create(model="hanging", messages=ask("x"), stream=stream)
                if stream:
                    async for _ in answer:
                        pass

        hang_up_when_called(create, sim, n, "hang")  # the client leaves once its run calls the hanging model
    assert sim.calls("hang") == 2
    assert wait_idle(sim), "the upstream requests were not cancelled"  # they hang until cancelled


def test_disconnect_mid_stream_cancels_the_aggregator(client: openai.OpenAI, sim: SimulatedOpenAIServer) -> None:
    assert wait_idle(sim)
    sim.reset()
    stream = client.chat.completions.create(model="slow-stream", messages=ask("a long question to answer"), stream=True)
    received = []
    for chunk in stream:
        received.append(chunk.choices[0].delta.content)
        if len(received) == 3:
            break
    stream.close()
    assert received[1:] == ["word", " word"]  # sent as they come: only text that could start a key is held
    assert sim.calls("slowagg") == 1
    assert wait_idle(sim, 30), "the aggregator kept streaming to nobody"  # its held answer never ends


async def test_a_stream_whose_client_left_before_the_first_event_cancels_its_run() -> None:
    """The event generator never starts then, so its own clean-up cannot be what stops the run."""
    from langgraph_moa.serve.graph_runs import RunStream

    class Run:
        cancelled = False

        def cancel(self) -> None:
            self.cancelled = True

    async def events():
        yield {"data": "never sent"}

    async def gone() -> dict:
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        await asyncio.sleep(0)

    run = Run()
    await RunStream(run, events())({"type": "http", "method": "POST", "headers": []}, gone, send)
    assert run.cancelled


# --------------------------------------------------------------------------- auth


@pytest.fixture(scope="module")
def secured(sim: SimulatedOpenAIServer) -> Iterator[str]:
    keys = ("sk-moa-first-key-0001", "sk-moa-second-key-0002")
    settings = ServeSettings(assistants={"sim": assistants(sim)["sim"]}, api_keys=keys)
    with running(create_app(settings, checkpoint=":memory:", langserve_path=None), log_level="debug") as url:
        yield url


@pytest.fixture
def server_log() -> Iterator[io.StringIO]:
    """Everything the app and uvicorn log (uvicorn's loggers do not propagate to pytest's caplog)."""
    text = io.StringIO()
    handler = logging.StreamHandler(text)
    loggers = [logging.getLogger(name) for name in ("", "uvicorn", "uvicorn.error", "uvicorn.access")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield text
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


def test_api_keys_are_required_and_never_echoed(secured: str, server_log: io.StringIO) -> None:
    for headers in ({}, {"Authorization": "Basic sk-moa-first-key-0001"}):  # no key, or not as a bearer
        refused = httpx.post(
            f"{secured}/v1/chat/completions", json={"model": "sim", "messages": ask("x")}, headers=headers
        )
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"
        assert refused.headers["www-authenticate"] == "Bearer"
    for key in ("sk-wrong-key-123456", "sk-moa-first-key-0001x", "sk-moa-first-key-000"):
        with openai.OpenAI(base_url=secured + "/v1", api_key=key, max_retries=0) as c:
            with pytest.raises(openai.AuthenticationError) as caught:
                c.chat.completions.create(model="sim", messages=ask("x"))
            assert caught.value.body["code"] == "invalid_api_key"
            assert key not in caught.value.response.text
            with pytest.raises(openai.AuthenticationError):
                c.models.list()
    for key in ("sk-moa-first-key-0001", "sk-moa-second-key-0002"):
        with openai.OpenAI(base_url=secured + "/v1", api_key=key, max_retries=0) as c:
            answer = c.chat.completions.create(model="sim", messages=ask("with key"))
            assert answer.choices[0].message.content == "agg answer to: with key [refs=2]"
            assert key not in answer.model_dump_json()
    assert httpx.get(secured + "/health").json() == {"status": "ok"}  # open, for health checks
    logged = server_log.getvalue()
    assert '"POST /v1/chat/completions HTTP/1.1" 401' in logged  # the access log is captured
    assert "sk-moa" not in logged


def test_history_may_call_functions_the_request_no_longer_offers(client: openai.OpenAI) -> None:
    """As OpenAI does: the Agents SDK's handoff calls stay in the history of the agent handed to."""
    handoff = called("transfer_to_forecaster", "{}")
    messages = [*ask("x"), handoff, {"role": "tool", "tool_call_id": "call_1", "content": "ok"}]
    answer = client.chat.completions.create(model="sim", messages=messages, tools=WEATHER, tool_choice="none")
    assert answer.choices[0].message.content.endswith("[tool results: ok]")
