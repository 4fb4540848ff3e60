"""Resolve ``"provider:model"`` strings to chat models.

Models are built with LangChain's ``init_chat_model`` and cached per event loop
(sync runs share one cache), so every run in a loop reuses the provider clients
and their connection pools (and a new loop, e.g. a second ``asyncio.run``, gets
clients of its own). For OpenAI-compatible providers the temperature, max_tokens
and seed are bound to each call instead of built into the model, and every model
of a loop that calls one endpoint shares one HTTP client: requests with their own
settings reuse the same connections. A per-model rate limiter is shared by every
call to that model.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import weakref
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from langchain.chat_models import init_chat_model
from langchain_core.language_models import BaseChatModel
from langchain_core.rate_limiters import InMemoryRateLimiter
from langchain_core.runnables import Runnable
from langgraph.constants import TAG_NOSTREAM

from langgraph_moa.config import MoAConfig, ModelSpec
from langgraph_moa.providers.credentials import api_key, check_credentials
from langgraph_moa.providers.endpoints import EndpointPolicy, effective_base_url
from langgraph_moa.providers.redacted_model import is_chat_model, redacted_model

_OPENAI_COMPATIBLE = {"openai", "together"}
_PLACEHOLDER_KEY = "not-needed"  # OpenAI-compatible local servers ignore the key; the SDK wants one


class ModelResolver:
    """Turns a :class:`ModelSpec` of a run into a ready chat model.

    Args:
        models: Ready chat models or agents by ``"provider:model"`` name, used as
            they are instead of ``init_chat_model`` (fakes in tests, custom
            clients, agents with tools).
        allowed_base_urls: When given, the endpoints and key variables a run's
            config may name: an :class:`~langgraph_moa.providers.EndpointPolicy`,
            or URL prefixes (then no ``api_key_env``), see :func:`check_endpoints`.
            ``None`` allows any (the config is trusted).
    """

    def __init__(
        self,
        models: Mapping[str, BaseChatModel | Runnable] | None = None,
        *,
        allowed_base_urls: Iterable[str] | EndpointPolicy | None = None,
    ) -> None:
        self._models = dict(models or {})
        self._allowed = (
            allowed_base_urls
            if allowed_base_urls is None or isinstance(allowed_base_urls, EndpointPolicy)
            else EndpointPolicy(base_urls=tuple(allowed_base_urls))
        )

    def check(self, config: MoAConfig) -> None:
        """Fail fast, before any call: see :func:`check_credentials` and :func:`check_endpoints`."""
        if self._allowed is not None:
            self._allowed.check(config)
        check_credentials(config, skip=frozenset(self._models))

    def seed_for(self, spec: ModelSpec, seed: int | None) -> int | None:
        """``seed`` if ``spec``'s model takes a seed per request, else ``None``.

        Models built here for OpenAI-compatible providers take one; ready models
        (passed as ``models=``) keep their own settings, and other providers'
        APIs have no seed.
        """
        if spec.model in self._models or spec.provider not in _OPENAI_COMPATIBLE:
            return None
        return seed

    def __call__(self, spec: ModelSpec, config: MoAConfig, *, streaming: bool, seed: int | None = None) -> Runnable:
        """The chat model for ``spec`` with the run's settings applied.

        Args:
            spec: The model and its overrides.
            config: The run's configuration (temperature, max_tokens, timeout, retries).
            streaming: ``False`` keeps the call off the token stream and off the
                provider's streaming API (proposers); ``True`` streams (the aggregator).
            seed: The call's sampling seed (see :meth:`seed_for`), bound to the
                call so one client serves every seed.

        Chat models come wrapped in a
        :class:`~langgraph_moa.providers.redacted_model.RedactedChatModel`: their
        answers and streamed tokens have the secrets removed at the source.

        Raises:
            MissingCredentialsError: the provider's API key is not set.
        """
        if spec.model in self._models:
            model: Runnable = self._models[spec.model]
            if not is_chat_model(model):  # an agent: its own model calls are its own
                return model if streaming else model.with_config(tags=[TAG_NOSTREAM])
        else:
            key = api_key(spec, config)
            temperature = spec.temperature if spec.temperature is not None else config.temperature
            max_tokens = spec.max_tokens if spec.max_tokens is not None else config.max_tokens
            base_url = effective_base_url(spec, config)
            per_call = _per_call_settings(spec.provider, base_url, temperature, max_tokens)
            settings = (
                spec.model,
                None if per_call else temperature,  # bound per call below: not part of the client
                None if per_call else max_tokens,
                base_url,
                config.timeout,
                config.max_retries,
                streaming,
                spec.requests_per_second,
            )
            cache_key = (settings, hashlib.sha256(key.encode()).hexdigest() if key else None)
            with _LOCK:
                models = _models_of_this_loop()
                cached = models.pop(cache_key, None)
                chat_model = cached if cached is not None else _new_model(*settings, api_key=key)
                models[cache_key] = chat_model
                model = chat_model  # most recently used last
                while len(models) > MODEL_CACHE_SIZE:
                    models.pop(next(iter(models)))  # runs still holding it finish with it
            if self.seed_for(spec, seed) is not None:
                per_call["seed"] = seed
            if per_call:
                model = model.bind(**per_call)
        # secrets are removed where the tokens arise, so no stream mode or host sees them
        model = redacted_model(model, [spec.api_key_env] if spec.api_key_env else [], streams=streaming)
        return model if streaming else model.with_config(tags=[TAG_NOSTREAM])


MODEL_CACHE_SIZE = 64
"""Chat models kept per event loop. Per-request temperature, max_tokens and seed
are bound per call for OpenAI-compatible providers; other providers, and distinct
timeouts or retry counts, build a model per distinct setting: the least recently
used ones beyond this count are dropped, so memory stays bounded."""

_PER_LOOP: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Any, BaseChatModel]] = weakref.WeakKeyDictionary()
_SYNC_MODELS: dict[Any, BaseChatModel] = {}
"""Models of sync runs (no event loop): their sync HTTP clients are not bound to a loop."""
_LOCK = threading.Lock()  # sync runs call proposers from worker threads


def _models_of_this_loop() -> dict[Any, BaseChatModel]:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return _SYNC_MODELS
    # HTTP clients hold connections bound to the loop that opened them. Their transports
    # refer back to the loop, so a weak key alone never lets a closed loop's entry go:
    # drop those here (each `asyncio.run` of a script leaves one).
    for closed in [other for other in _PER_LOOP if other.is_closed()]:
        _PER_LOOP.pop(closed, None)
    return _PER_LOOP.setdefault(loop, {})


@lru_cache(maxsize=256)
def _rate_limiter(model: str, base_url: str | None, requests_per_second: float) -> InMemoryRateLimiter:
    return InMemoryRateLimiter(requests_per_second=requests_per_second, check_every_n_seconds=0.05)


def _per_call_settings(provider: str, base_url: str | None, temperature: float, max_tokens: int) -> dict[str, Any]:
    """Settings bound to each call of an OpenAI-compatible model (empty for other providers).

    Bound rather than built into the client, so requests with their own
    temperature or max_tokens share one model and its connection pool.
    """
    if provider not in _OPENAI_COMPATIBLE:
        return {}
    if provider == "openai" and base_url:
        # langchain-openai sends OpenAI's newer `max_completion_tokens`, which vLLM, Ollama,
        # llama.cpp and LM Studio may ignore; they all honour the classic `max_tokens`.
        return {"temperature": temperature, "extra_body": {"max_tokens": max_tokens}}
    return {"temperature": temperature, "max_tokens": max_tokens}


_CLIENTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str | None, Any]] = weakref.WeakKeyDictionary()


def _async_http_client(base_url: str | None) -> Any:
    """The event loop's one HTTP client for ``base_url``, shared by every model that calls it.

    A client's connections belong to the loop that opened them, so each loop has
    its own; the OpenAI SDK applies each model's timeout per request.
    """
    from openai import DefaultAsyncHttpxClient

    loop = asyncio.get_running_loop()
    for closed in [other for other in _CLIENTS if other.is_closed()]:
        _CLIENTS.pop(closed, None)
    clients = _CLIENTS.setdefault(loop, {})
    if base_url not in clients:
        clients[base_url] = DefaultAsyncHttpxClient()
    return clients[base_url]


def _new_model(
    model: str,
    temperature: float | None,
    max_tokens: int | None,
    base_url: str | None,
    timeout: float,
    max_retries: int,
    streaming: bool,
    requests_per_second: float | None,
    *,
    api_key: str | None,
) -> BaseChatModel:
    provider = model.partition(":")[0]
    kwargs: dict[str, Any] = {"timeout": timeout, "max_retries": max_retries}
    if temperature is not None:
        kwargs["temperature"] = temperature
    if max_tokens is not None:
        kwargs["max_tokens"] = max_tokens
    if requests_per_second:
        kwargs["rate_limiter"] = _rate_limiter(model, base_url, requests_per_second)
    if base_url:
        kwargs["base_url"] = base_url
    if api_key:
        kwargs["api_key"] = api_key
    if not streaming:
        kwargs["disable_streaming"] = True
    if provider in _OPENAI_COMPATIBLE:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass  # a sync run: langchain-openai's shared sync client serves it
        else:
            kwargs["http_async_client"] = _async_http_client(base_url)
        if streaming:
            kwargs["stream_usage"] = True
        if base_url:
            kwargs.setdefault("api_key", _PLACEHOLDER_KEY)
    return init_chat_model(model, **kwargs)
