"""The summary (``summary.json``), the comparison table and the score-against-cost plot.

``summary.json`` is a contract that scripts rely on::

    {"suite": "arithmetic",
     "systems": {"moa": {"n": 40, "score": 0.475, "ci95": [0.325, 0.625],
                         "tokens": 51234, "cost_usd": 0.0, "latency_p50_s": 12.5}, ...}}

``n`` counts the items the system was scored on (items whose run failed are
left out and reported as errors in the table, items whose every judgment was
unparseable are left out and counted in the table); ``score`` is their mean
score (accuracy 0-1 for exact answers, the mean 1-10 rating for MT-Bench, the
win rate 0-1 for AlpacaEval), ``null`` when ``n`` is 0; ``ci95`` its 95%
percentile-bootstrap interval (``[null, null]`` when ``n`` is 0); ``tokens``
and ``cost_usd`` are totals over every answered item, scored or not;
``latency_p50_s`` the median seconds per answered item. Other configurations
(``--system``) and variants (``--variant``) also carry ``vs_moa``:
``{"difference": -0.025, "ci95": [-0.1, 0.05], "n": 40}``, the mean paired
score difference against ``moa`` over the items both were scored on. MT-Bench
systems also carry ``turns``: ``{"1": 8.9, "2": 8.1}``, and their ``score`` is
FastChat's (every rated turn pooled; see :mod:`langgraph_moa.eval.mt_bench`).
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .stats import bootstrap_ci, items_for_difference, mean, median, paired_difference
from .systems import MOA, WITH_OTHERS, System


@dataclass
class Row:
    """One system's line of the table."""

    name: str
    kind: str
    n: int
    score: float
    ci95: tuple[float, float]
    tokens: int
    cost_usd: float
    latency_p50_s: float
    errors: int
    diff: tuple[float, tuple[float, float], int] | None = None
    discordant: float | None = None
    vs_moa: tuple[float, tuple[float, float], int] | None = None


def item_scores(records: Sequence[dict[str, Any]]) -> dict[str, float]:
    """``{item id: score}`` of the records that have a score."""
    return {r["id"]: float(r["score"]) for r in records if not r.get("error") and r.get("score") is not None}


def build_rows(systems: Sequence[System], records: Sequence[dict[str, Any]]) -> list[Row]:
    """One row per system, with the paired difference against the best single system.

    Rows of other configurations (``extra``) and variants also get their paired
    difference against ``moa`` (``vs_moa``).
    """
    rows: list[Row] = []
    scores: dict[str, dict[str, float]] = {}
    for system in systems:
        own = [r for r in records if r["system"] == system.name]
        answered = [r for r in own if not r.get("error")]  # scored or not (an unparseable judgment)
        values = item_scores(answered)
        scores[system.name] = values
        rows.append(
            Row(
                name=system.name,
                kind=system.kind,
                n=len(values),
                score=mean(list(values.values())),
                ci95=bootstrap_ci(list(values.values())),
                tokens=sum(int((r.get("usage") or {}).get("total_tokens", 0)) for r in answered),
                cost_usd=sum(float(r.get("cost_usd") or 0.0) for r in answered),
                latency_p50_s=median([float(r.get("latency_s") or 0.0) for r in answered]),
                errors=sum(1 for r in own if r.get("error")),
            )
        )
    if MOA in scores:
        for row in rows:
            if row.kind in ("extra", "variant"):
                row.vs_moa = paired_difference(scores[row.name], scores[MOA])
    singles = [row for row in rows if row.kind == "single" and row.n]
    if singles:
        best = max(singles, key=lambda row: row.score)
        for row in rows:
            if row.name != best.name:
                row.diff = paired_difference(scores[row.name], scores[best.name])
                common = [k for k in scores[row.name] if k in scores[best.name]]
                binary = all(v in (0.0, 1.0) for v in [*scores[row.name].values(), *scores[best.name].values()])
                if common and binary:  # McNemar's sample size holds for right/wrong scores
                    differ = sum(1 for k in common if scores[row.name][k] != scores[best.name][k])
                    row.discordant = differ / len(common)
    return rows


def summary_of(suite: str, rows: Sequence[Row], *, digits: int = 4) -> dict[str, Any]:
    """The ``summary.json`` document."""
    return {
        "suite": suite,
        "systems": {
            row.name: {
                "n": row.n,
                "score": round(row.score, digits) if row.n else None,
                "ci95": [round(row.ci95[0], digits), round(row.ci95[1], digits)] if row.n else [None, None],
                "tokens": row.tokens,
                "cost_usd": round(row.cost_usd, 6),
                "latency_p50_s": round(row.latency_p50_s, 3),
                **({"vs_moa": _difference(row.vs_moa, digits)} if row.vs_moa is not None else {}),
            }
            for row in rows
        },
    }


def _difference(diff: tuple[float, tuple[float, float], int], digits: int) -> dict[str, Any]:
    d, (low, high), n = diff
    return {"difference": round(d, digits), "ci95": [round(low, digits), round(high, digits)], "n": n}


