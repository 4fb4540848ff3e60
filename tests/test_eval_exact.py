"""`moa eval exact`: grading, comparison, the vote, resume and the summary contract, on the simulated server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from langgraph_moa import MoAConfig
from langgraph_moa.eval import EvalInputError, ExactItem, builtin_suite, grade_exact, load_exact, run_exact
from langgraph_moa.eval.grading import extract_answer, last_number, majority
from langgraph_moa.eval.stats import bootstrap_ci, items_for_difference, paired_difference
from langgraph_moa.eval.systems import parse_variant, variant_config
from langgraph_moa.testing import Fault, ModelBehavior, SimulatedOpenAIServer, answer_key
from tests.cli_runs import moa
from tests.conftest import answer_at_peak

ITEMS = [
    ExactItem("a", "What is 2 + 3?", "5"),
    ExactItem("b", "What is 10 - 4?", "6"),
    ExactItem("c", "What is the capital of France?", "Paris"),
    ExactItem("d", "What is 3 * 3?", "9"),
]
KEY = {i.question: i.answer for i in ITEMS}


def config(server: SimulatedOpenAIServer, proposers: list[str], aggregator: str = "agg") -> MoAConfig:
    return MoAConfig(
        proposers=[f"openai:{p}" for p in proposers], aggregator=f"openai:{aggregator}", base_url=server.base_url
    )


def keyed(server: SimulatedOpenAIServer, **wrong) -> None:
    """Each named model answers from the key; wrong=True / a question predicate makes it wrong."""
    for model, rule in wrong.items():
        server.set_behavior(model, ModelBehavior(reply=answer_key(KEY, wrong=rule)))


# --------------------------------------------------------------------------- grading


@pytest.mark.parametrize(
    ("response", "answer", "expected"),
    [
        ("3 + 4 = 7, so 7 apples.", "7", True),
        ("The answer is 7, not 5", "7", False),  # the last number counts
        ("It costs 1,200 dollars", "1200", True),
        ("x = 12.0", "12", True),
        ("10-3", "3", True),  # a hyphen between numbers is not a minus sign
        ("It is -4.", "-4", True),
        ("no number here", "4", False),
        ("It is paris.", "Paris", True),
        ("Parisian food", "Paris", False),
        ("the New  York times", "new york", True),
        ("", "Paris", False),
    ],
)
def test_grading_rule(response: str, answer: str, expected: bool) -> None:
    assert grade_exact(response, answer) is expected


def test_extraction_and_majority() -> None:
    assert last_number("a 1 b 2.5 c") == 2.5
    assert extract_answer("so it is 12.0", "12") == "12"
    assert extract_answer("I think PARIS", "Paris") == "paris"
    assert majority(["it is 4", "it is 5", "maybe 5"], "4") == 1
    assert majority(["it is 4", "it is 5"], "4") == 0  # a tie goes to the earliest
    assert majority(["no", "idea"], "4") is None


def test_statistics() -> None:
    assert bootstrap_ci([1.0] * 10) == (1.0, 1.0)
    low, high = bootstrap_ci([0.0, 1.0] * 20)
    assert low < 0.5 < high
    d, (lo, hi), n = paired_difference({"a": 1.0, "b": 1.0, "c": 0.0}, {"a": 0.0, "b": 1.0})
    assert (n, d) == (2, 0.5) and lo <= d <= hi
    assert 650 < items_for_difference(0.05, 0.23) < 800  # the pilot's figure: about 700 paired items
    assert items_for_difference(0.05, 0.02) == 0  # disagreeing on 2% of items, they cannot differ by 5 points


# --------------------------------------------------------------------------- inputs


def test_load_exact_reads_ids_numbers_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text('{"question": "q1", "answer": 5}\n\n{"id": "x", "question": "q2", "answer": "Paris"}\n')
    assert load_exact(path) == [ExactItem("1", "q1", "5"), ExactItem("x", "q2", "Paris")]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"question": "q", "answer": "1"}\n{"question": "q2", "answer"\n', "q.jsonl:2: not valid JSON"),
        ('{"question": "q"}\n', "q.jsonl:1: missing field 'answer'"),
        ('{"question": "", "answer": "1"}\n', "q.jsonl:1: field 'question' must be a non-empty str"),
        ('["q", "1"]\n', "q.jsonl:1: expected a JSON object"),
        (
            '{"id": 1, "question": "q", "answer": "1"}\n{"id": "1", "question": "r", "answer": "2"}\n',
            "q.jsonl:2: id '1'",
        ),
        ("\n", "q.jsonl: no items"),
    ],
)
def test_bad_input_names_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text(text)
    with pytest.raises(EvalInputError, match=message):
        load_exact(path)


def test_builtin_arithmetic_is_fixed_and_graded_by_its_own_answers() -> None:
    items = builtin_suite("arithmetic")
    assert len(items) == 200 and len({i.id for i in items}) == 200
    assert items[0].id == "arith-001" and all(grade_exact(f"The answer is {i.answer}.", i.answer) for i in items)
    from langgraph_moa.eval.builtin import arithmetic_items

    assert [i.question for i in items] == [d["question"] for d in arithmetic_items()]  # regenerates the same file
    with pytest.raises(EvalInputError, match="unknown built-in suite 'nope'; choose one of: arithmetic"):
        builtin_suite("nope")


# --------------------------------------------------------------------------- runs


async def test_compare_scores_each_system_and_the_vote(server: SimulatedOpenAIServer, tmp_path: Path) -> None:
    keyed(server, p1=False, p2=lambda q: "France" in q, p3=lambda q: "2 + 3" in q or "France" in q, agg=True)
    result = await run_exact(ITEMS, config(server, ["p1", "p2", "p3"]), compare=True, out_dir=tmp_path)
    systems = result.summary["systems"]
    assert list(systems) == ["moa", "openai:p1", "openai:p2", "openai:p3", "vote"]
    scores = {name: s["score"] for name, s in systems.items()}
    assert scores == {"moa": 0.0, "openai:p1": 1.0, "openai:p2": 0.75, "openai:p3": 0.5, "vote": 0.75}
    # the vote is derived from MoA's first layer: no calls beyond MoA's 3 + 1 and the singles' 1 each
    assert server.calls() == len(ITEMS) * (4 + 3)
    vote = {r["id"]: r for r in result.records if r["system"] == "vote"}
    assert vote["c"]["votes"] == ["paris", "sirapx", "sirapx"] and vote["c"]["correct"] is False
    assert vote["a"]["votes"] == ["5", "5", "6"] and vote["a"]["correct"] is True
    # every item's proposals, usage and latency are saved
    moa_c = next(r for r in result.records if r["system"] == "moa" and r["id"] == "c")
    assert [p["model"] for p in moa_c["proposals"]] == ["openai:p1", "openai:p2", "openai:p3"]
    assert moa_c["usage"]["total_tokens"] > 0 and moa_c["latency_s"] > 0 and len(moa_c["usage_calls"]) == 4
    # the paired difference is against the best single system, p1
    rows = {row.name: row for row in result.rows}
    assert rows["moa"].diff is not None and rows["moa"].diff[0] == -1.0 and rows["openai:p1"].diff is None


async def test_summary_contract(server: SimulatedOpenAIServer, tmp_path: Path) -> None:
    keyed(server, p1=False, agg=lambda q: "France" in q)
    await run_exact(ITEMS, config(server, ["p1"]), suite="mine", compare=True, out_dir=tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary) == {"suite", "systems"} and summary["suite"] == "mine"
    for entry in summary["systems"].values():
        assert set(entry) == {"n", "score", "ci95", "tokens", "cost_usd", "latency_p50_s"}
        assert entry["n"] == 4 and len(entry["ci95"]) == 2 and entry["ci95"][0] <= entry["score"] <= entry["ci95"][1]
    assert summary["systems"]["moa"]["score"] == 0.75
    lines = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert len(lines) == 4 * 3 and {(r["system"], r["id"]) for r in lines} == {
        (s, i.id) for s in ("moa", "openai:p1", "vote") for i in ITEMS
    }


async def test_resume_skips_finished_items_and_reruns_failed_ones(
    server: SimulatedOpenAIServer, tmp_path: Path
) -> None:
    keyed(server, p1=False, p2=False, agg=False)
    cfg = config(server, ["p1", "p2"])
    await run_exact(ITEMS[:2], cfg, compare=True, out_dir=tmp_path)
    assert server.calls() == 2 * (3 + 2)
    server.reset()
    await run_exact(ITEMS[:2], cfg, compare=True, out_dir=tmp_path)
    assert server.calls() == 0  # all finished: nothing is asked again
    # the aggregator fails once: that pair is saved with its error, the rest goes on
    server.set_behavior("agg", ModelBehavior(reply=answer_key(KEY), faults=[Fault(400, message="bad")]))
    result = await run_exact(ITEMS, cfg, compare=True, out_dir=tmp_path)
    assert server.calls() == 2 * (3 + 2)  # only the two new items
    failed = [r for r in result.records if r.get("error")]
    assert len(failed) == 1 and failed[0]["system"] == "moa" and "aggregator openai:agg failed" in failed[0]["error"]
    assert result.summary["systems"]["moa"]["n"] == 3
    server.reset()
    result = await run_exact(ITEMS, cfg, compare=True, out_dir=tmp_path)
    assert server.calls() == 3  # the failed MoA pair only: 2 proposers + the aggregator
    assert result.summary["systems"]["moa"]["n"] == 4 and result.summary["systems"]["vote"]["n"] == 4


async def test_a_line_cut_short_by_a_kill_is_run_again(server: SimulatedOpenAIServer, tmp_path: Path) -> None:
    keyed(server, p1=False, agg=False)
    cfg = config(server, ["p1"])
    await run_exact(ITEMS[:1], cfg, out_dir=tmp_path)
    results = tmp_path / "results.jsonl"
    results.write_text(results.read_text() + '{"system": "moa", "id": "b", "resp')  # killed mid-write
    server.reset()
    result = await run_exact(ITEMS[:2], cfg, out_dir=tmp_path)
    assert server.calls() == 2 and result.summary["systems"]["moa"]["n"] == 2
    # the cut line is gone, not glued to the next record: every line parses and nothing is lost on the next resume
    lines = results.read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["a", "b"]
    server.reset()
    result = await run_exact(ITEMS[:3], cfg, out_dir=tmp_path)
    assert server.calls() == 2 and result.summary["systems"]["moa"]["n"] == 3


async def test_resuming_with_another_configuration_is_refused(server: SimulatedOpenAIServer, tmp_path: Path) -> None:
    keyed(server, p1=False, p2=False, agg=False)
    await run_exact(ITEMS[:1], config(server, ["p1"]), out_dir=tmp_path)
    with pytest.raises(EvalInputError, match="system 'moa' under another configuration"):
        await run_exact(ITEMS[:1], config(server, ["p2"]), out_dir=tmp_path)


async def test_a_resume_on_another_endpoint_is_the_same_configuration(
    server: SimulatedOpenAIServer, tmp_path: Path
) -> None:
    """The local preset's servers come back on new ports: that must not stop a resume."""
    keyed(server, p1=False, agg=False)
    await run_exact(ITEMS[:1], config(server, ["p1"]), out_dir=tmp_path)
    with SimulatedOpenAIServer(
        {"p1": ModelBehavior(reply=answer_key(KEY)), "agg": ModelBehavior(reply=answer_key(KEY))}
    ) as other:
        result = await run_exact(ITEMS[:2], config(other, ["p1"]), out_dir=tmp_path)
        assert other.calls() == 2 and result.summary["systems"]["moa"]["n"] == 2


