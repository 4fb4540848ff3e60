"""MT-Bench, as FastChat runs it: two-turn questions, single-answer grading 1-10 by a judge.

Inputs are FastChat's files (``fastchat/llm_judge/data``):

- ``question.jsonl``: ``{"question_id", "category", "turns": [str, ...]}``;
- ``judge_prompts.jsonl``: the judge prompts; ``single-v1`` and
  ``single-v1-multi-turn`` grade every category, ``single-math-v1`` and
  ``single-math-v1-multi-turn`` (which show a reference answer) grade math,
  reasoning and coding when a reference answer is given;
- ``reference_answer/gpt-4.jsonl`` (optional): reference answers, in the answer
  format below.

Answers are generated with FastChat's settings: per-category temperature
(:data:`CATEGORY_TEMPERATURE`, applied to every call of a system, replacing
per-model temperatures) and at most 1024 new tokens per call. Turn 2 sees the
question, the system's turn-1 answer and the follow-up. The judge's rating is
read from ``[[n]]`` (else ``[n]``), any number kept; a judgment without one is
counted as unparseable and left out (the table reports how many).

Scores are FastChat's ``show_result.py`` (single mode): a system's score is the
mean of every rated turn judgment, turns pooled (not the mean of per-question
means), with turn 1 and turn 2 also averaged on their own
(:func:`show_result`). Its 95% interval resamples questions. An item's own
score (for the paired differences) is the mean of its rated turns.

Answers are also written in FastChat's answer format
(``answers/<system>.jsonl``: ``{"question_id", "answer_id", "model_id",
"choices": [{"index": 0, "turns": [...]}], "tstamp"}``), so FastChat's own
judge can grade them too.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langgraph.cache.base import BaseCache

from langgraph_moa.config import MoAConfig

from .exact import EvalResult, finish
from .items import EvalInputError, field, read_jsonl
from .judge import add_usage, ask_judge, parse_rating
from .report import summary_of
from .runner import (
    SUMMARY_FILE,
    GraphRunner,
    ProgressSink,
    check_systems,
    config_for_item,
    open_store,
    run_batch,
)
from .stats import mean, pooled_bootstrap_ci
from .systems import System, comparison_systems, with_output_systems

CATEGORY_TEMPERATURE = {
    "writing": 0.7,
    "roleplay": 0.7,
    "extraction": 0.0,
    "math": 0.0,
    "coding": 0.0,
    "reasoning": 0.0,
    "stem": 0.1,
    "humanities": 0.1,
}
"""FastChat's temperature per category; other categories get 0.7."""
DEFAULT_TEMPERATURE = 0.7
MAX_NEW_TOKENS = 1024
NEED_REFERENCE = frozenset({"math", "reasoning", "coding"})
"""Categories graded against a reference answer (FastChat's ``NEED_REF_CATS``)."""
JUDGE_PROMPT_NAMES = ("single-v1", "single-v1-multi-turn", "single-math-v1", "single-math-v1-multi-turn")
ANSWERS_DIR = "answers"


@dataclass(frozen=True)
class Question:
    """One MT-Bench question."""

    id: str
    category: str
    turns: tuple[str, ...]


@dataclass(frozen=True)
class JudgePrompt:
    """One of FastChat's judge prompts."""

    name: str
    system_prompt: str
    prompt_template: str


def load_questions(path: Path | str) -> list[Question]:
    """Read FastChat's ``question.jsonl``.

    Raises:
        EvalInputError: a malformed line or field, naming the file and line.
    """
    path = Path(path)
    questions: list[Question] = []
    seen: set[str] = set()
    for number, obj in read_jsonl(path):
        qid = str(field(path, number, obj, "question_id", (int, str)))
        category = field(path, number, obj, "category")
        turns = obj.get("turns")
        if not isinstance(turns, list) or not turns or not all(isinstance(t, str) and t.strip() for t in turns):
            raise EvalInputError(f"{path}:{number}: field 'turns' must be a non-empty list of non-empty strings")
        if qid in seen:
            raise EvalInputError(f"{path}:{number}: question_id {qid} repeats an earlier one")
        seen.add(qid)
        questions.append(Question(qid, category, tuple(turns)))
    if not questions:
        raise EvalInputError(f"{path}: no questions")
    return questions


