"""Errors a MoA run raises; each names what failed and what to do about it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langgraph_moa.state import Failure


class MoAError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(MoAError, ValueError):
    """A MoA configuration (or a run's input) could not be used; the message names the field and the fix."""


class MissingCredentialsError(MoAError, ValueError):
    """A model's provider needs an API key that is not set.

    A ``ValueError`` too, so the LangGraph API shows its message to clients.
    """

    def __init__(self, model: str, variable: str) -> None:
        self.model = model
        self.variable = variable
        super().__init__(
            f"{model} needs {variable}: export {variable}=..., or serve the model from an "
            "OpenAI-compatible server (vLLM, Ollama, llama.cpp, LM Studio) and use "
            "'openai:<model>' with base_url (--base-url or OPENAI_BASE_URL)"
        )

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (type(self), (self.model, self.variable))


class EmptyResponseError(MoAError):
    """A model answered with no text."""


class StragglerTimeout(MoAError):
    """A proposer was cut off by ``MoAConfig.straggler_timeout``.

    The layer had its ``min_proposals`` and this proposer was still running when
    the grace period ended.

    Recorded as a :class:`~langgraph_moa.state.Failure` with ``error_type``
    ``"StragglerTimeout"``; never raised out of a run.
    """


class LayerFailedError(MoAError):
    """Too few proposers of a layer succeeded for the run to go on.

    Attributes:
        layer: The proposer layer (1-based).
        failures: Every failed call of that layer: model, error type and message.
        succeeded: How many proposals of the layer succeeded.
        required: ``min_proposals``.
    """

    def __init__(self, layer: int, failures: Sequence[Failure], succeeded: int, required: int) -> None:
        self.layer = layer
        self.failures = list(failures)
        self.succeeded = succeeded
        self.required = required
        detail = "; ".join(f"{f['model']} (slot {f['slot']}): {f['error_type']}: {f['message']}" for f in self.failures)
        super().__init__(
            f"layer {layer} failed: {succeeded} proposal(s) succeeded, min_proposals={required}. "
            f"Failed: {detail or 'none'}"
        )

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:  # keep the exception picklable with its attributes
        return (type(self), (self.layer, self.failures, self.succeeded, self.required))


class AggregatorError(MoAError):
    """The final aggregator call failed; no answer was produced.

    The proposals of every layer stay in the checkpoint, so resuming the thread
    re-runs only the aggregator.
    """

    def __init__(self, model: str, error_type: str, message: str) -> None:
        self.model = model
        self.error_type = error_type
        self.message = message
        super().__init__(f"aggregator {model} failed: {error_type}: {message}")

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (type(self), (self.model, self.error_type, self.message))