async def test_concurrency_bounds_the_pairs_in_flight(server: SimulatedOpenAIServer) -> None:
    key = answer_key(KEY)

    def at_peak(messages: list[dict]) -> str:
        held(messages)
        return key(messages)

    held = answer_at_peak(server, 2)
    server.set_behavior("p1", ModelBehavior(reply=at_peak, latency=0.05))
    server.set_behavior("agg", ModelBehavior(reply=at_peak, latency=0.05))
    await run_exact(ITEMS, config(server, ["p1"]), compare=True, concurrency=2)
    assert server.max_concurrency == 2
    server.set_behavior("p1", ModelBehavior(reply=key, latency=0.05))
    server.set_behavior("agg", ModelBehavior(reply=key, latency=0.05))
    server.reset()
    await run_exact(ITEMS, config(server, ["p1"]), compare=True, concurrency=1)
    assert server.max_concurrency == 1


async def test_a_replacement_grader(server: SimulatedOpenAIServer) -> None:
    keyed(server, p1=False, agg=False)
    result = await run_exact(ITEMS, config(server, ["p1"]), grade=lambda response, answer: "think" in response)
    assert result.summary["systems"]["moa"]["score"] == 1.0


# --------------------------------------------------------------------------- the command


def sim(server: SimulatedOpenAIServer, *proposers: str) -> list[str]:
    args = ["--base-url", server.base_url, "--aggregator", "agg"]
    for p in proposers:
        args += ["--proposer", p]
    return args


