"""A chat model whose every output, streamed or not, has its secrets removed at the source.

The graph's models are wrapped in :class:`RedactedChatModel` by the
:class:`~langgraph_moa.providers.ModelResolver`. The wrapper calls the
provider's model out of sight of the run's callbacks, and emits its tokens and
its answer only after a :class:`~langgraph_moa.providers.StreamRedactor` has
seen them. Whatever watches the run's model calls through callbacks then sees
only redacted text: LangGraph's ``messages`` stream mode (the LangGraph API's
``messages-tuple``), ``astream_events`` and ``astream_log``, ``debug``, the
values and checkpoints, in process and on every server. The concatenation of a
call's streamed chunks is its redacted answer.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LangSmithParams
from langchain_core.messages import AIMessageChunk, BaseMessage, BaseMessageChunk
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig, RunnableWithFallbacks
from langchain_core.runnables.base import RunnableBinding, RunnableBindingBase
from langchain_core.runnables.config import var_child_runnable_config
from pydantic import ConfigDict

from langgraph_moa.providers.redaction import StreamRedactor, redact

_DETACHED: RunnableConfig = {"callbacks": []}
"""The provider's call runs without the run's callbacks: only the wrapper's redacted output is seen."""


@contextmanager
def _detached() -> Iterator[None]:
    """No runnable config inherited from the caller (its callbacks would see the provider's raw tokens).

    LangChain has no public way to call a runnable without the callbacks of the
    runnable that calls it: a ``RunnableBinding`` (a bound model) merges its
    config with the caller's, read from ``var_child_runnable_config``, whatever
    config is passed. So that context variable is cleared for the call
    (tests/test_layout.py lists this use; tests/test_secrets.py fails if the
    provider's tokens reach the run's stream again).
    """
    token = var_child_runnable_config.set(None)
    try:
        yield
    finally:
        var_child_runnable_config.reset(token)


def _redacted_content(content: Any, variables: Sequence[str]) -> Any:
    if isinstance(content, str):
        return redact(content, variables=variables, shapes=False)
    return [
        redact(part, variables=variables, shapes=False)
        if isinstance(part, str)
        else {**part, "text": redact(part["text"], variables=variables, shapes=False)}
        if isinstance(part, dict) and isinstance(part.get("text"), str)
        else part
        for part in content
    ]


def redacted_message(message: BaseMessage, variables: Sequence[str] = ()) -> BaseMessage:
    """``message`` with secrets removed from its text (string content or text parts) and its tool-call arguments.

    A key an upstream echoes into a tool call's arguments must reach neither the
    tool nor the state.
    """
    update: dict[str, Any] = {"content": _redacted_content(message.content, variables)}
    calls = getattr(message, "tool_calls", None)
    if calls:
        update["tool_calls"] = [
            {**call, "args": json.loads(redact(json.dumps(call["args"]), variables=variables, shapes=False))}
            for call in calls
        ]
    return message.model_copy(update=update)


def _as_chunk(message: BaseMessage) -> BaseMessageChunk:
    """``message`` as a chunk: a model without a stream of its own yields its whole answer as one message."""
    if isinstance(message, BaseMessageChunk):
        return message
    fields = message.model_dump(exclude={"type", "tool_calls", "invalid_tool_calls"})
    calls = getattr(message, "tool_calls", None) or []
    chunks = [
        tool_call_chunk(name=call["name"], args=json.dumps(call["args"]), id=call.get("id"), index=index)
        for index, call in enumerate(calls)
    ]
    return AIMessageChunk(**fields, tool_call_chunks=chunks)


def _fed(chunk: BaseMessage, redactor: StreamRedactor) -> BaseMessageChunk:
    """``chunk`` with its text passed through ``redactor`` (what is certain by now)."""
    chunk = _as_chunk(chunk)
    content = chunk.content
    if isinstance(content, str):
        return chunk.model_copy(update={"content": redactor.feed(content)})
    parts = [
        redactor.feed(part)
        if isinstance(part, str)
        else {**part, "text": redactor.feed(part["text"])}
        if isinstance(part, dict) and isinstance(part.get("text"), str)
        else part
        for part in content
    ]
    return chunk.model_copy(update={"content": parts})


def is_chat_model(model: Runnable[Any, Any]) -> bool:
    """Whether ``model`` is a chat model (which takes messages), however wrapped.

    Wrappers seen through: ``bind_tools``, ``with_config``, ``with_retry``, ``with_fallbacks``.
    """
    return _chat_model_in(model) is not None


