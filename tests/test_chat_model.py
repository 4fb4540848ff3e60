"""``ChatMoA`` against LangChain's standard chat-model tests.

The unit tests run as they are. The integration tests run offline against the
simulated OpenAI-compatible server: two proposers and an aggregator that calls a
tool when it is offered tools and the conversation does not end with a tool result
(it fills the arguments from the tool's JSON schema and the numbers in the user's
text, which is what the standard tool and structured-output tests ask for).
Skipped: image, audio, PDF, video and Anthropic-format inputs (the simulated
models read text only), and JSON mode (not offered: the aggregator's output is
not constrained to JSON).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests

from langgraph_moa import ChatMoA, MoAConfig
from langgraph_moa.testing import ModelBehavior, SimulatedOpenAIServer

_SIM: dict[str, str] = {"base_url": "http://127.0.0.1:9/v1"}


def _fill(schema: dict[str, Any], text: str) -> Any:
    """A value matching ``schema``, taking numbers from ``text`` where one fits."""
    kind = schema.get("type")
    if "anyOf" in schema:
        return _fill(next(s for s in schema["anyOf"] if s.get("type") != "null"), text)
    if kind == "object":
        props = schema.get("properties", {})
        return {k: _fill(v, text) for k, v in props.items() if k in schema.get("required", props)}
    if kind in ("integer", "number"):
        found = re.search(r"-?\d+", text)
        return int(found.group()) if found else 1
    if kind == "boolean":
        return True
    if kind == "array":
        return [_fill(schema.get("items", {"type": "string"}), text)]
    if "enum" in schema:
        return schema["enum"][0]
    quoted = re.search(r"'([^']+)'", text)  # a name the user quoted, e.g. "a customer named '...'"
    return quoted.group(1) if quoted else "a simulated value"


def call_offered_tool(request: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The simulated aggregator's tool use: see the module docstring."""
    tools = request.get("tools") or []
    choice = request.get("tool_choice")
    if not tools or choice == "none" or request["messages"][-1]["role"] == "tool":
        return None
    tool = tools[0]["function"]
    if isinstance(choice, dict):
        tool = next(t["function"] for t in tools if t["function"]["name"] == choice["function"]["name"])
    user_text = " ".join(
        m["content"] for m in request["messages"] if m["role"] == "user" and isinstance(m["content"], str)
    )
    return [{"name": tool["name"], "arguments": _fill(tool.get("parameters", {}), user_text)}]


@pytest.fixture(scope="module", autouse=True)
def simulated_models() -> Iterator[SimulatedOpenAIServer]:
    with SimulatedOpenAIServer({"agg": ModelBehavior(tool_calls=call_offered_tool)}) as server:
        _SIM["base_url"] = server.base_url
        yield server


def _params() -> dict[str, Any]:
    config = MoAConfig(proposers=["openai:a", "openai:b"], aggregator="openai:agg", base_url=_SIM["base_url"])
    return {"config": config}


class TestChatMoAUnit(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[ChatMoA]:
        return ChatMoA

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return _params()


class TestChatMoAIntegration(ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[ChatMoA]:
        return ChatMoA

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return _params()

    @property
    def supports_json_mode(self) -> bool:
        return False