def write_items(path: Path) -> Path:
    path.write_text("".join(json.dumps({"id": i.id, "question": i.question, "answer": i.answer}) + "\n" for i in ITEMS))
    return path


def test_cli_compare_json_table_plot_and_resume(server: SimulatedOpenAIServer, tmp_path: Path) -> None:
    keyed(server, p1=False, p2=lambda q: "France" in q, agg=lambda q: "2 + 3" in q)
    file = write_items(tmp_path / "q.jsonl")
    out = tmp_path / "out"
    result = moa("eval", "exact", str(file), "--compare", "--out", str(out), "--json", *sim(server, "p1", "p2"))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary == json.loads((out / "summary.json").read_text())
    assert summary["suite"] == "q" and summary["systems"]["moa"]["score"] == 0.75
    assert (out / "score_vs_cost.png").read_bytes().startswith(b"\x89PNG")
    table = (out / "summary.md").read_text()
    assert "vs best single (openai:p1)" in table and "| moa | 4 | 75.0 |" in table and "-25.0 [" in table
    assert "moa vs openai:p1: they disagree on 25.0% of the items;" in table and "needs about" in table
    calls = server.calls()
    result = moa("eval", "exact", str(file), "--compare", "--out", str(out), *sim(server, "p1", "p2"))
    assert result.returncode == 0 and server.calls() == calls  # resumed: nothing asked again
    assert "resuming: 12 finished result(s) kept, 0 to run" in result.stderr
    assert result.stdout.startswith("| system | n | accuracy % |")


