"""Resolve ``"provider:model"`` strings to chat models, and describe their errors.

Models are built with LangChain's ``init_chat_model`` and cached, so every run
reuses the provider clients and their connection pools, and a per-model rate
limiter is shared by every call to that model. API keys are read by the provider
packages from their usual environment variables; they never enter graph state,
checkpoints or error messages.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from langchain.chat_models import init_chat_model
from langchain_core.language_models import BaseChatModel
from langchain_core.rate_limiters import InMemoryRateLimiter
from langchain_core.runnables import Runnable

from langgraph_moa.config import ModelSpec, MoAConfig
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


def effective_base_url(spec: ModelSpec, config: MoAConfig) -> str | None:
    """The endpoint ``spec`` is called on: its own, the run's (openai only), or the env's."""
    if spec.base_url:
        return spec.base_url
    if spec.provider == "openai":
        return config.base_url or os.environ.get("OPENAI_BASE_URL") or os.environ.get("OPENAI_API_BASE")
    return None


def missing_credentials(spec: ModelSpec, config: MoAConfig) -> str | None:
    """Name the unset API-key variable ``spec`` needs, or ``None`` if it can run.

    An ``openai:`` model on a custom ``base_url`` needs no key: local
    OpenAI-compatible servers ignore it.
    """
    variable = API_KEY_VARIABLES.get(spec.provider)
    if variable is None or os.environ.get(variable):
        return None
    if spec.provider == "openai" and effective_base_url(spec, config):
        return None
    return variable


def check_credentials(config: MoAConfig) -> None:
    """Raise :class:`MissingCredentialsError` for the first model that cannot authenticate."""
    for spec in config.all_models():
        variable = missing_credentials(spec, config)
        if variable:
            raise MissingCredentialsError(spec.model, variable)


class ModelResolver:
    """Turns a :class:`ModelSpec` of a run into a ready chat model.

    Args:
        models: Ready chat models by ``"provider:model"`` string, used as they are
            instead of ``init_chat_model`` (fakes in tests, custom clients).
    """

    def __init__(self, models: Mapping[str, BaseChatModel] | None = None) -> None:
        self._models = dict(models or {})

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
            variable = missing_credentials(spec, config)
            if variable:
                raise MissingCredentialsError(spec.model, variable)
            model = _cached_model(
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
        return model if streaming else model.with_config(tags=["nostream"])


@lru_cache(maxsize=256)
def _rate_limiter(model: str, base_url: str | None, requests_per_second: float) -> InMemoryRateLimiter:
    return InMemoryRateLimiter(requests_per_second=requests_per_second, check_every_n_seconds=0.05)


@lru_cache(maxsize=256)
def _cached_model(
    model: str,
    temperature: float,
    max_tokens: int,
    base_url: str | None,
    seed: int | None,
    timeout: float,
    max_retries: int,
    streaming: bool,
    requests_per_second: float | None,
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
    if provider in _OPENAI_COMPATIBLE:
        if streaming:
            kwargs["stream_usage"] = True
        else:
            kwargs["disable_streaming"] = True
        if seed is not None:
            kwargs["seed"] = seed
        if base_url:
            kwargs["base_url"] = base_url
        if provider == "openai" and base_url:
            # langchain-openai sends OpenAI's newer `max_completion_tokens`, which vLLM, Ollama,
            # llama.cpp and LM Studio may ignore; they all honour the classic `max_tokens`.
            kwargs["extra_body"] = {"max_tokens": kwargs.pop("max_tokens")}
            if not os.environ.get("OPENAI_API_KEY"):
                kwargs["api_key"] = _PLACEHOLDER_KEY
    else:
        if not streaming:
            kwargs["disable_streaming"] = True
        if base_url:
            kwargs["base_url"] = base_url
    return init_chat_model(model, **kwargs)


_KEY_SHAPED = re.compile(r"\b(?:sk|tgp|gsk|xai)-[A-Za-z0-9_\-]{8,}")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._\-]{8,}")


def redact(text: str) -> str:
    """Remove API keys from ``text``: the values of known key variables and key-shaped tokens."""
    for variable in API_KEY_VARIABLES.values():
        value = os.environ.get(variable)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return _BEARER.sub(r"\1***", _KEY_SHAPED.sub("***", text))


def describe_error(exc: BaseException) -> tuple[str, str]:
    """``(error type, one-line message)`` for a failed model call, with secrets removed."""
    if isinstance(exc, TimeoutError):
        return "TimeoutError", "no answer within the timeout"
    message = " ".join(str(exc).split()) or repr(exc)
    if len(message) > 300:
        message = message[:297] + "..."
    return _provider_error_name(type(exc)), redact(message)


def _provider_error_name(cls: type) -> str:
    """The provider SDK's own error name: langchain-openai subclasses ``openai``'s errors."""
    for klass in cls.__mro__:
        if not klass.__module__.startswith("langchain"):
            return klass.__name__
    return cls.__name__
