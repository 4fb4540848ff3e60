"""The OpenAI-compatible API inside the LangGraph Agent Server (``langgraph dev``, ``langgraph up``).

``langgraph.json`` mounts :data:`app` with ``"http": {"app": ...}``, so one
Agent Server serves LangGraph Studio, the LangGraph API (assistants, durable
threads, runs; PostgreSQL and Redis in production) and ``/v1``::

    langgraph dev            # Studio + the LangGraph API + /v1 on http://127.0.0.1:2024

    from openai import OpenAI
    client = OpenAI(base_url="http://127.0.0.1:2024/v1", api_key="unused")
    client.chat.completions.create(model="moa-lite", messages=[{"role": "user", "content": "hi"}])

Served model ids: the presets, or the assistants of the JSON file named by
``MOA_ASSISTANTS`` (the format of ``moa serve --assistants``). ``/v1/responses``
is served too (its stored responses live in the server process's memory). Each request is
one independent turn, as with ``moa serve``; ``store: true`` is ignored here
(use the LangGraph API's threads to keep conversations). Authentication is the
Agent Server's (``auth`` in ``langgraph.json``), not ``MOA_API_KEYS``.
The limits are :class:`~langgraph_moa.serve.openai_api.APISettings`' defaults.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI

from langgraph_moa.presets import PRESETS
from langgraph_moa.serve.openai_api import APISettings, create_openai_router
from langgraph_moa.serve.openai_errors import add_openai_error_handlers

__all__ = ["ASSISTANTS_VARIABLE", "app", "create_agent_server_app"]

ASSISTANTS_VARIABLE = "MOA_ASSISTANTS"
"""Environment variable naming a JSON file of the served assistants (default: the presets)."""


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
        settings = APISettings(assistants=load_assistants(Path(file)) if file else dict(PRESETS))
    api = FastAPI(title="Mixture-of-Agents (OpenAI-compatible API)")
    api.include_router(create_openai_router(settings))
    add_openai_error_handlers(api)
    return api


app = create_agent_server_app()
"""The app ``langgraph.json`` mounts."""
