"""AlpacaEval: a judge compares each answer with a baseline's; the win rate is the leaderboard's number.

Inputs use AlpacaEval's JSON formats:

- instructions: a JSON list of ``{"instruction", "dataset"?}`` (AlpacaEval's
  ``alpaca_eval.json`` works: extra fields are ignored);
- baseline, reference and scored outputs: model outputs, a JSON list of
  ``{"instruction", "output", "generator"?, "dataset"?}``, matched to the
  instructions by instruction text.

Two annotators:

- ``weighted`` (the default): AlpacaEval 2.0's ``weighted_alpaca_eval_gpt4_turbo``
  (:mod:`langgraph_moa.eval.weighted`): one judgment per pair in an order drawn
  from the instruction, the preference ``1 + P(the output is better)`` read from
  the judge's log probabilities. An item's score is ``preference - 1``, so a
  system's score is AlpacaEval's win rate; ``annotations/<system>.json`` holds
  the records in AlpacaEval's format and ``leaderboard.json`` the leaderboard's
  numbers (win rate, standard error, discrete win rate, wins, losses, draws,
  average length, and the length-controlled win rate when the ``alpaca-eval``
  package and its data are present).
- ``pairwise``: FastChat's ``pair-v2`` prompt (:data:`PAIRWISE_SYSTEM_PROMPT`),
  each pair judged in both orders so position bias cancels; a verdict is a win
  (1), a tie (0.5) or a loss (0), read from ``[[A]]``, ``[[B]]`` or ``[[C]]``.
  For judges without log probabilities; its numbers are not AlpacaEval 2.0's.

A judgment without a verdict (pairwise) or whose log probabilities hold neither
identifier (weighted) is counted as unparseable and left out. The mean output
length (characters) is reported beside the score, because judges favour long
answers.

``reference_outputs`` adds precomputed answers (e.g. the published
Qwen1.5-72B-Chat outputs) to MoA's first layer as one more proposal, as the
MoA reference implementation's ``--reference-paths`` does. ``outputs`` scores
existing model-outputs files as systems, named by their ``generator``, with no
generation.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langgraph.cache.base import BaseCache

from langgraph_moa.config import MoAConfig, ModelSpec
from langgraph_moa.errors import MoAError
from langgraph_moa.providers import describe_error

from .exact import EvalResult, finish
from .items import EvalInputError, read_json
from .judge import add_usage, ask_judge, parse_verdict
from .runner import GraphRunner, ProgressSink, check_systems, config_for_item, open_store, run_batch
from .systems import System, comparison_systems, with_output_systems
from .weighted import (
    ANNOTATOR,
    JudgeWithoutLogprobsError,
    LengthControlled,
    WeightedJudge,
    annotation_record,
    leaderboard_metrics,
    length_controlled,
)

PAIRWISE_SYSTEM_PROMPT = (
    "Please act as an impartial judge and evaluate the quality of the responses provided by two AI assistants to "
    "the user question displayed below. You should choose the assistant that follows the user's instructions and "
    "answers the user's question better. Your evaluation should consider factors such as the helpfulness, "
    "relevance, accuracy, depth, creativity, and level of detail of their responses. Begin your evaluation by "
    "comparing the two responses and provide a short explanation. Avoid any position biases and ensure that the "
    "order in which the responses were presented does not influence your decision. Do not allow the length of the "
    "responses to influence your evaluation. Do not favor certain names of the assistants. Be as objective as "
    'possible. After providing your explanation, output your final verdict by strictly following this format: "[[A]]" '
    'if assistant A is better, "[[B]]" if assistant B is better, and "[[C]]" for a tie.'
)
"""FastChat's ``pair-v2`` system prompt (Apache-2.0), used as the pairwise judge's instructions."""
PAIRWISE_TEMPLATE = (
    "[User Question]\n{question}\n\n[The Start of Assistant A's Answer]\n{answer_a}\n"
    "[The End of Assistant A's Answer]\n\n[The Start of Assistant B's Answer]\n{answer_b}\n"
    "[The End of Assistant B's Answer]"
)
"""FastChat's ``pair-v2`` prompt template."""
OUTPUTS_DIR = "outputs"
ANNOTATIONS_DIR = "annotations"
LEADERBOARD_FILE = "leaderboard.json"
REFERENCE_PROVIDER = "reference"
Annotator = Literal["weighted", "pairwise"]
PAPER_TEMPERATURE = 0.7
PAPER_MAX_TOKENS = 2048
"""The MoA paper's generation settings for AlpacaEval (``moa eval alpaca-eval --paper-settings``)."""


