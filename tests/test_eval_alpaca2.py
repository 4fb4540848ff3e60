"""AlpacaEval 2.0's weighted annotator on the simulated server: the request, the preference, the records, the numbers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from langgraph_moa import MoAConfig
from langgraph_moa.eval.alpaca_eval import load_instructions, run_alpaca_eval
from langgraph_moa.eval.judge import judge_config
from langgraph_moa.eval.weighted import (
    ANNOTATOR,
    JudgeWithoutLogprobsError,
    clf_messages,
    is_switched,
    lc_unavailable,
    leaderboard_metrics,
    parse_logprobs,
)
from langgraph_moa.testing import ModelBehavior, SimulatedOpenAIServer
from tests.cli_runs import moa

INSTRUCTIONS = [f"Write about topic {n}." for n in range(8)]
P_GREAT = 0.8  # the judge's probability that a "great" output beats a plain one


def user(messages: list[dict]) -> str:
    return [m["content"] for m in messages if m["role"] == "user"][-1]


def shown(prompt: str) -> tuple[str, str]:
    """The outputs shown as m and M."""
    first, second = prompt.split('"model_identifier": "M"')
    return first.split('"output": """')[-1].split('"""')[0], second.split('"output": """')[-1].split('"""')[0]


def great_judge(messages: list[dict]) -> list[tuple[str, float]]:
    """Prefers the output that says "great" with probability 0.8 (0.5 when both or neither do)."""
    m, big = shown(user(messages))
    p_big = 0.5 if ("great" in m) == ("great" in big) else (P_GREAT if "great" in big else 1 - P_GREAT)
    ranked = [("M", math.log(p_big)), ("m", math.log(1 - p_big)), ("The", -9.0)]
    return sorted(ranked, key=lambda t: -t[1])


def files(tmp_path: Path) -> tuple[Path, Path]:
    instructions = tmp_path / "instructions.json"
    instructions.write_text(json.dumps([{"instruction": i, "dataset": "helpful_base"} for i in INSTRUCTIONS]))
    baseline = tmp_path / "baseline.json"
    baseline.write_text(
        json.dumps([{"instruction": i, "output": "meh", "generator": "base_gen"} for i in INSTRUCTIONS])
    )
    return instructions, baseline


def setup(server: SimulatedOpenAIServer) -> MoAConfig:
    server.set_behavior("p", ModelBehavior(reply="plain"))
    server.set_behavior("agg", ModelBehavior(reply="a great answer"))
    server.set_behavior("judge", ModelBehavior(logprobs=great_judge))
    return MoAConfig(proposers=["openai:p"], aggregator="openai:agg", base_url=server.base_url)


def test_the_order_is_drawn_from_the_instruction_and_the_prompt_is_alpaca_evals() -> None:
    assert {is_switched(i) for i in INSTRUCTIONS} == {False, True}  # both orders occur in the test set
    assert [is_switched(i) for i in INSTRUCTIONS] == [is_switched(i) for i in INSTRUCTIONS]  # and never change
    messages = clf_messages("Say {output_1}.", "first out", "second out")
    assert [role for role, _ in messages] == ["system", "user"]
    assert messages[0][1].startswith("You are a highly efficient assistant") and "<|im_" not in messages[1][1]
    text = messages[1][1]
    # each placeholder is replaced once, in order, as AlpacaEval's make_prompts does: a placeholder inside the
    # instruction takes the output, and the template's own stays as it is
    assert '"instruction": """Say first out."""' in text
    assert '"model_identifier": "m",\n        "output": """{output_1}"""' in text
    assert '"output": """second out"""' in text and text.endswith("m or M.\n\n## Best Model Identifier")


def test_the_preference_from_logprobs() -> None:
    top = [{"token": "M", "logprob": math.log(0.6)}, {"token": "m", "logprob": math.log(0.2)}]
    assert parse_logprobs(top) == pytest.approx(2 - 0.25)  # P(m) among the two identifiers: 0.2 / 0.8
    assert parse_logprobs([{"token": "m", "logprob": -0.1}]) == pytest.approx(1.0)  # M absent: probability 0
    assert parse_logprobs([{"token": "The", "logprob": -0.1}]) is None


async def test_weighted_request_preference_for_both_orders_and_annotations(
    server: SimulatedOpenAIServer, tmp_path: Path
) -> None:
    instructions, baseline = files(tmp_path)
    items = load_instructions(instructions)
    result = await run_alpaca_eval(
        items,
        setup(server),
        judge=judge_config("judge", base_url=server.base_url),
        baseline={i.id: "meh" for i in items},
        baseline_generator="base_gen",
        compare=True,
        out_dir=tmp_path / "out",
    )
    # the request: AlpacaEval's prompt as system + user, one token, temperature 1, logprobs with the top 5
    requests = server.requests_for("judge")
    assert len(requests) == 1 + 2 * len(items)  # one call to check the judge has logprobs, then one per pair
    for request in requests:
        assert (request["max_tokens"], request["temperature"], request["logprobs"], request["top_logprobs"]) == (
            1,
            1.0,
            True,
            5,
        )
    for request in requests[1:]:  # the baseline is m unless the instruction's draw switched the outputs
        prompt = user(request["messages"])
        instruction = prompt.split('"instruction": """')[1].split('"""')[0]
        assert (shown(prompt)[0] != "meh") is is_switched(instruction)
        assert [m["role"] for m in request["messages"]] == ["system", "user"]
    # the preference is 1 + P(the system's output is better), whichever order it was shown in
    moa_records = [r for r in result.records if r["system"] == "moa"]
    assert {r["switched"] for r in moa_records} == {False, True}
    assert all(r["preference"] == pytest.approx(1 + P_GREAT) for r in moa_records)
    assert result.summary["systems"]["moa"]["score"] == pytest.approx(P_GREAT)
    assert result.summary["systems"]["openai:p"]["score"] == pytest.approx(0.5)  # plain vs meh: no preference
    # AlpacaEval's annotation records, the baseline as output_1
    annotations = json.loads((tmp_path / "out" / "annotations" / "moa.json").read_text())
    assert len(annotations) == len(items)
    assert set(annotations[0]) == {
        "instruction",
        "output_1",
        "generator_1",
        "dataset",
        "output_2",
        "generator_2",
        "annotator",
        "preference",
        "raw_completion",
        "price_per_example",
        "time_per_example",
    }
    first = annotations[0]
    assert (first["instruction"], first["output_1"], first["generator_1"]) == (INSTRUCTIONS[0], "meh", "base_gen")
    assert (first["output_2"], first["generator_2"], first["annotator"]) == ("a great answer", "moa", ANNOTATOR)
    assert first["raw_completion"]["logprobs"]["content"][0]["top_logprobs"][0]["token"] in ("m", "M")
    # the leaderboard's numbers
    board = json.loads((tmp_path / "out" / "leaderboard.json").read_text())
    assert board["moa"]["win_rate"] == pytest.approx(100 * P_GREAT)
    assert board["moa"]["discrete_win_rate"] == 100.0 and board["moa"]["n_wins"] == len(items)
    assert board["openai:p"]["n_draws"] == len(items) and board["openai:p"]["discrete_win_rate"] == 50.0
    assert board["moa"]["avg_length"] == len("a great answer")


def test_leaderboard_metrics_by_hand() -> None:
    metrics = leaderboard_metrics([1.9, 1.2, 1.5, None, 2.0], [10, 20, 30, 40, 50])
    shifted = [0.9, 0.2, 0.5, 1.0]
    mean = sum(shifted) / 4
    sd = math.sqrt(sum((x - mean) ** 2 for x in shifted) / 3)
    assert metrics["win_rate"] == pytest.approx(100 * mean)
    assert metrics["standard_error"] == pytest.approx(100 * sd / 2)
    assert metrics["discrete_win_rate"] == pytest.approx(100 * (1 + 0 + 0.5 + 1) / 4)
    assert (metrics["n_wins"], metrics["n_wins_base"], metrics["n_draws"], metrics["n_total"]) == (2, 1, 1, 4)


def test_the_win_rate_agrees_with_alpaca_evals_get_winrate() -> None:
    """Skipped when the alpaca-eval package (the optional ``alpaca-eval`` extra) is not installed."""
    winrate = pytest.importorskip("alpaca_eval.metrics.winrate")
    preferences = [1.0, 2.0, 1.5, 1.73, 1.21, 1.999, 1.5000001, float("nan"), 1.02, 1.6]
    theirs = winrate.get_winrate([{"preference": p} for p in preferences])
    ours = leaderboard_metrics([None if math.isnan(p) else p for p in preferences])
    for key in ("win_rate", "standard_error", "discrete_win_rate", "n_wins", "n_wins_base", "n_draws", "n_total"):
        assert float(ours[key]) == pytest.approx(float(theirs[key]), abs=1e-9), key


def test_the_switch_agrees_with_alpaca_evals_processor() -> None:
    """Skipped without the alpaca-eval package: its RandomSwitchTwoColumnsProcessor with the annotator's seed 0."""
    processors = pytest.importorskip("alpaca_eval.processors")
    import pandas as pd

    frame = pd.DataFrame([{"instruction": i, "output_1": "a", "output_2": "b"} for i in INSTRUCTIONS])
    processor = processors.RandomSwitchTwoColumnsProcessor(
        two_columns_to_switch=["output_1", "output_2"],
        random_seed_columns=["instruction"],
        _switch_column="is_switched_outputs",
        seed=0,
    )
    switched = processor.preprocess(frame)["is_switched_outputs"].tolist()
    assert switched == [is_switched(i) for i in INSTRUCTIONS]


