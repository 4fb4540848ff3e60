"""Connections and CPU when every request brings its own temperature and max_tokens.

An API server's clients each send their own sampling settings. The workload:
``--runs`` runs of a 3-layer MoA (3 proposers x 2 layers, then the streamed
aggregator: 7 calls a run) in one event loop, run ``i`` with temperature
``0.1 * (i % 21)`` and max_tokens ``256 + i``, so no two runs share settings.
The simulated OpenAI-compatible server runs in its own process and answers at
once (``--latency`` to change that), so this process's CPU time is the client's;
it counts the TCP connections it accepts and how many are open at once.

The same workload runs with two ways of building the chat models:

- (a) per-settings clients, the resolver as it was before clients were shared:
  one ``ChatOpenAI`` per distinct (model, temperature, max_tokens, endpoint,
  timeout, retries, streaming), each with its own ``httpx`` client
  (``openai.DefaultAsyncHttpxClient(timeout=...)``) and so its own connection
  pool, the settings built into the model, at most ``MODEL_CACHE_SIZE`` (64)
  models kept per loop, the least recently used dropped (their idle connections
  close when the garbage collector frees them). Reproduced here by
  :class:`PerSettingsResolver`, a ``ModelResolver`` whose ``__call__`` is the
  old one; the graph is this project's ``create_moa_graph()``, built while
  ``langgraph_moa.graph.ModelResolver`` is patched to it, so every node resolves
  its models the old way and nothing else differs;
- (b) shared clients, the project's own resolver: one ``httpx`` client per
  (event loop, endpoint), temperature, max_tokens and seed bound to each call.

The two alternate for ``--rounds`` rounds, each on a fresh server and a fresh
event loop, after one unreported warm-up round. Reported, as medians over the
rounds with the ratio (a) / (b): connections opened; the peak of connections
open at once; the connections still open after the last run and a full garbage
collection (a model dropped from (a)'s cache is freed, and its connections
closed, only when the collector breaks its reference cycles; no collection is
forced between runs, as none is in a server); and CPU milliseconds per run
(``time.process_time`` of this process, that final collection included, so each
way pays for the clients it leaves behind). The server checks that both ways
sent the same number of calls with the same per-run settings.

    python benchmarks/shared_clients.py [--runs 40] [--rounds 3] [--latency 0]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import json
import statistics
import subprocess
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

from _report import save_plot, write_table
from langchain.chat_models import init_chat_model
from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable
from langgraph.constants import TAG_NOSTREAM
from openai import DefaultAsyncHttpxClient

import langgraph_moa.graph
from langgraph_moa import MoAConfig, ModelSpec, create_moa_graph
from langgraph_moa.providers import MODEL_CACHE_SIZE, ModelResolver, api_key, effective_base_url
from langgraph_moa.testing import ModelBehavior, SimulatedOpenAIServer

PROPOSERS = ["p1", "p2", "p3"]
LAYERS = 3  # two proposer layers, then the aggregator
CALLS_PER_RUN = len(PROPOSERS) * (LAYERS - 1) + 1
MODES = {
    "per-settings": "(a) one client per (model, temperature, max_tokens): before",
    "shared": "(b) one client per (event loop, endpoint), settings bound per call: now",
}


class PerSettingsResolver(ModelResolver):
    """The model resolver before clients were shared: a model and an HTTP client per distinct setting.

    Only ``__call__`` differs from :class:`ModelResolver` (credential and
    endpoint checks and ``seed_for`` are inherited). Built models are counted in
    ``built``. Used for OpenAI-compatible providers named by string; ready
    ``models=`` are not supported here.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._cache: OrderedDict[Any, BaseChatModel] = OrderedDict()  # one graph per event loop here
        self.built = 0

    def __call__(self, spec: ModelSpec, config: MoAConfig, *, streaming: bool, seed: int | None = None) -> Runnable:
        key = api_key(spec, config)
        settings = (
            spec.model,
            spec.temperature if spec.temperature is not None else config.temperature,
            spec.max_tokens if spec.max_tokens is not None else config.max_tokens,
            effective_base_url(spec, config),
            config.timeout,
            config.max_retries,
            streaming,
        )
        cache_key = (settings, hashlib.sha256(key.encode()).hexdigest() if key else None)
        model = self._cache.pop(cache_key, None)
        if model is None:
            model = self._new_model(*settings, api_key=key)
            self.built += 1
        self._cache[cache_key] = model  # most recently used last
        while len(self._cache) > MODEL_CACHE_SIZE:
            self._cache.popitem(last=False)
        bound: Runnable = model
        if self.seed_for(spec, seed) is not None:
            bound = model.bind(seed=seed)
        return bound if streaming else bound.with_config(tags=[TAG_NOSTREAM])

    @staticmethod
    def _new_model(
        model: str,
        temperature: float,
        max_tokens: int,
        base_url: str | None,
        timeout: float,
        max_retries: int,
        streaming: bool,
        *,
        api_key: str | None,
    ) -> BaseChatModel:
        kwargs: dict[str, Any] = {
            "temperature": temperature,
            "max_tokens": max_tokens,
            "timeout": timeout,
            "max_retries": max_retries,
            "http_async_client": DefaultAsyncHttpxClient(timeout=timeout),  # one per model
            "api_key": api_key or "not-needed",
        }
        if base_url:
            kwargs["base_url"] = base_url
        if not streaming:
            kwargs["disable_streaming"] = True
        else:
            kwargs["stream_usage"] = True
        if model.startswith("openai:") and base_url:
            kwargs["extra_body"] = {"max_tokens": kwargs.pop("max_tokens")}  # as the resolver sends it
        return init_chat_model(model, **kwargs)


