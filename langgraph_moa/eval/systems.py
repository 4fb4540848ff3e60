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
- Variants (``--variant FIELD=VALUE[,FIELD=VALUE...]``): the evaluated
  configuration with some fields changed, named by the spec as given
  (``early_stop=0.9``). The table shows each one's paired difference against
  ``moa``, which is how an option's effect on quality is measured.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from langgraph_moa.config import MoAConfig, ModelSpec, describe_validation_error

from .items import EvalInputError

MOA = "moa"
VOTE = "vote"

SystemKind = Literal["moa", "single", "extra", "variant", "vote", "outputs", "collaborative"]


@dataclass(frozen=True)
class System:
    """One configuration under evaluation.

    Attributes:
        name: Its name in results and tables.
        config: What it runs (``None`` for ``vote``, which is derived from ``moa``).
        kind: ``moa``, ``single`` (one proposer alone), ``extra`` (another
            configuration), ``variant`` (``moa`` with fields changed), ``vote``,
            ``outputs`` (answers read from a file, nothing generated) or
            ``collaborative`` (a proposer aggregating the others' answers).
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


def _top_level_parts(spec: str) -> list[str]:
    """``spec`` split at the commas outside brackets, braces and double quotes."""
    parts, depth, quoted, escaped, start = [], 0, False, False, 0
    for i, char in enumerate(spec):
        if quoted:  # inside a JSON string: only its closing quote matters
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                quoted = False
        elif char == '"':
            quoted = True
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(spec[start:i])
            start = i + 1
    parts.append(spec[start:])
    return parts


def parse_variant(spec: str) -> dict[str, Any]:
    """The field changes of ``FIELD=VALUE[,FIELD=VALUE...]``.

    Each value is read as JSON when it parses (``0.9``, ``2``, ``true``,
    ``null``, ``{"openai:m": {"input": 1, "output": 2}}``), else kept as text
    (``ranker=openai:gpt-4o-mini``). Commas inside brackets, braces or quotes
    do not separate fields.

    Raises:
        ValueError: a part is not ``FIELD=VALUE``, or a field is given twice.
    """
    changes: dict[str, Any] = {}
    for part in _top_level_parts(spec):
        field, sep, raw = part.partition("=")
        field, raw = field.strip(), raw.strip()
        if not sep or not field or not raw:
            raise ValueError(f"--variant {spec!r}: {part!r} must be FIELD=VALUE, e.g. early_stop=0.9")
        if field in changes:
            raise ValueError(f"--variant {spec!r}: {field} is given twice")
        try:
            changes[field] = json.loads(raw)
        except json.JSONDecodeError:
            changes[field] = raw
    return changes


def variant_config(config: MoAConfig, spec: str) -> MoAConfig:
    """``config`` with the changes of ``spec`` (see :func:`parse_variant`), validated.

    Raises:
        ValueError: the spec is malformed, names a field ``MoAConfig`` does not
            have, or gives a value the field rejects (the message names the field).
    """
    changes = parse_variant(spec)
    unknown = sorted(set(changes) - set(MoAConfig.model_fields))
    if unknown:
        raise ValueError(f"--variant {spec!r}: MoAConfig has no field {', '.join(unknown)}")
    data = config.model_dump()
    data.update(changes)
    try:
        return MoAConfig.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"--variant {spec!r}: {describe_validation_error(exc)}") from None


WITH_OTHERS = " + others"
"""Suffix of a collaborativeness system's name: ``"openai:m + others"``."""


def with_others_config(spec: ModelSpec, others: list[ModelSpec], config: MoAConfig) -> MoAConfig:
    """``spec`` as the aggregator of ``others``' answers (two layers), with ``config``'s other settings."""
    data = config.model_dump()
    data.update(
        layers=2,
        proposers=[o.model_dump() for o in others],
        layer_proposers=None,
        aggregator=spec.model_dump(),
        min_proposals=1,
    )
    return MoAConfig.model_validate(data)


def collaborativeness_systems(config: MoAConfig) -> list[System]:
    """The paper's collaborativeness experiment (its Figure 2) for ``config``'s proposer models.

    For each distinct proposer model: that model alone (``single``, named by its
    model string) and that model given the other models' answers as the
    aggregator of a two-layer MoA (named ``"<model> + others"``), so the two
    can be compared item by item.

    Raises:
        ValueError: fewer than two distinct proposer models.
    """
    models = distinct_proposers(config)
    if len(models) < 2:
        raise ValueError("--collaborativeness needs at least two distinct proposer models")
    systems = []
    for spec in models:
        others = [o for o in models if o.model != spec.model]
        systems.append(System(spec.model, single_config(spec, config), "single"))
        systems.append(System(spec.model + WITH_OTHERS, with_others_config(spec, others, config), "collaborative"))
    return systems


def comparison_systems(
    config: MoAConfig,
    *,
    compare: bool = True,
    extra: Mapping[str, MoAConfig] | None = None,
    vote: bool = False,
    variants: Mapping[str, MoAConfig] | None = None,
    collaborativeness: bool = False,
) -> list[System]:
    """``moa``, then (with ``compare``) each distinct proposer alone and ``vote``, then ``extra``, then ``variants``.

    With ``collaborativeness``, each distinct proposer alone and as the aggregator of
    the others' answers (:func:`collaborativeness_systems`) come after ``moa``.

    Raises:
        ValueError: an extra system's or a variant's name clashes with another system's.
    """
    systems = [System(MOA, config, "moa")]
    if collaborativeness:
        systems += collaborativeness_systems(config)
    elif compare:
        systems += [System(spec.model, single_config(spec, config), "single") for spec in distinct_proposers(config)]
    if vote and config.layers > 1:
        systems.append(System(VOTE, None, "vote"))
    for name, extra_config in (extra or {}).items():
        if any(s.name == name for s in systems):
            raise ValueError(f"--system {name}: that name is already used by another system; choose another")
        systems.append(System(name, extra_config, "extra"))
    for name, variant in (variants or {}).items():
        if any(s.name == name for s in systems):
            raise ValueError(f"--variant {name}: that name is already used by another system")
        systems.append(System(name, variant, "variant"))
    return systems


def with_output_systems(systems: list[System], outputs: Mapping[str, Any] | None, nothing: str) -> list[System]:
    """``systems``, then one ``outputs`` system per named outputs file (scored without generating).

    Args:
        systems: The generating systems (empty without a configuration).
        outputs: Outputs files' contents by system name, or None.
        nothing: What the user can give when there is nothing to evaluate (ends the error).

    Raises:
        EvalInputError: an outputs file's name is another system's, or there is no system at all.
    """
    systems = list(systems)
    for name in outputs or {}:
        if any(s.name == name for s in systems):
            raise EvalInputError(f"--outputs: system name {name!r} is already used by another system")
        systems.append(System(name, None, "outputs"))
    if not systems:
        raise EvalInputError(f"nothing to evaluate: give {nothing}")
    return systems