async def test_a_judge_without_logprobs_stops_before_any_answer(server: SimulatedOpenAIServer, tmp_path: Path) -> None:
    instructions, _ = files(tmp_path)
    items = load_instructions(instructions)
    config = setup(server)
    server.set_behavior("judge", ModelBehavior(reply="M"))  # answers, but without logprobs
    with pytest.raises(JudgeWithoutLogprobsError, match="judge openai:judge answered without log probabilities"):
        await run_alpaca_eval(
            items, config, judge=judge_config("judge", base_url=server.base_url), baseline={i.id: "meh" for i in items}
        )
    assert server.calls("agg") == 0 and server.calls("p") == 0  # nothing generated, nothing paid for


async def test_a_judgment_with_neither_identifier_is_counted_not_zero(server: SimulatedOpenAIServer) -> None:
    items = load_instructions_from(INSTRUCTIONS[:4])
    config = setup(server)

    def undecided(messages: list[dict]) -> list[tuple[str, float]]:
        if "topic 1." in user(messages) or "topic 2." in user(messages):
            return [("Both", -0.1), ("The", -2.0)]
        return great_judge(messages)

    server.set_behavior("judge", ModelBehavior(logprobs=undecided))
    result = await run_alpaca_eval(
        items, config, judge=judge_config("judge", base_url=server.base_url), baseline={i.id: "meh" for i in items}
    )
    moa_summary = result.summary["systems"]["moa"]
    assert moa_summary["n"] == 2 and moa_summary["score"] == pytest.approx(P_GREAT)  # left out, not counted as 0
    assert sum(r["unparseable"] for r in result.records if r["system"] == "moa") == 2
    assert result.leaderboard["moa"]["n_total"] == 2


