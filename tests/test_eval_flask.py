"""`moa eval flask` on small made-up files (FLASK's own are not shipped) and a simulated judge."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from langgraph_moa import MoAConfig
from langgraph_moa.eval import EvalInputError
from langgraph_moa.eval.flask import (
    breakdowns,
    difficulty_level,
    domains_of,
    load_flask,
    load_flask_outputs,
    load_review_prompt,
    load_rubrics,
    numeric_scores,
    parse_scores,
    review_prompt,
    run_flask,
    skill_of,
    skill_table,
)
from langgraph_moa.eval.judge import judge_config
from langgraph_moa.testing import ModelBehavior, SimulatedOpenAIServer
from tests.cli_runs import moa

ITEMS = [
    {
        "idx": 1,
        "instruction": "Add 2 and 2.",
        "answer": "4",
        "skill": ["Logical Correctness", "Conciseness", "Readability"],
    },
    {"idx": 2, "instruction": "Name a colour.", "answer": "red", "skill": ["Commonsense Understanding", "Conciseness"]},
    {"idx": 3, "instruction": "NOREVIEW this.", "answer": "x", "skill": ["Readability"]},
]
RUBRICS = [
    {"Skill": name, "Criteria": f"criteria of {name}", "Scoring": {str(n): f"{name} level {n}" for n in range(1, 6)}}
    for name in ("Logical Correctness", "Commonsense Understanding", "Conciseness", "Readability")
]
PROMPTS = [
    {"prompt_id": 1, "system_prompt": "Check.", "prompt_template": "{prompt1}{skills}[I]{question}[R]{response}", "defaults": {"prompt1": "P1"}},
    {
        "prompt_id": 2,
        "system_prompt": "Check it.",
        "prompt_template": "{prompt1}\n{skills}\n[I]{question}\n[REF]{sample_answer}\n[R]{response}\n{prompt2}",
        "defaults": {"prompt1": "Rate these:", "prompt2": "Return a dict."},
    },
]  # fmt: skip


def files(tmp_path: Path) -> tuple[Path, Path, Path]:
    items = tmp_path / "flask_evaluation.jsonl"
    items.write_text("".join(json.dumps(i) + "\n" for i in ITEMS))
    rubrics = tmp_path / "skillset_description.json"
    rubrics.write_text(json.dumps(RUBRICS))
    prompts = tmp_path / "prompt.jsonl"
    prompts.write_text("".join(json.dumps(p) + "\n" for p in PROMPTS))
    return items, rubrics, prompts


def reviewer(messages: list[dict]) -> str:
    prompt = [m["content"] for m in messages if m["role"] == "user"][-1]
    if "NOREVIEW" in prompt:
        return "I will not score this."
    good = "[R]good" in prompt
    if "Add 2" in prompt:
        correct, concise = (5, 4) if good else (2, 1)
        return f"Feedback: fine.\n{{'Logical_Correctness': {correct}, 'Conciseness': {concise}, 'Readability': 'n/a'}}"
    return f"{{'Commonsense Understanding': {5 if good else 3}, 'Conciseness': 'not applicable'}}"


def setup(server: SimulatedOpenAIServer) -> MoAConfig:
    server.set_behavior("good", ModelBehavior(reply="good answer"))
    server.set_behavior("bad", ModelBehavior(reply="bad answer"))
    server.set_behavior("agg", ModelBehavior(reply="good synthesis"))
    server.set_behavior("judge", ModelBehavior(reply=reviewer))
    return MoAConfig(proposers=["openai:good", "openai:bad"], aggregator="openai:agg", base_url=server.base_url)


def test_the_review_prompt_and_the_score_reading_are_flasks(tmp_path: Path) -> None:
    items_path, rubrics_path, prompts_path = files(tmp_path)
    item = load_flask(items_path)[1]
    prompt = load_review_prompt(prompts_path)  # prompt 2, as gpt4_eval.py uses
    text = review_prompt(item, "blue", prompt, load_rubrics(rubrics_path))
    skills = "".join(
        f"\n{name}: criteria of {name}" + "".join(f"\nScore {n}: {name} level {n}" for n in range(1, 6)) + "\n\n"
        for name in ("Commonsense Understanding", "Conciseness")
    )
    assert text == f"Rate these:\n{skills}\n[I]Name a colour.\n[REF]red\n[R]blue\nReturn a dict."
    assert prompt.system_prompt == "Check it."
    scores = parse_scores("ok {'a': 1} then\n{'Logical_Correctness': 4,\n 'Readability': 'N/A', 'Harmlessness': 'na'}")
    assert scores == {"logical correctness": 4, "readability": "N/A", "harmlessness": "N/A"}  # the last dict
    assert parse_scores("no dict") == {} and parse_scores("{not python}") == {}
    assert skill_of("logical robustness") == "robustness" and skill_of("commonsense understanding") == "commonsense"
    assert numeric_scores({"logical efficiency": "3", "readability": "N/A", "conciseness": "good"}) == {
        "efficiency": 3.0
    }


async def test_flask_scores_per_skill_and_counts_reviews_without_scores(
    server: SimulatedOpenAIServer, tmp_path: Path
) -> None:
    items_path, rubrics_path, prompts_path = files(tmp_path)
    result = await run_flask(
        load_flask(items_path),
        setup(server),
        judge=judge_config("judge", base_url=server.base_url, max_tokens=1024),
        rubrics=load_rubrics(rubrics_path),
        prompt=load_review_prompt(prompts_path),
        compare=True,
        out_dir=tmp_path / "out",
    )
    systems = result.summary["systems"]
    assert list(systems) == ["moa", "openai:good", "openai:bad"]
    # item 1: mean of correctness and conciseness (readability N/A); item 2: commonsense; item 3: no scores
    assert systems["moa"]["score"] == pytest.approx(((5 + 4) / 2 + 5) / 2) and systems["moa"]["n"] == 2
    assert systems["openai:bad"]["score"] == pytest.approx(((2 + 1) / 2 + 3) / 2)
    assert systems["openai:bad"]["skills"] == {"correctness": 2.0, "commonsense": 3.0, "conciseness": 1.0}
    assert sum(r["unparseable"] for r in result.records if r["system"] == "moa") == 1
    requests = server.requests_for("judge")
    assert len(requests) == 3 * 3 and {(r["temperature"], r["max_tokens"]) for r in requests} == {(0.0, 1024)}
    assert requests[0]["messages"][0] == {"role": "system", "content": "Check it."}
    reviews = [json.loads(line) for line in (tmp_path / "out" / "reviews" / "moa.jsonl").read_text().splitlines()]
    assert [r["idx"] for r in reviews] == [1, 2, 3] and reviews[0]["target_txt"] == "good synthesis"
    assert reviews[0]["score"] == {"logical correctness": 5, "conciseness": 4, "readability": "N/A"}
    assert systems["moa"]["left_out"] == {"difficulty": 2, "domain": 2}  # no labels; item 3 has no scores
    assert systems["moa"]["difficulty"] == systems["moa"]["domains"] == {}
    table = skill_table(result.records)
    assert list(table["moa"]) == ["correctness", "commonsense", "conciseness"]  # FLASK's skill order
    assert table["moa"]["correctness"] == {"score": 5.0, "count": 1}


def test_flask_command_and_bad_files(server: SimulatedOpenAIServer, tmp_path: Path) -> None:
    items_path, rubrics_path, prompts_path = files(tmp_path)
    setup(server)
    args = ["eval", "flask", str(items_path), "--judge", "judge", "--judge-base-url", server.base_url]
    args += ["--rubrics", str(rubrics_path), "--review-prompts", str(prompts_path)]
    args += ["--base-url", server.base_url, "--proposer", "good", "--proposer", "bad", "--aggregator", "agg"]
    result = moa(*args, "--compare")
    assert result.returncode == 0, result.stderr
    assert "| correctness |" in result.stdout and "| moa | 2 | 4.75 |" in result.stdout
    assert "3 review(s) had no score dictionary" in result.stderr  # one item, three systems
    assert "By difficulty: no scored item has one of FLASK's five difficulty levels." in result.stdout
    assert "By domain: no scored item has a domain." in result.stdout
    missing = moa(*args[:-6], "--review-prompts", str(prompts_path), "--prompt-id", "7")
    assert missing.returncode == 1 and "no prompt with prompt_id 7" in missing.stderr
    (tmp_path / "bad.jsonl").write_text('{"idx": 1, "instruction": "x"}\n')
    with pytest.raises(EvalInputError, match="bad.jsonl:1: field 'skill'"):
        load_flask(tmp_path / "bad.jsonl")


def test_flask_reviews_model_output_files_without_generating(server: SimulatedOpenAIServer, tmp_path: Path) -> None:
    items_path, rubrics_path, prompts_path = files(tmp_path)
    setup(server)
    good = tmp_path / "good_model.jsonl"  # FLASK's outputs name no model: the file's stem names it
    good.write_text("".join(json.dumps({"question_id": i, "text": "good text"}) + "\n" for i in (1, 2)))
    args = ["eval", "flask", str(items_path), "--judge", "judge", "--judge-base-url", server.base_url]
    args += ["--rubrics", str(rubrics_path), "--review-prompts", str(prompts_path), "--outputs", str(good), "--json"]
    result = moa(*args)
    assert result.returncode == 0, result.stderr
    systems = json.loads(result.stdout)["systems"]
    assert list(systems) == ["good_model"] and systems["good_model"]["score"] == pytest.approx(4.75)
    assert "good_model: no output for 1 of 3 item(s) (e.g. 3): counted as its errors" in result.stderr
    assert server.calls("agg") == server.calls("good") == 0 and server.calls("judge") == 2


# Difficulty and domain breakdowns: a made-up set (FLASK's own is not shipped), with FLASK's labels, its
# unlabeled -1 (as a domain and as a difficulty), an item with neither field and one whose review has no scores.
LABELLED = [
    {"idx": 1, "instruction": "Q1", "answer": "a", "skill": ["Logical Correctness", "Conciseness", "Readability"],
     "domain": ["Math", "Puzzles"], "difficulty": "simple lifestyle knowledge"},
    {"idx": 2, "instruction": "Q2", "answer": "a", "skill": ["Logical Correctness", "Conciseness", "Readability"],
     "domain": ["Math", "Coding"], "difficulty": "expert level knowledge"},
    {"idx": 3, "instruction": "Q3", "answer": "a", "skill": ["Commonsense Understanding", "Conciseness"],
     "domain": ["Culture", "-1"], "difficulty": "simple lifestyle knowledge"},
    {"idx": 4, "instruction": "Q4", "answer": "a", "skill": ["Commonsense Understanding", "Readability"],
     "domain": ["-1"], "difficulty": -1},
    {"idx": 5, "instruction": "Q5", "answer": "a", "skill": ["Readability"]},
    {"idx": 6, "instruction": "Q6 NOREVIEW", "answer": "a", "skill": ["Readability"],
     "domain": ["Math"], "difficulty": "major level knowledge"},
]  # fmt: skip
LABELLED_REVIEWS = {
    "Q1": {"Logical_Correctness": 4, "Conciseness": 2, "Readability": "N/A"},
    "Q2": {"Logical Correctness": 2, "Conciseness": 5, "Readability": 3},
    "Q3": {"Commonsense Understanding": 5, "Conciseness": 3},
    "Q4": {"Commonsense Understanding": 1, "Readability": 2},
    "Q5": {"Readability": 4},
}


def labelled_reviewer(messages: list[dict]) -> str:
    """Each item's scores for an answer ``good``; every numeric score 1 for ``bad``; no dictionary for Q6."""
    prompt = [m["content"] for m in messages if m["role"] == "user"][-1]
    question = next(q for q in [*LABELLED_REVIEWS, "Q6"] if f"[I]{q}" in prompt)
    if question == "Q6":
        return "No scores."
    bad = "[R]bad" in prompt
    return "Feedback.\n" + repr({k: 1 if bad and v != "N/A" else v for k, v in LABELLED_REVIEWS[question].items()})


