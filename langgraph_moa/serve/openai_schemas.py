"""The wire format of the OpenAI-compatible API: request and response bodies.

Responses are the ``openai`` package's own types (``ChatCompletion``, ``ChatCompletionChunk``,
``CompletionUsage``, ``Model``) with the ``moa`` field added; requests keep a model of their
own for precise 400 messages.
"""

from __future__ import annotations

from typing import Any, Literal

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
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

# --------------------------------------------------------------------------- request


class TextPart(BaseModel):
    """A text part of a message's content."""

    model_config = ConfigDict(extra="allow", strict=True)

    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    """One message of the conversation, in OpenAI's format (text only)."""

    model_config = ConfigDict(extra="allow", strict=True)

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None
    name: str | None = None

    def text(self) -> str:
        """The message's text, parts joined by newlines."""
        if isinstance(self.content, list):
            return "\n".join(part.text for part in self.content)
        return self.content or ""

    def to_langchain(self) -> BaseMessage:
        """The LangChain message the graph receives (``developer`` counts as ``system``)."""
        kwargs: dict[str, Any] = {"name": self.name} if self.name else {}
        if self.role in ("system", "developer"):
            return SystemMessage(content=self.text(), **kwargs)
        if self.role == "user":
            return HumanMessage(content=self.text(), **kwargs)
        return AIMessage(content=self.text(), **kwargs)


class StreamOptions(BaseModel):
    """``stream_options``: ``include_usage`` adds a last chunk with ``usage``."""

    model_config = ConfigDict(extra="allow", strict=True)

    include_usage: bool = False


class ResponseFormat(BaseModel):
    """``response_format``: only plain text, as MoA cannot guarantee JSON output."""

    model_config = ConfigDict(extra="allow")

    type: Literal["text"]


class ChatCompletionRequest(BaseModel):
    """The body of ``POST /v1/chat/completions``.

    Parameters MoA has no use for (``top_p``, ``stop``, ``user``, penalties, ...)
    are accepted and ignored, as many clients send them; ``null`` stands for a
    parameter's default. ``n`` above 1, tools and functions, a JSON
    ``response_format`` and non-text content are refused with 400. Values are
    checked strictly, as OpenAI does: ``"max_tokens": true`` or ``"stream":
    "true"`` is a 400, not a 1 or a ``True`` (an integer is accepted for a float).
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
    tools: list[Any] | None = Field(default=None, max_length=0, description="MoA models call no tools.")
    functions: list[Any] | None = Field(default=None, max_length=0, description="MoA models call no functions.")
    function_call: Literal["none", "auto"] | None = Field(default=None, description="MoA models call no functions.")
    response_format: ResponseFormat | None = Field(default=None, description="Only {'type': 'text'}.")
    store: bool = False

    @field_validator("stream", "n", "store", mode="before")
    @classmethod
    def _null_is_default(cls, value: Any, info: ValidationInfo) -> Any:
        return cls.model_fields[str(info.field_name)].default if value is None else value

    def token_limit(self) -> int | None:
        """The aggregator's completion token limit the request asks for, if any."""
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


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
