"""Shared fixtures: a clean environment and the simulated OpenAI-compatible server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from langgraph_moa import MoAConfig
from langgraph_moa.testing import SimulatedOpenAIServer

PROVIDER_VARIABLES = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "OPENAI_API_BASE",
    "TOGETHER_API_KEY",
    "TOGETHER_API_BASE",
    "LANGSMITH_TRACING",
    "LANGCHAIN_TRACING_V2",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's keys or endpoints."""
    for name in PROVIDER_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server() -> Iterator[SimulatedOpenAIServer]:
    """A simulated OpenAI-compatible server on a free loopback port."""
    with SimulatedOpenAIServer() as srv:
        yield srv


def sim_config(server: SimulatedOpenAIServer, proposers: list[str], aggregator: str = "agg", **kw: Any) -> MoAConfig:
    """A MoAConfig whose models are ``openai:<name>`` on the simulated server."""
    return MoAConfig(
        proposers=[f"openai:{p}" for p in proposers],
        aggregator=f"openai:{aggregator}",
        base_url=server.base_url,
        **kw,
    )


def user(text: str) -> dict[str, Any]:
    """Graph input with one user message."""
    return {"messages": [("user", text)]}
