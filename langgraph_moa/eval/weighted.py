"""AlpacaEval 2.0's annotator, ``weighted_alpaca_eval_gpt4_turbo``, and the leaderboard's numbers.

The protocol, as ``tatsu-lab/alpaca_eval`` runs it (its
``evaluators_configs/weighted_alpaca_eval_gpt4_turbo/configs.yaml``):

- one judgment per (instruction, output) pair with the ``alpaca_eval_clf``
  prompt (:data:`ALPACA_EVAL_CLF_PROMPT`): the baseline's output is
  ``output_1``, identified as ``m``, the judged model's ``output_2`` as ``M``;
- the two outputs are switched for some instructions, chosen by a seed derived
  from the instruction text (:func:`is_switched`: AlpacaEval's
  ``RandomSwitchTwoColumnsProcessor`` with annotator seed 0), so the judge's
  position bias does not favour either side on average;
- the judge answers with one token (``max_tokens: 1``, ``temperature: 1``)
  and ``logprobs`` with ``top_logprobs: 5``; the preference is
  ``2 - P(m)``, where ``P(m)`` is the probability of ``m`` among the two
  identifiers in the top log probabilities (AlpacaEval's ``logprob_parser``,
  ``is_binarize: false``); for a switched pair it is ``3 -`` that. So the
  stored ``preference`` is ``1 + P(the judged model's output is better)``
  whatever the order shown;
- a judgment whose top log probabilities hold neither identifier has no
  preference (AlpacaEval stores NaN and leaves it out of the win rate): it is
  counted as unparseable.

The leaderboard's numbers (:func:`leaderboard_metrics`, as AlpacaEval's
``get_winrate``): ``win_rate`` = the mean of ``preference - 1`` x 100;
``standard_error`` its standard error (sample standard deviation / sqrt(n)) x 100;
``discrete_win_rate`` with each preference rounded to a win, loss or (at exactly
1.5) a draw; ``n_wins``, ``n_wins_base``, ``n_draws``, ``n_total``. The
length-controlled win rate comes from the ``alpaca-eval`` package's own GLM
(:func:`length_controlled`), when it and the data it needs are present.

The leaderboard's judge was ``gpt-4-1106-preview`` (:data:`LEADERBOARD_JUDGE`);
any OpenAI-compatible judge that returns log probabilities can stand in, and its
numbers are then its own, not the leaderboard's.
"""

from __future__ import annotations

import math
import random
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage
from langchain_core.runnables import Runnable

from langgraph_moa.config import MoAConfig
from langgraph_moa.errors import MoAError
from langgraph_moa.pricing import estimate_cost
from langgraph_moa.providers import ModelResolver

ANNOTATOR = "weighted_alpaca_eval_gpt4_turbo"
"""The annotator's name in AlpacaEval's records and leaderboard."""
LEADERBOARD_JUDGE = "openai:gpt-4-1106-preview"
"""The judge model of AlpacaEval 2.0's leaderboard."""
IDENTIFIERS = ("m", "M")
"""The identifiers of ``output_1`` and ``output_2`` in the prompt."""
TOP_LOGPROBS = 5
SWITCH_SEED = 0
"""AlpacaEval's annotator seed (``PairwiseAnnotator(seed=0)``), part of the switch's seed string."""