def first_per_category(questions: Sequence[Question], count: int) -> list[Question]:
    """The first ``count`` questions of each category, in file order."""
    taken: dict[str, int] = {}
    out = []
    for question in questions:
        taken[question.category] = taken.get(question.category, 0) + 1
        if taken[question.category] <= count:
            out.append(question)
    return out


def load_reference_answers(path: Path | str) -> dict[str, list[str]]:
    """Read reference answers in FastChat's answer format: ``{question_id: [turn answers]}``.

    Raises:
        EvalInputError: a malformed line, naming the file and line.
    """
    path = Path(path)
    out: dict[str, list[str]] = {}
    for number, obj in read_jsonl(path):
        qid = str(field(path, number, obj, "question_id", (int, str)))
        choices = obj.get("choices")
        turns = (
            choices[0].get("turns") if isinstance(choices, list) and choices and isinstance(choices[0], dict) else None
        )
        if not isinstance(turns, list) or not all(isinstance(t, str) for t in turns):
            raise EvalInputError(f"{path}:{number}: expected 'choices': [{{'turns': [str, ...]}}]")
        out[qid] = turns
    return out


def load_answer_file(path: Path | str) -> tuple[str, dict[str, list[str]]]:
    """Read a FastChat answer file (``model_answer/<model>.jsonl``): its ``model_id`` and ``{question_id: turns}``.

    The model id is the lines' ``model_id`` (the file's stem when they name none).

    Raises:
        EvalInputError: a malformed line, or lines naming different models.
    """
    path = Path(path)
    names = {str(obj["model_id"]) for _, obj in read_jsonl(path) if obj.get("model_id")}
    if len(names) > 1:
        raise EvalInputError(f"{path}: lines name {len(names)} models ({', '.join(sorted(names))}): one file per model")
    return (names.pop() if names else path.stem), load_reference_answers(path)


def load_judge_prompts(path: Path | str) -> dict[str, JudgePrompt]:
    """Read FastChat's ``judge_prompts.jsonl``; the single-answer prompts must be there.

    Raises:
        EvalInputError: a malformed line, or a needed prompt missing.
    """
    path = Path(path)
    prompts: dict[str, JudgePrompt] = {}
    for number, obj in read_jsonl(path):
        name = field(path, number, obj, "name")
        prompts[name] = JudgePrompt(
            name=name,
            system_prompt=str(obj.get("system_prompt", "")),
            prompt_template=field(path, number, obj, "prompt_template"),
        )
    missing = [n for n in JUDGE_PROMPT_NAMES if n not in prompts]
    if missing:
        raise EvalInputError(f"{path}: judge prompt(s) {', '.join(missing)} missing (FastChat's judge_prompts.jsonl)")
    return prompts


def find_judge_prompts(questions: Path) -> Path:
    """``judge_prompts.jsonl`` beside the questions file or one folder up (FastChat's layout).

    Raises:
        EvalInputError: not found; the message says to pass ``--judge-prompts``.
    """
    for folder in (questions.parent, questions.parent.parent):
        candidate = folder / "judge_prompts.jsonl"
        if candidate.is_file():
            return candidate
    raise EvalInputError(
        f"no judge_prompts.jsonl beside {questions} or one folder up: pass --judge-prompts FILE "
        "(FastChat's fastchat/llm_judge/data/judge_prompts.jsonl)"
    )


