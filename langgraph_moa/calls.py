"""How a node calls its model, under ``invoke`` and ``ainvoke`` alike.

Every node runs in both modes: ``graph.invoke``/``stream`` and
``graph.ainvoke``/``astream``. The nodes without I/O are plain functions; those
that call a model (``propose``, ``aggregate``, ``steer`` with a ranker) have one
body each, written as a generator that yields its model call
(``answer, calls = yield ModelCall(...)``). :func:`sync_and_async` makes that
body a node: under ``invoke`` a sync driver makes each call with the model's
``invoke``, under ``ainvoke`` an async one with ``ainvoke`` (with the call's
timeout and its layer's straggler cut-off), and each hands the answer (or the
error) back to the body, which decides whether a failure is recorded or raised.

A model is a chat model, called with the messages, or an agent (any other
runnable, such as a ``create_agent`` graph), called with ``{"messages": [...]}``;
either way the call's :data:`Answer` is the final answer and every model reply
it took, whose usage is summed.

The answer's text reaches the state without secrets: :func:`redacted_text` and
:func:`redacted_answer` remove the model's key (named by its ``api_key_env``,
:func:`spec_key_variables`) and any variable named like a secret.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator, Mapping
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Any, NamedTuple, cast

from langchain_core.messages import AIMessage, AnyMessage
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda
from langgraph.runtime import Runtime, get_runtime

from langgraph_moa.config import MoAConfig, ModelSpec
from langgraph_moa.errors import EmptyResponseError
from langgraph_moa.providers import redact
from langgraph_moa.providers.redacted_model import is_chat_model, redacted_message
from langgraph_moa.stragglers import LayerCutoff


class ModelCall(NamedTuple):
    """One model call a node body yields.

    Its model, messages and timeout in seconds, and the straggler cut-off of its
    layer (async runs only: see :mod:`langgraph_moa.stragglers`).
    """

    model: Runnable
    messages: list[AnyMessage]
    timeout: float
    cutoff: LayerCutoff | None = None


Answer = tuple[AIMessage, list[AIMessage]]
"""``(answer, calls)``: the final answer, and every model reply the call made
(one for a chat model; an agent's whole loop, tool-calling turns included),
whose usage is summed."""

NodeBody = Generator[ModelCall, Answer, dict[str, Any]]
"""A node body that yields its model call and returns its state update."""

NodeUpdate = dict[str, Any]

Body = Callable[[Any, Runtime[MoAConfig], RunnableConfig], NodeBody]
"""A node body's function: ``(input, runtime, config) -> NodeBody``."""


def _call(call: ModelCall) -> Answer:
    """Call a chat model, or an agent that takes and returns ``{"messages": [...]}`` (sync).

    The timeout is the provider client's own (``init_chat_model(timeout=...)``):
    a blocking call cannot be interrupted from outside.
    """
    model, messages, _, _ = call
    result = model.invoke(messages if is_chat_model(model) else {"messages": messages})
    return _answer_of(result, messages)


async def _acall(call: ModelCall) -> Answer:
    """Call a chat model, or an agent that takes and returns ``{"messages": [...]}`` (async)."""
    model, messages, timeout, cutoff = call
    guard: AbstractAsyncContextManager[Any] = cutoff.guard() if cutoff else nullcontext()
    async with guard, asyncio.timeout(timeout):
        result = await model.ainvoke(messages if is_chat_model(model) else {"messages": messages})
    return _answer_of(result, messages)


def _answer_of(result: Any, messages: list[AnyMessage]) -> Answer:
    """The answer and the model replies of a call's ``result``."""
    calls: list[AIMessage]
    if isinstance(result, Mapping):
        if not isinstance(result.get("messages"), list) or not result["messages"]:
            raise TypeError(
                f"the runnable returned a mapping without a 'messages' list (keys: {sorted(result)[:8]}); "
                "a proposer runnable must return {'messages': [...]}, as create_agent does"
            )
        # an agent: its answer is its last message; the replies it added are its calls
        added = result["messages"][len(messages) :]
        calls = [m for m in added if isinstance(m, AIMessage)]
        last = result["messages"][-1]
        result = last if isinstance(last, AIMessage) else AIMessage(content=getattr(last, "text", ""))
    elif isinstance(result, AIMessage):
        calls = [result]
    else:
        result = AIMessage(content=getattr(result, "content", str(result)))
        calls = [result]
    if not result.text.strip() and not result.tool_calls:
        raise EmptyResponseError("the model returned no text")
    return result, calls


def _run(body: NodeBody) -> NodeUpdate:
    """Run a node body, making its model calls with :func:`_call`."""
    try:
        call = next(body)
        while True:
            try:
                answer = _call(call)
            except Exception as exc:  # the body decides: record a failure or raise
                call = body.throw(exc)
            else:
                call = body.send(answer)
    except StopIteration as done:
        return done.value
    finally:
        body.close()


async def _arun(body: NodeBody) -> NodeUpdate:
    """Run a node body, making its model calls with :func:`_acall` (cancellation propagates)."""
    try:
        call = next(body)
        while True:
            try:
                answer = await _acall(call)
            except Exception as exc:  # the body decides: record a failure or raise
                call = body.throw(exc)
            else:
                call = body.send(answer)
    except StopIteration as done:
        return done.value
    finally:
        body.close()


def sync_and_async(name: str, body: Body) -> Runnable[Any, NodeUpdate]:
    """A node running ``body`` with sync calls under ``invoke`` and async calls under ``ainvoke``.

    ``RunnableLambda(func, afunc=...)`` is LangChain's public runnable with both
    paths; it passes the config, and the run's :class:`Runtime` is read with
    LangGraph's ``get_runtime``.
    """

    def sync(inp: Any, config: RunnableConfig) -> NodeUpdate:
        return _run(body(inp, get_runtime(MoAConfig), config))

    async def asynchronous(inp: Any, config: RunnableConfig) -> NodeUpdate:
        return await _arun(body(inp, get_runtime(MoAConfig), config))

    return RunnableLambda(sync, afunc=asynchronous, name=name)


def spec_key_variables(spec: ModelSpec) -> list[str]:
    """The key variable ``spec`` names (its ``api_key_env``), for ``redact`` and ``describe_error``.

    One model's; :func:`~langgraph_moa.providers.key_variables` gives every model's of a configuration.
    """
    return [spec.api_key_env] if spec.api_key_env else []


def redacted_text(answer: AIMessage, spec: ModelSpec) -> str:
    """The answer's text without secrets: see :func:`~langgraph_moa.providers.redact`."""
    return redact(answer.text, variables=spec_key_variables(spec), shapes=False)


def redacted_answer(answer: AIMessage, spec: ModelSpec) -> AIMessage:
    """The aggregator's answer with secrets removed from its text (string content or text parts).

    The model's own output is redacted already (see
    :class:`~langgraph_moa.providers.redacted_model.RedactedChatModel`); an
    agent passed as a model is not, so its answer is redacted here.
    """
    return cast(AIMessage, redacted_message(answer, spec_key_variables(spec)))