def test_cli_exits_1_when_a_system_measured_nothing_and_keeps_its_results(
    server: SimulatedOpenAIServer, tmp_path: Path
) -> None:
    keyed(server, p1=False)
    server.set_behavior("agg", ModelBehavior(faults=[Fault(400, message="bad model", times=100)]))
    file, out = write_items(tmp_path / "q.jsonl"), tmp_path / "out"
    result = moa("eval", "exact", str(file), "--compare", "--out", str(out), *sim(server, "p1"))
    assert result.returncode == 1, result.stderr
    assert "nothing was measured for moa: all 4 item(s) failed" in result.stderr.replace("\n", " ")
    assert "openai:p1" not in result.stderr.split("error:")[1]  # the proposer alone was measured
    assert result.stdout.startswith("| system | n | accuracy % |")  # the table still comes
    assert len((out / "results.jsonl").read_text().splitlines()) == 2 * len(ITEMS)  # kept for the resume


def test_cli_system_adds_a_preset(server: SimulatedOpenAIServer, tmp_path: Path) -> None:
    keyed(server, p1=False, agg=False)
    result = moa(
        "eval", "exact", str(write_items(tmp_path / "q.jsonl")), "--json", "--system", "lite=moa-lite",
        *sim(server, "p1"), env={"TOGETHER_API_KEY": "k", "TOGETHER_API_BASE": server.base_url},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert list(json.loads(result.stdout)["systems"]) == ["moa", "lite"]
    assert server.calls() == len(ITEMS) * (2 + 7)  # moa: 1 proposer + aggregator; moa-lite: 6 + aggregator
    assert server.calls("Qwen/Qwen1.5-72B-Chat") == 2 * len(ITEMS)  # a moa-lite proposer and its aggregator


def test_cli_variant_is_compared_item_by_item_with_moa(server: SimulatedOpenAIServer, tmp_path: Path) -> None:
    keyed(server, p1=False, p2=False, agg=False, bad=True)
    out = tmp_path / "out"
    file = write_items(tmp_path / "q.jsonl")
    spec = "aggregator=openai:bad,max_tokens=64"
    result = moa("eval", "exact", str(file), "--variant", spec, "--out", str(out), "--json", *sim(server, "p1", "p2"))
    assert result.returncode == 0, result.stderr
    systems = json.loads(result.stdout)["systems"]
    assert list(systems) == ["moa", spec]
    assert systems["moa"]["score"] == 1.0 and systems[spec]["score"] == 0.0
    assert systems[spec]["vs_moa"] == {"difference": -1.0, "ci95": [-1.0, -1.0], "n": len(ITEMS)}
    assert "vs_moa" not in systems["moa"]
    assert server.calls("bad") == len(ITEMS) and server.calls("agg") == len(ITEMS)
    assert server.calls("p1") == 2 * len(ITEMS)  # the variant keeps moa's proposers
    assert all(r["max_tokens"] == 64 for r in server.requests_for("bad"))
    table = (out / "summary.md").read_text()
    assert "| vs moa [95% CI] |" in table
    assert f"| {spec} | 4 | 0.0 |" in table and "-100.0 [-100.0, -100.0] (n=4)" in table


def test_variant_values_are_json_and_commas_inside_them_stay() -> None:
    spec = 'max_cost_usd=0.002,prices={"openai:m": {"input": 1, "output": 2}},ranker=openai:judge,note="a,\\"b"'
    assert parse_variant(spec) == {
        "max_cost_usd": 0.002,
        "prices": {"openai:m": {"input": 1, "output": 2}},
        "ranker": "openai:judge",
        "note": 'a,"b',
    }
    base = MoAConfig(proposers=["openai:p"], aggregator="openai:a")
    changed = variant_config(base, 'max_cost_usd=0.5,prices={"openai:p": {"input": 1, "output": 2}}')
    assert changed.max_cost_usd == 0.5 and changed.prices["openai:p"].output == 2
    assert changed.proposers == base.proposers


@pytest.mark.parametrize(
    ("variant", "message"),
    [
        ("early_stop=2", "error: --variant 'early_stop=2': invalid MoA configuration: early_stop:"),
        ("nofield=1", "error: --variant 'nofield=1': MoAConfig has no field nofield"),
        ("early_stop", "error: --variant 'early_stop': 'early_stop' must be FIELD=VALUE"),
        ("keep_top=1,keep_top=2", "error: --variant 'keep_top=1,keep_top=2': keep_top is given twice"),
    ],
)
def test_cli_bad_variant_is_one_error_line_before_any_call(
    variant: str, message: str, server: SimulatedOpenAIServer, tmp_path: Path
) -> None:
    result = moa("eval", "exact", str(write_items(tmp_path / "q.jsonl")), "--variant", variant, *sim(server, "p1"))
    assert result.returncode == 1 and result.stderr.strip().startswith(message), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and server.calls() == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--builtin", "nope"], "error: unknown built-in suite 'nope'"),
        (["missing.jsonl"], "error: cannot read missing.jsonl"),
        (["--builtin", "arithmetic", "--grader", "nomodule"], "error: grader 'nomodule' must be written"),
    ],
)
def test_cli_bad_input_is_one_error_line(args: list[str], message: str, server: SimulatedOpenAIServer) -> None:
    result = moa("eval", "exact", *args, *sim(server, "p1"))
    assert result.returncode == 1 and result.stderr.strip().startswith(message), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_cli_malformed_line_names_file_and_line(server: SimulatedOpenAIServer, tmp_path: Path) -> None:
    file = tmp_path / "q.jsonl"
    file.write_text('{"question": "q", "answer": "1"}\n{"question": "q2"}\n')
    result = moa("eval", "exact", str(file), *sim(server, "p1"))
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: {file}:2: missing field 'answer' (fields: question)"
    assert server.calls() == 0