ALPACA_EVAL_CLF_PROMPT = '''<|im_start|>system
You are a highly efficient assistant, who evaluates and selects the best large language model (LLMs) based on the quality of their responses to a given instruction. This process will be used to create a leaderboard reflecting the most accurate and human-preferred answers.
<|im_end|>
<|im_start|>user
I require a leaderboard for various large language models. I'll provide you with prompts given to these models and their corresponding outputs. Your task is to assess these responses, and select the model that produces the best output from a human perspective.

## Instruction

{
    "instruction": """{instruction}""",
}

## Model Outputs

Here are the unordered outputs from the models. Each output is associated with a specific model, identified by a unique model identifier.

{
    {
        "model_identifier": "m",
        "output": """{output_1}"""
    },
    {
        "model_identifier": "M",
        "output": """{output_2}"""
    }
}

## Task

Evaluate the models based on the quality and relevance of their outputs, and select the model that generated the best output. Answer by providing the model identifier of the best model. We will use your output as the name of the best model, so make sure your output only contains one of the following model identifiers and nothing else (no quotes, no spaces, no new lines, ...): m or M.

## Best Model Identifier
<|im_end|>'''
"""AlpacaEval's ``alpaca_eval_clf_gpt4_turbo/alpaca_eval_clf.txt``, reproduced as the protocol's artefact.

From ``tatsu-lab/alpaca_eval`` (Apache-2.0), unchanged: the judge must read
exactly this text for the numbers to be AlpacaEval 2.0's.
"""


class JudgeWithoutLogprobsError(MoAError):
    """The judge answered without log probabilities, which the weighted annotator needs."""


def is_switched(instruction: str, seed: int = SWITCH_SEED) -> bool:
    """Whether the judged output is shown first (as ``m``) for ``instruction``, as AlpacaEval decides it.

    AlpacaEval seeds Python's ``random.Random`` with ``"is_switched_outputs" +
    instruction + str(seed)`` and draws ``choices([False, True])``.
    """
    return random.Random("is_switched_outputs" + instruction + str(seed)).choices([False, True], k=1)[0]


def clf_messages(instruction: str, output_1: str, output_2: str) -> list[tuple[str, str]]:
    """The judge's chat messages for one pair, as AlpacaEval builds them.

    Each placeholder is replaced once, in the order it appears (AlpacaEval's
    ``make_prompts``), and the ``<|im_start|>role ... <|im_end|>`` blocks become
    messages with their content stripped (its ``prompt_to_chatml``).
    """
    prompt = ALPACA_EVAL_CLF_PROMPT
    for name, value in (("instruction", instruction), ("output_1", output_1), ("output_2", output_2)):
        prompt = prompt.replace("{" + name + "}", value, 1)
    messages = []
    for block in prompt.strip().split("<|im_start|>")[1:]:
        role, _, rest = block.partition("\n")
        messages.append((role.strip(), rest.split("<|im_end|>", 1)[0].strip()))
    return messages


def parse_logprobs(top_logprobs: Sequence[Mapping[str, Any]]) -> float | None:
    """``2 - P(m)`` from the first token's top log probabilities (AlpacaEval's ``logprob_parser``), or None.

    ``P(m)`` is ``exp(logprob(m)) / (exp(logprob(m)) + exp(logprob(M)))``, an
    identifier missing from the top counting as probability 0. None when neither
    identifier is there.
    """
    found = {t["token"]: float(t["logprob"]) for t in top_logprobs if t.get("token") in IDENTIFIERS}
    if not found:
        return None
    m = found.get("m", -math.inf)
    big = found.get("M", -math.inf)
    top = max(m, big)
    denominator = top + math.log(math.exp(m - top) + math.exp(big - top))
    return 2 - math.exp(m - denominator)


@dataclass
class Annotation:
    """One judgment of the weighted annotator.

    Attributes:
        preference: ``1 + P(the judged output is better)``, order corrected; None
            when the judge's top log probabilities held neither identifier.
        switched: Whether the judged output was shown first.
        raw_completion: The judge's answer: its text and log probabilities (as shown, before the switch is undone).
        price_per_example: The call's cost in USD (0 when the judge is not priced).
        time_per_example: The call's seconds.
        usage: Input and output tokens.
    """

    preference: float | None
    switched: bool
    raw_completion: dict[str, Any]
    price_per_example: float
    time_per_example: float
    usage: dict[str, int]