def with_settings(config: MoAConfig, temperature: float, max_tokens: int) -> MoAConfig:
    """``config`` with one temperature and token limit for every call (per-model values replaced)."""
    data = config.model_dump()

    def reset(spec: dict[str, Any]) -> dict[str, Any]:
        return {**spec, "temperature": None, "max_tokens": None}

    data["proposers"] = [reset(s) for s in data["proposers"]]
    if data.get("layer_proposers"):
        data["layer_proposers"] = [[reset(s) for s in layer] for layer in data["layer_proposers"]]
    data["aggregator"] = reset(data["aggregator"])
    data.update(temperature=temperature, max_tokens=max_tokens)
    return MoAConfig.model_validate(data)


def judge_prompt_for(
    question: Question,
    turn: int,
    answers: Sequence[str],
    reference: Sequence[str] | None,
    prompts: Mapping[str, JudgePrompt],
) -> tuple[JudgePrompt, str]:
    """The judge prompt of ``turn`` (0-based) and its filled-in text, as FastChat builds them."""
    math = question.category in NEED_REFERENCE and reference is not None
    if turn == 0:
        prompt = prompts["single-math-v1" if math else "single-v1"]
        values = {"question": question.turns[0], "answer": answers[0]}
        if math:
            values["ref_answer_1"] = reference[0]  # type: ignore[index]
    else:
        prompt = prompts["single-math-v1-multi-turn" if math else "single-v1-multi-turn"]
        values = {
            "question_1": question.turns[0],
            "answer_1": answers[0],
            "question_2": question.turns[1],
            "answer_2": answers[1],
        }
        if math:
            values["ref_answer_1"], values["ref_answer_2"] = reference[0], reference[1]  # type: ignore[index]
    return prompt, prompt.prompt_template.format(**values)


def mt_bench_answerer(
    runner: GraphRunner,
    judge: MoAConfig,
    prompts: Mapping[str, JudgePrompt],
    references: Mapping[str, list[str]],
    max_tokens: int,
    outputs: Mapping[str, Mapping[str, list[str]]] | None = None,
) -> Any:  # returns runner.Answer
    """The ``answer(system, question)`` of MT-Bench: answer every turn (or read the answers), then judge every turn."""

    async def answer(system: System, question: Question) -> dict[str, Any]:
        temperature = CATEGORY_TEMPERATURE.get(question.category, DEFAULT_TEMPERATURE)
        answers: list[str] = []
        runs = []
        if system.kind == "outputs":
            answers = list((outputs or {}).get(system.name, {}).get(question.id) or [])
            if len(answers) < min(2, len(question.turns)):
                raise EvalInputError(f"{system.name}: its answer file has no answer to every turn of this question")
        else:
            assert system.config is not None
            config = config_for_item(with_settings(system.config, temperature, max_tokens), question.id)
            history: list[BaseMessage] = []
            for text in question.turns:
                history.append(HumanMessage(content=text))
                run = await runner.run(config, history)
                history.append(AIMessage(content=run.answer))
                answers.append(run.answer)
                runs.append(run)
        reference = references.get(question.id)
        graded_with_reference = question.category in NEED_REFERENCE and reference is not None
        ratings: list[float | None] = []
        judgments: list[dict[str, Any]] = []
        for turn in range(min(2, len(question.turns))):
            prompt, text = judge_prompt_for(question, turn, answers, reference, prompts)
            judgment = await ask_judge(runner, judge, prompt.system_prompt, text)
            ratings.append(parse_rating(judgment.text))
            judgments.append(
                {
                    "prompt": prompt.name,
                    "judgment": judgment.text,
                    "usage": judgment.usage,
                    "cost_usd": judgment.cost_usd,
                }
            )
        rated = [r for r in ratings if r is not None]
        return {
            "system": system.name,
            "id": question.id,
            "category": question.category,
            "temperature": temperature,
            "turns": answers,
            "response": answers[-1],
            "ratings": ratings,
            "unparseable": len(ratings) - len(rated),
            "graded_with_reference": graded_with_reference,
            "needs_reference_but_none": question.category in NEED_REFERENCE and reference is None,
            "score": sum(rated) / len(rated) if rated else None,
            "error": None,
            "judgments": judgments,
            "judge_usage": add_usage(*(j["usage"] for j in judgments)),
            "judge_cost_usd": sum(j["cost_usd"] for j in judgments),
            "proposals": [run.proposals for run in runs],
            "failures": [run.failures for run in runs],
            "usage": add_usage(*(run.record()["usage"] for run in runs)),
            "usage_calls": [call for run in runs for call in run.usage],
            "cost_usd": sum(run.cost_usd for run in runs),
            "latency_s": round(sum(run.latency_s for run in runs), 3),
        }

    return answer