@dataclass(frozen=True)
class Instruction:
    """One instruction to answer."""

    id: str
    instruction: str
    dataset: str = ""


def _entries(path: Path) -> list[Any]:
    data = read_json(path)
    if not isinstance(data, list):
        raise EvalInputError(f"{path}: expected a JSON list of objects, got {type(data).__name__}")
    return data


def _text(path: Path, index: int, entry: Any, name: str) -> str:
    if not isinstance(entry, dict):
        raise EvalInputError(f"{path}: entry {index}: expected an object, got {type(entry).__name__}")
    value = entry.get(name)
    if not isinstance(value, str) or (name == "instruction" and not value.strip()):
        raise EvalInputError(f"{path}: entry {index}: missing or non-string field {name!r}")
    return value


def load_instructions(path: Path | str) -> list[Instruction]:
    """Read a JSON list of ``{"instruction", "dataset"?}``.

    Raises:
        EvalInputError: not a list, or an entry without an instruction (naming its index).
    """
    path = Path(path)
    out = []
    for index, entry in enumerate(_entries(path)):
        text = _text(path, index, entry, "instruction")
        out.append(Instruction(str(index), text, str(entry.get("dataset", ""))))
    if not out:
        raise EvalInputError(f"{path}: no instructions")
    return out


def load_outputs(path: Path | str) -> dict[str, str]:
    """Read AlpacaEval model outputs: ``{instruction: output}``.

    Raises:
        EvalInputError: not a list, or an entry without instruction or output (naming its index).
    """
    path = Path(path)
    return {_text(path, i, e, "instruction"): _text(path, i, e, "output") for i, e in enumerate(_entries(path))}


@dataclass
class OutputsFile:
    """A model-outputs file: its generator and ``{instruction text: output}``."""

    path: Path
    generator: str
    outputs: dict[str, str] = field(default_factory=dict)


def load_outputs_file(path: Path | str) -> OutputsFile:
    """Read AlpacaEval model outputs with their ``generator`` (the file's stem when no entry names one).

    Raises:
        EvalInputError: not a list, an entry without instruction or output, or
            entries naming different generators (naming the file and entry).
    """
    path = Path(path)
    entries = _entries(path)
    outputs = {_text(path, i, e, "instruction"): _text(path, i, e, "output") for i, e in enumerate(entries)}
    generators = {str(e["generator"]) for e in entries if isinstance(e, dict) and e.get("generator")}
    if len(generators) > 1:
        raise EvalInputError(
            f"{path}: entries name {len(generators)} generators ({', '.join(sorted(generators))}): one file per system"
        )
    return OutputsFile(path, generators.pop() if generators else path.stem, outputs)


def _key(text: str) -> str:
    return " ".join(text.split())


@dataclass
class OutputsCoverage:
    """How a scored outputs file covers the instructions: what is missing and what is extra."""

    outputs: dict[str, str]
    missing: list[str]
    extra: int


def cover(instructions: Sequence[Instruction], file: OutputsFile) -> OutputsCoverage:
    """``{instruction id: output}`` of the instructions ``file`` answers, the ids it does not, and its extra count."""
    table = {_key(k): v for k, v in file.outputs.items()}
    wanted = {_key(i.instruction) for i in instructions}
    found = {i.id: table[_key(i.instruction)] for i in instructions if _key(i.instruction) in table}
    missing = [i.id for i in instructions if i.id not in found]
    return OutputsCoverage(found, missing, sum(1 for k in table if k not in wanted))


def matched_outputs(
    instructions: Sequence[Instruction], outputs: Mapping[str, str], path: Path | str
) -> dict[str, str]:
    """``{instruction id: output}`` for every instruction.

    Raises:
        EvalInputError: an instruction has no output in ``path``.
    """
    table = {_key(k): v for k, v in outputs.items()}
    missing = [i for i in instructions if _key(i.instruction) not in table]
    if missing:
        raise EvalInputError(
            f"{path}: no output for {len(missing)} instruction(s), e.g. entry {missing[0].id}: {missing[0].instruction[:60]!r}"
        )
    return {i.id: table[_key(i.instruction)] for i in instructions}


class PrecomputedChatModel(BaseChatModel):
    """A chat model that answers each instruction with a precomputed output (no call is made).

    The last user message is looked up (whitespace collapsed) in ``answers``;
    an unknown one raises ``KeyError``, which the graph records as a failure.
    """

    answers: dict[str, str]

    @property
    def _llm_type(self) -> str:
        return "precomputed"

    def _answer(self, messages: list[BaseMessage]) -> ChatResult:
        users = [m for m in messages if m.type == "human"]
        question = _key(users[-1].text) if users else ""
        if question not in self.answers:
            raise KeyError(f"no precomputed output for {question[:60]!r}")
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=self.answers[question]))])

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return self._answer(messages)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return self._answer(messages)


