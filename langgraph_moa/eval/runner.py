"""Run systems over items: bounded concurrency, results saved as they finish, resumable.

Every finished (system, item) pair is appended at once to ``results.jsonl`` in
the output directory (one JSON object per line, flushed), so a killed run loses
at most the pairs in flight; running again with the same directory skips the
pairs already there. Pairs that ended in an error are saved too (with
``"error"``) and run again on the next resume. ``run.json`` records the suite
and each system's configuration fingerprint (endpoints left out): resuming
with another configuration under the same system name is refused instead of
mixing results.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.runnables import Runnable
from langgraph.cache.base import BaseCache

from langgraph_moa.config import MoAConfig, ModelSpec
from langgraph_moa.errors import MoAError
from langgraph_moa.graph import create_moa_graph
from langgraph_moa.pricing import estimate_cost
from langgraph_moa.providers import check_credentials, redact
from langgraph_moa.seeds import SEED_RANGE
from langgraph_moa.state import UsageRecord
from langgraph_moa.stream import summarize_usage
from langgraph_moa.usage import total_usage

from .items import EvalInputError
from .systems import System

RESULTS_FILE = "results.jsonl"
SUMMARY_FILE = "summary.json"
RUN_FILE = "run.json"


# --------------------------------------------------------------------------- one graph run


@dataclass
class GraphRun:
    """What one MoA graph run produced."""

    answer: str
    proposals: list[dict[str, Any]]
    failures: list[dict[str, Any]]
    usage: list[UsageRecord]
    cost_usd: float
    unreported_calls: int
    latency_s: float
    layer_seconds: dict[str, float] = field(default_factory=dict)
    cached_calls: int = 0

    def record(self) -> dict[str, Any]:
        """The fields every result line carries about the run."""
        return {
            "response": self.answer,
            "proposals": self.proposals,
            "failures": self.failures,
            "usage": total_usage(self.usage),
            "usage_calls": self.usage,
            "unreported_usage_calls": self.unreported_calls,
            "cost_usd": self.cost_usd,
            "latency_s": round(self.latency_s, 3),
            "layer_seconds": self.layer_seconds,
            "cached_calls": self.cached_calls,
        }


def config_for_item(config: MoAConfig, item_id: str) -> MoAConfig:
    """``config`` with its seeds derived for one item, so pinned seeds differ from item to item.

    A seed pinned for a whole evaluation (``--seed``, ``MoAConfig.seed`` or a model's
    ``ModelSpec.seed``) would give every item the same random draws per slot, and with them
    the same bias on every question. Each pinned seed is replaced by one derived from it
    and the item's id: the run stays reproducible (and cacheable) item by item. Seeds that
    are not pinned are drawn fresh per run anyway.
    """

    def derive(seed: int) -> int:
        digest = hashlib.sha256(f"moa-eval-seed:{seed}:{item_id}".encode()).digest()
        return int.from_bytes(digest[:8], "big") % SEED_RANGE

    def spec(model: ModelSpec) -> ModelSpec:
        return model if model.seed is None else model.model_copy(update={"seed": derive(model.seed)})

    update: dict[str, Any] = {
        "proposers": [spec(m) for m in config.proposers],
        "aggregator": spec(config.aggregator),
    }
    if config.layer_proposers is not None:
        update["layer_proposers"] = [[spec(m) for m in layer] for layer in config.layer_proposers]
    if config.seed is not None:
        update["seed"] = derive(config.seed)
    return config.model_copy(update=update)


class GraphRunner:
    """Runs MoA configurations on one compiled graph.

    Args:
        models: Ready chat models by ``"provider:model"`` name (see
            :func:`~langgraph_moa.create_moa_graph`).
        cache: A LangGraph cache for the proposal cache (``moa eval --cache``):
            proposals of a (configuration, item) seen before are reused. Their
            calls are counted in ``cached_calls``, not in the usage and cost.
    """

    def __init__(self, models: dict[str, Any] | None = None, cache: BaseCache[Any] | None = None) -> None:
        self.graph: Runnable = create_moa_graph(models=models).compile(name="moa-eval", cache=cache)

    async def run(self, config: MoAConfig, messages: Sequence[BaseMessage | tuple[str, str]]) -> GraphRun:
        """Answer ``messages`` with ``config``.

        Raises:
            MoAError: the run failed (a layer, the aggregator, a setting).
        """
        started = time.perf_counter()
        layer_seconds: dict[str, float] = {}
        final: dict[str, Any] = {}
        async for mode, chunk in self.graph.astream(
            {"messages": list(messages)}, context=config, stream_mode=["custom", "values"]
        ):
            if mode == "custom" and chunk.get("event") == "layer_done":
                layer_seconds[str(chunk["layer"])] = round(time.perf_counter() - started, 3)
            elif mode == "values":
                final = chunk
        latency = time.perf_counter() - started
        out = final.get("messages", [])
        answer = out[-1] if out else None
        turn = final.get("turn_id")
        made = [r for r in final.get("usage", []) if r.get("turn_id", turn) == turn]  # not replayed from a cache
        usage = list(made)
        summary = final.get("usage_summary") or summarize_usage(usage, config)
        return GraphRun(
            answer=answer.text if isinstance(answer, AIMessage) else "",
            proposals=list(final.get("proposals", [])),
            failures=list(final.get("failures", [])),
            usage=usage,
            cost_usd=float(summary["cost_usd"]),
            unreported_calls=int(summary["unreported_calls"]),
            latency_s=latency,
            layer_seconds=layer_seconds,
            cached_calls=len(final.get("usage", [])) - len(made),
        )


def layer_cost(record: dict[str, Any], layer: int, config: MoAConfig) -> tuple[dict[str, int], float]:
    """Token usage and cost of one layer of a saved MoA run."""
    calls = [c for c in record.get("usage_calls", []) if c["layer"] == layer]
    return total_usage(calls), float(estimate_cost(calls, config.prices)["total_usd"])  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the results file


def config_fingerprint(config: MoAConfig) -> str:
    """A hash of what shapes the answers: the configuration without its endpoints.

    Endpoints are left out, so a run on local servers that came back on other
    ports (the local preset picks free ports) still resumes.
    """

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k != "base_url"}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    data = json.dumps(strip(config.model_dump(mode="json")), sort_keys=True)
    return hashlib.sha256(data.encode()).hexdigest()[:16]


class ResultStore:
    """``results.jsonl`` (and ``run.json``) of an output directory, or memory only when ``out_dir`` is None."""

    def __init__(self, out_dir: Path | None) -> None:
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self._records: dict[tuple[str, str], dict[str, Any]] = {}
        self.skipped_lines = 0
        if self.out_dir is not None and self.results_path.exists():
            self._drop_cut_tail()
            for line in self.results_path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                    self._records[(record["system"], record["id"])] = record
                except (ValueError, KeyError, TypeError):
                    self.skipped_lines += 1  # a damaged line: its pair runs again

    def _drop_cut_tail(self) -> None:
        """Remove a last line cut short when a run was killed mid-write (its pair runs again).

        Every record ends with a newline, so text after the last newline is a
        record cut short: appending to it would glue the next record onto it,
        losing that one too and leaving a line no resume can read.
        """
        path = self.results_path
        data = path.read_bytes()
        if not data or data.endswith(b"\n"):
            return
        with path.open("r+b") as out:
            out.truncate(data.rfind(b"\n") + 1)

    @property
    def results_path(self) -> Path:
        """Where the results are written."""
        assert self.out_dir is not None
        return self.out_dir / RESULTS_FILE

    def check_run(self, suite: str, systems: Sequence[System]) -> None:
        """Record the run's suite and configurations; refuse a resume under another configuration.

        Raises:
            EvalInputError: the directory holds another suite, or a system named
                alike but configured otherwise.
        """
        if self.out_dir is None:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / RUN_FILE
        current = {s.name: config_fingerprint(s.config) if s.config is not None else s.kind for s in systems}
        saved: dict[str, Any] = {}
        if path.exists():
            try:
                saved = json.loads(path.read_text(encoding="utf-8"))
            except ValueError:
                saved = {}
        if saved.get("suite") not in (None, suite):
            raise EvalInputError(
                f"{self.out_dir} holds results of suite {saved['suite']!r}, not {suite!r}: use another --out"
            )
        known = dict(saved.get("systems", {}))
        for name, print_ in current.items():
            if name in known and known[name] != print_:
                raise EvalInputError(
                    f"{self.out_dir} holds results of system {name!r} under another configuration: "
                    "run with the same options to resume, or use another --out"
                )
            known[name] = print_
        path.write_text(json.dumps({"suite": suite, "systems": known}, indent=2) + "\n", encoding="utf-8")

    def finished(self, system: str, item_id: str) -> bool:
        """Whether the pair has a result without an error."""
        record = self._records.get((system, item_id))
        return record is not None and not record.get("error")

    def get(self, system: str, item_id: str) -> dict[str, Any] | None:
        """The latest result of the pair."""
        return self._records.get((system, item_id))

    def add(self, record: dict[str, Any]) -> None:
        """Keep ``record`` and append it to the results file at once."""
        self._records[(record["system"], record["id"])] = record
        if self.out_dir is not None:
            with self.results_path.open("a", encoding="utf-8") as out:
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
                out.flush()

    def records(self, system: str | None = None) -> list[dict[str, Any]]:
        """The latest result of every pair (of one system)."""
        return [r for (name, _), r in self._records.items() if system is None or name == system]


def open_store(out_dir: str | Path | None, suite: str, systems: Sequence[System]) -> ResultStore:
    """The results of ``suite`` in ``out_dir`` (None: in memory), refusing a resume under another configuration.

    Raises:
        EvalInputError: ``out_dir`` holds another suite, or a system named alike but configured otherwise.
    """
    store = ResultStore(Path(out_dir) if out_dir is not None else None)
    store.check_run(suite, systems)
    return store


# --------------------------------------------------------------------------- the batch


def check_systems(
    systems: Sequence[System], models: Mapping[str, Any] | None = None, *others: MoAConfig | None
) -> None:
    """Check every model's key (and provider) before any pair runs, as the CLI does.

    Without this a missing key would fail every pair one by one, and the run
    would end with ``n: 0`` and no word of why.

    Args:
        systems: The systems about to run.
        models: Ready chat models by name: these need no key.
        others: More configurations used by the run (the judge).

    Raises:
        MissingCredentialsError: a model's API key is not set (the message names the variable).
        ConfigError: a provider ``init_chat_model`` does not know.
    """
    ready = frozenset(models or {})
    for config in [*(s.config for s in systems), *others]:
        if config is not None:
            check_credentials(config, skip=ready)


class ProgressSink(Protocol):
    """Receives progress: the pairs to run, then each finished record."""

    def start(self, total: int, done: int) -> None:
        """``total`` pairs to run now; ``done`` were finished by an earlier run."""

    def advance(self, record: dict[str, Any]) -> None:
        """One pair finished (or failed)."""


Answer = Callable[[System, Any], Awaitable[dict[str, Any]]]
"""``answer(system, item) -> record``: run one system on one item and score it."""
Derive = Callable[[Any, dict[str, Any]], list[dict[str, Any]]]
"""``derive(item, moa_record) -> records`` of systems computed from MoA's run (the vote)."""


