"""Exact-answer evaluation: questions with one right answer, graded without a judge.

Example:
    ```python
    from langgraph_moa import get_preset
    from langgraph_moa.eval import builtin_suite, run_exact

    result = await run_exact(builtin_suite("arithmetic")[:20], get_preset("moa-lite"), compare=True, out_dir="out")
    print(result.summary["systems"]["moa"]["score"])
    ```
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langgraph.cache.base import BaseCache

from langgraph_moa.config import MoAConfig

from .grading import Extractor, Grader, extract_answer, grade_exact, majority
from .items import ExactItem
from .report import Row, build_rows, summary_of
from .runner import (
    SUMMARY_FILE,
    GraphRunner,
    ProgressSink,
    ResultStore,
    check_systems,
    config_for_item,
    layer_cost,
    open_store,
    run_batch,
)
from .systems import MOA, VOTE, System, comparison_systems


@dataclass
class EvalResult:
    """What an evaluation run produced.

    Attributes:
        summary: The ``summary.json`` document.
        rows: The table's rows (paired differences included).
        records: Every result line.
        systems: The systems, in table order.
    """

    summary: dict[str, Any]
    rows: list[Row]
    records: list[dict[str, Any]]
    systems: list[System]


def exact_answerer(
    runner: GraphRunner, grade: Grader, extract: Extractor, template: str
) -> Any:  # returns runner.Answer
    """The ``answer(system, item)`` of an exact-answer suite."""

    async def answer(system: System, item: ExactItem) -> dict[str, Any]:
        assert system.config is not None
        config = config_for_item(system.config, item.id)
        run = await runner.run(config, [("user", template.format(question=item.question))])
        correct = bool(grade(run.answer, item.answer))
        return {
            "system": system.name,
            "id": item.id,
            "question": item.question,
            "expected": item.answer,
            "extracted": extract(run.answer, item.answer),
            "correct": correct,
            "score": 1.0 if correct else 0.0,
            "error": None,
            **run.record(),
        }

    return answer


def vote_deriver(config: MoAConfig, grade: Grader, extract: Extractor) -> Any:  # returns runner.Derive
    """The ``derive(item, moa_record)`` that makes the ``vote`` record from MoA's first layer."""

    def derive(item: ExactItem, moa: dict[str, Any]) -> list[dict[str, Any]]:
        proposals = [p for p in moa.get("proposals", []) if p["layer"] == 1]
        texts = [p["content"] for p in proposals]
        chosen = majority(texts, item.answer, extract)
        response = texts[chosen] if chosen is not None else ""
        correct = bool(grade(response, item.answer)) if chosen is not None else False
        usage, cost = layer_cost(moa, 1, config)
        return [
            {
                "system": VOTE,
                "id": item.id,
                "question": item.question,
                "expected": item.answer,
                "votes": [extract(t, item.answer) for t in texts],
                "extracted": extract(response, item.answer) if chosen is not None else None,
                "chosen_slot": proposals[chosen]["slot"] if chosen is not None else None,
                "response": response,
                "correct": correct,
                "score": 1.0 if correct else 0.0,
                "error": None,
                "usage": usage,
                "cost_usd": cost,
                "latency_s": float((moa.get("layer_seconds") or {}).get("1", moa.get("latency_s", 0.0))),
                "derived_from": MOA,
            }
        ]

    return derive


async def run_exact(
    items: Sequence[ExactItem],
    config: MoAConfig,
    *,
    suite: str = "exact",
    compare: bool = False,
    collaborativeness: bool = False,
    extra_systems: Mapping[str, MoAConfig] | None = None,
    variants: Mapping[str, MoAConfig] | None = None,
    out_dir: Path | str | None = None,
    concurrency: int = 4,
    grade: Grader = grade_exact,
    extract: Extractor = extract_answer,
    template: str = "{question}",
    models: dict[str, Any] | None = None,
    cache: BaseCache[Any] | None = None,
    progress: ProgressSink | None = None,
) -> EvalResult:
    """Answer ``items`` with MoA (and, with ``compare``, its proposers alone and a vote) and grade them.

    Args:
        items: The questions (:func:`~langgraph_moa.eval.load_exact`, :func:`~langgraph_moa.eval.builtin_suite`).
        config: The MoA configuration, evaluated as system ``moa``.
        suite: The suite's name in ``summary.json``.
        compare: Also run each distinct proposer alone (named by its model
            string) and derive ``vote``, the majority of MoA's first-layer
            answers (no extra calls).
        collaborativeness: Instead of ``compare``'s systems, each distinct proposer alone and as the
            aggregator of the other proposers' answers (the paper's collaborativeness experiment,
            :func:`~langgraph_moa.eval.systems.collaborativeness_systems`).
        extra_systems: More whole configurations by name.
        variants: ``config`` with fields changed, by name (:func:`~langgraph_moa.eval.systems.variant_config`);
            each row shows its paired difference against ``moa``.
        out_dir: Where ``results.jsonl``, ``run.json`` and ``summary.json`` go;
            a run with the same directory resumes (finished pairs are skipped).
            None keeps results in memory.
        concurrency: (system, item) pairs in flight at once.
        grade: ``grade(response, answer) -> bool``; :func:`grade_exact` by default.
        extract: ``extract(response, answer) -> str | None``: the answer the vote counts.
        template: The user message, with ``{question}``.
        models: Ready chat models by name, as for :func:`~langgraph_moa.create_moa_graph`.
        cache: The proposal cache (:class:`~langgraph_moa.eval.runner.GraphRunner`), or None.
        progress: Receives progress (the CLI shows a progress bar).

    Returns:
        The summary, the table rows and every record.

    Raises:
        EvalInputError: ``out_dir`` holds results of another suite or configuration.
    """
    systems = comparison_systems(
        config,
        compare=compare,
        extra=extra_systems,
        vote=compare and not collaborativeness,
        variants=variants,
        collaborativeness=collaborativeness,
    )
    check_systems(systems, models)
    store = open_store(out_dir, suite, systems)
    runner = GraphRunner(models, cache)
    await run_batch(
        items,
        systems,
        exact_answerer(runner, grade, extract, template),
        store=store,
        concurrency=concurrency,
        derive=vote_deriver(config, grade, extract),
        progress=progress,
    )
    return finish(suite, systems, store, [item.id for item in items])


def finish(suite: str, systems: list[System], store: ResultStore, ids: Sequence[str]) -> EvalResult:
    """Build the summary of the items in ``ids`` and write ``summary.json``."""
    wanted = set(ids)
    records = [r for r in store.records() if r["id"] in wanted]
    rows = build_rows(systems, records)
    summary = summary_of(suite, rows)
    if store.out_dir is not None:
        (store.out_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return EvalResult(summary=summary, rows=rows, records=records, systems=systems)