async def run_mt_bench(
    questions: Sequence[Question],
    config: MoAConfig | None,
    *,
    judge: MoAConfig,
    judge_prompts: Mapping[str, JudgePrompt],
    reference_answers: Mapping[str, list[str]] | None = None,
    compare: bool = False,
    collaborativeness: bool = False,
    extra_systems: Mapping[str, MoAConfig] | None = None,
    variants: Mapping[str, MoAConfig] | None = None,
    out_dir: Path | str | None = None,
    concurrency: int = 4,
    max_tokens: int = MAX_NEW_TOKENS,
    outputs: Mapping[str, Mapping[str, list[str]]] | None = None,
    models: dict[str, Any] | None = None,
    cache: BaseCache[Any] | None = None,
    progress: ProgressSink | None = None,
) -> EvalResult:
    """Answer and grade MT-Bench ``questions`` with MoA (and, with ``compare``, each proposer alone).

    Args:
        questions: From :func:`load_questions`.
        config: The MoA configuration (system ``moa``); None grades ``outputs`` only.
        outputs: Existing answers graded as systems, ``{model_id: {question_id: [turn answers]}}``
            (:func:`load_answer_file`); a question a system has no answer to is recorded as that pair's error.
        judge: The judge's configuration (:func:`~langgraph_moa.eval.judge.judge_config`).
        judge_prompts: From :func:`load_judge_prompts`.
        reference_answers: From :func:`load_reference_answers`; math, reasoning and
            coding questions without one are graded with the plain prompt and
            flagged (``needs_reference_but_none``).
        compare: Also each distinct proposer alone.
        collaborativeness: Instead of ``compare``'s systems, each distinct proposer alone and as the
            aggregator of the other proposers' answers (the paper's collaborativeness experiment,
            :func:`~langgraph_moa.eval.systems.collaborativeness_systems`).
        extra_systems: More whole configurations by name.
        variants: ``config`` with fields changed, by name (:func:`~langgraph_moa.eval.systems.variant_config`);
            each row shows its paired difference against ``moa``.
        out_dir: Output directory (resumable); FastChat answer files go to ``answers/``.
        concurrency: (system, question) pairs in flight.
        max_tokens: New tokens per call (FastChat: 1024).
        models: Ready chat models by name, as for :func:`~langgraph_moa.create_moa_graph`.
        cache: The proposal cache (:class:`~langgraph_moa.eval.runner.GraphRunner`), or None.
        progress: Receives progress.
    """
    systems: list[System] = []
    if config is not None:
        systems = comparison_systems(
            config, compare=compare, extra=extra_systems, variants=variants, collaborativeness=collaborativeness
        )
    systems = with_output_systems(systems, outputs, "a configuration or answer files to grade")
    check_systems(systems, models, judge)
    store = open_store(out_dir, "mt-bench", systems)
    runner = GraphRunner(models, cache)
    answer = mt_bench_answerer(runner, judge, judge_prompts, reference_answers or {}, max_tokens, outputs)
    await run_batch(questions, systems, answer, store=store, concurrency=concurrency, progress=progress)
    result = finish("mt-bench", systems, store, [q.id for q in questions])
    apply_show_result(result, store.out_dir)
    if store.out_dir is not None:
        write_answers(store.out_dir / ANSWERS_DIR, result.records)
    return result