def error_record(system: System, item_id: str, exc: BaseException) -> dict[str, Any]:
    """The result line of a pair whose run failed."""
    message = " ".join(str(exc).split())
    return {"system": system.name, "id": item_id, "score": None, "error": redact(f"{type(exc).__name__}: {message}")}


async def run_batch(
    items: Sequence[Any],
    systems: Sequence[System],
    answer: Answer,
    *,
    store: ResultStore,
    concurrency: int = 4,
    derive: Derive | None = None,
    progress: ProgressSink | None = None,
) -> None:
    """Run every system on every item that has no finished result yet.

    Items need an ``id`` attribute. Systems of kind ``vote`` are not run: ``derive``
    makes their records from each finished ``moa`` record. At most
    ``concurrency`` pairs run at once; each result is stored as it finishes.
    A pair that fails is stored with its error and does not stop the batch.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    runnable = [s for s in systems if s.kind != "vote"]
    derived = [s for s in systems if s.kind == "vote"]
    if derive is not None and derived:
        for item in items:  # resumed runs: MoA finished earlier, its vote not yet written
            moa = store.get("moa", item.id)
            if moa is not None and not moa.get("error") and any(not store.finished(s.name, item.id) for s in derived):
                for record in derive(item, moa):
                    store.add(record)
    pending = [(s, item) for item in items for s in runnable if not store.finished(s.name, item.id)]
    if progress is not None:
        progress.start(len(pending), len(items) * len(runnable) - len(pending))
    gate = asyncio.Semaphore(concurrency)

    async def one(system: System, item: Any) -> None:
        async with gate:
            try:
                record = await answer(system, item)
            except (MoAError, Exception) as exc:  # one failed pair is data; the batch goes on
                record = error_record(system, item.id, exc)
        store.add(record)
        if derive is not None and derived and system.kind == "moa" and not record.get("error"):
            for extra in derive(item, record):
                store.add(extra)
        if progress is not None:
            progress.advance(record)

    await asyncio.gather(*(one(system, item) for system, item in pending))