def labelled_files(tmp_path: Path, server: SimulatedOpenAIServer) -> tuple[Path, Path, Path, Path, Path]:
    items, rubrics, prompts = files(tmp_path)
    items.write_text("".join(json.dumps(i) + "\n" for i in LABELLED))
    server.set_behavior("judge", ModelBehavior(reply=labelled_reviewer))
    good, bad = tmp_path / "good.jsonl", tmp_path / "bad.jsonl"
    good.write_text("".join(json.dumps({"question_id": i, "text": "good text"}) + "\n" for i in range(1, 7)))
    bad.write_text("".join(json.dumps({"question_id": i, "text": "bad text"}) + "\n" for i in range(1, 5)))
    return items, rubrics, prompts, good, bad


FLASK_LEVELS = [
    "simple lifestyle knowledge",
    "advanced lifestyle knowledge",
    "formal education knowledge",
    "major level knowledge",
    "expert level knowledge",
]  # the values of flask_evaluation.jsonl's "difficulty", level 1 first


def test_difficulty_levels_and_domains_are_read_as_flask_labels_them() -> None:
    assert [difficulty_level(level) for level in FLASK_LEVELS] == [1, 2, 3, 4, 5]
    assert difficulty_level(" Expert Level Knowledge") == 5 and difficulty_level("3") == 3
    assert [difficulty_level(v) for v in (-1, "-1", "", None, "hard", "6")] == [None] * 6
    assert domains_of(["Math", "-1", "", "Math", "Coding"]) == ["Math", "Coding"]
    assert domains_of("Math") == ["Math"] and domains_of(None) == domains_of(["-1"]) == []


