"""Which API key each model is called with, checked before any call.

Each provider package reads its usual environment variable
(``TOGETHER_API_KEY``, ``OPENAI_API_KEY``, ...). A model on a ``base_url`` that you
named (``ModelSpec.base_url``, ``MoAConfig.base_url``, ``--base-url``) gets no key
unless its ``api_key_env`` names the variable to read, whatever its provider
prefix, so no provider's key is ever sent to another server by accident; a server
set through ``OPENAI_BASE_URL`` gets ``OPENAI_API_KEY``, as the OpenAI SDK does.
Keys never enter graph state, checkpoints or error messages.
"""

from __future__ import annotations

import os

from langgraph_moa.config import MoAConfig, ModelSpec
from langgraph_moa.errors import ConfigError, MissingCredentialsError
from langgraph_moa.providers.endpoints import effective_base_url, named_base_url

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


def key_variables(*configs: MoAConfig) -> list[str]:
    """The ``api_key_env`` variables that the models of ``configs`` name, for :func:`redact` and ``StreamRedactor``.

    A model's own key variable need not be named like a secret (``MY_LLM_CRED``),
    so :func:`~langgraph_moa.providers.redact` would not know it from its name.
    """
    return sorted({spec.api_key_env for config in configs for spec in config.all_models() if spec.api_key_env})


def supported_providers() -> frozenset[str] | None:
    """The providers ``init_chat_model`` knows, or ``None`` if LangChain does not say."""
    from langchain.chat_models import base

    # LangChain has no public list of init_chat_model's providers; this private table is read only
    # when present (tests/test_layout.py pins that it still is), and the check is skipped otherwise.
    providers = getattr(base, "_BUILTIN_PROVIDERS", None)
    return frozenset(providers) if providers else None


def _key_variable(spec: ModelSpec, config: MoAConfig) -> tuple[str | None, bool]:
    """``(variable to read the key from, whether the model can run without it)``."""
    if spec.api_key_env:
        return spec.api_key_env, False
    if named_base_url(spec, config):
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