def best_single(rows: Sequence[Row]) -> str | None:
    """Name of the best single system, if the run compared any."""
    singles = [row for row in rows if row.kind == "single" and row.n]
    return max(singles, key=lambda row: row.score).name if singles else None


def markdown_table(
    rows: Sequence[Row],
    *,
    percent: bool = True,
    score_label: str = "score",
    extra: Mapping[str, Mapping[str, str]] | None = None,
) -> str:
    """The comparison as a markdown table.

    Args:
        rows: From :func:`build_rows`.
        percent: Show scores (0-1) as percentages; False shows them as they are (MT-Bench ratings).
        score_label: Header of the score column.
        extra: More columns: ``{header: {system: cell}}``.
    """
    extra = extra or {}

    def fmt(value: float) -> str:
        return f"{100 * value:.1f}" if percent else f"{value:.2f}"

    def fmt_diff(value: float) -> str:
        return f"{100 * value:+.1f}" if percent else f"{value:+.2f}"

    def fmt_pair(diff: tuple[float, tuple[float, float], int]) -> str:
        d, (lo, hi), n = diff
        if d == lo == hi == 0:
            return f"same score on each of the {n} items"
        return f"{fmt_diff(d)} [{fmt_diff(lo)}, {fmt_diff(hi)}] (n={n})"

    best = best_single(rows)
    versus_moa = any(row.vs_moa is not None for row in rows)
    head = f"| system | n | {score_label} | 95% CI | vs best single ({best or 'none'}) [95% CI] |"
    head += " vs moa [95% CI] |" if versus_moa else ""
    head += " tokens | cost $ | p50 s | errors |" + "".join(f" {name} |" for name in extra)
    rule = "|---|---:|---:|---|---|" + ("---|" if versus_moa else "") + "---:|---:|---:|---:|" + "---:|" * len(extra)
    lines = [head, rule]
    for row in rows:
        diff = fmt_pair(row.diff) if row.diff is not None else "(reference)" if row.name == best else ""
        if versus_moa:
            diff += " | " + (
                fmt_pair(row.vs_moa) if row.vs_moa is not None else "(reference)" if row.name == MOA else ""
            )
        score, ci = (fmt(row.score), f"{fmt(row.ci95[0])}-{fmt(row.ci95[1])}") if row.n else ("-", "-")
        lines.append(
            f"| {row.name} | {row.n} | {score} | {ci} | {diff} | "
            f"{row.tokens} | {row.cost_usd:.4f} | {row.latency_p50_s:.2f} | {row.errors} |"
            + "".join(f" {cells.get(row.name, '')} |" for cells in extra.values())
        )
    if percent:
        for row in rows:
            if row.discordant is None:
                continue
            share = f"\n{row.name} vs {best}: they disagree on {100 * row.discordant:.1f}% of the items; "
            if row.discordant > 0.05:
                need = items_for_difference(0.05, row.discordant)
                lines.append(
                    share
                    + f"telling a 5-point difference from noise (80% power, 5% level) needs about {need} paired items."
                )
            elif row.discordant == 0:
                lines.append(
                    f"\n{row.name} and {best} were right or wrong on the same items, every one: this run cannot "
                    "tell them apart, nor size the items a 5-point difference would need."
                )
            else:
                lines.append(
                    share + "too few for a 5-point difference to show, so this run cannot size the items it needs."
                )
    words = in_words(rows, percent=percent)
    if words:
        lines.append("\n" + words)
    return "\n".join(lines) + "\n"


def in_words(rows: Sequence[Row], *, percent: bool = True) -> str:
    """What the table shows, in sentences: a floor or ceiling, MoA against the best single system, the tokens.

    Example: ``Every system scored 0.0% on every item: a floor (the items are too
    hard for these models), so no system can be told apart. moa used 7.5x the
    tokens of openai:m.``
    """
    scored = [row for row in rows if row.n]
    if not scored:
        return ""

    def fmt(value: float) -> str:
        return f"{100 * value:.1f}%" if percent else f"{value:.2f}"

    sentences = []
    scores = {row.score for row in scored}
    flat = all(row.ci95[0] == row.ci95[1] == row.score for row in scored)  # the same score on every item
    if len(scores) == 1 and flat and percent and scores <= {0.0, 1.0}:
        value = scores.pop()
        kind = (
            "a floor (the items are too hard for these models)" if value == 0 else "a ceiling (the items are too easy)"
        )
        sentences.append(f"Every system scored {fmt(value)} on every item: {kind}, so no system can be told apart.")
    best = best_single(rows)
    by_name = {row.name: row for row in rows}
    moa = by_name.get(MOA)
    if moa is not None and moa.n and best is not None and moa.diff is not None and not sentences:
        d, (lo, hi), n = moa.diff
        unit = " points" if percent else ""

        def signed(value: float) -> str:
            return f"{100 * value:+.1f}" if percent else f"{value:+.2f}"

        verdict = (
            "the interval includes 0: no difference shows at this size"
            if lo <= 0 <= hi
            else ("moa is better" if lo > 0 else "moa is worse")
        )
        sentences.append(
            f"moa scored {fmt(moa.score)}, the best single system ({best}) {fmt(by_name[best].score)}: "
            f"{signed(d)}{unit}, 95% CI [{signed(lo)}, {signed(hi)}] over {n} paired items; {verdict}."
        )
    if moa is not None and best is not None and by_name[best].tokens > 0 and moa.tokens > 0:
        ratio = moa.tokens / by_name[best].tokens
        sentences.append(f"moa used {ratio:.1f}x the tokens of {best}.")
    return " ".join(sentences)


