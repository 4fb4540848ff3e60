"""Named configurations: the paper's MoA setups and current ones.

==================  ======  ==================================================  =============================
name                layers  proposers                                           aggregator
==================  ======  ==================================================  =============================
``moa``             3       the paper's six open models                         Qwen1.5-110B-Chat
``moa-lite``        2       the paper's six open models                         Qwen1.5-72B-Chat
``moa-gpt4o``       3       the paper's six open models                         GPT-4o (OpenAI)
``moa-current``     2       Together's January 2025 MoA example (4 models)      Qwen2.5-72B-Instruct-Turbo
``self-moa``        2       Qwen2.5-72B-Instruct-Turbo sampled 6 times          Qwen2.5-72B-Instruct-Turbo
==================  ======  ==================================================  =============================

The paper's models are kept for reproduction; Together has retired several of
them, so ``moa-current`` is the one to start with. Model ids are the exact ids of
Together's API. Source: Wang et al., arXiv 2406.04692, and
``togethercomputer/MoA``; Self-MoA: Li et al., arXiv 2502.00674.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langgraph_moa.config import MoAConfig, ModelSpec

PAPER_PROPOSERS = [
    "together:Qwen/Qwen1.5-110B-Chat",
    "together:Qwen/Qwen1.5-72B-Chat",
    "together:microsoft/WizardLM-2-8x22B",
    "together:meta-llama/Llama-3-70b-chat-hf",
    "together:mistralai/Mixtral-8x22B-Instruct-v0.1",
    "together:databricks/dbrx-instruct",
]
"""The six proposers of every proposer layer in the paper's configurations."""

CURRENT_PROPOSERS = [
    "together:meta-llama/Llama-3.3-70B-Instruct-Turbo",
    "together:Qwen/Qwen2.5-72B-Instruct-Turbo",
    "together:Qwen/Qwen2.5-Coder-32B-Instruct",
    "together:microsoft/WizardLM-2-8x22B",
]
"""The proposers of Together's January 2025 MoA example."""

_SELF_MOA_MODEL = "together:Qwen/Qwen2.5-72B-Instruct-Turbo"


def _specs(models: list[str]) -> list[ModelSpec]:
    return [ModelSpec(model=m) for m in models]


PRESETS: dict[str, MoAConfig] = {
    "moa": MoAConfig(
        layers=3, proposers=_specs(PAPER_PROPOSERS), aggregator=ModelSpec(model="together:Qwen/Qwen1.5-110B-Chat")
    ),
    "moa-lite": MoAConfig(
        layers=2, proposers=_specs(PAPER_PROPOSERS), aggregator=ModelSpec(model="together:Qwen/Qwen1.5-72B-Chat")
    ),
    "moa-gpt4o": MoAConfig(layers=3, proposers=_specs(PAPER_PROPOSERS), aggregator=ModelSpec(model="openai:gpt-4o")),
    "moa-current": MoAConfig(
        layers=2,
        proposers=_specs(CURRENT_PROPOSERS),
        aggregator=ModelSpec(model="together:Qwen/Qwen2.5-72B-Instruct-Turbo"),
    ),
    "self-moa": MoAConfig(
        layers=2,
        # no pinned seeds: each slot's seed is drawn per run (see langgraph_moa.seeds)
        proposers=[ModelSpec(model=_SELF_MOA_MODEL) for _ in range(6)],
        aggregator=ModelSpec(model=_SELF_MOA_MODEL),
    ),
}
"""Every preset by name. Copy one with overrides through :func:`get_preset`."""

PRESET_FACTORIES: dict[str, Callable[[], MoAConfig]] = {}
"""Presets built when first asked for, by name: their models run on servers started for them.

The graph that ``langgraph.json`` serves registers ``local`` here (the bundled
model on a llama.cpp server it starts); :func:`get_preset` and a ``"preset"`` in
``configurable`` find them like the fixed presets.
"""


LOCAL_PRESET = "local"
"""The bundled model's preset: its models run on llama.cpp servers started for it (``moa ask --preset local``,
``moa serve``, ``langgraph dev``), so it is built there, not listed in :data:`PRESETS`."""


def preset_names() -> list[str]:
    """Every preset a run may name: :data:`PRESETS`, then ``local`` and any other started for its run."""
    return list(dict.fromkeys([*PRESETS, LOCAL_PRESET, *PRESET_FACTORIES]))


def get_preset(name: str, **overrides: Any) -> MoAConfig:
    """Return preset ``name``, with any ``MoAConfig`` fields replaced by ``overrides``.

    The result is validated again, so an override that breaks the preset (for
    example ``min_proposals`` above its proposer count) raises a
    ``pydantic.ValidationError`` naming the field.

    Raises:
        KeyError: ``name`` is not a preset; the message lists the presets.
    """
    if name in PRESETS:
        base = PRESETS[name]
    elif name in PRESET_FACTORIES:
        base = PRESET_FACTORIES[name]()
    else:
        raise KeyError(f"unknown preset {name!r}; choose one of: {', '.join(preset_names())}")
    if not overrides:
        return base
    data = base.model_dump(exclude_unset=False)
    data.update(overrides)
    return MoAConfig.model_validate(data)