def with_reference_proposer(config: MoAConfig, model: str) -> MoAConfig:
    """``config`` with ``model`` added as the last proposer of the first layer.

    Raises:
        EvalInputError: the configuration has no proposer layer.
    """
    if config.layers < 2:
        raise EvalInputError("--reference-outputs become first-layer proposals: use 2 or more layers")
    layers = [list(config.proposers_for(n)) for n in range(1, config.layers)]
    layers[0].append(ModelSpec(model=model))
    data = config.model_dump()
    data["layer_proposers"] = [[s.model_dump() for s in layer] for layer in layers]
    return MoAConfig.model_validate(data)


async def _respond(
    runner: GraphRunner, system: System, item: Instruction, outputs: Mapping[str, Mapping[str, str]]
) -> tuple[str, dict[str, Any]]:
    """The system's answer and its run's record fields (none for an outputs file)."""
    if system.kind == "outputs":
        answers = outputs[system.name]
        if item.id not in answers:
            raise EvalInputError(f"{system.name}: its outputs file has no output for this instruction")
        return answers[item.id], {"usage": {}, "cost_usd": 0.0, "latency_s": 0.0}
    assert system.config is not None
    run = await runner.run(config_for_item(system.config, item.id), [("user", item.instruction)])
    return run.answer, {k: v for k, v in run.record().items() if k != "response"}


def weighted_answerer(
    runner: GraphRunner,
    judge: WeightedJudge,
    baseline: Mapping[str, str],
    baseline_generator: str,
    outputs: Mapping[str, Mapping[str, str]],
) -> Any:  # returns runner.Answer
    """The ``answer(system, instruction)``: answer, then one weighted judgment against the baseline."""

    async def answer(system: System, item: Instruction) -> dict[str, Any]:
        response, run = await _respond(runner, system, item, outputs)
        annotation = await judge.annotate(item.instruction, baseline[item.id], response)
        preference = annotation.preference
        return {
            "system": system.name,
            "id": item.id,
            "instruction": item.instruction,
            "dataset": item.dataset,
            "response": response,
            "length": len(response),
            "preference": preference,
            "switched": annotation.switched,
            "unparseable": int(preference is None),
            "score": None if preference is None else preference - 1,
            "error": None,
            "annotation": annotation_record(
                instruction=item.instruction,
                dataset=item.dataset,
                baseline_output=baseline[item.id],
                baseline_generator=baseline_generator,
                output=response,
                generator=system.name,
                annotation=annotation,
            ),
            "judge_usage": annotation.usage,
            "judge_cost_usd": annotation.price_per_example,
            **run,
        }

    return answer


def alpaca_answerer(
    runner: GraphRunner,
    judge: MoAConfig,
    baseline: Mapping[str, str],
    outputs: Mapping[str, Mapping[str, str]] | None = None,
) -> Any:
    """The pairwise ``answer(system, instruction)``: answer, then judge against the baseline in both orders."""

    async def answer(system: System, item: Instruction) -> dict[str, Any]:
        response, run = await _respond(runner, system, item, outputs or {})
        other = baseline[item.id]
        verdicts: list[float | None] = []
        judgments: list[dict[str, Any]] = []
        for model_first in (True, False):
            a, b = (response, other) if model_first else (other, response)
            prompt = PAIRWISE_TEMPLATE.format(question=item.instruction, answer_a=a, answer_b=b)
            judgment = await ask_judge(runner, judge, PAIRWISE_SYSTEM_PROMPT, prompt)
            verdict = parse_verdict(judgment.text)
            mine, theirs = ("A", "B") if model_first else ("B", "A")
            verdicts.append({mine: 1.0, theirs: 0.0, "C": 0.5}.get(verdict) if verdict else None)
            judgments.append(
                {"model_first": model_first, "verdict": verdict, "judgment": judgment.text, "usage": judgment.usage}
            )
        parsed = [v for v in verdicts if v is not None]
        return {
            "system": system.name,
            "id": item.id,
            "instruction": item.instruction,
            "dataset": item.dataset,
            "response": response,
            "length": len(response),
            "verdicts": verdicts,
            "unparseable": len(verdicts) - len(parsed),
            "score": sum(parsed) / len(parsed) if parsed else None,
            "error": None,
            "judgments": judgments,
            "judge_usage": add_usage(*(j["usage"] for j in judgments)),
            **run,
        }

    return answer