def collaborativeness_table(
    rows: Sequence[Row], records: Sequence[dict[str, Any]], *, percent: bool = True, score_label: str = "score"
) -> str:
    """The collaborativeness table (the paper's Figure 2): each model alone and given the others' answers.

    One line per model with a ``"<model> + others"`` system: its score alone, with
    the others' answers, and the paired difference [95% CI] over the items both
    were scored on. "" when the run has no such systems.
    """
    by_name = {row.name: row for row in rows}
    pairs = [(row.name, row.name + WITH_OTHERS) for row in rows if row.name + WITH_OTHERS in by_name]
    if not pairs:
        return ""

    def fmt(value: float, sign: str = "") -> str:
        return f"{100 * value:{sign}.1f}" if percent else f"{value:{sign}.2f}"

    lines = [
        f"| model | {score_label} alone | with the others' answers | difference [95% CI] (n) |",
        "|---|---:|---:|---|",
    ]
    for alone, together in pairs:
        a = item_scores([r for r in records if r["system"] == alone])
        b = item_scores([r for r in records if r["system"] == together])
        d, (lo, hi), n = paired_difference(b, a)
        left = fmt(by_name[alone].score) if by_name[alone].n else "-"
        right = fmt(by_name[together].score) if by_name[together].n else "-"
        diff = f"{fmt(d, '+')} [{fmt(lo, '+')}, {fmt(hi, '+')}] (n={n})" if n else "-"
        lines.append(f"| {alone} | {left} | {right} | {diff} |")
    return "\n".join(lines) + "\n"


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed."""


@dataclass
class PlotLayout:
    """What :func:`plot_score_vs_cost` drew.

    Attributes:
        x: ``"cost"`` or ``"tokens"``.
        x_label: The x axis label.
        y_range: The y axis limits.
        legend: The system names, in the legend's order (one marker each, so no
            label lies on another, however close the points).
    """

    x: str
    x_label: str
    y_range: tuple[float, float]
    legend: list[str]


_MARKERS = "osD^v<>ph*"


def plot_score_vs_cost(rows: Sequence[Row], path: Path, *, title: str, percent: bool = True) -> PlotLayout:
    """Write a PNG of each system's score against its cost, or its tokens when some system is not priced.

    Systems are told apart by marker and colour in a legend (not by labels beside
    the points, which overlap when systems score alike). The y axis spans the
    whole scale (0-100% for percentages, 0-10 for ratings, wider if a score is
    outside), so a run where every system scored 0 shows as such, not as a zoom
    onto noise.

    Returns:
        The layout: what the x axis shows, its label, the y range and the legend.

    Raises:
        PlotUnavailable: matplotlib is missing (``pip install 'langgraph-moa[dev]'`` or ``pip install matplotlib``).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotUnavailable("the plot needs matplotlib: pip install matplotlib (or the dev extra)") from None
    shown = [row for row in rows if row.n]
    by_cost = bool(shown) and all(row.cost_usd > 0 for row in shown)  # free beside priced would plot as 0
    some_priced = any(row.cost_usd > 0 for row in shown)
    scale = 100 if percent else 1
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    legend = []
    for index, row in enumerate(shown):
        x = row.cost_usd if by_cost else row.tokens
        y = scale * row.score
        low, high = scale * row.ci95[0], scale * row.ci95[1]
        ax.errorbar(
            [x], [y], yerr=[[y - low], [high - y]], fmt=_MARKERS[index % len(_MARKERS)], capsize=4, label=row.name
        )
        legend.append(row.name)
    if by_cost:
        x_label = "total cost (USD)"
    elif some_priced:
        x_label = "total tokens (not every system is priced)"
    else:
        x_label = "total tokens"
    top = 100.0 if percent else 10.0
    values = [scale * v for row in shown for v in (row.score, *row.ci95)]
    y_range = (min([0.0, *values]) - 0.04 * top, max([top, *values]) + 0.04 * top)
    ax.set_ylim(*y_range)
    ax.set_xlabel(x_label)
    ax.set_ylabel(("score (%)" if percent else "score") + ", 95% CI")
    ax.set_title("\n".join(textwrap.wrap(title, 64)), fontsize=9)  # long titles (judge, baseline) stay inside
    ax.grid(alpha=0.3)
    if legend:
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return PlotLayout("cost" if by_cost else "tokens", x_label, y_range, legend)
