"""Resolve ``"provider:model"`` strings to chat models, and describe their errors.

Models are built with LangChain's ``init_chat_model`` and cached per event loop,
so every run in a loop reuses the provider clients and their connection pools
(and a new loop, e.g. a second ``asyncio.run``, gets clients of its own). A
per-model rate limiter is shared by every call to that model.

Keys: each provider package reads its usual environment variable
(``TOGETHER_API_KEY``, ``OPENAI_API_KEY``, ...). A model on a ``base_url`` that you
named (``ModelSpec.base_url``, ``MoAConfig.base_url``, ``--base-url``) gets no key
unless its ``api_key_env`` names the variable to read, whatever its provider
prefix, so no provider's key is ever sent to another server by accident; a server set through ``OPENAI_BASE_URL``
gets ``OPENAI_API_KEY``, as the OpenAI SDK does. Keys never enter graph state,
checkpoints or error messages.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import weakref
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any
from urllib.parse import SplitResult, urlsplit

from langchain.chat_models import init_chat_model
from langchain_core.language_models import BaseChatModel
from langchain_core.rate_limiters import InMemoryRateLimiter
from langchain_core.runnables import Runnable

from langgraph_moa.config import ConfigError, MoAConfig, ModelSpec
from langgraph_moa.errors import MissingCredentialsError

API_KEY_VARIABLES: dict[str, str] = {
    "together": "TOGETHER_API_KEY",
    "openai": "OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "fireworks": "FIREWORKS_API_KEY",
    "groq": "GROQ_API_KEY",
    "mistralai": "MISTRAL_API_KEY",
    "google_genai": "GOOGLE_API_KEY",
    "deepseek": "DEEPSEEK_API_KEY",
    "xai": "XAI_API_KEY",
}
"""The environment variable holding each provider's API key."""

_OPENAI_COMPATIBLE = {"openai", "together"}
_PLACEHOLDER_KEY = "not-needed"  # OpenAI-compatible local servers ignore the key; the SDK wants one


def supported_providers() -> frozenset[str] | None:
    """The providers ``init_chat_model`` knows, or ``None`` if LangChain does not say."""
    from langchain.chat_models import base

    providers = getattr(base, "_BUILTIN_PROVIDERS", None)  # private: checked only when present
    return frozenset(providers) if providers else None


def _named_base_url(spec: ModelSpec, config: MoAConfig) -> str | None:
    """A base URL the user named in the config (not the environment's)."""
    if spec.base_url:
        return spec.base_url
    return config.base_url if spec.provider == "openai" else None


def effective_base_url(spec: ModelSpec, config: MoAConfig) -> str | None:
    """The endpoint ``spec`` is called on: its own, the run's (openai only), or the env's."""
    named = _named_base_url(spec, config)
    if named or spec.provider != "openai":
        return named
    return os.environ.get("OPENAI_BASE_URL") or os.environ.get("OPENAI_API_BASE")


def _key_variable(spec: ModelSpec, config: MoAConfig) -> tuple[str | None, bool]:
    """``(variable to read the key from, whether the model can run without it)``."""
    if spec.api_key_env:
        return spec.api_key_env, False
    if _named_base_url(spec, config):
        return None, True  # a server named in the config never gets a provider's key by default
    if spec.provider == "openai" and effective_base_url(spec, config):
        return "OPENAI_API_KEY", True  # an OPENAI_BASE_URL server gets OPENAI_API_KEY if it is set
    return API_KEY_VARIABLES.get(spec.provider), False


def api_key(spec: ModelSpec, config: MoAConfig) -> str | None:
    """The key ``spec`` is called with (``None``: the client's own default or none).

    Raises:
        MissingCredentialsError: the variable ``spec`` needs is not set.
    """
    variable, optional = _key_variable(spec, config)
    key = os.environ.get(variable) if variable else None
    if variable and not key and not optional:
        raise MissingCredentialsError(spec.model, variable)
    return key


def check_credentials(config: MoAConfig, *, skip: frozenset[str] = frozenset()) -> None:
    """Check every model of ``config`` before any is called.

    Args:
        config: The run's configuration.
        skip: ``"provider:model"`` strings served by ready-made models.

    Raises:
        ConfigError: a provider ``init_chat_model`` does not know (a typo, say).
        MissingCredentialsError: the first model whose API key is not set.
    """
    known = supported_providers()
    for spec in config.all_models():
        if spec.model in skip:
            continue
        if known is not None and spec.provider not in known:
            raise ConfigError(
                f"model {spec.model!r}: unknown provider {spec.provider!r}; use one of "
                f"{', '.join(sorted(known))} (an OpenAI-compatible server is 'openai:' with a base_url)"
            )
        api_key(spec, config)


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
"""The host names of this machine's loopback interface."""


