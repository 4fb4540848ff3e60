"""Errors of the OpenAI-compatible API, in OpenAI's shape, and how a failed run maps to one.

Every error code the API answers with is listed in :mod:`langgraph_moa.serve.openai_api`'s
table; :func:`error_for` is the one place that maps a failed run to a status and code.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from langgraph_moa.errors import (
    AggregatorError,
    ConfigError,
    LayerFailedError,
    MissingCredentialsError,
    MoAError,
)
from langgraph_moa.providers import redact

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------- errors


class OpenAIError(MoAError):
    """An error answered in OpenAI's shape with an HTTP status.

    Attributes:
        status: The HTTP status code.
        message: What failed and what to do; never holds a key.
        type: OpenAI's error type (``invalid_request_error``, ``server_error``, ...).
        param: The request field at fault, if one is.
        code: A machine-readable code (``model_not_found``, ``proposers_failed``, ...).
        retry: Whether the same request may succeed if sent again. ``None``:
            only for 408, 429 and 5xx. When false, the response carries
            ``x-should-retry: false``, which the ``openai`` SDK obeys.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str,
        param: str | None = None,
        code: str | None = None,
        retry: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = redact(message)
        self.type = type
        self.param = param
        self.code = code
        self.retry = status in (408, 429) or status >= 500 if retry is None else retry

    def body(self) -> dict[str, Any]:
        """``{"error": {"message", "type", "param", "code"}}``."""
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        """The error as a JSON response (with ``x-should-retry: false`` when a retry cannot help)."""
        headers = None if self.retry else {"x-should-retry": "false"}
        return JSONResponse(self.body(), status_code=self.status, headers=headers)


def bad_request(message: str, param: str | None = None, code: str | None = "invalid_request") -> OpenAIError:
    """A 400 ``invalid_request_error`` naming what is wrong with the request (and its ``param``)."""
    return OpenAIError(400, message, type="invalid_request_error", param=param, code=code)


_PERMANENT_ERRORS = frozenset(
    {  # upstream answers that the same request would get again
        "AuthenticationError",
        "BadRequestError",
        "ConfigError",
        "MissingCredentialsError",
        "NotFoundError",
        "PermissionDeniedError",
        "UnprocessableEntityError",
    }
)


def _upstream_status(error_types: list[str]) -> tuple[int, str, bool]:
    """Status, error type and whether a retry may help, for failed upstream calls of these error types."""
    if error_types and all(t == "RateLimitError" for t in error_types):
        return 429, "rate_limit_error", True
    if error_types and all(t == "TimeoutError" for t in error_types):
        return 504, "server_error", True
    return 502, "server_error", not (error_types and all(t in _PERMANENT_ERRORS for t in error_types))


def error_for(exc: BaseException, model: str) -> OpenAIError:
    """The OpenAI error answering a failed MoA run of served ``model`` (logged when the server is at fault)."""
    error = _error_for(exc, model)
    if error.status >= 500:
        logger.warning("%s: %d %s: %s", model, error.status, error.code, error.message)
    return error


def _error_for(exc: BaseException, model: str) -> OpenAIError:
    if isinstance(exc, OpenAIError):
        return exc
    if isinstance(exc, LayerFailedError):
        status, kind, retry = _upstream_status([f["error_type"] for f in exc.failures])
        code = {429: "rate_limit_exceeded", 504: "upstream_timeout"}.get(status, "proposers_failed")
        return OpenAIError(status, str(exc), type=kind, code=code, retry=retry)
    if isinstance(exc, AggregatorError):
        status, kind, retry = _upstream_status([exc.error_type])
        code = {429: "rate_limit_exceeded", 504: "upstream_timeout"}.get(status, "aggregator_failed")
        return OpenAIError(status, str(exc), type=kind, code=code, retry=retry)
    if isinstance(exc, MissingCredentialsError):
        return OpenAIError(
            503,
            f"model {model!r} is not available on this server: {exc.model} needs {exc.variable}, "
            "which is not set where the server runs",
            type="server_error",
            code="missing_credentials",
            retry=False,
        )
    if isinstance(exc, ConfigError):
        return OpenAIError(
            500,
            f"model {model!r} is misconfigured on this server: {exc}",
            type="server_error",
            code="invalid_config",
            retry=False,
        )
    logger.error("MoA run of %s failed: %s: %s", model, type(exc).__name__, redact(" ".join(str(exc).split())))
    return OpenAIError(
        500, f"the MoA run failed: {type(exc).__name__}; see the server log", type="server_error", code="internal_error"
    )


def add_openai_error_handlers(app: FastAPI, prefix: str = "/v1") -> None:
    """Answer an unknown route or method under ``prefix`` in OpenAI's error shape.

    FastAPI's own ``{"detail": "Not Found"}`` is what clients of other routes
    expect; under ``/v1`` the ``openai`` SDK reads ``{"error": {...}}``.
    """

    async def unknown_route(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if not request.url.path.startswith(prefix) or exc.status_code not in (404, 405):
            return await http_exception_handler(request, exc)
        where = f"{request.method} {request.url.path}"
        if exc.status_code == 404:
            message, code = (
                f"Unknown request URL: {where}; this server serves {prefix}/models, "
                f"{prefix}/chat/completions and {prefix}/responses",
                "unknown_url",
            )
        else:
            message, code = f"Method not allowed: {where}", "method_not_allowed"
        error = OpenAIError(exc.status_code, message, type="invalid_request_error", code=code)
        response = error.response()
        if exc.headers:
            response.headers.update(exc.headers)  # Allow, on a 405
        return response

    app.add_exception_handler(HTTPException, unknown_route)
