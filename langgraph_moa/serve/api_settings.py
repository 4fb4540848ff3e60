"""What the OpenAI-compatible API serves, and its limits: :class:`APISettings`.

The settings of both ``/v1`` routers (:mod:`langgraph_moa.serve.openai_api` for chat
completions and models, :mod:`langgraph_moa.serve.responses_api` for responses): the
model ids served and their MoA configurations, the size limits a request is checked
against (:mod:`langgraph_moa.serve.graph_runs`), and the bounds on upstream calls and
concurrent runs. :class:`~langgraph_moa.serve.app.ServeSettings` (``moa serve``) extends it.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from langgraph_moa.config import MoAConfig
from langgraph_moa.errors import MoAError
from langgraph_moa.presets import PRESETS
from langgraph_moa.providers import check_credentials
from langgraph_moa.serve.openai_errors import OpenAIError

__all__ = ["APISettings"]


class APISettings(BaseModel):
    """What the OpenAI-compatible API serves, and its limits."""

    model_config = ConfigDict(frozen=True)

    assistants: dict[str, MoAConfig] = Field(
        default_factory=lambda: dict(PRESETS),
        description="The served model ids and their MoA configurations (default: every preset).",
    )
    max_request_bytes: int = Field(default=1_000_000, ge=1024, description="Largest request body accepted (413 above).")
    max_messages: int = Field(
        default=256,
        ge=1,
        description="Most messages one request may send (400 above). Every model call of a run carries the "
        "whole conversation, and preparing it costs CPU time on the server's event loop.",
    )
    max_request_chars: int = Field(
        default=400_000, ge=1, description="Most characters of message text one request may send (400 above)."
    )
    max_tokens: int = Field(
        default=4096, ge=1, description="Largest max_tokens (or max_completion_tokens) a request may ask for."
    )
    provider_concurrency: int = Field(
        default=16, ge=1, description="Upstream model calls in flight per provider endpoint, across all requests."
    )
    max_concurrent_runs: int = Field(
        default=32,
        ge=1,
        description="MoA runs executing at once, across all requests; later ones wait for a free slot before "
        "they start, so a burst of requests does not start every run at once on the event loop.",
    )

    @model_validator(mode="after")
    def _no_review(self) -> APISettings:
        reviewed = [name for name, config in self.assistants.items() if getattr(config, "review", False)]
        if reviewed:
            raise ValueError(
                f"assistants {', '.join(reviewed)} have review=True, but no one can review proposals over the "
                "OpenAI API; serve them with review=False (LangGraph's API or your own graph runs can review)"
            )
        return self

    def served(self, model: str) -> MoAConfig:
        """The configuration served as ``model``.

        Raises:
            OpenAIError: 404, ``model`` is not served.
        """
        try:
            return self.assistants[model]
        except KeyError:
            raise OpenAIError(
                404,
                f"The model {model!r} does not exist on this server; use one of: {', '.join(self.assistants)}",
                type="invalid_request_error",
                param="model",
                code="model_not_found",
            ) from None

    def runnable(self) -> list[str]:
        """The served model ids whose models all have their provider keys set on this server."""
        ready = []
        for name, config in self.assistants.items():
            try:
                check_credentials(config)
            except MoAError:
                continue
            ready.append(name)
        return ready
