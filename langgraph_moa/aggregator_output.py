"""What the aggregator may answer with: tool calls and structured output.

The aggregator is the model a caller talks to; the proposers advise it. So the
tools, ``tool_choice``, ``parallel_tool_calls`` and ``response_format`` a
caller gives (``ChatMoA.bind_tools``, ``ChatMoA.invoke(response_format=...)``,
or the ``/v1`` API) apply to the aggregator's call, on top of its per-call
settings (temperature, max_tokens, seed), and the proposers see the tools and
the schema as text (:func:`~langgraph_moa.prompts.tool_turns_as_text`).

Structured output (``MoAConfig.aggregator_response_format``):

- an OpenAI-compatible aggregator (``ChatOpenAI``, ``ChatTogether``, a local
  server) gets the ``response_format`` itself and answers with JSON text;
- any other chat model gets a forced call of a tool whose parameters are the
  schema (as LangChain's ``with_structured_output`` does), whose arguments
  become the answer's text.

Either way :func:`finish_answer` checks the JSON against the schema; an answer
that is not valid JSON, or not valid against the schema, fails the aggregator
with :class:`StructuredOutputError` instead of reaching the caller.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import jsonschema
from langchain_core.messages import AIMessage
from langchain_core.runnables import Runnable, RunnableBinding

from langgraph_moa.config import MoAConfig
from langgraph_moa.errors import MoAError

__all__ = [
    "StructuredOutputError",
    "bind_aggregator",
    "check_json_schema",
    "finish_answer",
    "output_tool_name",
    "response_format_schema",
]

JSON_OBJECT_TOOL = "json_answer"
"""The forced tool's name for ``{"type": "json_object"}`` (its parameters: any object)."""


class StructuredOutputError(MoAError):
    """The aggregator's answer is not the JSON its ``response_format`` asks for."""


def check_json_schema(schema: Any, where: str) -> None:
    """Raise ``ValueError`` naming ``where`` when ``schema`` is not a valid JSON schema."""
    if not isinstance(schema, Mapping):
        raise ValueError(f"{where}: a JSON schema must be an object, not {type(schema).__name__}")
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        path = "/".join(str(p) for p in exc.path)
        raise ValueError(f"{where}: not a valid JSON schema{f' at {path}' if path else ''}: {exc.message}") from None


def response_format_schema(response_format: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The ``(name, JSON schema)`` a ``response_format`` asks for (any object for ``json_object``)."""
    if response_format.get("type") == "json_schema":
        spec = response_format.get("json_schema") or {}
        return str(spec.get("name") or "answer"), dict(spec.get("schema") or {"type": "object"})
    return JSON_OBJECT_TOOL, {"type": "object"}


def output_tool_name(cfg: MoAConfig) -> str | None:
    """The name of the forced output tool for ``cfg``'s ``response_format`` (unique among its tools)."""
    if not cfg.aggregator_response_format:
        return None
    name, _ = response_format_schema(cfg.aggregator_response_format)
    taken = {_tool_name(t) for t in cfg.aggregator_tools}
    while name in taken:
        name += "_answer"
    return name


def _tool_name(tool: Mapping[str, Any]) -> str:
    return str((tool.get("function") or {}).get("name") or tool.get("name") or "")


def _native_structured_output(model: Any) -> bool:
    """Whether ``model`` takes OpenAI's ``response_format`` in its request (OpenAI-compatible clients)."""
    from langchain_openai.chat_models.base import BaseChatOpenAI

    from langgraph_moa.providers.redacted_model import RedactedChatModel

    while True:  # seen through: the redaction at the source, and bound settings
        if isinstance(model, RedactedChatModel):
            model = model.model
        elif isinstance(model, RunnableBinding):
            model = model.bound
        else:
            return isinstance(model, BaseChatOpenAI)


def bind_aggregator(model: Runnable, cfg: MoAConfig) -> Runnable:
    """``model`` (the aggregator, with its per-call settings bound) with ``cfg``'s tools and output format.

    The per-call settings the model was resolved with (temperature, max_tokens,
    seed) stay bound: tools are bound to the chat model under them, not in their place.
    """
    fmt = cfg.aggregator_response_format
    if not cfg.aggregator_tools and not fmt:
        return model
    base, kwargs, config = model, {}, None
    if isinstance(model, RunnableBinding):
        base, kwargs, config = model.bound, dict(model.kwargs), model.config
    tools = list(cfg.aggregator_tools)
    choice = cfg.aggregator_tool_choice
    if fmt and _native_structured_output(base):
        # in the request body, so langchain-openai sends it as it is (its own `response_format`
        # argument would switch to the SDK's parse helpers, which refuse non-strict tools)
        kwargs["extra_body"] = {**(kwargs.get("extra_body") or {}), "response_format": dict(fmt)}
    elif fmt:
        name = output_tool_name(cfg) or JSON_OBJECT_TOOL
        _, schema = response_format_schema(fmt)
        if choice == "none":
            tools = []
        described = {"name": name, "description": "Write the final answer as JSON.", "parameters": schema}
        tools.append({"type": "function", "function": described})
        if len(tools) == 1:
            choice = name
        elif not (isinstance(choice, str) and choice not in ("auto", "any", "required", "none")):
            choice = "any"  # a tool call either way: a client tool, or the answer
    if tools:
        for key in ("tools", "tool_choice", "parallel_tool_calls"):
            kwargs.pop(key, None)  # the run's tools replace any bound before
        extra: dict[str, Any] = {}
        if cfg.aggregator_parallel_tool_calls is not None:
            extra["parallel_tool_calls"] = cfg.aggregator_parallel_tool_calls
        base = base.bind_tools(tools, tool_choice=choice, **extra)  # type: ignore[attr-defined]
    bound: Runnable = base.bind(**kwargs) if kwargs else base
    return bound.with_config(config) if config else bound


_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


def finish_answer(answer: AIMessage, cfg: MoAConfig) -> AIMessage:
    """The aggregator's answer in the form asked for: JSON text checked against the schema.

    A call of the forced output tool becomes the answer's text. An answer with
    tool calls of the caller's tools is returned as it is (the JSON comes later
    in the loop).

    Raises:
        StructuredOutputError: the answer is not JSON, or not valid against the schema.
    """
    fmt = cfg.aggregator_response_format
    if not fmt:
        return answer
    name = output_tool_name(cfg)
    output = [c for c in answer.tool_calls if c["name"] == name]
    if output:
        others = [c for c in answer.tool_calls if c["name"] != name]
        text = json.dumps(output[0]["args"], ensure_ascii=False)
        answer = answer.model_copy(update={"content": text, "tool_calls": others, "tool_call_chunks": []})
    if answer.tool_calls:
        return answer
    text = answer.text.strip()
    if fenced := _FENCE.match(text):
        text = fenced.group(1)
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise StructuredOutputError(f"the answer is not JSON ({exc}): {_preview(text)}") from None
    _, schema = response_format_schema(fmt)
    error = jsonschema.exceptions.best_match(jsonschema.validators.validator_for(schema)(schema).iter_errors(value))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "the answer"
        raise StructuredOutputError(f"the answer does not match the JSON schema at {where}: {error.message}")
    return answer if text == answer.content else answer.model_copy(update={"content": text})


def _preview(text: str, limit: int = 120) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")