async def test_flask_breaks_scores_down_by_difficulty_and_domain(server: SimulatedOpenAIServer, tmp_path: Path) -> None:
    items_path, rubrics_path, prompts_path, good, bad = labelled_files(tmp_path, server)
    outputs = dict([load_flask_outputs(good), load_flask_outputs(bad)])

    async def run() -> dict:
        result = await run_flask(
            load_flask(items_path),
            None,
            judge=judge_config("judge", base_url=server.base_url, max_tokens=1024),
            rubrics=load_rubrics(rubrics_path),
            prompt=load_review_prompt(prompts_path),
            outputs=outputs,
            out_dir=tmp_path / "out",
        )
        assert result.summary == json.loads((tmp_path / "out" / "summary.json").read_text())
        return result.summary["systems"]

    systems = await run()
    assert server.calls("judge") == 6 + 4
    g = systems["good"]
    # level 1 (items 1, 3): correctness 4, commonsense 5, conciseness 2 and 3; pooled (4+2+5+3)/4
    # level 5 (item 2): 2, 5, 3; item 6 (level 4) has no scores; items 4 (-1) and 5 (no field) are left out
    assert g["difficulty"] == {
        "simple lifestyle knowledge": {
            "level": 1, "score": 3.5, "count": 4, "items": 2,
            "skills": {"correctness": {"score": 4.0, "count": 1}, "commonsense": {"score": 5.0, "count": 1},
                       "conciseness": {"score": 2.5, "count": 2}},
        },
        "expert level knowledge": {
            "level": 5, "score": 3.3333, "count": 3, "items": 1,
            "skills": {"correctness": {"score": 2.0, "count": 1}, "readability": {"score": 3.0, "count": 1},
                       "conciseness": {"score": 5.0, "count": 1}},
        },
    }  # fmt: skip
    assert list(g["difficulty"]["expert level knowledge"]["skills"]) == ["correctness", "readability", "conciseness"]
    # every score of an item in each of its domains: Math (4+2 + 2+5+3)/5, Coding 10/3, Culture (5+3)/2, Puzzles 6/2
    assert g["domains"] == {
        "Culture": {"score": 4.0, "count": 2, "items": 1},
        "Coding": {"score": 3.3333, "count": 3, "items": 1},
        "Math": {"score": 3.2, "count": 5, "items": 2},
        "Puzzles": {"score": 3.0, "count": 2, "items": 1},
    }
    assert list(g["domains"]) == ["Culture", "Coding", "Math", "Puzzles"]  # FLASK's order, other names after
    assert g["left_out"] == {"difficulty": 2, "domain": 2}
    b = systems["bad"]  # every score 1; items 5 and 6 have no output (errors), so only item 4 is left out
    assert {level: (c["score"], c["count"], c["items"]) for level, c in b["difficulty"].items()} == {
        "simple lifestyle knowledge": (1.0, 4, 2),
        "expert level knowledge": (1.0, 3, 1),
    }
    assert {d: (c["score"], c["count"]) for d, c in b["domains"].items()} == {
        "Culture": (1.0, 2), "Coding": (1.0, 3), "Math": (1.0, 5), "Puzzles": (1.0, 2)
    }  # fmt: skip
    assert b["left_out"] == {"difficulty": 1, "domain": 1}
    assert breakdowns([{"system": "x", "id": "1", "error": "boom"}]) == {}

    assert await run() == systems and server.calls("judge") == 10  # a resumed run: no review again, same breakdowns


