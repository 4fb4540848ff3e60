"""The proposal cache: LangGraph's node cache on the ``propose`` node.

The ``propose`` node carries a :class:`~langgraph.types.CachePolicy` whose key
covers everything that shapes a proposer's answer. It does nothing until you
compile the graph with a cache::

    from langgraph.cache.memory import InMemoryCache

    graph = create_moa_graph().compile(cache=InMemoryCache())

or a persistent one (``proposal_cache()`` opens a SQLite file in the data
directory; ``moa ask --cache`` uses it). A graph compiled with a cache makes no
proposer call for a turn it has seen: LangGraph replays the cached writes (the
proposal and its usage record) and marks the task ``cached`` in the ``updates``
stream.

What the key covers (:func:`proposal_cache_key`): the proposer's model and its
effective settings (temperature, max_tokens, seed, base_url), the messages, the
references, the aggregation prompt, and the layer and slot. Layer and slot are
in the key because the cached writes carry them: a hit must land in the same
``(layer, slot)`` of the ``proposals`` reducer, so two slots of one model never
share an entry (with temperature > 0 they are meant to be different samples).

What it does not cover: a ready model passed to ``create_moa_graph(models=...)``
is known by its name only, so changing its own settings needs a new cache.

With temperature > 0 a cached sample is reused: the same turn gets the same
proposals instead of fresh samples. Use a cache for repeated evaluation,
development and retries, not where you want new samples each time.

Failures are never cached: ``propose`` raises :class:`ProposerFailed`, which
LangGraph does not cache, and the node's error handler (:func:`record_failure`)
records it as a :class:`~langgraph_moa.state.Failure` without cancelling the
layer's other proposers. The next identical turn calls that proposer again.

Cached calls cost nothing: a replayed usage record carries the ``turn_id`` of
the turn that made the call, so the usage summary counts it in
``cached_calls`` and leaves its tokens out of the totals and the cost.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from langchain_core.messages import BaseMessage
from langgraph.cache.sqlite import SqliteCache
from langgraph.errors import NodeError
from langgraph.types import CachePolicy, Command

from langgraph_moa.config import MoAConfig, ModelSpec
from langgraph_moa.errors import MoAError
from langgraph_moa.node_names import JOIN_NODE
from langgraph_moa.paths import data_dir
from langgraph_moa.prompts import answer_format_note
from langgraph_moa.state import Failure

CACHE_FILE = "proposal-cache.sqlite"
"""Name of the SQLite proposal cache in the data directory."""


def answer_settings(spec: ModelSpec, cfg: MoAConfig, *, seed: int | None = None) -> dict[str, Any]:
    """The settings of ``spec`` that shape its answers, with the run's defaults applied.

    Part of each proposer's ``Send`` payload, so the cache key sees them. ``seed``
    is the call's own seed (:func:`~langgraph_moa.seeds.slot_seed`): without a
    ``MoAConfig.seed`` every run draws fresh seeds, so the cache hits only for
    runs that set one.
    """
    settings: dict[str, Any] = {
        "model": spec.model,
        "temperature": spec.temperature if spec.temperature is not None else cfg.temperature,
        "max_tokens": spec.max_tokens if spec.max_tokens is not None else cfg.max_tokens,
        "seed": seed,
        "base_url": spec.base_url or (cfg.base_url if spec.provider == "openai" else None),
        "aggregation_prompt": cfg.aggregation_prompt,
    }
    # proposers are shown the aggregator's tools and the answer's schema: they shape the proposal too
    if note := answer_format_note(cfg.aggregator_tools, cfg.aggregator_response_format):
        settings["answer_format"] = note
    return settings


def _message_key(message: Any) -> Any:
    if isinstance(message, BaseMessage):
        # the id is left out: the same conversation re-sent by a client gets new ids
        return [message.type, message.content, getattr(message, "tool_calls", None), message.name]
    return message  # a ("role", "text") tuple as given by the caller


def proposal_cache_key(inp: Any) -> str:
    """The cache key of one proposer task: a hash of what shapes its answer.

    Covers ``settings`` (model, temperature, max_tokens, seed, base_url,
    aggregation prompt), ``messages``, ``references``, ``layer`` and ``slot``;
    not the turn id or the config fingerprint (an unrelated setting, such as a
    timeout, must not empty the cache).
    """
    if not isinstance(inp, Mapping) or "settings" not in inp:
        # LangGraph also calls the key function when it draws the graph, with other input
        return hashlib.sha256(repr(inp).encode()).hexdigest()
    material = {
        "settings": inp["settings"],
        "messages": [_message_key(m) for m in inp["messages"]],
        "references": list(inp["references"]),
        "layer": inp["layer"],
        "slot": inp["slot"],
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()


PROPOSAL_CACHE_POLICY = CachePolicy(key_func=proposal_cache_key)
"""The ``propose`` node's cache policy (entries never expire)."""


