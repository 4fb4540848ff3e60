r"""FLASK, as its ``gpt_review`` scores it: each answer rated 1-5 on the three skills its item names.

FLASK (``kaistAI/FLASK``, also vendored in ``togethercomputer/MoA/FLASK``)
states no licence, so nothing of it is shipped here: every file is a path you
give.

- the evaluation set, ``evaluation_set/flask_evaluation.jsonl`` (or
  ``flask_hard_evaluation.jsonl``, the hard subset): one item per line,
  ``{"idx", "instruction", "answer", "skill": [three skill names], "domain"?, "difficulty"?}``
  (the original repository's ``question_id``, ``text`` and ``metrics`` are read too);
- the skill rubrics, ``metadata_annotation/skillset/src/skillset_description.json``:
  ``[{"Skill", "Criteria", "Scoring": {"1": ..., "5": ...}}, ...]``;
- the review prompts, ``gpt_review/src/prompt.jsonl``: ``{"prompt_id",
  "system_prompt", "prompt_template", "defaults"}``; ``gpt4_eval.py`` uses
  prompt 2 (the one that shows the reference answer), as here by default.

The review prompt is built as ``gpt4_eval.py`` builds it: for each of the item's
skills, the first rubric whose name contains it, written as ``"\n{Skill}: {Criteria}"``
and five ``"\nScore n: ..."`` lines; the template filled with the instruction,
the response, the reference answer and the prompt's defaults. The judge runs at
temperature 0 with at most 1024 tokens. Its scores are read as ``gpt4_eval.py``
reads them: the last ``{...}`` of the review, newlines removed, underscores made
spaces, lower-cased, read as a Python literal; ``"na"``, ``"n/a"`` and
``"not applicable"`` are N/A. A review without one is counted as unparseable.

Per skill, as ``aggregate_skill.py``: every numeric score of a key is added to
its skill (the key's first word, the second for ``logical ...`` keys:
robustness, correctness, efficiency), N/A left out, and the skill's score is the
mean. An item's score is the mean of its numeric skill scores; a system's score
the mean over items.

By difficulty, as ``aggregate_difficulty_skill.py``: each skill's numeric scores
averaged per difficulty level (FLASK's five, ``"simple lifestyle knowledge"``
(level 1) to ``"expert level knowledge"`` (level 5); ``"1"``-``"5"`` are read as
the levels too); every score of a level pooled is shown beside them. By domain,
as ``aggregate_domain.py``: every numeric score of an item's review pooled and
counted once in each of its domains, in FLASK's domain order (other names after,
sorted). An item without a level (FLASK marks one ``-1``) or without a domain is
left out of that breakdown and counted (:func:`breakdowns`).
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langgraph.cache.base import BaseCache

from langgraph_moa.config import MoAConfig

from .exact import EvalResult, finish
from .items import EvalInputError, read_json, read_jsonl
from .judge import ask_judge
from .runner import (
    SUMMARY_FILE,
    GraphRunner,
    ProgressSink,
    check_systems,
    config_for_item,
    open_store,
    run_batch,
)
from .systems import System, comparison_systems, with_output_systems

REVIEW_PROMPT_ID = 2
"""The prompt ``gpt4_eval.py`` uses (its reviewer file's second entry): the one with the reference answer."""
JUDGE_MAX_TOKENS = 1024
SKILL_ORDER = (
    "robustness",
    "correctness",
    "efficiency",
    "factuality",
    "commonsense",
    "comprehension",
    "insightfulness",
    "completeness",
    "metacognition",
    "readability",
    "conciseness",
    "harmlessness",
)
"""``aggregate_skill.py``'s order of the skills."""
DIFFICULTY_LEVELS = (
    "simple lifestyle knowledge",
    "advanced lifestyle knowledge",
    "formal education knowledge",
    "major level knowledge",
    "expert level knowledge",
)
"""FLASK's difficulty levels, level 1 first (``aggregate_difficulty_skill.py``'s order)."""
DOMAIN_ORDER = (
    "Humanities",
    "Language",
    "Social Science",
    "History",
    "Culture",
    "Technology",
    "Coding",
    "Math",
    "Natural Science",
    "Health",
)
"""``aggregate_domain.py``'s order of FLASK's ten domains."""
UNLABELED = "-1"
"""FLASK's mark of a domain or difficulty its annotation could not label."""
REVIEWS_DIR = "reviews"
_DICT = re.compile(r"{[^}]+}")


@dataclass(frozen=True)
class FlaskItem:
    """One FLASK item."""

    id: str
    instruction: str
    answer: str
    skills: tuple[str, ...]
    domain: tuple[str, ...] = ()
    difficulty: str = ""


@dataclass(frozen=True)
class Rubric:
    """One skill's rubric."""

    skill: str
    criteria: str
    scoring: tuple[str, str, str, str, str]


@dataclass(frozen=True)
class ReviewPrompt:
    """One of FLASK's review prompts."""

    system_prompt: str
    template: str
    defaults: dict[str, str]


def _pick(obj: dict[str, Any], *names: str) -> Any:
    return next((obj[n] for n in names if n in obj), None)


def load_flask(path: Path | str) -> list[FlaskItem]:
    """Read a FLASK evaluation set (JSONL).

    Raises:
        EvalInputError: a malformed line or field, naming the file and line.
    """
    path = Path(path)
    items: list[FlaskItem] = []
    seen: set[str] = set()
    for number, obj in read_jsonl(path):
        idx = _pick(obj, "idx", "question_id")
        instruction = _pick(obj, "instruction", "text")
        skills = _pick(obj, "skill", "metrics")
        if idx is None or isinstance(idx, bool) or not isinstance(idx, (int, str)):
            raise EvalInputError(f"{path}:{number}: missing field 'idx' (or 'question_id')")
        if not isinstance(instruction, str) or not instruction.strip():
            raise EvalInputError(f"{path}:{number}: missing or empty field 'instruction' (or 'text')")
        if not isinstance(skills, list) or not skills or not all(isinstance(s, str) and s for s in skills):
            raise EvalInputError(f"{path}:{number}: field 'skill' (or 'metrics') must be a list of skill names")
        if str(idx) in seen:
            raise EvalInputError(f"{path}:{number}: idx {idx} repeats an earlier one")
        seen.add(str(idx))
        domain = obj.get("domain") or []
        items.append(
            FlaskItem(
                id=str(idx),
                instruction=instruction,
                answer=str(obj.get("answer") or ""),
                skills=tuple(skills),
                domain=tuple(str(d) for d in domain) if isinstance(domain, list) else (str(domain),),
                difficulty=str(obj.get("difficulty") or ""),
            )
        )
    if not items:
        raise EvalInputError(f"{path}: no items")
    return items


def load_flask_outputs(path: Path | str) -> tuple[str, dict[str, str]]:
    """Read FLASK model outputs (``model_output/outputs/<model>.jsonl``): the model's name and ``{idx: text}``.

    Lines are ``{"question_id", "text", "model_id"?}``, as FLASK's ``gpt4_eval.py`` reads them; the name is
    their ``model_id``, else the file's stem.

    Raises:
        EvalInputError: a line without ``question_id`` or ``text``, or lines naming different models.
    """
    path = Path(path)
    outputs: dict[str, str] = {}
    names: set[str] = set()
    for number, obj in read_jsonl(path):
        qid, text = obj.get("question_id"), obj.get("text")
        if qid is None or isinstance(qid, bool) or not isinstance(qid, (int, str)) or not isinstance(text, str):
            raise EvalInputError(f"{path}:{number}: expected 'question_id' and 'text' (FLASK's model output format)")
        outputs[str(qid)] = text
        if obj.get("model_id"):
            names.add(str(obj["model_id"]))
    if len(names) > 1:
        raise EvalInputError(f"{path}: lines name {len(names)} models ({', '.join(sorted(names))}): one file per model")
    return (names.pop() if names else path.stem), outputs


def load_rubrics(path: Path | str) -> list[Rubric]:
    """Read FLASK's ``skillset_description.json``.

    Raises:
        EvalInputError: not a list of ``{"Skill", "Criteria", "Scoring": {"1".."5"}}`` (naming the entry).
    """
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, list) or not data:
        raise EvalInputError(f"{path}: expected a JSON list of skill rubrics")
    rubrics = []
    for index, entry in enumerate(data):
        scoring = entry.get("Scoring") if isinstance(entry, dict) else None
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("Skill"), str)
            or not isinstance(entry.get("Criteria"), str)
            or not isinstance(scoring, dict)
            or any(str(n) not in scoring for n in range(1, 6))
        ):
            raise EvalInputError(f"{path}: entry {index}: expected {{'Skill', 'Criteria', 'Scoring': {{'1'..'5'}}}}")
        levels = tuple(str(scoring[str(n)]) for n in range(1, 6))
        rubrics.append(Rubric(entry["Skill"], entry["Criteria"], levels))  # type: ignore[arg-type]
    return rubrics


