"""AlpacaEval-style pairwise evaluation: a judge compares each answer with a baseline's, in both orders.

Inputs use AlpacaEval's JSON formats:

- instructions: a JSON list of ``{"instruction", "dataset"?}`` (AlpacaEval's
  ``alpaca_eval.json`` works: extra fields are ignored);
- baseline and reference outputs: model outputs, a JSON list of
  ``{"instruction", "output", "generator"?, "dataset"?}``, matched to the
  instructions by instruction text.

Each answer is judged twice, once shown first and once second, so the judge's
position bias cancels; a verdict is a win (1), a tie (0.5) or a loss (0), read
from ``[[A]]``, ``[[B]]`` or ``[[C]]``; a judgment without one is counted as
unparseable and left out. An item's score is the mean of its parsed verdicts, a
system's score its win rate against the baseline. The mean output length
(characters) is reported beside it, because judges favour long answers.

This is not AlpacaEval 2.0's annotator (a GPT-4 Turbo judge reading log
probabilities) nor its length-controlled win rate: numbers from here are
comparable with each other, not with the leaderboard. The judge prompt is
:data:`PAIRWISE_SYSTEM_PROMPT` (FastChat's ``pair-v2`` wording).

``reference_outputs`` adds precomputed answers (e.g. the published
Qwen1.5-72B-Chat outputs) to MoA's first layer as one more proposal, as the
MoA reference implementation's ``--reference-paths`` does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langgraph.cache.base import BaseCache

from langgraph_moa.config import MoAConfig, ModelSpec

from .exact import EvalResult, finish
from .items import EvalInputError, read_json
from .judge import add_usage, ask_judge, parse_verdict
from .runner import GraphRunner, ProgressSink, ResultStore, check_systems, config_for_item, run_batch
from .systems import System, comparison_systems

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
REFERENCE_PROVIDER = "reference"


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


def _key(text: str) -> str:
    return " ".join(text.split())


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


def alpaca_answerer(runner: GraphRunner, judge: MoAConfig, baseline: Mapping[str, str]) -> Any:
    """The ``answer(system, instruction)``: answer, then judge against the baseline in both orders."""

    async def answer(system: System, item: Instruction) -> dict[str, Any]:
        assert system.config is not None
        run = await runner.run(config_for_item(system.config, item.id), [("user", item.instruction)])
        other = baseline[item.id]
        verdicts: list[float | None] = []
        judgments: list[dict[str, Any]] = []
        for model_first in (True, False):
            a, b = (run.answer, other) if model_first else (other, run.answer)
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
            "response": run.answer,
            "length": len(run.answer),
            "verdicts": verdicts,
            "unparseable": len(verdicts) - len(parsed),
            "score": sum(parsed) / len(parsed) if parsed else None,
            "error": None,
            "judgments": judgments,
            "judge_usage": add_usage(*(j["usage"] for j in judgments)),
            **{k: v for k, v in run.record().items() if k != "response"},
        }

    return answer


async def run_alpaca_eval(
    instructions: Sequence[Instruction],
    config: MoAConfig,
    *,
    judge: MoAConfig,
    baseline: Mapping[str, str],
    reference_outputs: Mapping[str, str] | None = None,
    reference_name: str = "outputs",
    compare: bool = False,
    extra_systems: Mapping[str, MoAConfig] | None = None,
    variants: Mapping[str, MoAConfig] | None = None,
    out_dir: Path | str | None = None,
    concurrency: int = 4,
    models: dict[str, Any] | None = None,
    cache: BaseCache[Any] | None = None,
    progress: ProgressSink | None = None,
) -> EvalResult:
    """Answer ``instructions`` with MoA (and, with ``compare``, its proposers alone) and judge them against ``baseline``.

    Args:
        instructions: From :func:`load_instructions`.
        config: The MoA configuration (system ``moa``).
        judge: The judge's configuration.
        baseline: ``{instruction id: baseline output}`` (:func:`matched_outputs`).
        reference_outputs: ``{instruction id: output}`` added to MoA's first layer.
        reference_name: Their model name becomes ``reference:<reference_name>``.
        compare: Also each distinct proposer alone (the reference outputs included).
        extra_systems: More whole configurations by name.
        variants: ``config`` with fields changed, by name (:func:`~langgraph_moa.eval.systems.variant_config`);
            each row shows its paired difference against ``moa``.
        out_dir: Output directory (resumable); model outputs go to ``outputs/<system>.json``.
        concurrency: (system, instruction) pairs in flight.
        models: Ready chat models by name.
        cache: The proposal cache (:class:`~langgraph_moa.eval.runner.GraphRunner`), or None.
        progress: Receives progress.
    """
    models = dict(models or {})
    if reference_outputs is not None:
        name = f"{REFERENCE_PROVIDER}:{reference_name}"
        by_text = {_key(i.instruction): reference_outputs[i.id] for i in instructions if i.id in reference_outputs}
        models[name] = PrecomputedChatModel(answers=by_text)
        config = with_reference_proposer(config, name)
    systems = comparison_systems(config, compare=compare, extra=extra_systems, variants=variants)
    check_systems(systems, models, judge)
    store = ResultStore(Path(out_dir) if out_dir is not None else None)
    store.check_run("alpaca-eval", systems)
    runner = GraphRunner(models, cache)
    await run_batch(
        instructions,
        systems,
        alpaca_answerer(runner, judge, baseline),
        store=store,
        concurrency=concurrency,
        progress=progress,
    )
    result = finish("alpaca-eval", systems, store, [i.id for i in instructions])
    if store.out_dir is not None:
        write_outputs(store.out_dir / OUTPUTS_DIR, result.records, instructions)
    return result


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