class ProposerFailed(Exception):
    """A proposer call failed; raised by ``propose`` so the failure is not cached.

    :func:`record_failure`, the node's error handler, turns it into a recorded
    :class:`~langgraph_moa.state.Failure`; it never reaches the caller.
    """

    def __init__(self, failure: Failure) -> None:
        super().__init__(f"{failure['model']} (layer {failure['layer']}, slot {failure['slot']}): {failure['message']}")
        self.failure = failure

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:  # picklable with its record
        return (type(self), (self.failure,))


_HANDLED: deque[BaseException] = deque(maxlen=4096)
"""The failures handled last, kept alive. LangGraph 1.2's runner remembers a handled
exception by its ``id()`` for the rest of the run and does not raise an exception
with a remembered id. Once a handled exception is freed, a later one (such as the
``LayerFailedError`` of the same run) can be allocated at the same address, get
the same id, and be swallowed: the run would end without its error. Holding the
handled exceptions keeps their ids taken."""


def record_failure(inp: Any, error: NodeError) -> Command[str]:
    """The ``propose`` node's error handler: record a :class:`ProposerFailed` as data.

    It goes on to ``join_layer`` as the proposer would have (which then checks
    ``min_proposals``). Any other exception (a configuration error, a bug) is
    raised again and stops the run, as it would without the handler.
    """
    if isinstance(error.error, ProposerFailed):
        error.error.__traceback__ = None  # handled: keep the record, not the frames
        _HANDLED.append(error.error)
        return Command(update={"failures": [error.error.failure]}, goto=JOIN_NODE)
    raise error.error


class CacheError(MoAError):
    """The proposal cache's SQLite file cannot be used; the message names the file and what to do."""


def _unusable(path: Path, exc: sqlite3.DatabaseError) -> CacheError:
    return CacheError(
        f"the proposal cache {path} cannot be used ({exc}): delete or move that file and run again "
        "(the cache is rebuilt as proposals come), or run without --cache"
    )


class _ProposalCache(SqliteCache[Any]):
    """LangGraph's SQLite cache, whose database errors name its file."""

    def __init__(self, path: Path) -> None:
        self.file = path
        try:
            super().__init__(path=str(path))
        except sqlite3.DatabaseError as exc:
            raise _unusable(path, exc) from None

    def get(self, keys: Any) -> Any:
        try:
            return super().get(keys)
        except sqlite3.DatabaseError as exc:
            raise _unusable(self.file, exc) from None

    def set(self, pairs: Any) -> None:
        try:
            super().set(pairs)
        except sqlite3.DatabaseError as exc:
            raise _unusable(self.file, exc) from None

    def clear(self, namespaces: Any = None) -> None:
        try:
            super().clear(namespaces)
        except sqlite3.DatabaseError as exc:
            raise _unusable(self.file, exc) from None


def proposal_cache(path: str | Path | None = None) -> SqliteCache[Any]:
    """A persistent proposal cache: SQLite at ``path``, by default in the data directory.

    Raises:
        CacheError: the file is not a usable SQLite database (corrupt, or another
            kind of file); the message names it. Reading or writing it later
            raises the same error.

    Example:
        ```python
        graph = create_moa_graph().compile(cache=proposal_cache())
        ```
    """
    target = Path(path) if path is not None else data_dir() / CACHE_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    return _ProposalCache(target)