def check_endpoints(config: MoAConfig, allowed: Iterable[str]) -> None:
    """Refuse a config naming an endpoint that is not loopback or under an ``allowed`` prefix.

    For graphs whose configuration comes from clients (a LangGraph server): a
    client that could name any endpoint could send the run's requests, and a
    key variable named by ``api_key_env``, to a host of its choosing.

    Raises:
        ConfigError: naming the model and the endpoint, and how to allow it.
    """
    prefixes = [urlsplit(a.strip()) for a in allowed if a.strip()]
    for spec in config.all_models():
        url = _named_base_url(spec, config)
        if url is None:
            continue
        parts = urlsplit(url)
        if (parts.hostname or "") in LOOPBACK_HOSTS or any(_under(parts, prefix) for prefix in prefixes):
            continue
        raise ConfigError(
            f"model {spec.model!r}: base_url {url!r} is not allowed on this graph; the server that runs "
            "it lists the endpoints it may call in MOA_ALLOWED_BASE_URLS (comma-separated URL prefixes; "
            "loopback is always allowed)"
        )


def _under(url: SplitResult, prefix: SplitResult) -> bool:
    """Same scheme, host and port, and a path at or below the prefix's."""
    if (url.scheme, url.hostname, url.port) != (prefix.scheme, prefix.hostname, prefix.port):
        return False
    base = prefix.path.rstrip("/")
    return url.path.rstrip("/") == base or url.path.startswith(base + "/")


def allowed_base_urls_from_env() -> list[str]:
    """The URL prefixes in ``MOA_ALLOWED_BASE_URLS`` (comma-separated)."""
    return [u.strip() for u in os.environ.get("MOA_ALLOWED_BASE_URLS", "").split(",") if u.strip()]


class ModelResolver:
    """Turns a :class:`ModelSpec` of a run into a ready chat model.

    Args:
        models: Ready chat models or agents by ``"provider:model"`` name, used as
            they are instead of ``init_chat_model`` (fakes in tests, custom
            clients, agents with tools).
        allowed_base_urls: When given, endpoints a run's config may name: see
            :func:`check_endpoints`. ``None`` allows any (the config is trusted).
    """

    def __init__(
        self,
        models: Mapping[str, BaseChatModel | Runnable] | None = None,
        *,
        allowed_base_urls: Iterable[str] | None = None,
    ) -> None:
        self._models = dict(models or {})
        self._allowed = None if allowed_base_urls is None else tuple(allowed_base_urls)

    def check(self, config: MoAConfig) -> None:
        """Fail fast, before any call: see :func:`check_credentials` and :func:`check_endpoints`."""
        if self._allowed is not None:
            check_endpoints(config, self._allowed)
        check_credentials(config, skip=frozenset(self._models))

    def __call__(self, spec: ModelSpec, config: MoAConfig, *, streaming: bool) -> Runnable:
        """The chat model for ``spec`` with the run's settings applied.

        Args:
            spec: The model and its overrides.
            config: The run's configuration (temperature, max_tokens, timeout, retries).
            streaming: ``False`` keeps the call off the token stream and off the
                provider's streaming API (proposers); ``True`` streams (the aggregator).

        Raises:
            MissingCredentialsError: the provider's API key is not set.
        """
        if spec.model in self._models:
            model: Runnable = self._models[spec.model]
        else:
            key = api_key(spec, config)
            settings = (
                spec.model,
                spec.temperature if spec.temperature is not None else config.temperature,
                spec.max_tokens if spec.max_tokens is not None else config.max_tokens,
                effective_base_url(spec, config),
                spec.seed,
                config.timeout,
                config.max_retries,
                streaming,
                spec.requests_per_second,
            )
            cache_key = (settings, hashlib.sha256(key.encode()).hexdigest() if key else None)
            models = _models_of_this_loop()
            model = models.pop(cache_key, None)
            if model is None:
                model = _new_model(*settings, api_key=key)
            models[cache_key] = model  # most recently used last
            while len(models) > MODEL_CACHE_SIZE:
                models.pop(next(iter(models)))  # runs still holding it finish with it
        return model if streaming else model.with_config(tags=["nostream"])


MODEL_CACHE_SIZE = 64
"""Chat models kept per event loop. A server whose requests set their own
temperature or max_tokens builds a model per distinct setting; the least
recently used ones beyond this count are dropped, so memory stays bounded."""