def test_the_eval_commands_import_after_the_cli() -> None:
    """`langgraph_moa.eval.cli` imported first still registers its commands under `moa eval`."""
    code = "import langgraph_moa.eval.cli, langgraph_moa.cli as c, typer.main as t; print(sorted(t.get_command(c.app).commands['eval'].commands))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "exact" in out.stdout


def test_cli_cache_reuses_proposals_and_counts_them_apart(server: SimulatedOpenAIServer, tmp_path: Path) -> None:
    keyed(server, p1=True, p2=True, agg=True)
    file = write_items(tmp_path / "q.jsonl")
    env = {"XDG_DATA_HOME": str(tmp_path / "data")}
    first = moa("eval", "exact", str(file), "--json", "--cache", "--seed", "7", *sim(server, "p1", "p2"), env=env)
    assert first.returncode == 0, first.stderr
    assert server.calls("p1") == len(ITEMS) and server.calls("agg") == len(ITEMS)
    out = tmp_path / "out"
    second = moa(
        "eval", "exact", str(file), "--cache", "--seed", "7", "--out", str(out), *sim(server, "p1", "p2"), env=env
    )
    assert second.returncode == 0, second.stderr
    assert server.calls("p1") == len(ITEMS) and server.calls("agg") == 2 * len(ITEMS)  # proposals reused
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert all(r["cached_calls"] == 2 for r in records)
    assert all({c["model"] for c in r["usage_calls"]} == {"openai:agg"} for r in records)


