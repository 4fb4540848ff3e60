"""Models of a run: which client, which endpoint, which key, and errors without secrets.

- :mod:`~langgraph_moa.providers.resolver`: ``"provider:model"`` to a chat model (``ModelResolver``).
- :mod:`~langgraph_moa.providers.credentials`: the API key each model needs, checked before any call.
- :mod:`~langgraph_moa.providers.endpoints`: the endpoint each model is called on, and which endpoints and key variables a run may name (``EndpointPolicy``).
- :mod:`~langgraph_moa.providers.redaction`: secrets removed from text and streams (``redact``, ``StreamRedactor``, ``describe_error``).
"""

from langgraph_moa.providers.credentials import (
    API_KEY_VARIABLES,
    api_key,
    check_credentials,
    key_variables,
    supported_providers,
)
from langgraph_moa.providers.endpoints import (
    LOOPBACK_HOSTS,
    EndpointPolicy,
    allowed_base_urls_from_env,
    check_endpoints,
    effective_base_url,
    served_graph_policy,
)
from langgraph_moa.providers.redaction import StreamRedactor, describe_error, redact
from langgraph_moa.providers.resolver import MODEL_CACHE_SIZE, ModelResolver

__all__ = [
    "API_KEY_VARIABLES",
    "EndpointPolicy",
    "LOOPBACK_HOSTS",
    "MODEL_CACHE_SIZE",
    "ModelResolver",
    "StreamRedactor",
    "allowed_base_urls_from_env",
    "api_key",
    "check_credentials",
    "check_endpoints",
    "describe_error",
    "effective_base_url",
    "key_variables",
    "redact",
    "served_graph_policy",
    "supported_providers",
]