def test_flask_command_prints_and_writes_the_breakdown_tables(server: SimulatedOpenAIServer, tmp_path: Path) -> None:
    items_path, rubrics_path, prompts_path, good, bad = labelled_files(tmp_path, server)
    args = ["eval", "flask", str(items_path), "--judge", "judge", "--judge-base-url", server.base_url]
    args += ["--rubrics", str(rubrics_path), "--review-prompts", str(prompts_path)]
    args += ["--outputs", str(good), "--outputs", str(bad), "--out", str(tmp_path / "out")]
    result = moa(*args)
    assert result.returncode == 0, result.stderr
    tables = (
        "By difficulty (FLASK's levels 1-5; each skill's mean 1-5 score, and all its scores pooled):\n\n"
        "| system | difficulty | items | all skills | correctness | commonsense | readability | conciseness |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|\n"
        "| good | 1 simple lifestyle knowledge | 2 | 3.50 | 4.00 | 5.00 | | 2.50 |\n"
        "| good | 5 expert level knowledge | 1 | 3.33 | 2.00 | | 3.00 | 5.00 |\n"
        "| bad | 1 simple lifestyle knowledge | 2 | 1.00 | 1.00 | 1.00 | | 1.00 |\n"
        "| bad | 5 expert level knowledge | 1 | 1.00 | 1.00 | | 1.00 | 1.00 |\n"
        "\nLeft out, scored items without one of FLASK's five difficulty levels: good 2, bad 1.\n"
        "\nBy domain (every score of an item pooled and counted in each of its domains; mean 1-5 (items)):\n\n"
        "| system | Culture | Coding | Math | Puzzles |\n"
        "|---|---:|---:|---:|---:|\n"
        "| good | 4.00 (1) | 3.33 (1) | 3.20 (2) | 3.00 (1) |\n"
        "| bad | 1.00 (1) | 1.00 (1) | 1.00 (2) | 1.00 (1) |\n"
        "\nLeft out, scored items without a domain: good 2, bad 1.\n"
    )
    assert result.stdout.endswith(tables)
    assert "| system | n | score (1-5) |" in result.stdout  # the skill table stays first
    assert (tmp_path / "out" / "summary.md").read_text().endswith(tables)
    resumed = moa(*args)
    assert resumed.returncode == 0 and resumed.stdout == result.stdout and server.calls("judge") == 10
    as_json = json.loads(moa(*args, "--json").stdout)["systems"]
    assert as_json["good"]["domains"]["Math"] == {"score": 3.2, "count": 5, "items": 2}