async def test_a_pinned_seed_gives_each_item_its_own_seeds_and_reproduces_them(server: SimulatedOpenAIServer) -> None:
    """One --seed for a whole evaluation must not give every item the same draws per slot."""
    keyed(server, p1=False, p2=False, agg=False)
    pinned = config(server, ["p1", "p2"]).model_copy(update={"seed": 7})

    def seeds_by_item() -> dict[str, list[int]]:
        by_question = {i.question: i.id for i in ITEMS}
        seen: dict[str, list[int]] = {}
        for request in server.requests_for("p1") + server.requests_for("p2"):
            question = request["messages"][-1]["content"]
            seen.setdefault(by_question[question], []).append(request["seed"])
        return {item: sorted(seeds) for item, seeds in seen.items()}

    await run_exact(ITEMS, pinned, concurrency=1)
    first = seeds_by_item()
    assert len(first) == len(ITEMS) and all(len(set(s)) == 2 for s in first.values())  # slots differ
    assert len({tuple(s) for s in first.values()}) == len(ITEMS)  # and items differ
    server.reset()
    await run_exact(ITEMS, pinned, concurrency=1)
    assert seeds_by_item() == first  # the same seed reproduces every item's draws


def test_plot_uses_tokens_unless_every_system_is_priced(tmp_path: Path) -> None:
    from langgraph_moa.eval.report import Row, plot_score_vs_cost

    def row(name: str, cost: float) -> Row:
        return Row(name, "moa", 10, 0.5, (0.4, 0.6), 1000, cost, 1.0, 0)

    mixed = plot_score_vs_cost([row("a", 0.0), row("b", 0.2)], tmp_path / "p.png", title="t")
    assert (mixed.x, mixed.x_label) == ("tokens", "total tokens (not every system is priced)")
    free = plot_score_vs_cost([row("a", 0.0), row("b", 0.0)], tmp_path / "p.png", title="t")
    assert (free.x, free.x_label) == ("tokens", "total tokens")  # none priced: nothing to say about prices
    assert plot_score_vs_cost([row("a", 0.1), row("b", 0.2)], tmp_path / "p.png", title="t").x == "cost"
    assert (tmp_path / "p.png").read_bytes().startswith(b"\x89PNG")


