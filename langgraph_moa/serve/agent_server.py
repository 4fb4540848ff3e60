"""The OpenAI-compatible API inside the LangGraph Agent Server (``langgraph dev``, ``langgraph up``).

``langgraph.json`` mounts :data:`app` with ``"http": {"app": ...}``, so one
Agent Server serves LangGraph Studio, the LangGraph API (assistants, durable
threads, runs; PostgreSQL and Redis in production) and ``/v1``::

    langgraph dev            # Studio + the LangGraph API + /v1 on http://127.0.0.1:2024

    from openai import OpenAI
    client = OpenAI(base_url="http://127.0.0.1:2024/v1", api_key="unused")
    client.chat.completions.create(model="moa-lite", messages=[{"role": "user", "content": "hi"}])

Served model ids: the presets and ``default``, or the assistants of the JSON
file named by ``MOA_ASSISTANTS`` (the format of ``moa serve --assistants``).
As with ``moa serve`` and the graph Studio runs, ``default`` needs no key:
without ``TOGETHER_API_KEY`` and with the ``local`` extra it is the ``local``
preset (the bundled SmolLM2-135M-Instruct, whose llama.cpp server starts with
the first request for it), otherwise the ``moa-current`` preset. ``local`` is
served by name too. A 135M-parameter model shows that the pipeline runs; its
answers say nothing about MoA's quality. ``/v1/responses`` is served too (its
stored responses live in the server process's memory). Each request is
one independent turn, as with ``moa serve``; ``store: true`` is ignored here
(use the LangGraph API's threads to keep conversations). Authentication is the
Agent Server's (``auth`` in ``langgraph.json``), not ``MOA_API_KEYS``.
The limits are :class:`~langgraph_moa.serve.openai_api.APISettings`' defaults.

The same ``MOA_ASSISTANTS`` file is the operator's list of models for the
LangGraph API's graph: a run's ``context`` or ``configurable`` may name their
endpoints and key variables, and the endpoints in ``MOA_ALLOWED_BASE_URLS``,
nothing else (:func:`~langgraph_moa.providers.served_graph_policy`).
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI
from pydantic import Field

from langgraph_moa.config import MoAConfig
from langgraph_moa.errors import MoAError
from langgraph_moa.presets import LOCAL_PRESET, PRESETS
from langgraph_moa.providers.endpoints import ASSISTANTS_VARIABLE
from langgraph_moa.serve.openai_api import APISettings, create_openai_router
from langgraph_moa.serve.openai_errors import OpenAIError, add_openai_error_handlers

__all__ = ["ASSISTANTS_VARIABLE", "AgentServerSettings", "app", "create_agent_server_app"]

DEFAULT_MODEL = "default"
DEFAULT_PRESET = "moa-current"


class AgentServerSettings(APISettings):
    """:class:`APISettings` plus model ids run by the bundled local model, whose server starts when first asked for."""

    local_models: tuple[str, ...] = Field(
        default=(), description="Model ids served by the local preset; its server starts with the first request."
    )

    def served(self, model: str) -> MoAConfig:
        """The configuration of ``model``; for a local model id, the bundled model's server is started (blocking)."""
        if model in self.assistants and model not in self.local_models:
            return self.assistants[model]
        if model not in self.local_models:
            served = ", ".join([*self.local_models, *self.assistants])
            raise OpenAIError(
                404,
                f"The model {model!r} does not exist on this server; use one of: {served}",
                type="invalid_request_error",
                param="model",
                code="model_not_found",
            )
        from langgraph_moa.studio import local_preset

        try:
            return local_preset(start=True)
        except MoAError as exc:
            raise OpenAIError(
                503, f"model {model!r} cannot run: {exc}", type="server_error", code="local_model"
            ) from None

    def runnable(self) -> list[str]:
        """The served model ids that can run here: the local ones, then those whose provider keys are set."""
        return [*self.local_models, *(name for name in super().runnable() if name not in self.local_models)]


def default_settings() -> AgentServerSettings:
    """The presets, and ``default``: the local preset without ``TOGETHER_API_KEY`` (with the ``local`` extra)."""
    from langgraph_moa.studio import LOCAL_AVAILABLE

    assistants = dict(PRESETS)
    local: tuple[str, ...] = (LOCAL_PRESET,) if LOCAL_AVAILABLE else ()
    if local and not os.environ.get("TOGETHER_API_KEY"):
        local = (DEFAULT_MODEL, *local)
    else:
        assistants[DEFAULT_MODEL] = PRESETS[DEFAULT_PRESET]
    return AgentServerSettings(assistants=assistants, local_models=local)


def create_agent_server_app(settings: APISettings | None = None) -> FastAPI:
    """A FastAPI app with only the ``/v1`` routes, for ``langgraph.json``'s ``http.app``.

    Args:
        settings: Served assistants and limits; ``None`` reads ``MOA_ASSISTANTS``
            (a file of assistants) or serves the presets.

    Raises:
        ConfigError: the ``MOA_ASSISTANTS`` file cannot be read or holds an invalid assistant.
    """
    if settings is None:
        from langgraph_moa.serve.app import load_assistants  # the assistants file format of moa serve

        file = os.environ.get(ASSISTANTS_VARIABLE)
        settings = APISettings(assistants=load_assistants(Path(file))) if file else default_settings()
    api = FastAPI(title="Mixture-of-Agents (OpenAI-compatible API)")
    api.include_router(create_openai_router(settings))
    add_openai_error_handlers(api)
    return api


app = create_agent_server_app()
"""The app ``langgraph.json`` mounts."""