async def run_alpaca_eval(
    instructions: Sequence[Instruction],
    config: MoAConfig | None,
    *,
    judge: MoAConfig,
    baseline: Mapping[str, str],
    baseline_generator: str = "baseline",
    annotator: Annotator = "weighted",
    outputs: Mapping[str, Mapping[str, str]] | None = None,
    reference_outputs: Mapping[str, str] | None = None,
    reference_name: str = "outputs",
    compare: bool = False,
    collaborativeness: bool = False,
    extra_systems: Mapping[str, MoAConfig] | None = None,
    variants: Mapping[str, MoAConfig] | None = None,
    out_dir: Path | str | None = None,
    concurrency: int = 4,
    models: dict[str, Any] | None = None,
    cache: BaseCache[Any] | None = None,
    progress: ProgressSink | None = None,
) -> AlpacaEvalResult:
    """Answer ``instructions`` with MoA (and, with ``compare``, its proposers alone) and judge them against ``baseline``.

    Args:
        instructions: From :func:`load_instructions`.
        config: The MoA configuration (system ``moa``); None scores ``outputs`` only.
        judge: The judge's configuration (:func:`~langgraph_moa.eval.judge.judge_config`).
        baseline: ``{instruction id: baseline output}`` (:func:`matched_outputs`).
        baseline_generator: The baseline's name in the annotations (``generator_1``).
        annotator: ``"weighted"`` (AlpacaEval 2.0's, the judge must return log
            probabilities) or ``"pairwise"`` (FastChat's ``pair-v2``, both orders).
        outputs: Existing answers scored as systems: ``{system name: {instruction id: output}}``
            (:func:`cover`); an instruction a system has no output for is recorded as that pair's error.
        reference_outputs: ``{instruction id: output}`` added to MoA's first layer.
        reference_name: Their model name becomes ``reference:<reference_name>``.
        compare: Also each distinct proposer alone (the reference outputs included).
        collaborativeness: Instead of ``compare``'s systems, each distinct proposer alone and as the
            aggregator of the other proposers' answers (the paper's collaborativeness experiment,
            :func:`~langgraph_moa.eval.systems.collaborativeness_systems`).
        extra_systems: More whole configurations by name.
        variants: ``config`` with fields changed, by name (:func:`~langgraph_moa.eval.systems.variant_config`);
            each row shows its paired difference against ``moa``.
        out_dir: Output directory (resumable); model outputs go to ``outputs/<system>.json``, the weighted
            annotator's records to ``annotations/<system>.json``, its leaderboard numbers to ``leaderboard.json``.
        concurrency: (system, instruction) pairs in flight.
        models: Ready chat models by name.
        cache: The proposal cache (:class:`~langgraph_moa.eval.runner.GraphRunner`), or None.
        progress: Receives progress.

    Raises:
        JudgeWithoutLogprobsError: ``annotator="weighted"`` and the judge returns no log
            probabilities (checked with one call before any answer is made).
        EvalInputError: ``out_dir`` holds results of another suite or configuration.
    """
    models = dict(models or {})
    systems: list[System] = []
    if config is not None:
        if reference_outputs is not None:
            name = f"{REFERENCE_PROVIDER}:{reference_name}"
            by_text = {_key(i.instruction): reference_outputs[i.id] for i in instructions if i.id in reference_outputs}
            models[name] = PrecomputedChatModel(answers=by_text)
            config = with_reference_proposer(config, name)
        systems = comparison_systems(
            config, compare=compare, extra=extra_systems, variants=variants, collaborativeness=collaborativeness
        )
    systems = with_output_systems(systems, outputs, "a configuration or outputs to score")
    check_systems(systems, models, judge)
    suite = "alpaca-eval" if annotator == "pairwise" else f"alpaca-eval:{ANNOTATOR}"
    store = open_store(out_dir, suite, systems)
    runner = GraphRunner(models, cache)
    if annotator == "weighted":
        weighted = WeightedJudge(judge, models)
        await check_judge(weighted, instructions[0], baseline)
        answer = weighted_answerer(runner, weighted, baseline, baseline_generator, outputs or {})
    else:
        answer = alpaca_answerer(runner, judge, baseline, outputs)
    await run_batch(instructions, systems, answer, store=store, concurrency=concurrency, progress=progress)
    result = finish(suite, systems, store, [i.id for i in instructions])
    board = leaderboard(result.records, instructions) if annotator == "weighted" else {}
    if store.out_dir is not None:
        write_outputs(store.out_dir / OUTPUTS_DIR, result.records, instructions)
        if annotator == "weighted":
            write_annotations(store.out_dir / ANNOTATIONS_DIR, result.records, instructions)
            (store.out_dir / LEADERBOARD_FILE).write_text(json.dumps(board, indent=2) + "\n", encoding="utf-8")
    return AlpacaEvalResult(**vars(result), leaderboard=board)


