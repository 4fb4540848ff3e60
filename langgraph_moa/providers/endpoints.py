"""Which endpoint a model is called on, and which endpoints a run may name.

A model's endpoint is its own ``base_url``, else the run's (``openai:`` models
only), else ``OPENAI_BASE_URL``. A graph whose configuration comes from clients
(a LangGraph server) allows only loopback and the prefixes in
``MOA_ALLOWED_BASE_URLS``, so a client cannot send requests, or a key, to a
host of its choosing.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from urllib.parse import SplitResult, urlsplit

from langgraph_moa.config import MoAConfig, ModelSpec
from langgraph_moa.errors import ConfigError


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
