"""Sampling seeds: fresh for every run, or derived from the seed you set.

Self-MoA draws several samples of one model; their diversity comes from the
temperature and the seed. A seed pinned per slot makes each slot repeat the
same random draws on every prompt (llama.cpp reuses them for a given seed), so
one slot can carry the same bias through a whole evaluation. So:

- Without a seed (the default), each run draws a fresh base seed
  (:func:`fresh_seed`), kept in the state as ``run_seed``.
- With ``MoAConfig.seed`` (or a model's own ``ModelSpec.seed``) that seed is
  the base, and the run is reproducible.

Every call's seed is derived from the base, the layer and the slot
(:func:`slot_seed`), so slots differ from each other and runs differ from each
other exactly when their base seeds do. The proposers' seeds are recorded in
their :class:`~langgraph_moa.state.Proposal` records (``seed``) and key the
proposal cache; the seed reaches the model for OpenAI-compatible providers
(``openai``, ``together``, ... and local servers), which accept one per request.
"""

from __future__ import annotations

import hashlib
import secrets

from langgraph_moa.config import ModelSpec

SEED_RANGE = 2**31
"""Seeds sent to models are in ``[0, SEED_RANGE)``: every server takes a 32-bit signed seed."""


def fresh_seed() -> int:
    """A new, unpredictable base seed for one run."""
    return secrets.randbelow(SEED_RANGE)


def slot_seed(run_seed: int | None, spec: ModelSpec, layer: int, slot: int) -> int | None:
    """The seed of one call: derived from the model's own seed, else the run's, with its layer and slot.

    ``None`` when neither is known (a run checkpointed before seeds were recorded).
    """
    base = spec.seed if spec.seed is not None else run_seed
    if base is None:
        return None
    digest = hashlib.sha256(f"moa-seed:{base}:{layer}:{slot}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % SEED_RANGE
