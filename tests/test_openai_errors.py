"""Each error code of the OpenAI-compatible API: its status, its code, and whether a retry is allowed.

Over the API where a run can be made to fail that way (timeouts, a failed
aggregator, a misconfigured assistant); the codes no request can provoke on
purpose (``internal_error``, ``no_answer``) through the functions that make them.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from langchain_core.messages import HumanMessage

from langgraph_moa import AggregatorError, LayerFailedError, MoAConfig
from langgraph_moa.errors import ConfigError
from langgraph_moa.serve.app import ServeSettings, create_app
from langgraph_moa.serve.graph_runs import answer_of
from langgraph_moa.serve.openai_errors import OpenAIError, error_for
from langgraph_moa.testing import Fault, ModelBehavior, SimulatedOpenAIServer
from tests.conftest import running

ALWAYS = 10**6


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatedOpenAIServer]:
    behaviors = {
        "hang": ModelBehavior(hang=True),
        "broken": ModelBehavior(faults=[Fault(500, times=ALWAYS)]),
        "refusing": ModelBehavior(faults=[Fault(401, times=ALWAYS)]),
    }
    with SimulatedOpenAIServer(behaviors) as server:
        yield server


@pytest.fixture(scope="module")
def api(sim: SimulatedOpenAIServer) -> Iterator[str]:
    def cfg(proposers: list[str], aggregator: str = "agg", **kw: object) -> MoAConfig:
        return MoAConfig(
            proposers=proposers, aggregator=f"openai:{aggregator}", base_url=sim.base_url, max_retries=0, **kw
        )

    assistants = {
        "proposers-time-out": cfg(["openai:hang", "openai:hang"], timeout=0.3),
        # the proposer must answer within the timeout even on a loaded machine; the aggregator hangs
        "aggregator-times-out": cfg(["openai:p"], "hang", timeout=2),
        "aggregator-fails": cfg(["openai:p"], "broken"),
        "aggregator-refused": cfg(["openai:p"], "refusing"),
        "misconfigured": cfg(["nosuchprovider:p"]),
    }
    with running(create_app(ServeSettings(assistants=assistants), checkpoint=":memory:")) as url:
        yield url + "/v1"


def _ask(api: str, model: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "x"}]}
    return httpx.post(f"{api}/chat/completions", json=body, timeout=30)


@pytest.mark.parametrize("model", ["proposers-time-out", "aggregator-times-out"])
def test_upstream_timeouts_get_504_and_may_be_retried(api: str, model: str) -> None:
    answer = _ask(api, model)
    assert (answer.status_code, answer.json()["error"]["code"]) == (504, "upstream_timeout")
    assert "x-should-retry" not in answer.headers


def test_a_failed_aggregator_gets_502_aggregator_failed(api: str, sim: SimulatedOpenAIServer) -> None:
    answer = _ask(api, "aggregator-fails")
    error = answer.json()["error"]
    assert (answer.status_code, error["code"], error["type"]) == (502, "aggregator_failed", "server_error")
    assert "openai:broken" in error["message"] and "x-should-retry" not in answer.headers  # a 500 may pass
    refused = _ask(api, "aggregator-refused")
    assert (refused.status_code, refused.json()["error"]["code"]) == (502, "aggregator_failed")
    assert refused.headers["x-should-retry"] == "false"  # refused credentials stay refused


def test_a_misconfigured_assistant_gets_500_invalid_config_not_retried(api: str, sim: SimulatedOpenAIServer) -> None:
    sim.reset()
    answer = _ask(api, "misconfigured")
    error = answer.json()["error"]
    assert (answer.status_code, error["code"]) == (500, "invalid_config")
    assert "unknown provider 'nosuchprovider'" in error["message"]
    assert answer.headers["x-should-retry"] == "false"
    assert sim.calls() == 0  # stopped before any call


def test_the_mapping_of_each_failure() -> None:
    timeout = LayerFailedError(1, [_failure("TimeoutError"), _failure("TimeoutError")], 0, 1)
    assert (error_for(timeout, "m").status, error_for(timeout, "m").code) == (504, "upstream_timeout")
    mixed = LayerFailedError(1, [_failure("TimeoutError"), _failure("InternalServerError")], 0, 1)
    assert (error_for(mixed, "m").status, error_for(mixed, "m").code) == (502, "proposers_failed")
    aggregator = AggregatorError("openai:agg", "TimeoutError", "took too long")
    assert (error_for(aggregator, "m").status, error_for(aggregator, "m").code) == (504, "upstream_timeout")
    config = error_for(ConfigError("bad base_url"), "m")
    assert (config.status, config.code, config.retry) == (500, "invalid_config", False)
    assert config.response().headers["x-should-retry"] == "false"


def test_an_unexpected_failure_is_internal_error_without_its_text() -> None:
    error = error_for(RuntimeError("boom: sk-secret-key-1234567890"), "m")
    assert (error.status, error.code, error.type) == (500, "internal_error", "server_error")
    assert error.message == "the MoA run failed: RuntimeError; see the server log" and error.retry is True


def test_a_run_without_an_answer_is_no_answer() -> None:
    for state in ({}, {"messages": []}, {"messages": [HumanMessage("x")]}):
        with pytest.raises(OpenAIError) as caught:
            answer_of(state)
        assert (caught.value.status, caught.value.code) == (500, "no_answer")


def _failure(error_type: str) -> dict[str, object]:
    return {"layer": 1, "slot": 0, "model": "openai:p", "error_type": error_type, "message": "x"}
