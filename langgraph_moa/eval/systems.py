"""The systems an evaluation compares: MoA, each of its proposers alone, whole presets.

- ``moa``: the configuration as given.
- One system per distinct proposer model (``--compare``), named by its model
  string (``openai:llama3.2``): that model alone, one call with the settings it
  has inside MoA (its own temperature, max_tokens, seed and endpoint, else the
  configuration's). A model that fills several slots (Self-MoA) is taken with
  the settings of its first slot.
- ``vote`` (exact-answer suites): a majority vote of the extracted answers of
  MoA's first-layer proposals; no extra calls (see :mod:`.runner`).
- Named extra configurations (``--system NAME=PRESET``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from langgraph_moa.config import MoAConfig, ModelSpec

MOA = "moa"
VOTE = "vote"

SystemKind = Literal["moa", "single", "extra", "vote"]


@dataclass(frozen=True)
class System:
    """One configuration under evaluation.

    Attributes:
        name: Its name in results and tables.
        config: What it runs (``None`` for ``vote``, which is derived from ``moa``).
        kind: ``moa``, ``single`` (one proposer alone), ``extra`` or ``vote``.
    """

    name: str
    config: MoAConfig | None
    kind: SystemKind


def single_config(spec: ModelSpec, config: MoAConfig) -> MoAConfig:
    """``spec`` alone (one layer: the model answers directly) with ``config``'s other settings."""
    data = config.model_dump()
    data.update(
        layers=1,
        aggregator=spec.model_dump(),
        layer_proposers=None,
        review=False,
        aggregator_tools=[],
        aggregator_tool_choice=None,
        min_proposals=1,
    )
    return MoAConfig.model_validate(data)


def distinct_proposers(config: MoAConfig) -> list[ModelSpec]:
    """The first slot of every distinct proposer model, in layer and slot order."""
    seen: dict[str, ModelSpec] = {}
    for layer in range(1, config.layers):
        for spec in config.proposers_for(layer):
            seen.setdefault(spec.model, spec)
    return list(seen.values())


def comparison_systems(
    config: MoAConfig, *, compare: bool = True, extra: Mapping[str, MoAConfig] | None = None, vote: bool = False
) -> list[System]:
    """``moa``, then (with ``compare``) each distinct proposer alone and ``vote``, then ``extra``.

    Raises:
        ValueError: an extra system's name clashes with another system's.
    """
    systems = [System(MOA, config, "moa")]
    if compare:
        systems += [System(spec.model, single_config(spec, config), "single") for spec in distinct_proposers(config)]
    if vote and config.layers > 1:
        systems.append(System(VOTE, None, "vote"))
    for name, extra_config in (extra or {}).items():
        if any(s.name == name for s in systems):
            raise ValueError(f"--system {name}: that name is already used by another system; choose another")
        systems.append(System(name, extra_config, "extra"))
    return systems