def load_review_prompt(path: Path | str, prompt_id: int = REVIEW_PROMPT_ID) -> ReviewPrompt:
    """Read the review prompt ``prompt_id`` of FLASK's ``gpt_review/src/prompt.jsonl``.

    Raises:
        EvalInputError: the prompt is not there, or lacks a field.
    """
    path = Path(path)
    for number, obj in read_jsonl(path):
        if obj.get("prompt_id") == prompt_id:
            template, system = obj.get("prompt_template"), obj.get("system_prompt", "")
            defaults = obj.get("defaults") or {}
            if not isinstance(template, str) or not isinstance(defaults, dict):
                raise EvalInputError(f"{path}:{number}: prompt {prompt_id} needs 'prompt_template' and 'defaults'")
            return ReviewPrompt(str(system), template, {str(k): str(v) for k, v in defaults.items()})
    raise EvalInputError(f"{path}: no prompt with prompt_id {prompt_id} (FLASK's gpt_review/src/prompt.jsonl)")


def skills_text(item: FlaskItem, rubrics: Sequence[Rubric]) -> str:
    """The rubrics of the item's skills, as ``gpt4_eval.py`` writes them (first rubric whose name contains it)."""
    text = ""
    for label in item.skills:
        rubric = next((r for r in rubrics if label in r.skill), None)
        if rubric is None:
            continue
        text += f"\n{rubric.skill}: {rubric.criteria}"
        text += "".join(f"\nScore {n}: {level}" for n, level in enumerate(rubric.scoring, start=1))
        text += "\n\n"
    return text


