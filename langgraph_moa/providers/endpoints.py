"""Which endpoint a model is called on, and which endpoints and key variables a run may name.

A model's endpoint is its own ``base_url``, else the run's (``openai:`` models
only), else ``OPENAI_BASE_URL``. A graph whose configuration comes from clients
(a LangGraph server) holds an :class:`EndpointPolicy`: the operator's choice of
endpoints and key variables. A run may name only the endpoints the operator
allowed (``MOA_ALLOWED_BASE_URLS``, or those of the operator's own models), and
an ``api_key_env`` only where one of the operator's models uses that variable,
so a client cannot send requests, or any of the server's environment, to a host
of its choosing. Loopback is no exception: a port on the server's own machine
is a host the client does not control either.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import SplitResult, urlsplit

from langgraph_moa.config import MoAConfig, ModelSpec
from langgraph_moa.errors import ConfigError


def named_base_url(spec: ModelSpec, config: MoAConfig) -> str | None:
    """A base URL the user named in the config (not the environment's)."""
    if spec.base_url:
        return spec.base_url
    return config.base_url if spec.provider == "openai" else None


def effective_base_url(spec: ModelSpec, config: MoAConfig) -> str | None:
    """The endpoint ``spec`` is called on: its own, the run's (openai only), or the env's."""
    named = named_base_url(spec, config)
    if named or spec.provider != "openai":
        return named
    return os.environ.get("OPENAI_BASE_URL") or os.environ.get("OPENAI_API_BASE")


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
"""The host names of this machine's loopback interface."""


def _destination(spec: ModelSpec, config: MoAConfig) -> str:
    """Where ``spec``'s requests (and key) go: its named base URL, else its provider's own endpoint."""
    return named_base_url(spec, config) or f"{spec.provider}:"


def _covers(prefix: str, destination: str) -> bool:
    if prefix.endswith(":") or destination.endswith(":"):  # a provider's own endpoint
        return prefix == destination
    return _under(urlsplit(destination), urlsplit(prefix))


def _no_configs() -> Iterable[MoAConfig]:
    return ()


@dataclass(frozen=True)
class EndpointPolicy:
    """The endpoints and key variables a client's run may name: the operator's, never the client's.

    A graph whose configuration comes from its clients (the LangGraph API's
    ``context`` or ``configurable``) checks every run against it before any
    call (:meth:`check`):

    - a ``base_url`` (a model's or the run's) must be under one of
      :attr:`base_urls`, or be the endpoint of one of the operator's models.
      Loopback is not allowed unless it is listed there too;
    - an ``api_key_env`` must be a variable that one of the operator's models
      names, on the same endpoint (the same ``base_url``, or the same provider
      when there is none). Any other variable name (``HOME``,
      ``OPENAI_API_KEY`` on a ``base_url``) is refused.

    Attributes:
        base_urls: URL prefixes (same scheme, host and port; a path at or below)
            a run may name. No key goes there unless an operator model pairs
            the endpoint with its ``api_key_env``.
        operator_configs: The operator's own configurations (presets, served
            assistants), read at each check: their endpoints are allowed, each
            with the key variable its model names.
    """

    base_urls: tuple[str, ...] = ()
    operator_configs: Callable[[], Iterable[MoAConfig]] = field(default=_no_configs)

    def check(self, config: MoAConfig) -> None:
        """Refuse ``config`` if it names an endpoint or a key variable the operator did not allow.

        Raises:
            ConfigError: naming the model, the endpoint or variable, and how the operator allows it.
        """
        operator = [
            (_destination(spec, op), spec.api_key_env) for op in self.operator_configs() for spec in op.all_models()
        ]
        prefixes = [p for p in (u.strip() for u in self.base_urls) if p]
        for spec in config.all_models():
            destination = _destination(spec, config)
            url = named_base_url(spec, config)
            if url is not None and not (
                any(_covers(p, url) for p in prefixes) or any(_covers(d, url) for d, _ in operator)
            ):
                raise ConfigError(
                    f"model {spec.model!r}: base_url {url!r} is not allowed on this server; the operator lists "
                    "the endpoints a run may name in MOA_ALLOWED_BASE_URLS (comma-separated URL prefixes, "
                    "loopback included) or serves a model on it (MOA_ASSISTANTS)"
                )
            if spec.api_key_env and not any(var == spec.api_key_env and _covers(d, destination) for d, var in operator):
                raise ConfigError(
                    f"model {spec.model!r}: api_key_env {spec.api_key_env!r} is not allowed on this server "
                    f"for {url or spec.provider + ' models'}; a run may name only a key variable that one of "
                    "the operator's models uses on the same endpoint (MOA_ASSISTANTS)"
                )


def check_endpoints(config: MoAConfig, allowed: Iterable[str] | EndpointPolicy) -> None:
    """Refuse a config naming an endpoint or key variable that ``allowed`` does not allow.

    ``allowed`` is an :class:`EndpointPolicy`, or URL prefixes (a policy with
    only :attr:`EndpointPolicy.base_urls`: no ``api_key_env`` is allowed).

    Raises:
        ConfigError: naming the model and the endpoint or variable, and how to allow it.
    """
    policy = allowed if isinstance(allowed, EndpointPolicy) else EndpointPolicy(base_urls=tuple(allowed))
    policy.check(config)


def _under(url: SplitResult, prefix: SplitResult) -> bool:
    """Same scheme, host and port, and a path at or below the prefix's."""
    if (url.scheme, url.hostname, url.port) != (prefix.scheme, prefix.hostname, prefix.port):
        return False
    base = prefix.path.rstrip("/")
    return url.path.rstrip("/") == base or url.path.startswith(base + "/")


def allowed_base_urls_from_env() -> list[str]:
    """The URL prefixes in ``MOA_ALLOWED_BASE_URLS`` (comma-separated)."""
    return [u.strip() for u in os.environ.get("MOA_ALLOWED_BASE_URLS", "").split(",") if u.strip()]


ASSISTANTS_VARIABLE = "MOA_ASSISTANTS"
"""Environment variable naming a JSON file of the operator's assistants (the format of ``moa serve --assistants``)."""


def _served_configs() -> list[MoAConfig]:
    """The operator's models on a LangGraph server: the presets (``local`` once its server runs) and ``MOA_ASSISTANTS``."""
    from langgraph_moa.presets import PRESET_FACTORIES, PRESETS

    configs = list(PRESETS.values())
    for factory in PRESET_FACTORIES.values():
        try:
            configs.append(factory())
        except Exception:  # a preset that cannot be built now (its server is not running) allows nothing
            continue
    file = os.environ.get(ASSISTANTS_VARIABLE)
    if file:
        from langgraph_moa.context import load_assistants  # the file format of moa serve --assistants

        configs += load_assistants(Path(file)).values()
    return configs


def served_graph_policy() -> EndpointPolicy:
    """The policy of the graph ``langgraph.json`` serves: ``MOA_ALLOWED_BASE_URLS`` and the operator's models.

    The operator's models are the presets (with ``local``, on loopback, once
    its server runs) and the assistants of the ``MOA_ASSISTANTS`` file, read at
    each run.
    """
    return EndpointPolicy(base_urls=tuple(allowed_base_urls_from_env()), operator_configs=_served_configs)
