"""The wire format of the OpenAI-compatible API: request and response bodies.

Responses are the ``openai`` package's own types (``ChatCompletion``, ``ChatCompletionChunk``,
``CompletionUsage``, ``Model``) with the ``moa`` field added; requests keep a model of their
own for precise 400 messages.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from openai.types import CompletionUsage, Model
from openai.types.chat import ChatCompletion as _ChatCompletion
from openai.types.chat import ChatCompletionChunk as _ChatCompletionChunk
from openai.types.chat import ChatCompletionMessage
from openai.types.chat.chat_completion import Choice as _Choice
from openai.types.chat.chat_completion_chunk import Choice as _ChunkChoice
from openai.types.chat.chat_completion_chunk import ChoiceDelta
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

from langgraph_moa.aggregator_output import check_json_schema

# --------------------------------------------------------------------------- request

_NAME = r"^[a-zA-Z0-9_-]{1,64}$"


class TextPart(BaseModel):
    """A text part of a message's content."""

    model_config = ConfigDict(extra="allow", strict=True)

    type: Literal["text"]
    text: str


class FunctionCall(BaseModel):
    """The function an assistant tool call names, with its arguments as a JSON string."""

    model_config = ConfigDict(extra="allow", strict=True)

    name: str = Field(min_length=1)
    arguments: str


class ToolCall(BaseModel):
    """A tool call of an assistant message in the history."""

    model_config = ConfigDict(extra="allow", strict=True)

    id: str = Field(min_length=1)
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(BaseModel):
    """One message of the conversation, in OpenAI's format (text, tool calls and tool results)."""

    model_config = ConfigDict(extra="allow", strict=True)

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    def text(self) -> str:
        """The message's text, parts joined by newlines."""
        if isinstance(self.content, list):
            return "\n".join(part.text for part in self.content)
        return self.content or ""

    def to_langchain(self, tool_names: dict[str, str] | None = None) -> BaseMessage:
        """The LangChain message the graph receives (``developer`` counts as ``system``).

        Args:
            tool_names: The function name of each earlier tool call id, to name a tool result.
        """
        kwargs: dict[str, Any] = {"name": self.name} if self.name else {}
        if self.role in ("system", "developer"):
            return SystemMessage(content=self.text(), **kwargs)
        if self.role == "user":
            return HumanMessage(content=self.text(), **kwargs)
        if self.role == "tool":
            call_id = self.tool_call_id or ""
            return ToolMessage(content=self.text(), tool_call_id=call_id, name=(tool_names or {}).get(call_id))
        calls = [
            {"name": c.function.name, "args": json.loads(c.function.arguments or "{}"), "id": c.id, "type": "tool_call"}
            for c in self.tool_calls or []
        ]
        return AIMessage(content=self.text(), tool_calls=calls, **kwargs)


class FunctionDefinition(BaseModel):
    """A function tool: its name, description and parameters (a JSON schema)."""

    model_config = ConfigDict(extra="allow", strict=True)

    name: str = Field(pattern=_NAME)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(BaseModel):
    """One entry of ``tools``: only function tools."""

    model_config = ConfigDict(extra="allow", strict=True)

    type: Literal["function"]
    function: FunctionDefinition


class ToolChoiceFunction(BaseModel):
    """The function a named ``tool_choice`` forces."""

    model_config = ConfigDict(extra="allow", strict=True)

    name: str = Field(min_length=1)


class NamedToolChoice(BaseModel):
    """``tool_choice`` naming one function."""

    model_config = ConfigDict(extra="allow", strict=True)

    type: Literal["function"]
    function: ToolChoiceFunction


