"""A deterministic fake chat model that counts its calls and can fail."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import Field


class EchoModel(BaseChatModel):
    """Answers ``"<name>: <last user text> (<n> refs)"``; records every prompt.

    ``fail_with`` raises that exception on every call; ``delay`` sleeps first.
    """

    name: str = "echo"
    delay: float = 0.0
    fail_with: Exception | None = None
    prompts: list[list[BaseMessage]] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "echo"

    def _answer(self, messages: list[BaseMessage]) -> AIMessage:
        self.prompts.append(list(messages))
        if self.fail_with is not None:
            raise self.fail_with
        system = messages[0].text if messages and messages[0].type == "system" else ""
        refs = sum(1 for line in system.splitlines() if line[:1].isdigit() and ". " in line[:4])
        last = [m for m in messages if m.type == "human"][-1].text
        text = f"{self.name}: {last} ({refs} refs)"
        n_in = sum(len(m.text.split()) for m in messages)
        return AIMessage(
            content=text,
            usage_metadata={"input_tokens": n_in, "output_tokens": len(text.split()), "total_tokens": 0},
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: Any = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kw: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self._answer(messages))])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: Any = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kw: Any,
    ) -> ChatResult:
        if self.delay:
            await asyncio.sleep(self.delay)
        return self._generate(messages)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: Any = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kw: Any,
    ) -> Iterator[ChatGenerationChunk]:
        answer = self._answer(messages)
        for word in answer.text.split(" "):
            yield ChatGenerationChunk(message=AIMessageChunk(content=word + " "))

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: Any = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kw: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        if self.delay:
            await asyncio.sleep(self.delay)
        for chunk in self._stream(messages):
            if run_manager:
                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk
