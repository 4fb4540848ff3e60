"""Bound the model calls in flight per provider, across every run of a process.

LangGraph's ``config["max_concurrency"]`` bounds the fan-out of one run; a server
runs many at once, and a provider's account limit applies to all of them
together. :class:`ProviderConcurrencyLimit` is a LangChain callback handler: pass
it in a run's ``callbacks`` and every chat-model call of the run waits for a
slot of its provider before it is sent, and frees the slot when it ends::

    limit = ProviderConcurrencyLimit(8)
    await graph.ainvoke(inputs, {"callbacks": [limit]}, context=config)

A provider is the model's LangChain provider name (``openai``, ``together``)
plus its base URL when it has one, so a local ``openai:`` server and OpenAI
itself are bounded separately. The wait for a slot counts against the call's
timeout (``MoAConfig.timeout``).
"""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID

from langchain_core.callbacks import AsyncCallbackHandler


class ProviderConcurrencyLimit(AsyncCallbackHandler):
    """At most ``limit`` model calls in flight per provider endpoint.

    A slot is freed when the call ends (``on_llm_end``/``on_llm_error``). A call
    that is cancelled (a timeout, a client that went away) reports neither, so
    its slot is also freed when the asyncio task that made it finishes, or when
    that task starts its next model call, whichever comes first.

    Args:
        limit: Calls in flight per provider endpoint (at least 1).

    Raises:
        ValueError: ``limit`` is below 1.
    """

    run_inline = True  # the wait must happen in the calling task, before the request is sent
    raise_error = True

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        self.limit = limit
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._held: dict[UUID, tuple[str, asyncio.Task[Any] | None]] = {}

    def in_flight(self, provider: str | None = None) -> int:
        """Calls holding a slot now, for one provider key (see :meth:`provider_key`) or in total."""
        return sum(1 for key, _ in self._held.values() if provider is None or key == provider)

    @staticmethod
    def provider_key(serialized: dict[str, Any] | None, metadata: dict[str, Any] | None) -> str:
        """``"provider"`` or ``"provider@base_url"`` for a model call's callback arguments."""
        provider = (metadata or {}).get("ls_provider")
        kwargs = (serialized or {}).get("kwargs") or {}
        if not provider:
            ids = (serialized or {}).get("id") or ["unknown"]
            provider = str(ids[-1])
        base = next((v for k, v in kwargs.items() if isinstance(v, str) and k.endswith(("api_base", "base_url"))), None)
        return f"{provider}@{base}" if base else str(provider)

    async def _acquire(self, serialized: dict[str, Any] | None, run_id: UUID, metadata: dict[str, Any] | None) -> None:
        task = asyncio.current_task()
        if task is not None:  # an earlier call of this task that never ended was cancelled
            for stale in [r for r, (_, t) in self._held.items() if t is task]:
                self._release(stale)
        key = self.provider_key(serialized, metadata)
        slots = self._slots.setdefault(key, asyncio.Semaphore(self.limit))
        await slots.acquire()
        self._held[run_id] = (key, task)
        if task is not None:
            task.add_done_callback(lambda _: self._release(run_id))

    def _release(self, run_id: UUID) -> None:
        held = self._held.pop(run_id, None)
        if held is not None:
            self._slots[held[0]].release()

    async def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: Any,
        *,
        run_id: UUID,
        metadata: dict[str, Any] | None = None,
        **_: Any,
    ) -> None:
        """Wait for a slot of the model's provider."""
        await self._acquire(serialized, run_id, metadata)

    async def on_llm_start(
        self,
        serialized: dict[str, Any],
        prompts: Any,
        *,
        run_id: UUID,
        metadata: dict[str, Any] | None = None,
        **_: Any,
    ) -> None:
        """Wait for a slot (completion-style models)."""
        await self._acquire(serialized, run_id, metadata)

    async def on_llm_end(self, response: Any, *, run_id: UUID, **_: Any) -> None:
        """Free the call's slot."""
        self._release(run_id)

    async def on_llm_error(self, error: BaseException, *, run_id: UUID, **_: Any) -> None:
        """Free the call's slot."""
        self._release(run_id)