def review_prompt(item: FlaskItem, response: str, prompt: ReviewPrompt, rubrics: Sequence[Rubric]) -> str:
    """The filled-in review prompt of one answer."""
    return prompt.template.format(
        question=item.instruction,
        response=response,
        skills=skills_text(item, rubrics),
        num=3,
        sample_answer=item.answer,
        **prompt.defaults,
    )


def parse_scores(review: str) -> dict[str, Any]:
    """The skill scores of a review, as ``gpt4_eval.py`` reads them; ``{}`` when there are none."""
    found = _DICT.findall(review)
    if not found:
        return {}
    try:
        value = ast.literal_eval(found[-1].replace("\n", "").replace("_", " ").lower())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return {}
    if not isinstance(value, dict):
        return {}
    na = {"na", "n/a", "not applicable"}
    return {str(k): "N/A" if isinstance(v, str) and v in na else v for k, v in value.items()}


def skill_of(key: str) -> str:
    """The skill a score's key counts for (``aggregate_skill.py``): its first word, the second after ``logical``."""
    words = key.split(" ")
    return words[1] if "logical" in key and len(words) > 1 else words[0]


def numeric_scores(scores: Mapping[str, Any]) -> dict[str, float]:
    """``{skill: score}`` of the scores that are numbers (N/A and text left out)."""
    out: dict[str, float] = {}
    for key, value in scores.items():
        if value == "N/A" or isinstance(value, bool):
            continue
        try:
            out[skill_of(key)] = float(value)
        except (TypeError, ValueError):
            continue
    return out


def skill_table(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """``{system: {skill: {"score": mean, "count": n}}}`` in FLASK's skill order, as ``aggregate_skill.py``."""
    sums: dict[str, dict[str, list[float]]] = {}
    for r in records:
        if r.get("error") or "skill_scores" not in r:
            continue
        for skill, value in r["skill_scores"].items():
            sums.setdefault(r["system"], {}).setdefault(skill, []).append(value)
    order = {s: n for n, s in enumerate(SKILL_ORDER)}
    return {
        system: {
            skill: {"score": sum(v) / len(v), "count": len(v)}
            for skill, v in sorted(skills.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0]))
        }
        for system, skills in sums.items()
    }