def test_a_run_at_the_floor_says_so_in_words_and_plots_the_whole_scale(tmp_path: Path) -> None:
    """Every system scored 0: the table says it in words, not "+0.0 [+0.0, +0.0]" and "(floor or ceiling?)"."""
    from langgraph_moa.eval.report import build_rows, markdown_table, plot_score_vs_cost
    from langgraph_moa.eval.systems import System

    systems = [System("moa", None, "moa"), System("openai:m", None, "single"), System("vote", None, "vote")]
    tokens = {"moa": 750, "openai:m": 100, "vote": 300}
    records = [
        {"system": s.name, "id": str(i), "score": 0.0, "usage": {"total_tokens": tokens[s.name] // 4}}
        for s in systems
        for i in range(4)
    ]
    rows = build_rows(systems, records)
    table = markdown_table(rows)
    assert "+0.0 [+0.0, +0.0]" not in table and "floor or ceiling" not in table
    assert "same score on each of the 4 items" in table
    assert "Every system scored 0.0% on every item: a floor" in table
    assert "moa used 7.5x the tokens of openai:m." in table
    layout = plot_score_vs_cost(rows, tmp_path / "p.png", title="t")
    assert layout.y_range[0] < 0 and layout.y_range[1] > 100  # the whole 0-100 scale, not a zoom onto 0 +- 0.04
    assert layout.legend == ["moa", "openai:m", "vote"]  # a legend: no label drawn over another


async def test_the_python_api_stops_on_a_missing_key_as_the_cli_does(tmp_path: Path) -> None:
    """Without the check every pair failed one by one and the run ended with n: 0 and no error."""
    from langgraph_moa.errors import MissingCredentialsError

    hosted = MoAConfig(proposers=["openai:gpt-4o-mini"], aggregator="openai:gpt-4o")
    with pytest.raises(MissingCredentialsError, match="OPENAI_API_KEY"):
        await run_exact(ITEMS, hosted, compare=True, out_dir=tmp_path)
    assert not (tmp_path / "results.jsonl").exists()


def test_the_bootstrap_interval_puts_half_the_miss_in_each_tail() -> None:
    """A 95% interval leaves 2.5% of the bootstrap means on each side: about 1.96 standard errors each way.

    With one tail of 5% (``1 - level`` for ``(1 - level) / 2``) it would be a 90% interval, 1.645 errors each way.
    """
    values = [1.0] * 200 + [0.0] * 200
    low, high = bootstrap_ci(values)
    standard_error = (0.25 / len(values)) ** 0.5
    assert (high - low) / (2 * standard_error) == pytest.approx(1.96, abs=0.08)


def test_the_paired_difference_pairs_items_by_id_not_by_position() -> None:
    """Two systems with the same score on every item differ by exactly 0, whatever order their results came in."""
    a = {"x": 1.0, "y": 0.0, "z": 1.0}
    b = {"y": 0.0, "z": 1.0, "x": 1.0}
    assert paired_difference(a, b) == (0.0, (0.0, 0.0), 3)


def test_cli_collaborativeness_each_model_alone_and_given_the_others_answers(
    server: SimulatedOpenAIServer, tmp_path: Path
) -> None:
    """p2 is wrong alone and right when it aggregates the others' answers: +100 points on every item."""
    keyed(server, p1=False, agg=False)

    def p2(messages: list[dict]) -> str:
        sees_answers = any(m["role"] == "system" for m in messages)  # the aggregator's prompt carries them
        return answer_key(KEY, wrong=not sees_answers)(messages)

    server.set_behavior("p2", ModelBehavior(reply=p2))
    out = tmp_path / "out"
    file = write_items(tmp_path / "q.jsonl")
    result = moa(
        "eval", "exact", str(file), "--collaborativeness", "--out", str(out), "--json", *sim(server, "p1", "p2")
    )
    assert result.returncode == 0, result.stderr
    systems = json.loads(result.stdout)["systems"]
    assert list(systems) == ["moa", "openai:p1", "openai:p1 + others", "openai:p2", "openai:p2 + others"]
    assert systems["openai:p2"]["score"] == 0.0 and systems["openai:p2 + others"]["score"] == 1.0
    # "p2 + others" is p2 aggregating p1's answer alone: one p1 call and one p2 call per item
    p2_calls = [r for r in server.requests_for("p2") if any(m["role"] == "system" for m in r["messages"])]
    assert len(p2_calls) == len(ITEMS)
    table = (out / "summary.md").read_text()
    assert "each model alone and given the other models' answers" in table.lower()
    assert "| openai:p2 | 0.0 | 100.0 | +100.0 [+100.0, +100.0] (n=4) |" in table
    assert "| openai:p1 | 100.0 | 100.0 | " in table