def _chat_model_in(model: Runnable[Any, Any]) -> BaseChatModel | None:
    while True:
        if isinstance(model, RunnableBindingBase):
            model = model.bound
        elif isinstance(model, RunnableWithFallbacks):
            model = model.runnable
        else:
            return model if isinstance(model, BaseChatModel) else None


def redacted_model(
    model: Runnable[Any, Any], variables: Sequence[str] = (), *, streams: bool = True
) -> RedactedChatModel:
    """``model`` (a chat model, bound or configured) wrapped in a :class:`RedactedChatModel` of the same name."""
    return RedactedChatModel(
        model=model, variables=tuple(variables), streams=streams, name=model.get_name(), cache=False
    )


class RedactedChatModel(BaseChatModel):
    """``model`` with secrets removed from everything it returns or streams.

    Attributes:
        model: The provider's chat model (bound or configured as the run needs).
        variables: More environment variables whose values are secrets (the
            model's ``api_key_env``): see :func:`~langgraph_moa.providers.redact`.
        streams: Whether the call may stream (the aggregator's); proposers' calls do not.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model: Runnable[Any, Any]
    variables: tuple[str, ...] = ()
    streams: bool = True

    @property
    def _llm_type(self) -> str:
        inner = _chat_model_in(self.model)
        return inner._llm_type if inner is not None else "moa-redacted"

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        inner = _chat_model_in(self.model)
        return (
            inner._get_ls_params(stop=stop, **kwargs) if inner is not None else super()._get_ls_params(stop, **kwargs)
        )

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Runnable[Any, Any]:
        """The provider's model with ``tools`` bound, still redacted (tool-call arguments too, in the answer).

        The per-call settings bound to the provider's model (temperature,
        max_tokens, seed) stay bound: tools are bound under them, not in their place.
        """
        model = self.model
        if isinstance(model, RunnableBinding):
            bound: Runnable[Any, Any] = model.bound.bind_tools(tools, **kwargs)  # type: ignore[attr-defined]
            settings = {
                k: v for k, v in model.kwargs.items() if k not in ("tools", "tool_choice", "parallel_tool_calls")
            }
            bound = bound.bind(**settings) if settings else bound
            bound = bound.with_config(model.config) if model.config else bound
        else:
            bound = model.bind_tools(tools, **kwargs)  # type: ignore[attr-defined]
        return self.model_copy(update={"model": bound})

    def _streaming_disabled(self, **kwargs: Any) -> bool:
        return not self.streams or super()._streaming_disabled(**kwargs)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        with _detached():
            answer = self.model.invoke(messages, _DETACHED, stop=stop, **kwargs)
        return ChatResult(generations=[ChatGeneration(message=redacted_message(answer, self.variables))])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        with _detached():
            answer = await self.model.ainvoke(messages, _DETACHED, stop=stop, **kwargs)
        return ChatResult(generations=[ChatGeneration(message=redacted_message(answer, self.variables))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        redactor = StreamRedactor(variables=self.variables)
        with _detached():
            chunks = self.model.stream(messages, _DETACHED, stop=stop, **kwargs)
        try:
            while True:
                with _detached():  # each step of the provider's stream runs detached
                    chunk = next(chunks, None)
                if chunk is None:
                    break
                yield ChatGenerationChunk(message=_fed(chunk, redactor))
        finally:
            with _detached():
                chunks.close()  # type: ignore[attr-defined]  # a generator: closes the upstream call
        rest = redactor.flush()
        if rest:  # the text held back: the model's callbacks get it as one more token
            yield ChatGenerationChunk(message=AIMessageChunk(content=rest))

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        redactor = StreamRedactor(variables=self.variables)
        with _detached():
            chunks = self.model.astream(messages, _DETACHED, stop=stop, **kwargs)
        try:
            while True:
                with _detached():  # each step of the provider's stream runs detached
                    chunk = await anext(chunks, None)
                if chunk is None:
                    break
                yield ChatGenerationChunk(message=_fed(chunk, redactor))
        finally:
            with _detached():
                await chunks.aclose()  # type: ignore[attr-defined]  # an async generator: closes the upstream call
        rest = redactor.flush()
        if rest:  # the text held back: the model's callbacks get it as one more token
            yield ChatGenerationChunk(message=AIMessageChunk(content=rest))