class WeightedJudge:
    """Calls a judge the way ``weighted_alpaca_eval_gpt4_turbo`` does.

    Args:
        config: The judge's configuration (:func:`~langgraph_moa.eval.judge.judge_config`):
            its aggregator is the judge; temperature 1 and max_tokens 1 are applied here.
        models: Ready chat models by name (a model given here must return
            ``response_metadata["logprobs"]`` as ``ChatOpenAI`` does).
    """

    def __init__(self, config: MoAConfig, models: Mapping[str, Any] | None = None) -> None:
        self.config = config.model_copy(update={"temperature": 1.0, "max_tokens": 1})
        self.spec = self.config.aggregator.model_copy(update={"temperature": None, "max_tokens": None})
        self.model: Runnable = ModelResolver(models)(self.spec, self.config, streaming=False).bind(
            logprobs=True, top_logprobs=TOP_LOGPROBS
        )

    async def annotate(self, instruction: str, baseline_output: str, output: str) -> Annotation:
        """Judge ``output`` against ``baseline_output`` for ``instruction``.

        Raises:
            JudgeWithoutLogprobsError: the judge's answer carries no log probabilities.
        """
        switched = is_switched(instruction)
        first, second = (output, baseline_output) if switched else (baseline_output, output)
        started = time.perf_counter()
        message = await self.model.ainvoke(clf_messages(instruction, first, second))
        seconds = time.perf_counter() - started
        assert isinstance(message, AIMessage)
        logprobs = (message.response_metadata or {}).get("logprobs")
        content = logprobs.get("content") if isinstance(logprobs, dict) else None
        if not content or "top_logprobs" not in content[0]:
            raise JudgeWithoutLogprobsError(
                f"judge {self.spec.model} answered without log probabilities: the AlpacaEval 2.0 annotator needs "
                f"an OpenAI-compatible judge that returns logprobs (top_logprobs {TOP_LOGPROBS}); "
                "use --annotator pairwise for a judge without them"
            )
        parsed = parse_logprobs(content[0]["top_logprobs"])
        preference = None if parsed is None else (3 - parsed if switched else parsed)
        meta: Mapping[str, Any] = message.usage_metadata or {}
        usage = {k: int(meta.get(k) or 0) for k in ("input_tokens", "output_tokens", "total_tokens")}
        record = {"layer": 1, "slot": 0, "model": self.spec.model, "role": "aggregator", "reported": True, **usage}
        price = float(estimate_cost([record], self.config.prices)["total_usd"])  # type: ignore[list-item,arg-type]
        raw = {
            "text": message.text,
            "logprobs": {"content": content},
            "finish_reason": (message.response_metadata or {}).get("finish_reason"),
            "total_tokens": usage["total_tokens"],
        }
        return Annotation(preference, switched, raw, price, seconds, usage)


def annotation_record(
    *,
    instruction: str,
    dataset: str,
    baseline_output: str,
    baseline_generator: str,
    output: str,
    generator: str,
    annotation: Annotation,
) -> dict[str, Any]:
    """One record of AlpacaEval's ``annotations.json`` (``output_1`` is the baseline's)."""
    return {
        "instruction": instruction,
        "output_1": baseline_output,
        "generator_1": baseline_generator,
        "dataset": dataset,
        "output_2": output,
        "generator_2": generator,
        "annotator": ANNOTATOR,
        "preference": annotation.preference,
        "raw_completion": annotation.raw_completion,
        "price_per_example": annotation.price_per_example,
        "time_per_example": round(annotation.time_per_example, 3),
    }


def leaderboard_metrics(preferences: Sequence[float | None], lengths: Sequence[int] = ()) -> dict[str, float | int]:
    """The leaderboard's numbers from the preferences of one system, as AlpacaEval's ``get_winrate``.

    Preferences that are None (unparseable) or outside [1, 2] are left out; a
    preference of 0 or exactly 1.5 is a draw. ``avg_length`` is the mean output
    length in characters when ``lengths`` are given.
    """
    valid = [1.5 if p == 0 else float(p) for p in preferences if p is not None and (p == 0 or 1 <= p <= 2)]
    shifted = [p - 1 for p in valid]
    discrete = [0.5 if p == 1.5 else float(p > 1.5) for p in valid]
    n = len(shifted)
    out: dict[str, float | int] = {
        "win_rate": 100 * statistics.fmean(shifted) if n else math.nan,
        "standard_error": 100 * statistics.stdev(shifted) / math.sqrt(n) if n > 1 else math.nan,
        "n_wins": sum(1 for p in shifted if p > 0.5),
        "n_wins_base": sum(1 for p in shifted if p < 0.5),
        "n_draws": sum(1 for p in valid if p == 1.5),
        "n_total": n,
        "discrete_win_rate": 100 * statistics.fmean(discrete) if n else math.nan,
    }
    if lengths:
        out["avg_length"] = round(statistics.fmean(lengths))
    return out