def difficulty_level(value: object) -> int | None:
    """The level (1-5) of a FLASK difficulty: one of :data:`DIFFICULTY_LEVELS` or ``"1"``-``"5"``; else None."""
    text = str(value if value is not None else "").strip().lower()
    if text in DIFFICULTY_LEVELS:
        return DIFFICULTY_LEVELS.index(text) + 1
    return int(text) if text in {"1", "2", "3", "4", "5"} else None


def domains_of(value: object) -> list[str]:
    """The domains of an item or record, once each, FLASK's unlabeled ``-1`` and empty names left out."""
    names = value if isinstance(value, (list, tuple)) else [value] if value is not None else []
    labels = (str(n).strip() for n in names)
    return list(dict.fromkeys(n for n in labels if n and n != UNLABELED))


def _mean(values: Sequence[float], digits: int) -> dict[str, float]:
    return {"score": round(sum(values) / len(values), digits), "count": len(values)}


def _skill_key(skill: str) -> tuple[int, str]:
    return (SKILL_ORDER.index(skill) if skill in SKILL_ORDER else len(SKILL_ORDER), skill)


def _domain_key(domain: str) -> tuple[int, str]:
    return (DOMAIN_ORDER.index(domain) if domain in DOMAIN_ORDER else len(DOMAIN_ORDER), domain)


def breakdowns(records: Sequence[dict[str, Any]], *, digits: int = 4) -> dict[str, dict[str, Any]]:
    """Each system's scores by difficulty level and by domain, as FLASK's aggregation scripts compute them.

    Read from the records alone (their ``skill_scores``, ``difficulty`` and
    ``domain``), so reviewed output files and resumed runs get them too. Records
    with an error or no numeric score (an unparseable review) count nowhere.

    Returns:
        ``{system: {"difficulty": {level name: {"level": 1-5, "score", "count", "items",
        "skills": {skill: {"score", "count"}}}}, "domains": {domain: {"score", "count",
        "items"}}, "left_out": {"difficulty": items, "domain": items}}}``: ``score`` a
        mean 1-5 rounded to ``digits``, ``count`` the scores it averages, ``items`` the
        items they came from; levels easiest first, skills and domains in FLASK's order;
        ``left_out`` counts the scored items without a level, or without a domain.
    """
    levels: dict[str, dict[int, dict[str, list[float]]]] = {}
    level_items: dict[str, dict[int, int]] = {}
    domains: dict[str, dict[str, list[float]]] = {}
    domain_items: dict[str, dict[str, int]] = {}
    left_out: dict[str, dict[str, int]] = {}
    for r in records:
        if r.get("error"):
            continue
        system = r["system"]
        missing = left_out.setdefault(system, {"difficulty": 0, "domain": 0})
        levels.setdefault(system, {})
        domains.setdefault(system, {})
        scores: dict[str, float] = r.get("skill_scores") or {}
        if not scores:
            continue
        level = difficulty_level(r.get("difficulty"))
        if level is None:
            missing["difficulty"] += 1
        else:
            for skill, value in scores.items():
                levels[system].setdefault(level, {}).setdefault(skill, []).append(float(value))
            counts = level_items.setdefault(system, {})
            counts[level] = counts.get(level, 0) + 1
        names = domains_of(r.get("domain"))
        if not names:
            missing["domain"] += 1
        for name in names:
            domains[system].setdefault(name, []).extend(float(v) for v in scores.values())
            counts_d = domain_items.setdefault(system, {})
            counts_d[name] = counts_d.get(name, 0) + 1
    out: dict[str, dict[str, Any]] = {}
    for system, missing in left_out.items():
        by_level = {}
        for level in sorted(levels[system]):
            skills = levels[system][level]
            pooled = [v for values in skills.values() for v in values]
            by_level[DIFFICULTY_LEVELS[level - 1]] = {
                "level": level,
                **_mean(pooled, digits),
                "items": level_items[system][level],
                "skills": {s: _mean(skills[s], digits) for s in sorted(skills, key=_skill_key)},
            }
        by_domain = {
            name: {**_mean(domains[system][name], digits), "items": domain_items[system][name]}
            for name in sorted(domains[system], key=_domain_key)
        }
        out[system] = {"difficulty": by_level, "domains": by_domain, "left_out": dict(missing)}
    return out


