"""Small statistics for evaluation tables: bootstrap intervals, paired differences, medians.

Pure Python with a fixed seed, so the same results give the same intervals.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

BOOTSTRAP_SAMPLES = 2000
BOOTSTRAP_SEED = 0


def mean(values: Sequence[float]) -> float:
    """The mean; 0.0 for no values."""
    return sum(values) / len(values) if values else 0.0


def bootstrap_ci(
    values: Sequence[float], *, samples: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean of ``values``.

    Returns ``(0.0, 0.0)`` for no values.
    """
    n = len(values)
    if n == 0:
        return (0.0, 0.0)
    rng = random.Random(seed)
    means = sorted(sum(values[rng.randrange(n)] for _ in range(n)) / n for _ in range(samples))
    tail = (1 - level) / 2
    low = means[int(tail * (samples - 1))]
    high = means[int(round((1 - tail) * (samples - 1)))]
    return (low, high)


def pooled_bootstrap_ci(
    groups: Sequence[Sequence[float]],
    *,
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = BOOTSTRAP_SEED,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of all values pooled, resampling whole groups.

    For a score that averages every judgment (MT-Bench's turns) while items are
    what was sampled: each bootstrap sample draws items with replacement and pools
    their values. Empty groups are left out; ``(0.0, 0.0)`` when no value is left.
    """
    kept = [list(g) for g in groups if g]
    n = len(kept)
    if n == 0:
        return (0.0, 0.0)
    rng = random.Random(seed)
    means = []
    for _ in range(samples):
        drawn = [kept[rng.randrange(n)] for _ in range(n)]
        means.append(sum(sum(g) for g in drawn) / sum(len(g) for g in drawn))
    means.sort()
    tail = (1 - level) / 2
    return (means[int(tail * (samples - 1))], means[int(round((1 - tail) * (samples - 1)))])


def paired_difference(
    a: dict[str, float], b: dict[str, float], **kwargs: float
) -> tuple[float, tuple[float, float], int]:
    """Mean of ``a[i] - b[i]`` over the items both scored, its bootstrap interval, and that item count."""
    common = [key for key in a if key in b]
    diffs = [a[key] - b[key] for key in common]
    return mean(diffs), bootstrap_ci(diffs, **kwargs), len(diffs)  # type: ignore[arg-type]


def median(values: Sequence[float]) -> float:
    """The median (p50); 0.0 for no values."""
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        return 0.0
    mid = n // 2
    return ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def items_for_difference(difference: float, discordant: float, *, z: float = 1.96, power_z: float = 0.84) -> int:
    """Paired items needed to detect ``difference`` (80% power, 5% two-sided), McNemar's normal approximation.

    Args:
        difference: The accuracy difference to detect (0.05 for 5 points).
        discordant: The share of items on which the two systems disagree
            (one right, the other wrong), measured or assumed.
        z: The normal quantile of the test's level (1.96: 5%, two-sided).
        power_z: The normal quantile of the power (0.84: 80%).
    """
    if difference <= 0 or discordant <= difference:
        return 0  # two systems that disagree on fewer items than the difference cannot differ by it
    d, p = difference, discordant
    n = (z * p**0.5 + power_z * (p - d * d) ** 0.5) ** 2 / (d * d)
    return int(n) + 1