def build_graph(mode: str) -> tuple[Any, Callable[[], int | None]]:
    """The compiled graph for ``mode``, and how many models it has built (``None``: not counted)."""
    if mode == "shared":
        return create_moa_graph().compile(), lambda: None
    resolvers: list[PerSettingsResolver] = []

    def make(*args: Any, **kwargs: Any) -> PerSettingsResolver:
        resolvers.append(PerSettingsResolver(*args, **kwargs))
        return resolvers[-1]

    with mock.patch.object(langgraph_moa.graph, "ModelResolver", make):
        graph = create_moa_graph().compile()
    assert len(resolvers) == 1
    return graph, lambda: resolvers[0].built


def settings_of(run: int) -> tuple[float, int]:
    """Run ``run``'s temperature and max_tokens: distinct for every run."""
    return round(0.1 * (run % 21), 1), 256 + run


class Upstream:
    """The simulated server in its own process; ``stats()`` asks it for its counts over a pipe."""

    def __init__(self, latency: float) -> None:
        self.latency = latency

    def __enter__(self) -> Upstream:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--upstream", "--latency", str(self.latency)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.base_url = self.process.stdout.readline().strip()  # printed once it listens
        if not self.base_url:
            raise RuntimeError("the simulated server did not start")
        return self

    def stats(self) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write("stats\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def __exit__(self, *exc_info: object) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()  # the server stops at the end of its input
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def serve_upstream(latency: float) -> None:
    """The ``--upstream`` process: serve, and answer each line of input with the server's counts."""
    with SimulatedOpenAIServer(default=ModelBehavior(latency=latency)) as server:
        print(server.base_url, flush=True)
        for _ in sys.stdin:
            sent = {(r.get("temperature"), r.get("max_tokens")) for r in server.requests}
            stats = {
                "calls": server.calls(),
                "settings": len(sent),
                "connections": server.connections,
                "open": server.open_connections,
                "max_open": server.max_open_connections,
            }
            print(json.dumps(stats), flush=True)


@dataclass
class Round:
    """One way's figures in one round."""

    mode: str
    cpu: float  # seconds for all runs
    calls: int
    settings: int  # distinct (temperature, max_tokens) the server saw
    connections: int
    max_open: int
    open_after_gc: int  # open at the end, after a full garbage collection (the loop still running)
    models_built: int | None
    opened_after_run: list[int] = field(default_factory=list)
    open_after_run: list[int] = field(default_factory=list)


def one_round(mode: str, runs: int, latency: float) -> Round:
    with Upstream(latency) as upstream:
        graph, built = build_graph(mode)
        progress: list[dict[str, Any]] = []

        async def workload() -> None:
            for run in range(runs):
                temperature, max_tokens = settings_of(run)
                config = MoAConfig(
                    layers=LAYERS,
                    proposers=[f"openai:{p}" for p in PROPOSERS],
                    aggregator="openai:agg",
                    base_url=upstream.base_url,
                    temperature=temperature,
                    max_tokens=max_tokens,
                )
                await graph.ainvoke({"messages": [("user", f"question {run}")]}, context=config)
                progress.append(upstream.stats())
            gc.collect()  # each way pays for the clients it leaves behind, and they close
            await asyncio.sleep(0.2)  # (no CPU) the server sees the connections that closed
            progress.append(upstream.stats())

        gc.collect()
        started = time.process_time()
        asyncio.run(workload())
        cpu = time.process_time() - started
        final = progress.pop()
    return Round(
        mode=mode,
        cpu=cpu,
        calls=final["calls"],
        settings=final["settings"],
        connections=final["connections"],
        max_open=final["max_open"],
        open_after_gc=final["open"],
        models_built=built(),
        opened_after_run=[p["connections"] for p in progress],
        open_after_run=[p["open"] for p in progress],
    )


def measure(runs: int, rounds: int, latency: float) -> dict[str, list[Round]]:
    for mode in MODES:  # warm up: imports and first-use costs paid outside the measured rounds
        one_round(mode, 2, latency)
    results: dict[str, list[Round]] = {mode: [] for mode in MODES}
    for _ in range(rounds):
        for mode in MODES:
            r = one_round(mode, runs, latency)
            if r.calls != runs * CALLS_PER_RUN or r.settings != runs:
                raise RuntimeError(f"{mode}: the server saw {r.calls} calls with {r.settings} distinct settings")
            results[mode].append(r)
    return results


def summary(rounds: list[Round]) -> dict[str, float]:
    """Medians over the rounds (per-run CPU in milliseconds)."""
    runs = len(rounds[0].opened_after_run)
    return {
        "calls": statistics.median(r.calls for r in rounds),
        "connections": statistics.median(r.connections for r in rounds),
        "max_open": statistics.median(r.max_open for r in rounds),
        "open_after_gc": statistics.median(r.open_after_gc for r in rounds),
        "cpu_ms": statistics.median(r.cpu for r in rounds) * 1000 / runs,
    }


def ratio(before: float, after: float) -> str:
    return f"{before / after:.1f}x" if after else "n/a"


def write(results: dict[str, list[Round]], runs: int, rounds: int, latency: float) -> str:
    a, b = (summary(results[mode]) for mode in MODES)
    built = results["per-settings"][0].models_built
    command = f"python benchmarks/shared_clients.py --runs {runs} --rounds {rounds} --latency {latency:g}"
    lines = [
        f"{runs} runs of a 3-layer MoA ({len(PROPOSERS)} proposers x 2 layers + a streamed aggregator, "
        f"{CALLS_PER_RUN} calls a run) in one event loop, each run with its own temperature and max_tokens; "
        f"simulated OpenAI-compatible server in another process, answering after {latency:g} s. "
        f"Medians of {rounds} rounds (the two ways alternate, each round on a fresh server and loop); "
        f"measured in one run by `{command}`.",
        "",
        "| clients | calls | connections opened | connections per run | peak open at once "
        "| open after a full GC | CPU ms per run |",
        "|---|---|---|---|---|---|---|",
    ]
    for mode, s in zip(MODES, (a, b), strict=True):
        lines.append(
            f"| {MODES[mode]} | {s['calls']:.0f} | {s['connections']:.0f} | {s['connections'] / runs:.2f} "
            f"| {s['max_open']:.0f} | {s['open_after_gc']:.0f} | {s['cpu_ms']:.1f} |"
        )
    lines.append(
        f"| (a) / (b) | | {ratio(a['connections'], b['connections'])} | "
        f"| {ratio(a['max_open'], b['max_open'])} | {ratio(a['open_after_gc'], b['open_after_gc'])} "
        f"| {ratio(a['cpu_ms'], b['cpu_ms'])} |"
    )
    lines += [
        "",
        f"(a) built {built} chat models, each with its own HTTP client, for {runs} runs; the server saw "
        f"{runs} distinct (temperature, max_tokens) in both ways. CPU seconds per round: "
        + "; ".join(f"{mode} " + ", ".join(f"{r.cpu:.2f}" for r in results[mode]) for mode in MODES)
        + ".",
    ]
    out = write_table("shared_clients", lines)

    def draw(plt: Any) -> Any:
        fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
        xs = range(1, runs + 1)
        for mode, style in zip(MODES, ("o-", "s-"), strict=True):
            first = results[mode][0]
            label = MODES[mode].split(":")[0]
            left.plot(xs, first.opened_after_run, style, markersize=3, label=label)
            right.plot(xs, first.open_after_run, style, markersize=3, label=label)
        left.set_title("connections opened so far")
        right.set_title("connections open after the run")
        for ax in (left, right):
            ax.set_xlabel("run (each with its own temperature, max_tokens)")
        left.legend(fontsize=7)
        fig.suptitle(
            f"Per-request settings, {CALLS_PER_RUN} calls a run (first round); CPU per run (a)/(b): "
            f"{ratio(a['cpu_ms'], b['cpu_ms'])}",
            fontsize=10,
        )
        return fig

    save_plot("shared_clients", draw)
    return out.read_text()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=40, help="MoA runs per way and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the medians are reported")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before the server answers a call")
    parser.add_argument("--upstream", action="store_true", help=argparse.SUPPRESS)  # the server's own process
    args = parser.parse_args()
    if args.upstream:
        serve_upstream(args.latency)
        return
    print(write(measure(args.runs, args.rounds, args.latency), args.runs, args.rounds, args.latency))


if __name__ == "__main__":
    main()