def breakdown_tables(systems: Mapping[str, Mapping[str, Any]]) -> str:
    """The difficulty and domain breakdowns of ``summary.json``'s systems as two markdown tables.

    Difficulty: a row per system and level, the level's pooled mean and each
    skill's mean. Domain: a row per system, each domain's mean and its items.
    Under each, the items left out for having no level (or domain); a breakdown
    no item has a label for is one sentence.
    """
    parts = []
    shown = {name: entry for name, entry in systems.items() if "difficulty" in entry}
    levels = [e.get("difficulty", {}) for e in shown.values()]
    skills = sorted({s for by_level in levels for cell in by_level.values() for s in cell["skills"]}, key=_skill_key)
    rows = [
        f"| {name} | {cell['level']} {level} | {cell['items']} | {cell['score']:.2f} |"
        + "".join(f" {cell['skills'][s]['score']:.2f} |" if s in cell["skills"] else " |" for s in skills)
        for name, entry in shown.items()
        for level, cell in entry["difficulty"].items()
    ]
    if rows:
        parts.append(
            "By difficulty (FLASK's levels 1-5; each skill's mean 1-5 score, and all its scores pooled):\n\n"
            + "| system | difficulty | items | all skills |"
            + "".join(f" {s} |" for s in skills)
            + "\n|---|---|---:|---:|"
            + "---:|" * len(skills)
            + "\n"
            + "\n".join(rows)
            + "\n"
            + _left_out(shown, "difficulty", "one of FLASK's five difficulty levels")
        )
    else:
        parts.append("By difficulty: no scored item has one of FLASK's five difficulty levels.\n")
    names = sorted({d for e in shown.values() for d in e.get("domains", {})}, key=_domain_key)
    if names:
        lines = [
            f"| {name} |"
            + "".join(
                f" {entry['domains'][d]['score']:.2f} ({entry['domains'][d]['items']}) |"
                if d in entry["domains"]
                else " - |"
                for d in names
            )
            for name, entry in shown.items()
        ]
        parts.append(
            "By domain (every score of an item pooled and counted in each of its domains; mean 1-5 (items)):\n\n"
            + "| system |"
            + "".join(f" {d} |" for d in names)
            + "\n|---|"
            + "---:|" * len(names)
            + "\n"
            + "\n".join(lines)
            + "\n"
            + _left_out(shown, "domain", "a domain")
        )
    else:
        parts.append("By domain: no scored item has a domain.\n")
    return "\n".join(parts)


def _left_out(systems: Mapping[str, Mapping[str, Any]], key: str, what: str) -> str:
    counts = {name: entry["left_out"][key] for name, entry in systems.items() if entry["left_out"][key]}
    if not counts:
        return ""
    each = ", ".join(f"{name} {n}" for name, n in counts.items())
    return f"\nLeft out, scored items without {what}: {each}.\n"


def flask_answerer(
    runner: GraphRunner,
    judge: MoAConfig,
    prompt: ReviewPrompt,
    rubrics: Sequence[Rubric],
    outputs: Mapping[str, Mapping[str, str]] | None = None,
) -> Any:  # returns runner.Answer
    """The ``answer(system, item)`` of FLASK: answer (or read the answer), then one review of the item's skills."""

    async def answer(system: System, item: FlaskItem) -> dict[str, Any]:
        run_fields: dict[str, Any]
        if system.kind == "outputs":
            read = (outputs or {}).get(system.name, {})
            if item.id not in read:
                raise EvalInputError(f"{system.name}: its outputs file has no output for this item")
            response, run_fields = read[item.id], {"response": read[item.id], "usage": {}}
        else:
            assert system.config is not None
            run = await runner.run(config_for_item(system.config, item.id), [("user", item.instruction)])
            response, run_fields = run.answer, run.record()
        judgment = await ask_judge(runner, judge, prompt.system_prompt, review_prompt(item, response, prompt, rubrics))
        scores = parse_scores(judgment.text)
        numeric = numeric_scores(scores)
        return {
            "system": system.name,
            "id": item.id,
            "instruction": item.instruction,
            "skills": list(item.skills),
            "domain": list(item.domain),
            "difficulty": item.difficulty,
            "review": judgment.text,
            "scores": scores,
            "skill_scores": numeric,
            "unparseable": int(not scores),
            "score": sum(numeric.values()) / len(numeric) if numeric else None,
            "error": None,
            "judge_usage": judgment.usage,
            "judge_cost_usd": judgment.cost_usd,
            **run_fields,
        }

    return answer