_PER_LOOP: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Any, BaseChatModel]] = weakref.WeakKeyDictionary()


def _models_of_this_loop() -> dict[Any, BaseChatModel]:
    # HTTP clients hold connections bound to the loop that opened them. Their transports
    # refer back to the loop, so a weak key alone never lets a closed loop's entry go:
    # drop those here (each `asyncio.run` of a script leaves one).
    for loop in [loop for loop in _PER_LOOP if loop.is_closed()]:
        _PER_LOOP.pop(loop, None)
    return _PER_LOOP.setdefault(asyncio.get_running_loop(), {})


@lru_cache(maxsize=256)
def _rate_limiter(model: str, base_url: str | None, requests_per_second: float) -> InMemoryRateLimiter:
    return InMemoryRateLimiter(requests_per_second=requests_per_second, check_every_n_seconds=0.05)


def _new_model(
    model: str,
    temperature: float,
    max_tokens: int,
    base_url: str | None,
    seed: int | None,
    timeout: float,
    max_retries: int,
    streaming: bool,
    requests_per_second: float | None,
    *,
    api_key: str | None,
) -> BaseChatModel:
    provider = model.partition(":")[0]
    kwargs: dict[str, Any] = {
        "temperature": temperature,
        "max_tokens": max_tokens,
        "timeout": timeout,
        "max_retries": max_retries,
    }
    if requests_per_second:
        kwargs["rate_limiter"] = _rate_limiter(model, base_url, requests_per_second)
    if base_url:
        kwargs["base_url"] = base_url
    if api_key:
        kwargs["api_key"] = api_key
    if not streaming:
        kwargs["disable_streaming"] = True
    if provider in _OPENAI_COMPATIBLE:
        from openai import DefaultAsyncHttpxClient

        kwargs["http_async_client"] = DefaultAsyncHttpxClient(timeout=timeout)  # one per loop, not global
        if streaming:
            kwargs["stream_usage"] = True
        if seed is not None:
            kwargs["seed"] = seed
        if provider == "openai" and base_url:
            # langchain-openai sends OpenAI's newer `max_completion_tokens`, which vLLM, Ollama,
            # llama.cpp and LM Studio may ignore; they all honour the classic `max_tokens`.
            kwargs["extra_body"] = {"max_tokens": kwargs.pop("max_tokens")}
        if base_url:
            kwargs.setdefault("api_key", _PLACEHOLDER_KEY)
    return init_chat_model(model, **kwargs)


_KEY_SHAPED = re.compile(r"\b(?:sk|tgp|gsk|xai)-[A-Za-z0-9_\-]{8,}")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._\-]{8,}")


_SECRET_NAME = re.compile(r"(?i)(KEY|KEYS|TOKEN|SECRET|PASSWORD)$")


def redact(text: str, *, variables: Iterable[str] = ()) -> str:
    """Remove secrets from ``text``.

    Removed: the values of the known provider key variables, of every environment
    variable whose name ends in KEY, KEYS, TOKEN, SECRET or PASSWORD (and their
    comma-separated parts), of ``variables`` (e.g. a model's ``api_key_env``),
    and key-shaped tokens (``sk-...``, ``Bearer ...``).
    """
    names = {*API_KEY_VARIABLES.values(), *variables, *(n for n in os.environ if _SECRET_NAME.search(n))}
    values = set()
    for name in names:
        value = os.environ.get(name) or ""
        values.update(part.strip() for part in [value, *value.split(",")])
    for value in sorted((v for v in values if len(v) >= 6), key=len, reverse=True):
        text = text.replace(value, "***")
    return _BEARER.sub(r"\1***", _KEY_SHAPED.sub("***", text))


def describe_error(exc: BaseException, *, variables: Iterable[str] = ()) -> tuple[str, str]:
    """``(error type, one-line message)`` for a failed model call, with secrets removed.

    Args:
        exc: The error.
        variables: More environment variables whose values must not appear
            (a model's ``api_key_env``); see :func:`redact`.
    """
    if isinstance(exc, TimeoutError):
        return "TimeoutError", "no answer within the timeout"
    message = redact(" ".join(str(exc).split()) or repr(exc), variables=variables)
    if len(message) > 300:
        message = message[:297] + "..."
    return _provider_error_name(type(exc)), message


def _provider_error_name(cls: type) -> str:
    """The provider SDK's own error name: langchain-openai subclasses ``openai``'s errors."""
    for klass in cls.__mro__:
        if not klass.__module__.startswith("langchain"):
            return klass.__name__
    return cls.__name__
