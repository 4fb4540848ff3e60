"""MoAConfig validation, presets and the configurable path."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from langgraph_moa import PRESETS, ConfigError, MoAConfig, ModelSpec, get_preset
from langgraph_moa.context import moa_config_from
from langgraph_moa.presets import PAPER_PROPOSERS


@pytest.mark.parametrize(
    ("kwargs", "field_text"),
    [
        ({"layers": 0}, "layers"),
        ({"layers": 3, "layer_proposers": [["openai:a"]]}, "layer_proposers has 1 lists but layers=3 needs 2"),
        ({"layers": 2, "proposers": []}, "proposers: proposer layer 1 has no proposers"),
        ({"proposers": ["openai:a"], "min_proposals": 2}, "min_proposals=2 but proposer layer 1 has only 1"),
        ({"proposers": ["Qwen/Qwen2.5-72B"]}, "must be written 'provider:model'"),
        ({"aggregator": ":gpt-4o"}, "aggregator.model"),
        ({"temperature": 3}, "temperature"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"timeout": 0}, "timeout"),
        ({"base_url": "localhost:8080"}, "must start with http:// or https://"),
        ({"proposers": [{"model": "openai:a", "base_url": "ftp://x"}]}, "proposers.0.base_url"),
        ({"layerz": 2}, "layerz"),
    ],
)
def test_invalid_config_is_rejected_naming_the_field(kwargs: dict, field_text: str) -> None:
    with pytest.raises(ValidationError) as info:
        MoAConfig(**kwargs)
    assert field_text in str(info.value)


def test_layers_one_is_the_aggregator_alone() -> None:
    config = MoAConfig(layers=1, proposers=[], aggregator="openai:x")
    assert config.all_models() == [ModelSpec(model="openai:x")]


def test_strings_and_specs_mix_and_per_layer_lists() -> None:
    config = MoAConfig(
        layers=3,
        layer_proposers=[["openai:a", {"model": "openai:b", "temperature": 0.1}], ["openai:c"]],
        aggregator={"model": "openai:agg", "max_tokens": 99},
    )
    assert [s.model for s in config.proposers_for(1)] == ["openai:a", "openai:b"]
    assert config.proposers_for(1)[1].temperature == 0.1
    assert [s.model for s in config.proposers_for(2)] == ["openai:c"]
    assert config.aggregator.max_tokens == 99


def test_paper_presets_use_together_api_ids() -> None:
    assert PAPER_PROPOSERS == [
        "together:Qwen/Qwen1.5-110B-Chat",
        "together:Qwen/Qwen1.5-72B-Chat",
        "together:microsoft/WizardLM-2-8x22B",
        "together:meta-llama/Llama-3-70b-chat-hf",
        "together:mistralai/Mixtral-8x22B-Instruct-v0.1",
        "together:databricks/dbrx-instruct",
    ]
    assert (PRESETS["moa"].layers, PRESETS["moa"].aggregator.model) == (3, "together:Qwen/Qwen1.5-110B-Chat")
    assert (PRESETS["moa-lite"].layers, PRESETS["moa-lite"].aggregator.model) == (2, "together:Qwen/Qwen1.5-72B-Chat")
    assert PRESETS["moa-gpt4o"].aggregator.model == "openai:gpt-4o"
    self_moa = PRESETS["self-moa"]
    assert len({p.model for p in self_moa.proposers}) == 1 and len(self_moa.proposers) == 6
    assert {p.seed for p in self_moa.proposers} == {None}  # seeds are drawn per run, not pinned
    assert "together:Qwen/Qwen2.5-72B-Instruct-Turbo" in [p.model for p in PRESETS["moa-current"].proposers]


def test_get_preset_overrides_and_errors() -> None:
    assert get_preset("moa-lite", layers=3).layers == 3
    with pytest.raises(KeyError, match="unknown preset 'nope'; choose one of: moa, moa-lite"):
        get_preset("nope")
    with pytest.raises(ValidationError, match="min_proposals=7"):
        get_preset("moa", min_proposals=7)


def test_config_from_context_or_configurable() -> None:
    ctx = MoAConfig(layers=3)
    assert moa_config_from(ctx, {"layers": 1}) is ctx
    from_dict = moa_config_from({"layers": 1, "aggregator": "openai:x"})
    assert from_dict.layers == 1
    configurable = {"thread_id": "t1", "preset": "moa-lite", "temperature": 0.0}
    built = moa_config_from(None, configurable)
    assert built.temperature == 0.0 and built.aggregator.model == "together:Qwen/Qwen1.5-72B-Chat"
    assert moa_config_from(None, {"thread_id": "t"}) == MoAConfig()
    with pytest.raises(ConfigError, match="max_tokens"):
        moa_config_from(None, {"max_tokens": -1})
    with pytest.raises(ConfigError, match="unknown preset"):
        moa_config_from({"preset": "zzz"})


def test_preset_in_configurable_survives_a_context_copied_from_configurable() -> None:
    # what the LangGraph server does: configurable's MoAConfig fields become the context
    copied = MoAConfig.model_validate({"temperature": 0.2})
    cfg = moa_config_from(copied, {"preset": "moa-lite", "temperature": 0.2, "thread_id": "t"})
    assert cfg.proposers == get_preset("moa-lite").proposers and cfg.temperature == 0.2
    assert moa_config_from(copied, {"thread_id": "t"}) is copied  # no preset: the context as it is


def test_a_default_preset_applies_only_when_nothing_configures_the_run() -> None:
    lite = get_preset("moa-lite")
    assert moa_config_from(None, {"moa_default_preset": "moa-lite", "thread_id": "t"}) == lite
    assert moa_config_from(MoAConfig(), {"moa_default_preset": "moa-lite"}) == lite  # a context setting nothing
    assert moa_config_from(None, {"moa_default_preset": "moa-lite", "layers": 1}).layers == 1
    assert moa_config_from(None, {"moa_default_preset": "moa-lite", "layers": 1}).proposers == MoAConfig().proposers


def test_a_base_url_with_credentials_is_refused() -> None:
    # the configuration is stored in the run's state: a password in a URL would reach the checkpoints
    with pytest.raises(ValidationError, match="must not carry credentials"):
        MoAConfig(base_url="http://user:hunter2@127.0.0.1:8080/v1")
    with pytest.raises(ValidationError, match="must not carry credentials"):
        ModelSpec(model="openai:x", base_url="https://k@host/v1")
    assert ModelSpec(model="openai:x", base_url="http://127.0.0.1:8080/v1?x=a@b").base_url