def load_instructions_from(texts: list[str]) -> list:
    from langgraph_moa.eval.alpaca_eval import Instruction

    return [Instruction(str(n), t, "helpful_base") for n, t in enumerate(texts)]


def test_outputs_files_are_scored_by_generator_without_generating(
    server: SimulatedOpenAIServer, tmp_path: Path
) -> None:
    instructions, baseline = files(tmp_path)
    setup(server)
    good = tmp_path / "a" / "model_outputs.json"
    good.parent.mkdir()
    good.write_text(
        json.dumps([{"instruction": i, "output": "great", "generator": "Good-Model"} for i in INSTRUCTIONS])
    )
    partial = tmp_path / "b" / "model_outputs.json"
    partial.parent.mkdir()
    rows = [{"instruction": i, "output": "plain", "generator": "Partial-Model"} for i in INSTRUCTIONS[:6]]
    partial.write_text(
        json.dumps([*rows, {"instruction": "Not in the set.", "output": "x", "generator": "Partial-Model"}])
    )
    out = tmp_path / "out"
    args = ["eval", "alpaca-eval", str(instructions), "--baseline", str(baseline), "--judge", "judge"]
    args += ["--judge-base-url", server.base_url, "--outputs", str(good), "--outputs", str(partial), "--out", str(out)]
    result = moa(*args, "--json")
    assert result.returncode == 0, result.stderr
    systems = json.loads(result.stdout)["systems"]
    assert list(systems) == ["Good-Model", "Partial-Model"]  # named by generator, not by the file's stem
    assert systems["Good-Model"]["n"] == 8 and systems["Good-Model"]["score"] == pytest.approx(P_GREAT)
    assert systems["Partial-Model"]["n"] == 6  # the two instructions it has no output for are errors, not zeros
    assert "no output for 2 of 8 instruction(s)" in result.stderr and "1 output(s) for instructions not in" in (
        result.stderr
    )
    assert server.calls("agg") == 0 and server.calls("p") == 0 and server.calls("judge") == 1 + 8 + 6
    annotations = json.loads((out / "annotations" / "Good-Model.json").read_text())
    assert annotations[0]["generator_2"] == "Good-Model" and annotations[0]["generator_1"] == "base_gen"
    table = (out / "summary.md").read_text()
    assert "| SE |" in table and "| LC % |" in table
    same = tmp_path / "c.json"
    same.write_text(good.read_text())
    clash = moa(*args[:-2], "--outputs", str(same))
    assert clash.returncode == 1 and "both name generator 'Good-Model'" in clash.stderr


