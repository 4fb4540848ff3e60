"""`moa eval flask` on small made-up files (FLASK's own are not shipped) and a simulated judge."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from langgraph_moa import MoAConfig
from langgraph_moa.eval import EvalInputError
from langgraph_moa.eval.flask import (
    load_flask,
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
    assert "3 review(s) had no score dictionary"  # one item, three systems in result.stderr
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