class JSONSchemaFormat(BaseModel):
    """``response_format.json_schema``: the schema the answer must match."""

    model_config = ConfigDict(extra="allow", strict=True, populate_by_name=True)

    name: str = Field(pattern=_NAME)
    description: str | None = None
    schema_: dict[str, Any] = Field(default_factory=lambda: {"type": "object"}, alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    """``response_format``: plain text, any JSON object, or JSON valid against a schema."""

    model_config = ConfigDict(extra="allow", strict=True)

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None

    def for_config(self) -> dict[str, Any] | None:
        """``MoAConfig.aggregator_response_format`` (None for plain text)."""
        if self.type == "text":
            return None
        if self.type == "json_object":
            return {"type": "json_object"}
        assert self.json_schema is not None  # checked by the request
        return {"type": "json_schema", "json_schema": self.json_schema.model_dump(by_alias=True, exclude_none=True)}


class StreamOptions(BaseModel):
    """``stream_options``: ``include_usage`` adds a last chunk with ``usage``."""

    model_config = ConfigDict(extra="allow", strict=True)

    include_usage: bool = False


UNSUPPORTED = {
    "logprobs": "logprobs: MoA's answer is a synthesis of several models' answers, with no token "
    "probabilities to report; leave logprobs out",
    "top_logprobs": "top_logprobs: MoA's answer has no token probabilities; leave top_logprobs out",
    "audio": "audio: MoA answers with text only; leave audio out",
    "prediction": "prediction: MoA cannot use a predicted output; leave prediction out",
    "functions": "functions: the legacy functions parameter is not supported; send the functions as tools",
    "function_call": "function_call: the legacy function_call parameter is not supported; use tool_choice",
}
"""Request fields MoA refuses (400) when set, with what to do instead."""


class ChatCompletionRequest(BaseModel):
    """The body of ``POST /v1/chat/completions``.

    Parameters MoA has no use for (``top_p``, ``user``, penalties, ...) are
    accepted and ignored, as many clients send them; ``null`` stands for a
    parameter's default. ``n`` above 1, ``logprobs``, ``audio``,
    ``prediction``, the legacy ``functions`` and non-text content are refused
    with 400. Values are checked strictly, as OpenAI does: ``"max_tokens":
    true`` or ``"stream": "true"`` is a 400, not a 1 or a ``True`` (an integer
    is accepted for a float). :meth:`check` then checks what the fields say
    together (tools, tool calls and results, schemas).
    """

    model_config = ConfigDict(extra="allow", strict=True)

    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(default=1, ge=1, le=1, description="MoA writes one answer per request.")
    tools: list[Tool] | None = Field(default=None, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    stop: str | list[str] | None = Field(default=None)
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)
    store: bool = False

    @field_validator("stream", "n", "store", mode="before")
    @classmethod
    def _null_is_default(cls, value: Any, info: ValidationInfo) -> Any:
        return cls.model_fields[str(info.field_name)].default if value is None else value

    def token_limit(self) -> int | None:
        """The aggregator's completion token limit the request asks for, if any."""
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    def stop_sequences(self) -> list[str]:
        """``stop`` as a list (empty when not set)."""
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    def check(self) -> None:
        """Check what the fields say together, before any model call.

        Raises:
            ValueError: ``(param, message)`` as its args: the field at fault and what is wrong.
        """
        extra = self.model_extra or {}
        for field, refusal in UNSUPPORTED.items():
            value = extra.get(field)
            if value not in (None, False, [], "none") and not (field == "top_logprobs" and value == 0):
                raise ValueError(field, refusal)
        if "audio" in (extra.get("modalities") or []):
            raise ValueError("modalities", "modalities: MoA answers with text only; send ['text'] or leave it out")
        if len(self.stop_sequences()) > 4:
            raise ValueError("stop", "stop: at most 4 stop sequences")
        names: dict[str, int] = {}
        for i, tool in enumerate(self.tools or []):
            name = tool.function.name
            if name in names:
                raise ValueError(
                    f"tools[{i}].function.name",
                    f"tools[{i}].function.name: {name!r} is also tools[{names[name]}]'s name; tool names must be unique",
                )
            names[name] = i
            if tool.function.parameters is not None:
                _check_schema(tool.function.parameters, f"tools[{i}].function.parameters")
        choice = self.tool_choice
        if isinstance(choice, NamedToolChoice) or choice == "required":
            if not self.tools:
                raise ValueError("tool_choice", f"tool_choice: {_choice_text(choice)} needs tools; send the tools too")
            if isinstance(choice, NamedToolChoice) and choice.function.name not in names:
                raise ValueError(
                    "tool_choice.function.name",
                    f"tool_choice.function.name: {choice.function.name!r} is not one of the tools ({', '.join(names)})",
                )
        fmt = self.response_format
        if fmt is not None and fmt.type == "json_schema":
            if fmt.json_schema is None:
                raise ValueError(
                    "response_format.json_schema", "response_format.json_schema: required for type json_schema"
                )
            _check_schema(fmt.json_schema.schema_, "response_format.json_schema.schema")
        calls: dict[str, str] = {}
        for i, message in enumerate(self.messages):
            for j, call in enumerate(message.tool_calls or []):
                where = f"messages[{i}].tool_calls[{j}].function"
                if message.role != "assistant":
                    raise ValueError(
                        f"messages[{i}].tool_calls",
                        f"messages[{i}].tool_calls: only assistant messages carry tool calls",
                    )
                try:
                    arguments = json.loads(call.function.arguments or "{}")
                except ValueError:
                    arguments = None
                if not isinstance(arguments, dict):
                    raise ValueError(f"{where}.arguments", f"{where}.arguments: must be a JSON object, as a string")
                calls[call.id] = call.function.name
            if message.role == "tool":
                if not message.tool_call_id:
                    raise ValueError(
                        f"messages[{i}].tool_call_id",
                        f"messages[{i}].tool_call_id: a tool message needs the id of the call it answers",
                    )
                if message.tool_call_id not in calls:
                    raise ValueError(
                        f"messages[{i}].tool_call_id",
                        f"messages[{i}].tool_call_id: {message.tool_call_id!r} answers no tool call of an earlier assistant message",
                    )

    def tool_names(self) -> dict[str, str]:
        """The function name of each tool call id in the history."""
        return {c.id: c.function.name for m in self.messages for c in m.tool_calls or []}

    def aggregator_settings(self) -> dict[str, Any]:
        """The ``MoAConfig`` fields this request sets on the aggregator (tools, tool choice, format)."""
        out: dict[str, Any] = {}
        if self.tools:
            out["aggregator_tools"] = [t.model_dump(exclude_none=True) for t in self.tools]
            choice = self.tool_choice
            out["aggregator_tool_choice"] = (
                choice.function.name
                if isinstance(choice, NamedToolChoice)
                else "any"
                if choice == "required"
                else choice
            )
            if self.parallel_tool_calls is not None:
                out["aggregator_parallel_tool_calls"] = self.parallel_tool_calls
        if self.response_format is not None and (fmt := self.response_format.for_config()):
            out["aggregator_response_format"] = fmt
        return out


def _choice_text(choice: Any) -> str:
    return (
        f"{{'function': {{'name': {choice.function.name!r}}}}}" if isinstance(choice, NamedToolChoice) else repr(choice)
    )


def _check_schema(schema: Any, where: str) -> None:
    try:
        check_json_schema(schema, where)
    except ValueError as exc:
        raise ValueError(where, str(exc)) from None


# --------------------------------------------------------------------------- response
# The ``openai`` package's own types, with defaults for the fields this API always
# sets the same way and the ``moa`` extra; ``ModelList`` has no public type there.


Usage = CompletionUsage
"""Token counts of a completion (the ``openai`` package's ``CompletionUsage``)."""

Delta = ChoiceDelta
"""What a chunk adds to the answer (the ``openai`` package's ``ChoiceDelta``)."""

FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "function_call"]


class ResponseMessage(ChatCompletionMessage):
    """The answer."""

    role: Literal["assistant"] = "assistant"


class Choice(_Choice):
    """The one choice of a completion."""

    index: int = 0
    finish_reason: FinishReason = "stop"


class ChatCompletion(_ChatCompletion):
    """A ``chat.completion`` object, with the MoA details in ``moa``."""

    object: Literal["chat.completion"] = "chat.completion"
    choices: list[Choice]  # type: ignore[assignment]
    moa: dict[str, Any]


class ChunkChoice(_ChunkChoice):
    """The one choice of a chunk."""

    index: int = 0


class ChatCompletionChunk(_ChatCompletionChunk):
    """A ``chat.completion.chunk`` event of a streamed completion."""

    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    choices: list[ChunkChoice]  # type: ignore[assignment]
    moa: dict[str, Any] | None = None


class ModelCard(Model):
    """One served model id."""

    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "langgraph-moa"


class ModelList(BaseModel):
    """The answer of ``GET /v1/models``."""

    object: Literal["list"] = "list"
    data: list[ModelCard]