def test_the_run_says_which_files_the_lc_win_rate_needs_and_where() -> None:
    why = lc_unavailable()
    try:
        import alpaca_eval.metrics.glm_winrate  # noqa: F401
    except ImportError:
        assert "pip install 'langgraph-moa[alpaca-eval]'" in why
        return
    if why:  # the package is there; its data file is not (no network here)
        assert "df_gamed.csv" in why and "tatsu-lab/alpaca_eval" in why and "Hugging Face cache" in why


def test_the_lc_win_rate_comes_from_alpaca_evals_glm_when_its_data_file_is_cached(tmp_path: Path) -> None:
    """Plumbing only (records, instruction indices, the cache lookup): the df_gamed.csv here is made up.

    Skipped without the alpaca-eval package. Runs in a child process, because the Hugging Face cache folder
    is read when huggingface_hub is imported.
    """
    pytest.importorskip("alpaca_eval.metrics.glm_winrate")
    import csv
    import os
    import subprocess
    import sys

    repo = tmp_path / "hub" / "datasets--tatsu-lab--alpaca_eval"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    with (snapshot / "df_gamed.csv").open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["model", "index", "preference", "std_delta_len", "instruction_difficulty", "not_gamed_baseline"])
        for model, sign in (("verbose", 1), ("concise", -1)):
            for i in range(8):
                out.writerow([model, i, 0.5 + 0.3 * sign + 0.02 * i, sign * (0.5 + 0.1 * i), (i - 4) / 8, False])
    code = (
        "from langgraph_moa.eval.weighted import length_controlled\n"
        "records = [{'instruction': f'i{k}', 'output_1': 'b' * (50 + k), 'generator_1': 'base', 'dataset': 'd',"
        " 'output_2': 'x' * (20 + 30 * k), 'generator_2': 'moa', 'annotator': 'weighted_alpaca_eval_gpt4_turbo',"
        " 'preference': 1.2 + 0.1 * k} for k in range(8)]\n"
        "lc = length_controlled(records, list(range(8)))\n"
        "print(lc.win_rate, lc.standard_error, repr(lc.note))\n"
    )
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    win_rate, standard_error, note = done.stdout.split()
    assert 0 < float(win_rate) < 100 and float(standard_error) > 0 and note == "''"


def test_paper_settings_generate_at_temperature_0_7_and_2048_tokens(
    server: SimulatedOpenAIServer, tmp_path: Path
) -> None:
    instructions, baseline = files(tmp_path)
    setup(server)
    args = ["eval", "alpaca-eval", str(instructions), "--baseline", str(baseline), "--judge", "judge", "--limit", "2"]
    args += [
        "--judge-base-url",
        server.base_url,
        "--base-url",
        server.base_url,
        "--proposer",
        "p",
        "--aggregator",
        "agg",
    ]
    result = moa(*args, "--paper-settings", "--compare", "--json")
    assert result.returncode == 0, result.stderr
    generated = server.requests_for("p") + server.requests_for("agg")
    assert len(generated) == 2 * 3 and {(r["temperature"], r["max_tokens"]) for r in generated} == {(0.7, 2048)}
    refused = moa(*args, "--paper-settings", "--temperature", "0.2")
    assert refused.returncode == 2 and "--paper-settings" in refused.stderr


async def test_a_judge_that_fails_its_first_call_stops_with_its_error(
    server: SimulatedOpenAIServer, tmp_path: Path
) -> None:
    from langgraph_moa.errors import MoAError
    from langgraph_moa.testing import Fault

    items = load_instructions_from(INSTRUCTIONS[:2])
    config = setup(server)
    server.set_behavior("judge", ModelBehavior(logprobs=great_judge, faults=[Fault(400, message="no such model")]))
    with pytest.raises(MoAError, match="judge openai:judge failed on its first call: .*no such model"):
        await run_alpaca_eval(
            items, config, judge=judge_config("judge", base_url=server.base_url), baseline={i.id: "meh" for i in items}
        )
    assert server.calls("agg") == 0
