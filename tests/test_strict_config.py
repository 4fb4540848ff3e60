"""Configuration is strict wherever it enters: booleans are booleans, numbers are finite and within bounds.

Python (``MoAConfig``, a context mapping), the CLI, LangServe's ``configurable``;
the Agent Server validates its context against ``MoAConfig`` too. A corrupt
proposal cache names its file.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from langgraph_moa import MoAConfig
from langgraph_moa.cache import CacheError, proposal_cache
from langgraph_moa.cli import app as cli_app
from langgraph_moa.config import ModelSpec
from langgraph_moa.context import moa_config_from
from langgraph_moa.errors import ConfigError
from langgraph_moa.pricing import ModelPrice

LOOSE = [
    ("keep_top", True),
    ("layers", True),
    ("max_tokens", 2.0),
    ("max_tokens", "512"),
    ("provisional_answers", "yes"),
    ("provisional_answers", 1),
    ("review", "true"),
    ("early_stop", "0.5"),
    ("early_stop", True),
    ("straggler_timeout", True),
    ("temperature", "0.2"),
    ("timeout", math.inf),
    ("timeout", float("1e400")),
    ("max_cost_usd", math.inf),
    ("max_cost_usd", math.nan),
    ("temperature", math.nan),
    ("aggregation_window", True),
    ("min_proposals", "1"),
]


@pytest.mark.parametrize(("field", "value"), LOOSE)
def test_a_value_of_the_wrong_kind_is_refused(field: str, value: Any) -> None:
    with pytest.raises(ValidationError, match=field):
        MoAConfig(**{field: value})
    with pytest.raises(ConfigError, match=field):
        moa_config_from({field: value})  # a context mapping (the Agent Server's context, an assistants file)


def test_numbers_of_the_right_kind_are_accepted() -> None:
    config = MoAConfig(timeout=5, temperature=1, max_cost_usd=0, early_stop=1, straggler_timeout=2)
    assert config.timeout == 5.0 and isinstance(config.timeout, float)
    assert MoAConfig.model_validate_json('{"timeout": 30, "keep_top": 2, "provisional_answers": true}').keep_top == 2


def test_model_entries_and_prices_are_strict_too() -> None:
    for bad in ({"temperature": "1"}, {"max_tokens": True}, {"requests_per_second": math.inf}, {"seed": 1.5}):
        with pytest.raises(ValidationError):
            ModelSpec(model="openai:x", **bad)
    with pytest.raises(ValidationError, match="finite"):
        ModelPrice(input=math.inf, output=1)


@pytest.mark.parametrize(
    ("option", "value"),
    [("--max-cost", "inf"), ("--timeout", "1e400"), ("--temperature", "nan"), ("--early-stop", "nan")],
)
def test_the_cli_refuses_a_number_that_is_not_finite(option: str, value: str) -> None:
    args = ["ask", "hi", "--proposer", "openai:a", "--aggregator", "openai:b", "--base-url", "http://127.0.0.1:9/v1"]
    result = CliRunner().invoke(cli_app, [*args, option, value])
    assert result.exit_code == 2, result.output
    assert option in result.output and "not a finite number" in result.output


def test_langserve_refuses_loose_values_in_configurable() -> None:
    """LangServe's own validation would read ``true`` as 1 and ``"0.5"`` as 0.5: the values are checked as sent."""
    from langgraph_moa.serve.langserve_routes import create_langserve_app
    from tests.conftest import running

    question = b'{"input": {"messages": [["user", "hi"]]}, "config": {"configurable": {'
    cases = {
        "temperature": b'"temperature": "0.5"',
        "max_retries": b'"max_retries": true',
        "timeout": b'"timeout": 1e400',
    }
    with running(create_langserve_app()) as base, httpx.Client(base_url=base, timeout=30) as client:
        for field, value in cases.items():
            body = question + value + b"}}}"
            answer = client.post("/moa/invoke", content=body, headers={"Content-Type": "application/json"})
            assert answer.status_code == 422, (field, answer.text)
            assert field in answer.json()["detail"], (field, answer.text)


def test_a_corrupt_cache_database_is_named(tmp_path: Path) -> None:
    corrupt = tmp_path / "proposal-cache.sqlite"
    corrupt.write_bytes(b"not a database " * 100)
    with pytest.raises(CacheError, match=str(corrupt)) as raised:
        proposal_cache(corrupt)
    assert "delete or move that file" in str(raised.value)


def test_moa_ask_with_a_corrupt_cache_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from langgraph_moa import cache
    from langgraph_moa.cli import ask

    corrupt = tmp_path / "proposal-cache.sqlite"
    corrupt.write_bytes(b"not a database " * 100)
    monkeypatch.setattr(cache, "data_dir", lambda: tmp_path)
    monkeypatch.setattr(ask, "proposal_cache", cache.proposal_cache)
    args = ["ask", "hi", "--proposer", "openai:a", "--aggregator", "openai:b", "--base-url", "http://127.0.0.1:9/v1"]
    result = CliRunner().invoke(cli_app, [*args, "--cache"])
    assert result.exit_code == 1, result.output
    assert str(corrupt) in result.output.replace("\n", "") and "error:" in result.output