async def check_judge(judge: WeightedJudge, item: Instruction, baseline: Mapping[str, str]) -> None:
    """One judgment (the baseline against itself) before any answer is made: does the judge give logprobs?

    Raises:
        JudgeWithoutLogprobsError: it answers without log probabilities.
        MoAError: the call failed (the message names the judge and the error).
    """
    try:
        await judge.annotate(item.instruction, baseline[item.id], baseline[item.id])
    except JudgeWithoutLogprobsError:
        raise
    except Exception as exc:
        kind, message = describe_error(exc)
        raise MoAError(f"judge {judge.spec.model} failed on its first call: {kind}: {message}") from None


@dataclass
class AlpacaEvalResult(EvalResult):
    """:class:`~langgraph_moa.eval.exact.EvalResult` with the leaderboard's numbers per system.

    Attributes:
        leaderboard: ``{system: {"win_rate", "standard_error", "n_wins", "n_wins_base", "n_draws",
            "n_total", "discrete_win_rate", "avg_length", "length_controlled_winrate",
            "lc_standard_error", "lc_note"}}`` (weighted annotator only; win rates in percent).
    """

    leaderboard: dict[str, dict[str, Any]] = field(default_factory=dict)


def leaderboard(records: Sequence[dict[str, Any]], instructions: Sequence[Instruction]) -> dict[str, dict[str, Any]]:
    """The leaderboard's numbers of every system from its weighted records, LC included when available."""
    order = {i.id: n for n, i in enumerate(instructions)}
    board: dict[str, dict[str, Any]] = {}
    systems = dict.fromkeys(r["system"] for r in records if not r.get("error") and "annotation" in r)
    for system in systems:
        rows = sorted(
            (r for r in records if r["system"] == system and not r.get("error") and "annotation" in r),
            key=lambda r: order.get(r["id"], 0),
        )
        metrics: dict[str, Any] = dict(
            leaderboard_metrics([r["preference"] for r in rows], [r["length"] for r in rows])
        )
        lc: LengthControlled = length_controlled([r["annotation"] for r in rows], [int(r["id"]) for r in rows])
        metrics.update(
            length_controlled_winrate=lc.win_rate, lc_standard_error=lc.standard_error, lc_note=lc.note or None
        )
        board[system] = metrics
    return board


def write_annotations(folder: Path, records: Sequence[dict[str, Any]], instructions: Sequence[Instruction]) -> None:
    """Write each system's annotations in AlpacaEval's ``annotations.json`` format, one file per system."""
    folder.mkdir(parents=True, exist_ok=True)
    order = {i.id: n for n, i in enumerate(instructions)}
    by_system: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        if not r.get("error") and "annotation" in r:
            by_system.setdefault(r["system"], []).append(r)
    for system, rows in by_system.items():
        rows.sort(key=lambda r: order.get(r["id"], 0))
        safe = system.replace("/", "_").replace(":", "_")
        text = json.dumps([r["annotation"] for r in rows], indent=2, ensure_ascii=False)
        (folder / f"{safe}.json").write_text(text + "\n", encoding="utf-8")


def write_outputs(folder: Path, records: Sequence[dict[str, Any]], instructions: Sequence[Instruction]) -> None:
    """Write each system's answers in AlpacaEval's model-outputs format."""
    folder.mkdir(parents=True, exist_ok=True)
    order = {i.id: n for n, i in enumerate(instructions)}
    by_system: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        if not r.get("error") and "response" in r:
            by_system.setdefault(r["system"], []).append(r)
    for system, rows in by_system.items():
        rows.sort(key=lambda r: order.get(r["id"], 0))
        entries = [
            {"instruction": r["instruction"], "output": r["response"], "generator": system, "dataset": r["dataset"]}
            for r in rows
        ]
        safe = system.replace("/", "_").replace(":", "_")
        (folder / f"{safe}.json").write_text(json.dumps(entries, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def mean_lengths(records: Sequence[dict[str, Any]]) -> dict[str, float]:
    """``{system: mean output length in characters}``."""
    sums: dict[str, list[int]] = {}
    for r in records:
        if not r.get("error") and "length" in r:
            sums.setdefault(r["system"], []).append(int(r["length"]))
    return {k: sum(v) / len(v) for k, v in sums.items()}
