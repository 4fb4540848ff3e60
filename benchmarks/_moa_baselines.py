"""Shared pieces of the latency benchmarks: simulated rates and the MoA baselines.

- :func:`openai_moa`: MoA written directly on the ``openai`` SDK, the way the
  reference implementation does it (every proposer of a layer awaited with
  ``asyncio.gather``, or called one after another; the aggregator streamed).
- :func:`graph_moa`: this project's graph, timed from the same client side.

Both report the time to the final answer's first token and to its end; the
graph also reports the first ``provisional_token`` when provisional answers are on.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from openai import AsyncOpenAI

from langgraph_moa import MoAConfig
from langgraph_moa.prompts import AGGREGATE_AND_SYNTHESIZE
from langgraph_moa.stream import is_aggregator_token
from langgraph_moa.testing import ModelBehavior

FIRST_TOKEN = 0.3  # seconds to the first token
TOKENS_PER_SECOND = 50.0


def text_of(tokens: int) -> str:
    """A reply of ``tokens`` words (the simulated server counts words as tokens)."""
    return " ".join(f"w{i}" for i in range(tokens))


def proposer(tokens: int, slowdown: float = 1.0) -> ModelBehavior:
    """A proposer answering ``tokens`` tokens at the simulated rate (proposers are not streamed).

    A non-streamed answer arrives whole when its last token is generated.
    """
    return ModelBehavior(latency=(FIRST_TOKEN + tokens / TOKENS_PER_SECOND) * slowdown, reply=text_of(tokens))


def aggregator(tokens: int) -> ModelBehavior:
    """An aggregator streaming ``tokens`` tokens at the simulated rate."""
    return ModelBehavior(latency=FIRST_TOKEN, chunk_delay=1 / TOKENS_PER_SECOND, reply=text_of(tokens))


@dataclass
class Timing:
    """Seconds from the request to the first token of the answer, and to its end."""

    first_token: float
    total: float
    provisional_first_token: float | None = None


def _with_references(messages: list[dict[str, Any]], references: list[str]) -> list[dict[str, Any]]:
    if not references:
        return messages
    system = AGGREGATE_AND_SYNTHESIZE + "\n" + "\n".join(f"{i}. {r}" for i, r in enumerate(references, 1))
    return [{"role": "system", "content": system}, *messages]


async def openai_moa(client: AsyncOpenAI, layers: list[list[str]], agg: str, *, parallel: bool) -> Timing:
    """Reference-style MoA on the openai SDK: each layer gathered (or sequential), the aggregator streamed."""
    messages = [{"role": "user", "content": "q"}]
    started = time.perf_counter()
    references: list[str] = []

    async def ask(model: str) -> str:
        reply = await client.chat.completions.create(
            model=model, messages=_with_references(messages, references), temperature=0.7, max_tokens=512
        )  # type: ignore[call-overload]
        return reply.choices[0].message.content or ""

    for layer in layers:
        if parallel:
            answers = await asyncio.gather(*(ask(m) for m in layer))
        else:
            answers = [await ask(m) for m in layer]
        references = list(answers)
    first = None
    stream = await client.chat.completions.create(
        model=agg, messages=_with_references(messages, references), temperature=0.7, max_tokens=512, stream=True
    )  # type: ignore[call-overload]
    async for chunk in stream:
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter() - started
    total = time.perf_counter() - started
    return Timing(first if first is not None else total, total)


async def graph_moa(graph: Any, config: MoAConfig, thread: dict[str, Any] | None = None) -> Timing:
    """This project's graph, streamed as a chat client would read it (``thread``: a checkpointer's config)."""
    started = time.perf_counter()
    first = provisional = None
    async for mode, chunk in graph.astream(
        {"messages": [("user", "q")]}, thread, context=config, stream_mode=["messages", "custom"]
    ):
        now = time.perf_counter() - started
        if mode == "messages":
            token, metadata = chunk
            if first is None and token.text and is_aggregator_token(metadata):
                first = now
        elif provisional is None and chunk.get("event") == "provisional_token" and chunk["text"]:
            provisional = now
    total = time.perf_counter() - started
    return Timing(first if first is not None else total, total, provisional)