def show_result(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each system's MT-Bench scores as FastChat's ``show_result.py --mode single`` computes them.

    Every turn judgment with a rating counts once (FastChat drops only its
    ``-1``, "no rating"): ``score`` is their mean, ``turn_1`` and ``turn_2`` the
    means of each turn's, ``judgments`` how many; ``ci95`` a bootstrap over
    questions of ``score``. Values are None for a system (or turn) with no rating.
    """
    by_system: dict[str, list[list[float]]] = {}
    turns: dict[str, dict[int, list[float]]] = {}
    for r in records:
        if r.get("error") or "ratings" not in r:
            continue
        rated = [(n, float(x)) for n, x in enumerate(r["ratings"], start=1) if x is not None]
        by_system.setdefault(r["system"], []).append([x for _, x in rated])
        for n, x in rated:
            turns.setdefault(r["system"], {}).setdefault(n, []).append(x)
    out: dict[str, dict[str, Any]] = {}
    for system, groups in by_system.items():
        pooled = [x for g in groups for x in g]
        per_turn = turns.get(system, {})
        out[system] = {
            "score": mean(pooled) if pooled else None,
            "turn_1": mean(per_turn[1]) if per_turn.get(1) else None,
            "turn_2": mean(per_turn[2]) if per_turn.get(2) else None,
            "judgments": len(pooled),
            "ci95": pooled_bootstrap_ci(groups) if pooled else None,
        }
    return out


def apply_show_result(result: EvalResult, out_dir: Path | None) -> dict[str, dict[str, Any]]:
    """Put FastChat's pooled scores into ``result``'s rows and summary (and ``summary.json``); return them."""
    scores = show_result(result.records)
    for row in result.rows:
        mine = scores.get(row.name)
        if mine and mine["score"] is not None:
            row.score, row.ci95 = mine["score"], mine["ci95"]
    result.summary = summary_of(result.summary["suite"], result.rows)
    for name, entry in result.summary["systems"].items():
        mine = scores.get(name) or {}
        entry["turns"] = {
            "1": None if mine.get("turn_1") is None else round(mine["turn_1"], 4),
            "2": None if mine.get("turn_2") is None else round(mine["turn_2"], 4),
        }
    if out_dir is not None:
        (out_dir / SUMMARY_FILE).write_text(json.dumps(result.summary, indent=2) + "\n", encoding="utf-8")
    return scores


def write_answers(folder: Path, records: Sequence[dict[str, Any]]) -> None:
    """Write each system's answers in FastChat's answer format, one file per system."""
    folder.mkdir(parents=True, exist_ok=True)
    by_system: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        if not record.get("error") and record.get("turns"):
            by_system.setdefault(record["system"], []).append(record)
    for system, rows in by_system.items():
        rows.sort(key=lambda r: (int(r["id"]) if str(r["id"]).isdigit() else 0, str(r["id"])))
        lines = []
        for r in rows:
            qid: int | str = int(r["id"]) if str(r["id"]).isdigit() else r["id"]
            answer_id = hashlib.sha256(f"{system}/{r['id']}".encode()).hexdigest()[:22]
            entry = {
                "question_id": qid,
                "answer_id": answer_id,
                "model_id": system,
                "choices": [{"index": 0, "turns": r["turns"]}],
                "tstamp": time.time(),
            }
            lines.append(json.dumps(entry, ensure_ascii=False))
        safe = system.replace("/", "_").replace(":", "_")
        (folder / f"{safe}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def unparseable_counts(records: Sequence[dict[str, Any]]) -> dict[str, tuple[int, int]]:
    """``{system: (unparseable judgments, judgments)}``."""
    out: dict[str, tuple[int, int]] = {}
    for r in records:
        if r.get("error"):
            continue
        bad, total = out.get(r["system"], (0, 0))
        out[r["system"]] = (bad + int(r.get("unparseable", 0)), total + len(r.get("ratings", [])))
    return out