# --------------------------------------------------------------------------- length-controlled win rate

LC_DATA_REPO = "tatsu-lab/alpaca_eval"
LC_DATA_FILE = "df_gamed.csv"
"""The file AlpacaEval's GLM reads: annotations of the gamed (verbose and concise) baselines, with each
instruction's difficulty. Not in the ``alpaca-eval`` wheel nor its GitHub repository: the package downloads it
from the Hugging Face dataset :data:`LC_DATA_REPO` into the Hugging Face cache."""


@dataclass
class LengthControlled:
    """The length-controlled win rate of one system, or why there is none.

    Attributes:
        win_rate: ``length_controlled_winrate`` (0-100), or None.
        standard_error: ``lc_standard_error``, or None.
        note: Why it is missing (which package or file, and where it was looked for), else "".
    """

    win_rate: float | None
    standard_error: float | None
    note: str = ""


def lc_data_path() -> tuple[Path | None, str]:
    """Where :data:`LC_DATA_FILE` is in the Hugging Face cache (None if absent), and the cache's folder."""
    from huggingface_hub import constants, try_to_load_from_cache

    found = try_to_load_from_cache(LC_DATA_REPO, LC_DATA_FILE, repo_type="dataset")
    return (Path(found) if isinstance(found, str) else None), str(constants.HF_HUB_CACHE)


def lc_unavailable() -> str:
    """Why the length-controlled win rate cannot be computed here, or "" when it can."""
    try:
        from alpaca_eval.metrics import glm_winrate  # noqa: F401
    except ImportError as exc:
        return (
            f"no LC win rate: it needs the alpaca-eval package ({exc}); "
            "pip install 'langgraph-moa[alpaca-eval]' and run again (finished results are kept)"
        )
    path, cache = lc_data_path()
    if path is None:
        return (
            f"no LC win rate: AlpacaEval's GLM needs {LC_DATA_FILE} of the Hugging Face dataset {LC_DATA_REPO}, "
            f"looked for in the Hugging Face cache {cache}; fetch it with "
            f"`hf download {LC_DATA_REPO} {LC_DATA_FILE} --repo-type dataset` and run again "
            "(finished results are kept)"
        )
    return ""


def length_controlled(records: Sequence[dict[str, Any]], indices: Sequence[int]) -> LengthControlled:
    """The LC win rate of one system's annotation records, by the ``alpaca-eval`` package's GLM.

    Args:
        records: AlpacaEval annotation records (:func:`annotation_record`) of one system.
        indices: Each record's instruction position in AlpacaEval's 805-instruction set (the GLM looks up
            each instruction's difficulty by it): the instructions file must be AlpacaEval's, in its order.
    """
    why = lc_unavailable()
    if why:
        return LengthControlled(None, None, why)
    import pandas as pd
    from alpaca_eval.metrics.glm_winrate import get_length_controlled_winrate

    frame = pd.DataFrame(list(records), index=pd.Index(list(indices)))
    frame["preference"] = frame["preference"].astype(float)
    try:
        metrics = get_length_controlled_winrate(frame, save_weights_dir=None, is_add_glm_preference_inplace=False)
    except Exception as exc:  # the package's own failure, named
        return LengthControlled(None, None, f"no LC win rate: alpaca-eval's GLM failed: {type(exc).__name__}: {exc}")
    return LengthControlled(float(metrics["length_controlled_winrate"]), float(metrics["lc_standard_error"]))
