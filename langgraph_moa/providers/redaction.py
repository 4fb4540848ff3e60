"""Remove secrets from text, and describe a failed model call without them."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable

from langgraph_moa.providers.credentials import API_KEY_VARIABLES

_KEY_SHAPED = re.compile(r"\b(?:sk|tgp|gsk|xai)-[A-Za-z0-9_\-]{8,}")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._\-]{8,}")


_SECRET_NAME = re.compile(r"(?i)(KEY|KEYS|TOKEN|SECRET|PASSWORD)$")


def redact(text: str, *, variables: Iterable[str] = (), shapes: bool = True) -> str:
    """Remove secrets from ``text``.

    Removed: the values of the known provider key variables, of every environment
    variable whose name ends in KEY, KEYS, TOKEN, SECRET or PASSWORD (and their
    comma-separated parts), of ``variables`` (e.g. a model's ``api_key_env``),
    and, unless ``shapes`` is false, key-shaped tokens (``sk-...``, ``Bearer ...``).
    A value is also removed in its JSON-escaped form, so ``text`` may be a JSON
    document.

    Model answers are redacted with ``shapes=False``: a key sent to a provider
    is one of those values, and an answer about "Bearer authentication" must
    keep its words.
    """
    names = {*API_KEY_VARIABLES.values(), *variables, *(n for n in os.environ if _SECRET_NAME.search(n))}
    values: set[str] = set()
    for name in names:
        value = os.environ.get(name) or ""
        values.update(part.strip() for part in [value, *value.split(",")])
    values.update([json.dumps(v, ensure_ascii=False)[1:-1] for v in values])
    for value in sorted((v for v in values if len(v) >= 6), key=len, reverse=True):
        if value in text:
            text = text.replace(value, "***")
    return _BEARER.sub(r"\1***", _KEY_SHAPED.sub("***", text)) if shapes else text


_TRAILING_BEARER = re.compile(r"(?i)\bbearer\s*$")


class StreamRedactor:
    """:func:`redact` for a text that arrives in pieces (a streamed answer).

    Like model answers, streams are redacted by value only unless ``shapes``.

    A secret split across pieces is still removed: the text after the last
    whitespace is held back until more text shows where its word ends (or
    :meth:`flush` is called), since keys hold no whitespace. At most
    ``hold`` characters are held back.

    Example:
        ```python
        redactor = StreamRedactor()
        shown = [redactor.feed(piece) for piece in pieces] + [redactor.flush()]
        ```
    """

    def __init__(self, *, variables: Iterable[str] = (), shapes: bool = False, hold: int = 512) -> None:
        self._variables = tuple(variables)
        self._shapes = shapes
        self._hold = hold
        self._pending = ""

    def feed(self, piece: str) -> str:
        """Add ``piece``; return the redacted text that is certain by now (possibly ``""``)."""
        text = self._pending + piece
        cut = max(text.rfind(" "), text.rfind("\n"), text.rfind("\t"), text.rfind("\r")) + 1
        bearer = _TRAILING_BEARER.search(text, 0, cut) if self._shapes else None
        if bearer:  # "Bearer " with its token still to come
            cut = bearer.start()
        cut = max(cut, len(text) - self._hold)
        self._pending = text[cut:]
        return redact(text[:cut], variables=self._variables, shapes=self._shapes) if cut else ""

    def flush(self) -> str:
        """The redacted text held back; call once the stream has ended."""
        text, self._pending = self._pending, ""
        return redact(text, variables=self._variables, shapes=self._shapes) if text else ""


def describe_error(exc: BaseException, *, variables: Iterable[str] = ()) -> tuple[str, str]:
    """``(error type, one-line message)`` for a failed model call, with secrets removed.

    Args:
        exc: The error.
        variables: More environment variables whose values must not appear
            (a model's ``api_key_env``); see :func:`redact`.
    """
    if isinstance(exc, TimeoutError):
        return "TimeoutError", "no answer within the timeout"
    message = " ".join(str(exc).split()) or repr(exc)
    endpoint = request_endpoint(exc)
    if endpoint and endpoint not in message:
        message = f"{message.rstrip('.')} ({endpoint})"
    message = redact(message, variables=variables)
    if len(message) > 300:
        message = message[:297] + "..."
    return _provider_error_name(type(exc)), message


def request_endpoint(exc: BaseException) -> str | None:
    """The URL a failed HTTP call went to (``openai``/``httpx`` errors), without credentials or query.

    A connection error names no address in its own message ("Connection error."),
    which leaves the user guessing which server is down.
    """
    for error in (exc, exc.__cause__, exc.__context__):
        try:
            url = error.request.url  # type: ignore[union-attr]
        except (AttributeError, RuntimeError):  # httpx raises RuntimeError when no request is attached
            continue
        host = getattr(url, "host", None)
        if not host:
            continue
        port = f":{url.port}" if getattr(url, "port", None) else ""
        return f"{url.scheme}://{host}{port}{url.path}"
    return None


def _provider_error_name(cls: type) -> str:
    """The provider SDK's own error name: langchain-openai subclasses ``openai``'s errors."""
    for klass in cls.__mro__:
        if not klass.__module__.startswith("langchain"):
            return klass.__name__
    return cls.__name__
