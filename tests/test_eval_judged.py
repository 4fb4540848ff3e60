"""`moa eval mt-bench` and `moa eval alpaca-eval` with small generated files and a simulated judge."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from langgraph_moa import MoAConfig
from langgraph_moa.eval import EvalInputError
from langgraph_moa.eval.alpaca_eval import load_instructions, matched_outputs, run_alpaca_eval
from langgraph_moa.eval.judge import judge_config, parse_rating, parse_verdict
from langgraph_moa.eval.mt_bench import load_judge_prompts, load_questions, load_reference_answers, run_mt_bench
from langgraph_moa.testing import ModelBehavior, SimulatedOpenAIServer
from tests.cli_runs import moa

QUESTIONS = [
    {"question_id": 81, "category": "writing", "turns": ["Write a poem.", "Make it shorter."]},
    {"question_id": 111, "category": "math", "turns": ["What is 2+2?", "And 3+3?"]},
    {"question_id": 121, "category": "reasoning", "turns": ["NOJUDGE riddle?", "Why?"]},
]
PROMPTS = [
    {"name": "single-v1", "system_prompt": "Rate it.", "prompt_template": "[Q]{question}[A]{answer}"},
    {
        "name": "single-math-v1",
        "system_prompt": "Rate it.",
        "prompt_template": "[Q]{question}[REF]{ref_answer_1}[A]{answer}",
    },
    {
        "name": "single-v1-multi-turn",
        "system_prompt": "Rate turn 2.",
        "prompt_template": "[Q1]{question_1}[A1]{answer_1}[Q2]{question_2}[A2]{answer_2}",
    },
    {
        "name": "single-math-v1-multi-turn",
        "system_prompt": "Rate turn 2.",
        "prompt_template": "[Q1]{question_1}[R1]{ref_answer_1}[A1]{answer_1}[Q2]{question_2}[R2]{ref_answer_2}[A2]{answer_2}",
    },
    {"name": "pair-v2", "system_prompt": "unused", "prompt_template": "unused"},
]


def jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def mt_files(tmp_path: Path) -> tuple[Path, Path, Path]:
    data = tmp_path / "data"
    data.mkdir()
    refs = [{"question_id": 111, "model_id": "gpt-4", "choices": [{"index": 0, "turns": ["REF-4", "REF-6"]}]}]
    return (
        jsonl(data / "question.jsonl", QUESTIONS),
        jsonl(data / "judge_prompts.jsonl", PROMPTS),
        jsonl(data / "ref.jsonl", refs),
    )


def last_user(messages: list[dict]) -> str:
    return [m["content"] for m in messages if m["role"] == "user"][-1]


def rating_judge(messages: list[dict]) -> str:
    """9 for an answer by the 'good' model, 3 otherwise; no rating at all for NOJUDGE questions."""
    prompt = last_user(messages)
    if "NOJUDGE" in prompt:
        return "I cannot decide."
    last_answer = re.split(r"\[A2?\]", prompt)[-1]
    return "Rating: [[9]]" if "good" in last_answer else "Rating: [[3]]"


def mt_server(server: SimulatedOpenAIServer) -> MoAConfig:
    server.set_behavior("good", ModelBehavior(reply=lambda m: f"good answer to {last_user(m)}"))
    server.set_behavior("bad", ModelBehavior(reply=lambda m: f"bad answer to {last_user(m)}"))
    server.set_behavior("agg", ModelBehavior(reply=lambda m: f"good synthesis of {last_user(m)}"))
    server.set_behavior("judge", ModelBehavior(reply=rating_judge))
    return MoAConfig(proposers=["openai:good", "openai:bad"], aggregator="openai:agg", base_url=server.base_url)


def test_first_per_category() -> None:
    from langgraph_moa.eval.mt_bench import Question, first_per_category

    qs = [Question(str(i), c, ("t",)) for i, c in enumerate(["a", "a", "b", "a", "b", "c"])]
    assert [q.id for q in first_per_category(qs, 1)] == ["0", "2", "5"]
    assert [q.id for q in first_per_category(qs, 2)] == ["0", "1", "2", "4", "5"]


def test_rating_and_verdict_parsing() -> None:
    assert parse_rating("so [[7]]") == 7.0 and parse_rating("Rating: [8.5]") == 8.5
    assert parse_rating("none") is None and parse_rating("[[42]]") == 42.0  # kept, as FastChat keeps it
    assert parse_verdict("[[A]]") == "A" and parse_verdict("it is a [[C]]") == "C" and parse_verdict("[[tie]]") == "C"
    assert parse_verdict("[[A]] or [[B]]") is None and parse_verdict("A") is None


async def test_mt_bench_two_turns_category_temperatures_references_and_ratings(
    server: SimulatedOpenAIServer, tmp_path: Path
) -> None:
    questions, prompts, refs = mt_files(tmp_path)
    config = mt_server(server)
    result = await run_mt_bench(
        load_questions(questions),
        config,
        judge=judge_config("judge", base_url=server.base_url),
        judge_prompts=load_judge_prompts(prompts),
        reference_answers=load_reference_answers(refs),
        compare=True,
        out_dir=tmp_path / "out",
    )
    systems = result.summary["systems"]
    assert list(systems) == ["moa", "openai:good", "openai:bad"]
    assert {k: (v["n"], v["score"]) for k, v in systems.items()} == {
        "moa": (2, 9.0),
        "openai:good": (2, 9.0),
        "openai:bad": (2, 3.0),
    }  # the NOJUDGE question has no parseable rating: counted, left out
    nojudge = next(r for r in result.records if r["system"] == "moa" and r["id"] == "121")
    assert nojudge["unparseable"] == 2 and nojudge["score"] is None and nojudge["needs_reference_but_none"]
    # FastChat's settings: per-category temperature and 1024 new tokens, on every call
    temps = {(last_user(r["messages"]), r["temperature"]) for r in server.requests_for("bad")}
    assert ("Write a poem.", 0.7) in temps and ("What is 2+2?", 0.0) in temps and ("Why?", 0.0) in temps
    assert {r["max_tokens"] for r in server.requests_for("agg")} == {1024}
    # turn 2 sees the question, the system's own turn-1 answer and the follow-up
    seconds = [r["messages"] for r in server.requests_for("bad") if last_user(r["messages"]) == "And 3+3?"]
    assert all([m["role"] for m in s] == ["user", "assistant", "user"] for s in seconds)
    # as a proposer of MoA it sees MoA's turn-1 answer; alone, its own
    assert {s[1]["content"] for s in seconds} == {"good synthesis of What is 2+2?", "bad answer to What is 2+2?"}
    # the judge: math with the reference-answer prompts, temperature 0, FastChat's system prompt
    judged = [last_user(r["messages"]) for r in server.requests_for("judge")]
    assert any(p.startswith("[Q]What is 2+2?[REF]REF-4[A]") for p in judged)
    assert any("[R2]REF-6[A2]good synthesis of And 3+3?" in p for p in judged)
    assert any(p.startswith("[Q]Write a poem.[A]") for p in judged)
    assert {r["temperature"] for r in server.requests_for("judge")} == {0.0}
    assert server.calls("judge") == 3 * 3 * 2
    assert systems["openai:bad"]["turns"] == {"1": 3.0, "2": 3.0}
    # answers in FastChat's answer format
    answers = [json.loads(line) for line in (tmp_path / "out" / "answers" / "moa.jsonl").read_text().splitlines()]
    assert [a["question_id"] for a in answers] == [81, 111, 121]
    assert answers[0]["model_id"] == "moa" and answers[0]["choices"][0]["turns"][1].startswith("good synthesis")


def test_mt_bench_scores_are_fastchats_show_result_on_a_fixed_judgment_set() -> None:
    """Every rated turn pooled (not per-question means), ratings above 10 kept, turns 1 and 2 apart."""
    from langgraph_moa.eval.mt_bench import show_result

    records = [
        {"system": "a", "id": "1", "ratings": [10.0, 2.0]},
        {"system": "a", "id": "2", "ratings": [8.0, None]},  # no [[rating]] in turn 2: FastChat's -1, dropped
        {"system": "a", "id": "3", "ratings": [12.0, 6.0]},
        {"system": "a", "id": "4", "error": "failed"},
        {"system": "b", "id": "1", "ratings": [None, None]},
    ]
    scores = show_result(records)
    a = scores["a"]
    assert a["score"] == pytest.approx(38 / 5)  # per-question means would give 7.67; dropping the 12, 6.67
    assert (a["turn_1"], a["turn_2"], a["judgments"]) == (10.0, 4.0, 5)
    assert a["ci95"][0] <= a["score"] <= a["ci95"][1]
    assert scores["b"] == {"score": None, "turn_1": None, "turn_2": None, "judgments": 0, "ci95": None}


def test_mt_bench_grades_fastchat_answer_files_by_model_id_without_generating(
    server: SimulatedOpenAIServer, tmp_path: Path
) -> None:
    questions, _, refs = mt_files(tmp_path)
    mt_server(server)

    def answers(model: str, word: str, ids: list[int]) -> Path:
        rows = [{"question_id": i, "model_id": model, "choices": [{"index": 0, "turns": [f"{word} 1", f"{word} 2"]}]}
                for i in ids]  # fmt: skip
        (tmp_path / model).mkdir()
        return jsonl(tmp_path / model / "answers.jsonl", rows)

    good = answers("Good-Model", "good", [81, 111, 121])
    partial = answers("Partial-Model", "plain", [81, 111])
    args = ["eval", "mt-bench", str(questions), "--judge", "judge", "--judge-base-url", server.base_url]
    result = moa(*args, "--reference-answers", str(refs), "--outputs", str(good), "--outputs", str(partial), "--json")
    assert result.returncode == 0, result.stderr
    systems = json.loads(result.stdout)["systems"]
    assert list(systems) == ["Good-Model", "Partial-Model"]  # named by model_id, not by the files' common stem
    assert (systems["Good-Model"]["n"], systems["Good-Model"]["score"]) == (2, 9.0)  # 121 is never rated
    assert (systems["Partial-Model"]["n"], systems["Partial-Model"]["score"]) == (2, 3.0)
    assert "Partial-Model: no answer to 1 of 3 question(s) (e.g. 121)" in result.stderr
    assert server.calls("agg") == server.calls("good") == server.calls("bad") == 0
    assert server.calls("judge") == 3 * 2 + 2 * 2
    # a setting alone (--timeout) names no configuration: still only the files are graded; a file whose one
    # answer is unrated measured nothing but did not fail every item, so the command succeeds
    odd = answers("Odd-Model", "plain", [121])
    judged = server.calls("judge")
    env = {"TOGETHER_API_KEY": "k", "TOGETHER_API_BASE": server.base_url}
    result = moa(*args, "--outputs", str(odd), "--timeout", "300", "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert list(json.loads(result.stdout)["systems"]) == ["Odd-Model"]
    assert server.calls() - judged == server.calls("judge") - judged == 2  # no generation, its one question judged


def test_mt_bench_command(server: SimulatedOpenAIServer, tmp_path: Path) -> None:
    questions, _, refs = mt_files(tmp_path)
    mt_server(server)
    out = tmp_path / "out"
    args = ["eval", "mt-bench", str(questions), "--judge", "judge", "--judge-base-url", server.base_url]
    args += ["--reference-answers", str(refs), "--base-url", server.base_url, "--proposer", "good"]
    result = moa(*args, "--aggregator", "agg", "--compare", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "| moa | 2 | 9.00 |" in result.stdout and "| openai:good | 2 | 9.00 |" in result.stdout
    assert "unparseable judgments" in result.stdout.splitlines()[0] and "| 2/6 |" in result.stdout
    assert "4 judgment(s) had no [[rating]]: left out of the scores" in result.stderr
    calls = server.calls()
    again = moa(*args, "--aggregator", "agg", "--compare", "--out", str(out), "--json")
    assert again.returncode == 0 and server.calls() == calls  # resumed: unparseable items are not judged again
    assert json.loads(again.stdout)["systems"]["moa"]["score"] == 9.0


def test_mt_bench_bad_inputs(tmp_path: Path, server: SimulatedOpenAIServer) -> None:
    questions = jsonl(tmp_path / "question.jsonl", QUESTIONS)
    result = moa("eval", "mt-bench", str(questions), "--judge", "j", "--base-url", server.base_url)
    assert (
        result.returncode == 1
        and "no judge_prompts.jsonl beside" in result.stderr
        and "--judge-prompts" in result.stderr
    )
    prompts = jsonl(tmp_path / "judge_prompts.jsonl", PROMPTS[:2])
    with pytest.raises(EvalInputError, match="single-v1-multi-turn, single-math-v1-multi-turn missing"):
        load_judge_prompts(prompts)
    bad = jsonl(tmp_path / "bad.jsonl", [QUESTIONS[0], {"question_id": 2, "category": "math", "turns": []}])
    with pytest.raises(EvalInputError, match=r"bad.jsonl:2: field 'turns' must be a non-empty list"):
        load_questions(bad)
    server.set_behavior("judge", ModelBehavior(reply="[[5]]"))
    result = moa(
        "eval", "mt-bench", str(questions), "--judge-prompts", str(jsonl(tmp_path / "p.jsonl", PROMPTS)),
        "--judge", "together:judge", "--base-url", server.base_url, "--proposer", "p", "--aggregator", "a",
    )  # fmt: skip
    assert result.returncode == 1 and "together:judge needs TOGETHER_API_KEY" in result.stderr
    assert server.calls() == 0  # the judge's key is checked before any answer


# --------------------------------------------------------------------------- AlpacaEval

INSTRUCTIONS = [
    {"instruction": "Say something great.", "dataset": "helpful_base"},
    {"instruction": "Explain rain.", "dataset": "koala"},
    {"instruction": "Tie this.", "dataset": "oasst"},
]


def verdict_judge(messages: list[dict]) -> str:
    """Prefers the answer that says 'great'; a tie when both or neither do."""
    prompt = last_user(messages)
    a = prompt.split("[The Start of Assistant A's Answer]")[1].split("[The End")[0]
    b = prompt.split("[The Start of Assistant B's Answer]")[1].split("[The End")[0]
    if ("great" in a) == ("great" in b):
        return "Both fine. [[C]]"
    return "[[A]]" if "great" in a else "[[B]]"


def alpaca_files(tmp_path: Path) -> tuple[Path, Path]:
    instructions = tmp_path / "instructions.json"
    instructions.write_text(json.dumps(INSTRUCTIONS))
    baseline = tmp_path / "baseline.json"
    outputs = [
        {"instruction": "Say something great.", "output": "meh", "generator": "base"},
        {"instruction": "Explain rain.", "output": "water falls, great", "generator": "base"},
        {"instruction": "Tie this.", "output": "meh", "generator": "base"},
    ]
    baseline.write_text(json.dumps(outputs))
    return instructions, baseline


def alpaca_server(server: SimulatedOpenAIServer) -> MoAConfig:
    def agg(messages: list[dict]) -> str:
        return "a great answer" if "great" in last_user(messages) else "plain answer"

    server.set_behavior("p", ModelBehavior(reply="plain"))
    server.set_behavior("agg", ModelBehavior(reply=agg))
    server.set_behavior("judge", ModelBehavior(reply=verdict_judge))
    return MoAConfig(proposers=["openai:p"], aggregator="openai:agg", base_url=server.base_url)


async def test_alpaca_eval_both_orders_ties_half_lengths_and_outputs(
    server: SimulatedOpenAIServer, tmp_path: Path
) -> None:
    instructions, baseline = alpaca_files(tmp_path)
    items = load_instructions(instructions)
    from langgraph_moa.eval.alpaca_eval import load_outputs

    result = await run_alpaca_eval(
        items,
        alpaca_server(server),
        judge=judge_config("judge", base_url=server.base_url),
        baseline=matched_outputs(items, load_outputs(baseline), baseline),
        annotator="pairwise",
        compare=True,
        out_dir=tmp_path / "out",
    )
    # moa: win (great vs meh), loss (plain vs great), tie (plain vs meh) -> (1 + 0 + 0.5) / 3
    assert result.summary["systems"]["moa"]["score"] == 0.5
    assert result.summary["systems"]["openai:p"]["score"] == pytest.approx(1 / 3, abs=1e-4)  # tie, loss, tie
    assert server.calls("judge") == 3 * 2 * 2  # every pair judged in both orders
    shown = [last_user(r["messages"]) for r in server.requests_for("judge")]
    great = [p for p in shown if "a great answer" in p]
    assert len(great) == 2 and {"A's Answer]\na great answer" in p for p in great} == {True, False}
    first = next(r for r in result.records if r["system"] == "moa" and r["id"] == "0")
    assert first["verdicts"] == [1.0, 1.0] and first["length"] == len("a great answer")
    outputs = json.loads((tmp_path / "out" / "outputs" / "moa.json").read_text())
    assert outputs[0] == {
        "instruction": "Say something great.",
        "output": "a great answer",
        "generator": "moa",
        "dataset": "helpful_base",
    }


async def test_reference_outputs_are_first_layer_proposals(server: SimulatedOpenAIServer, tmp_path: Path) -> None:
    instructions, baseline = alpaca_files(tmp_path)
    items = load_instructions(instructions)
    config = alpaca_server(server)
    server.set_behavior("agg", ModelBehavior())  # the default reply counts the references it was shown
    result = await run_alpaca_eval(
        items,
        config,
        judge=judge_config("judge", base_url=server.base_url),
        baseline={i.id: "meh" for i in items},
        reference_outputs={i.id: f"precomputed {i.id}" for i in items},
        reference_name="qwen",
        annotator="pairwise",
        compare=True,
    )
    assert list(result.summary["systems"]) == ["moa", "openai:p", "reference:qwen"]
    moa_first = next(r for r in result.records if r["system"] == "moa" and r["id"] == "0")
    assert [p["content"] for p in moa_first["proposals"]] == ["plain", "precomputed 0"]
    assert moa_first["response"].endswith("[refs=2]")
    alone = next(r for r in result.records if r["system"] == "reference:qwen" and r["id"] == "1")
    assert alone["response"] == "precomputed 1"
    assert server.calls("p") == 3 * 2 and server.calls("agg") == 3  # no call for precomputed answers


def test_alpaca_eval_command_and_bad_baseline(server: SimulatedOpenAIServer, tmp_path: Path) -> None:
    instructions, baseline = alpaca_files(tmp_path)
    alpaca_server(server)
    args = ["eval", "alpaca-eval", str(instructions), "--baseline", str(baseline), "--judge", "judge"]
    args += [
        "--annotator",
        "pairwise",
        "--judge-base-url",
        server.base_url,
        "--base-url",
        server.base_url,
        "--proposer",
        "p",
        "--aggregator",
        "agg",
    ]
    result = moa(*args, "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert "| moa | 3 | 50.0 |" in result.stdout and "mean length (chars)" in result.stdout
    short = tmp_path / "short.json"
    short.write_text(json.dumps([{"instruction": "Explain rain.", "output": "x"}]))
    result = moa("eval", "alpaca-eval", str(instructions), "--baseline", str(short), "--judge", "judge")
    assert result.returncode == 1
    assert (
        result.stderr.strip() == f"error: {short}: no output for 2 instruction(s), e.g. entry 0: 'Say something great.'"
    )
    broken = tmp_path / "broken.json"
    broken.write_text('[{"instruction": "a", "output": "b"},\n {"instruction": "c"}]')
    result = moa("eval", "alpaca-eval", str(instructions), "--baseline", str(broken), "--judge", "judge")
    assert result.returncode == 1 and f"{broken}: entry 1: missing or non-string field 'output'" in result.stderr


async def test_a_judge_that_never_rates_leaves_no_score_but_keeps_the_cost(
    server: SimulatedOpenAIServer, tmp_path: Path
) -> None:
    questions, prompts, _ = mt_files(tmp_path)
    config = mt_server(server)
    server.set_behavior("judge", ModelBehavior(reply="Looks fine to me."))
    result = await run_mt_bench(
        load_questions(questions)[:1],
        config,
        judge=judge_config("judge", base_url=server.base_url),
        judge_prompts=load_judge_prompts(prompts),
    )
    moa_summary = result.summary["systems"]["moa"]
    assert moa_summary["n"] == 0 and moa_summary["score"] is None and moa_summary["ci95"] == [None, None]
    assert moa_summary["tokens"] > 0 and moa_summary["latency_p50_s"] > 0  # the answers were made and paid for
