"""``ChatMoA``: the whole Mixture-of-Agents graph as one LangChain chat model.

Use it wherever a chat model goes: an LCEL chain, ``create_agent``, a node of your
own graph, ``with_structured_output``::

    from langgraph_moa import ChatMoA

    llm = ChatMoA(preset="moa-lite")
    llm.invoke("What are three fun things to do in San Francisco?").content

Each call runs the MoA graph (proposer layers, then the aggregator) on the
messages it is given. Tools bound with :meth:`ChatMoA.bind_tools` go to the
final aggregator, so MoA can drive a tool-calling agent loop: the proposers see
the tool calls and results as text and write their answers, and the aggregator
decides on the next tool call or the final answer.

What comes back:
    * the aggregator's ``AIMessage`` (text or tool calls);
    * ``usage_metadata``: tokens of every model call of the run, proposers included
      (what the run cost), not only the aggregator's;
    * ``response_metadata["moa"]``: the proposals, failures and the
      ``usage_summary`` (per layer, per model, cost estimate).

``invoke(..., response_format=...)`` (OpenAI's dict, a pydantic class or a JSON
schema) makes the aggregator answer with that JSON, checked against the schema
(see :mod:`langgraph_moa.aggregator_output`); a pydantic class is parsed into
``additional_kwargs["parsed"]``, as ``ChatOpenAI`` does.

Streaming yields the aggregator's tokens as they arrive; the last chunk carries
the run's usage and the MoA details.

A call runs the graph in isolation: it does not join a LangGraph run it is called
from (no shared checkpointer or stream), so inside your own graph it behaves like
any other chat model, and its tokens reach your ``stream_mode="messages"`` once.
Use the compiled graph as a subgraph instead when you want its layers in your
graph's state and checkpoints.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import aclosing
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    BaseCallbackHandler,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.base import LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, ToolCallChunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import set_config_context
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from langgraph_moa.aggregator_output import check_json_schema
from langgraph_moa.config import MoAConfig
from langgraph_moa.errors import ConfigError
from langgraph_moa.graph import create_moa_graph
from langgraph_moa.presets import get_preset
from langgraph_moa.stream import is_aggregator_token


class ChatMoA(BaseChatModel):
    """A chat model whose every call is a Mixture-of-Agents run.

    Args:
        config: The MoA configuration (models, layers, limits). Default: ``preset``'s.
        preset: A preset name (see ``moa presets``) used when ``config`` is not given;
            with neither, ``MoAConfig()``'s defaults.
        models: Ready chat models or agents by ``"provider:model"`` name, as for
            :func:`~langgraph_moa.create_moa_graph` (an agent with tools as a proposer,
            a custom client, a fake in tests).
        temperature, max_tokens, timeout, max_retries: When set, override the
            config's values for every model call of the run.
        stop: Stop sequences: the answer ends before the first one it contains.

    A call may pass ``model="<preset>"`` (as ``llm.invoke(..., model="moa-lite")``
    or through ``bind``) to run that preset instead, with the same overrides.

    Raises:
        ConfigError: at construction, when the config, preset or overrides are
            invalid (the message names the field).

    Example:
        ```python
        from langgraph_moa import ChatMoA, MoAConfig

        llm = ChatMoA(config=MoAConfig(
            proposers=["openai:gpt-4o-mini", "together:Qwen/Qwen2.5-72B-Instruct-Turbo"],
            aggregator="openai:gpt-4o",
        ))
        agent = create_agent(llm, tools=[get_weather])   # the aggregator calls the tools
        ```
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    config: MoAConfig | None = None
    preset: str | None = None
    models: Mapping[str, Any] | None = Field(default=None, exclude=True)
    temperature: float | None = None
    max_tokens: int | None = None
    timeout: float | None = None
    max_retries: int | None = None
    stop: list[str] | None = None

    _graph: Any = PrivateAttr(default=None)
    _moa_config: MoAConfig = PrivateAttr()

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # built here, not in a validator, so a bad setting raises ConfigError itself
        base = self.config if self.config is not None else _preset(self.preset)
        self._moa_config = _with(base, **self._overrides())
        if self._moa_config.review:
            raise ConfigError(
                "ChatMoA runs without a checkpointer, so it cannot pause for review: "
                "use create_moa_graph() with a checkpointer for review=True"
            )
        self._graph = create_moa_graph(models=self.models).compile(name="moa")

    def _overrides(self, call: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The run-wide overrides: this call's keyword arguments, else the model's own."""
        call = call or {}
        return {
            k: call[k] if call.get(k) is not None else getattr(self, k)
            for k in _OVERRIDES
            if call.get(k) is not None or getattr(self, k) is not None
        }

    @property
    def moa_config(self) -> MoAConfig:
        """The configuration every call runs with (overrides applied)."""
        return self._moa_config

    @property
    def _llm_type(self) -> str:
        return "moa"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"moa_config": self._moa_config.model_dump(mode="json")}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        cfg = self._moa_config
        model = kwargs.get("model")
        params = LangSmithParams(
            ls_provider="moa",
            ls_model_name=model if isinstance(model, str) else (self.preset or cfg.aggregator.model),
            ls_model_type="chat",
            ls_temperature=cfg.temperature,
            ls_max_tokens=cfg.max_tokens,
        )
        if stop or self.stop:
            params["ls_stop"] = stop or self.stop
        return params

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | dict[str, Any] | bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind ``tools`` to the final aggregator.

        Args:
            tools: Tools in any form LangChain converts to an OpenAI tool schema.
            tool_choice: ``"auto"``, ``"any"`` (must call a tool), ``"none"``, a
                tool name, or ``True`` (same as ``"any"``).
            **kwargs: Passed to ``bind`` with the tools: ``parallel_tool_calls``
                (as ``ChatOpenAI`` takes it), ``response_format``, ...

        The aggregator's call keeps its temperature, max_tokens and seed; the
        proposers are shown the tools as text.
        """
        if tool_choice is True:
            tool_choice = "any"
        elif tool_choice is False:
            tool_choice = None
        schemas = [convert_to_openai_tool(t) for t in tools]
        return self.bind(tools=schemas, tool_choice=tool_choice, **kwargs)

    # -- running the graph -------------------------------------------------------------

    def _run_config(self, kwargs: Mapping[str, Any]) -> MoAConfig:
        """The call's config: a ``model=`` preset name replaces the configured models.

        Raises:
            ValueError: a keyword argument ChatMoA cannot honour (it is not ignored).
        """
        unknown = sorted(k for k, v in kwargs.items() if k not in _CALL_ARGUMENTS and v is not None)
        if unknown:
            raise ValueError(
                f"ChatMoA does not support {', '.join(unknown)}; it takes tools, tool_choice, "
                f"parallel_tool_calls, response_format, model (a preset), stop and {', '.join(_OVERRIDES)}"
            )
        cfg = self._moa_config
        if isinstance(kwargs.get("model"), str):
            cfg = _with(_preset(kwargs["model"]), **self._overrides(kwargs))
        elif any(kwargs.get(k) is not None for k in _OVERRIDES):
            cfg = _with(cfg, **self._overrides(kwargs))
        aggregator: dict[str, Any] = {}
        if kwargs.get("tools"):
            aggregator["aggregator_tools"] = list(kwargs["tools"])
            aggregator["aggregator_tool_choice"] = kwargs.get("tool_choice")
        if kwargs.get("parallel_tool_calls") is not None:
            aggregator["aggregator_parallel_tool_calls"] = kwargs["parallel_tool_calls"]
        if kwargs.get("response_format") is not None:
            aggregator["aggregator_response_format"] = _response_format(kwargs["response_format"]) or None
        return _with(cfg, **aggregator)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        cfg = self._run_config(kwargs)
        state: dict[str, Any] = {}
        for mode, data in self._sync_events({"messages": list(messages)}, cfg):
            if mode == "values":
                state = data
        return self._result(state, stop, cfg, kwargs.get("response_format"))

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        cfg = self._run_config(kwargs)
        state = await _isolated(self._graph.ainvoke({"messages": list(messages)}, context=cfg))
        return self._result(state, stop, cfg, kwargs.get("response_format"))

    def _result(
        self, state: Mapping[str, Any], stop: list[str] | None, cfg: MoAConfig, response_format: Any = None
    ) -> ChatResult:
        answer = truncate_at_stop(state["messages"][-1], stop or self.stop)
        if isinstance(response_format, type) and issubclass(response_format, BaseModel) and not answer.tool_calls:
            # as ChatOpenAI does: the answer parsed into the class (the graph checked it against its schema)
            parsed = response_format.model_validate_json(answer.text)
            answer = answer.model_copy(update={"additional_kwargs": {**answer.additional_kwargs, "parsed": parsed}})
        return ChatResult(generations=[ChatGeneration(message=_with_details(answer, state, cfg))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        cfg = self._run_config(kwargs)
        answer = _Answer(stop or self.stop, cfg)
        for event in self._sync_events({"messages": list(messages)}, cfg):
            if (chunk := answer.feed(*event)) is not None:
                if run_manager:
                    run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                yield chunk
        for chunk, notify in answer.finish():
            if run_manager and notify:
                run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk

    def _sync_events(self, graph_input: dict[str, Any], cfg: MoAConfig) -> Iterator[tuple[str, Any]]:
        """The graph's sync ``stream`` (``messages`` and ``values``), run on a thread of its own.

        The caller waits on a queue, so Ctrl-C reaches it at once. A blocking call cannot
        be cancelled: when the caller stops (Ctrl-C, an error, or closing the stream),
        the run stops at the aggregator's next token and starts no new model call.
        Closing waits for that; an interrupt does not.
        """
        closing = _StopOnClose()
        items: queue.Queue[tuple[str, Any]] = queue.Queue()

        def run() -> None:
            try:
                stream_mode = ["messages", "values"]
                for event in self._graph.stream(
                    graph_input, {"callbacks": [closing]}, context=cfg, stream_mode=stream_mode
                ):
                    items.put(("item", event))
            except BaseException as exc:  # handed to the caller, which re-raises it
                items.put(("error", exc))
            else:
                items.put(("end", None))

        worker = threading.Thread(target=_detached_context().run, args=(run,), name="moa-run", daemon=True)
        worker.start()
        try:
            while True:
                kind, value = items.get()
                if kind == "item":
                    yield value
                elif kind == "error":
                    raise value
                else:
                    return
        except GeneratorExit:
            closing.closed.set()
            worker.join()
            raise
        finally:
            closing.closed.set()

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        cfg = self._run_config(kwargs)
        answer = _Answer(stop or self.stop, cfg)
        stream = self._graph.astream({"messages": list(messages)}, context=cfg, stream_mode=["messages", "values"])
        async with aclosing(_isolated_iter(stream)) as events:  # type: ignore[type-var]  # closing this stream stops the run
            async for event in events:
                if (chunk := answer.feed(*event)) is not None:
                    if run_manager:
                        await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                    yield chunk
        for chunk, notify in answer.finish():
            if run_manager and notify:
                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk


class _Answer:
    """Turns the graph's ``messages`` and ``values`` stream into ChatMoA's chunks.

    Only the aggregator's tokens are kept, cut before the first stop sequence;
    the last chunk carries the run's usage and the MoA details.
    """

    def __init__(self, stop: Sequence[str] | None, cfg: MoAConfig) -> None:
        self.stop = stop
        self.cfg = cfg
        self.cut = StopCutter(stop)
        self.final: dict[str, Any] = {}
        self.streamed = False

    def feed(self, mode: str, data: Any) -> ChatGenerationChunk | None:
        """The chunk to send for one stream event, if any."""
        if mode == "values":
            self.final = data
            return None
        token, metadata = data
        if not is_aggregator_token(metadata) or not isinstance(token, AIMessageChunk):
            return None
        text = self.cut.feed(token.text) if isinstance(token.content, str) else token.text
        if text is None:
            return None
        chunk = AIMessageChunk(content=text, tool_call_chunks=token.tool_call_chunks, id=token.id)
        if not text and not chunk.tool_call_chunks:
            return None
        self.streamed = True
        return ChatGenerationChunk(message=chunk)

    def finish(self) -> list[tuple[ChatGenerationChunk, bool]]:
        """The closing chunks, each with whether it is a new token to report."""
        out: list[tuple[ChatGenerationChunk, bool]] = []
        tail = self.cut.flush()
        if not self.streamed and self.final.get("messages"):
            # an aggregator that did not stream its tokens (a ready model or agent without
            # streaming): its whole answer is the last chunk
            answer = truncate_at_stop(self.final["messages"][-1], self.stop)
            tail = answer.text
            if answer.tool_calls:
                calls: list[ToolCallChunk] = [
                    {"name": c["name"], "args": json.dumps(c["args"]), "id": c["id"], "index": i}
                    for i, c in enumerate(answer.tool_calls)
                ]
                out.append((ChatGenerationChunk(message=AIMessageChunk(content="", tool_call_chunks=calls)), False))
        details = _with_details(AIMessage(content=""), self.final, self.cfg)
        last = AIMessageChunk(
            content=tail,
            usage_metadata=details.usage_metadata,
            response_metadata=details.response_metadata,
            chunk_position="last",
        )
        out.append((ChatGenerationChunk(message=last), bool(tail)))
        return out


class _StopOnClose(BaseCallbackHandler):
    """Stops a sync run whose stream was closed.

    Blocking calls cannot be cancelled, so the aggregator's next token and any new
    model call raise instead.
    """

    raise_error = True

    def __init__(self) -> None:
        self.closed = threading.Event()

    def _check(self) -> None:
        if self.closed.is_set():
            raise RuntimeError("stopping the run: its ChatMoA call was closed or interrupted")

    def on_llm_new_token(self, *args: Any, **kwargs: Any) -> None:
        self._check()

    def on_chat_model_start(self, serialized: dict[str, Any], messages: Any, **kwargs: Any) -> None:
        self._check()

    def on_llm_start(self, serialized: dict[str, Any], prompts: list[str], **kwargs: Any) -> None:
        self._check()


_OVERRIDES = ("temperature", "max_tokens", "timeout", "max_retries")
_CALL_ARGUMENTS = {
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "model",
    "stop",
    "ls_structured_output_format",
    *_OVERRIDES,
}


def _response_format(value: Any) -> dict[str, Any] | None:
    """OpenAI's ``response_format`` for what ``ChatOpenAI`` accepts: that dict, a pydantic class or a JSON schema.

    Raises:
        ConfigError: ``value`` is none of these, or its schema is not a valid JSON schema.
    """
    if isinstance(value, type) and issubclass(value, BaseModel):
        fmt: dict[str, Any] = {
            "type": "json_schema",
            "json_schema": {"name": value.__name__, "schema": value.model_json_schema()},
        }
    elif isinstance(value, Mapping) and value.get("type") in ("json_object", "json_schema", "text"):
        fmt = dict(value)
    elif isinstance(value, Mapping):  # a bare JSON schema
        fmt = {"type": "json_schema", "json_schema": {"name": str(value.get("title") or "answer"), "schema": value}}
    else:
        raise ConfigError(
            f"response_format must be a pydantic model class, a JSON schema or OpenAI's response_format dict, "
            f"not {type(value).__name__}"
        )
    if fmt["type"] == "text":
        return None
    if fmt["type"] == "json_schema":
        try:
            check_json_schema((fmt.get("json_schema") or {}).get("schema"), "response_format.json_schema.schema")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    return fmt


def _preset(name: str | None) -> MoAConfig:
    try:
        return get_preset(name) if name else MoAConfig()
    except KeyError as exc:
        raise ConfigError(str(exc.args[0])) from None


def _with(config: MoAConfig, **updates: Any) -> MoAConfig:
    """``config`` with ``updates`` applied and validated again."""
    if not updates:
        return config
    try:
        return MoAConfig.model_validate({**config.model_dump(), **updates})
    except ValueError as exc:
        raise ConfigError(f"invalid ChatMoA setting: {exc}") from None


def _with_details(answer: AIMessage, state: Mapping[str, Any], cfg: MoAConfig) -> AIMessage:
    """``answer`` with the run's total usage and the MoA details attached."""
    summary = state.get("usage_summary") or {}
    total = summary.get("total") or {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
    details = {
        "proposals": list(state.get("proposals", [])),
        "failures": list(state.get("failures", [])),
        "usage_summary": summary,
    }
    return answer.model_copy(
        update={
            "usage_metadata": {
                "input_tokens": int(total["input_tokens"]),
                "output_tokens": int(total["output_tokens"]),
                "total_tokens": int(total["total_tokens"]),
            },
            "response_metadata": {
                "model_name": cfg.aggregator.model,
                **answer.response_metadata,
                "model_provider": "moa",
                "moa": details,
            },
        }
    )


def truncate_at_stop(answer: AIMessage, stop: Sequence[str] | None) -> AIMessage:
    """``answer`` cut before its first stop sequence, exactly as a stream is cut."""
    if not stop or not isinstance(answer.content, str):
        return answer
    cut = StopCutter(stop)
    text = (cut.feed(answer.content) or "") + cut.flush()
    return answer if text == answer.content else answer.model_copy(update={"content": text})


class StopCutter:
    """Cuts a token stream before the first stop sequence, holding back partial matches."""

    def __init__(self, stop: Sequence[str] | None) -> None:
        self.stop = [s for s in (stop or []) if s]
        self.pending = ""
        self.done = False

    def feed(self, text: str) -> str | None:
        """The text that can be sent now, or None once a stop sequence was seen."""
        if self.done:
            return None
        if not self.stop:
            return text
        self.pending += text
        hits = [i for i in (self.pending.find(s) for s in self.stop) if i >= 0]
        if hits:
            self.done = True
            out, self.pending = self.pending[: min(hits)], ""
            return out
        keep = max(len(s) for s in self.stop) - 1
        ready = max(len(self.pending) - keep, 0)  # hold back what could start a stop sequence
        out, self.pending = self.pending[:ready], self.pending[ready:]
        return out

    def flush(self) -> str:
        """The text held back, once the stream has ended ("" after a stop sequence)."""
        out, self.pending = ("" if self.done else self.pending), ""
        return out


def _detached_context() -> contextvars.Context:
    """A copy of the current context without the enclosing runnable's config (no parent graph).

    ``set_config_context`` sets the config runnables inherit; an empty one makes the
    graph run on its own, as if called from outside any run.
    """
    with set_config_context(RunnableConfig()) as ctx:
        return ctx.run(contextvars.copy_context)  # taken before the context manager restores it


async def _isolated(coro: Any) -> Any:
    return await asyncio.create_task(coro, context=_detached_context())


async def _isolated_iter(stream: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """Iterate ``stream`` in a task of its own that does not see the caller's run.

    Closing or cancelling the iteration cancels that task, which closes ``stream``
    (and so the graph run and its upstream calls). When LangGraph has tokens
    buffered that nobody read, closing its stream waits for the running node to
    finish instead of cancelling it (seen with langgraph 1.2.24 on a bare graph);
    the close then completes in the background.
    """
    items: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(maxsize=256)

    async def pump() -> None:
        try:
            async for item in stream:
                await items.put(("item", item))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # handed to the consumer, which re-raises it
            await items.put(("error", exc))
        else:
            await items.put(("end", None))
        finally:
            await stream.aclose()  # type: ignore[attr-defined]

    task = asyncio.create_task(pump(), context=_detached_context())
    try:
        while True:
            kind, value = await items.get()
            if kind == "item":
                yield value
            elif kind == "error":
                raise value
            else:
                return
    finally:
        task.cancel()  # not awaited: closing the graph's stream may take a moment (see the note above)