async def run_flask(
    items: Sequence[FlaskItem],
    config: MoAConfig | None,
    *,
    judge: MoAConfig,
    rubrics: Sequence[Rubric],
    prompt: ReviewPrompt,
    compare: bool = False,
    collaborativeness: bool = False,
    extra_systems: Mapping[str, MoAConfig] | None = None,
    variants: Mapping[str, MoAConfig] | None = None,
    out_dir: Path | str | None = None,
    concurrency: int = 4,
    outputs: Mapping[str, Mapping[str, str]] | None = None,
    models: dict[str, Any] | None = None,
    cache: BaseCache[Any] | None = None,
    progress: ProgressSink | None = None,
) -> EvalResult:
    """Answer FLASK ``items`` with MoA (and, with ``compare``, each proposer alone) and review them per skill.

    Args:
        items: From :func:`load_flask`.
        config: The MoA configuration (system ``moa``); None reviews ``outputs`` only.
        outputs: Existing answers reviewed as systems, ``{name: {idx: text}}`` (:func:`load_flask_outputs`);
            an item a system has no output for is recorded as that pair's error.
        judge: The judge's configuration (:func:`~langgraph_moa.eval.judge.judge_config`, FLASK: temperature 0,
            1024 tokens).
        rubrics: From :func:`load_rubrics`.
        prompt: From :func:`load_review_prompt`.
        compare: Also each distinct proposer alone.
        collaborativeness: Each distinct proposer alone and as the aggregator of the others' answers.
        extra_systems: More whole configurations by name.
        variants: ``config`` with fields changed, by name.
        out_dir: Output directory (resumable); reviews in FLASK's format go to ``reviews/<system>.jsonl``
            and ``summary.json`` gains each system's ``skills`` and :func:`breakdowns` (``difficulty``,
            ``domains``, ``left_out``).
        concurrency: (system, item) pairs in flight.
        models: Ready chat models by name.
        cache: The proposal cache, or None.
        progress: Receives progress.
    """
    systems: list[System] = []
    if config is not None:
        systems = comparison_systems(
            config, compare=compare, extra=extra_systems, variants=variants, collaborativeness=collaborativeness
        )
    systems = with_output_systems(systems, outputs, "a configuration or outputs to review")
    check_systems(systems, models, judge)
    store = open_store(out_dir, "flask", systems)
    runner = GraphRunner(models, cache)
    answer = flask_answerer(runner, judge, prompt, rubrics, outputs)
    await run_batch(items, systems, answer, store=store, concurrency=concurrency, progress=progress)
    result = finish("flask", systems, store, [i.id for i in items])
    table = skill_table(result.records)
    by = breakdowns(result.records)
    for name, entry in result.summary["systems"].items():
        entry["skills"] = {k: round(v["score"], 4) for k, v in table.get(name, {}).items()}
        entry.update(by.get(name, {"difficulty": {}, "domains": {}, "left_out": {"difficulty": 0, "domain": 0}}))
    if store.out_dir is not None:
        (store.out_dir / SUMMARY_FILE).write_text(json.dumps(result.summary, indent=2) + "\n", encoding="utf-8")
        write_reviews(store.out_dir / REVIEWS_DIR, result.records, items)
    return result


def write_reviews(folder: Path, records: Sequence[dict[str, Any]], items: Sequence[FlaskItem]) -> None:
    """Write each system's reviews in FLASK's review format (the item, ``target_txt``, ``review``, ``score``)."""
    folder.mkdir(parents=True, exist_ok=True)
    by_id = {i.id: i for i in items}
    order = {i.id: n for n, i in enumerate(items)}
    by_system: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        if not r.get("error") and "review" in r:
            by_system.setdefault(r["system"], []).append(r)
    for system, rows in by_system.items():
        rows.sort(key=lambda r: order.get(r["id"], 0))
        lines = []
        for r in rows:
            item = by_id[r["id"]]
            idx: int | str = int(item.id) if item.id.isdigit() else item.id
            entry = {
                "idx": idx,
                "instruction": item.instruction,
                "answer": item.answer,
                "skill": list(item.skills),
                "domain": list(item.domain),
                "difficulty": item.difficulty,
                "target_txt": r["response"],
                "review": r["review"],
                "score": r["scores"],
            }
            lines.append(json.dumps(entry, ensure_ascii=False))
        safe = system.replace("/", "_").replace(":", "_")
        (folder / f"{safe}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
