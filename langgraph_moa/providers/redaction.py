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


def secret_values(variables: Iterable[str] = ()) -> list[str]:
    """The values :func:`redact` removes (longest first): see there.

    Values shorter than 6 characters are left out: removing ``"1"`` or ``"true"``
    from every text would garble it without protecting anything.
    """
    names = {*API_KEY_VARIABLES.values(), *variables, *(n for n in os.environ if _SECRET_NAME.search(n))}
    values: set[str] = set()
    for name in names:
        value = os.environ.get(name) or ""
        values.update(part.strip() for part in [value, *value.split(",")])
    values.update([json.dumps(v, ensure_ascii=False)[1:-1] for v in values])
    return sorted((v for v in values if len(v) >= 6), key=len, reverse=True)


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
    return _redact_values(text, secret_values(variables), shapes=shapes)


def _redact_values(text: str, values: Iterable[str], *, shapes: bool) -> str:
    """Each stretch of ``text`` that (overlapping) occurrences of ``values`` cover becomes one ``***``."""
    spans = []
    for value in values:
        at = text.find(value)
        while at >= 0:
            spans.append((at, at + len(value)))
            at = text.find(value, at + 1)
    if spans:
        kept, shown = [], 0
        run_start, run_end = -1, -1
        for begin, stop in [*sorted(spans), (len(text) + 1, len(text) + 1)]:
            if begin < run_end:  # overlaps the stretch being covered
                run_end = max(run_end, stop)
                continue
            if run_end > 0:
                kept += [text[shown:run_start], "***"]
                shown = run_end
            run_start, run_end = begin, stop
        text = "".join([*kept, text[shown:]])
    return _BEARER.sub(r"\1***", _KEY_SHAPED.sub("***", text)) if shapes else text


# The end of a text that may be the start of a key-shaped token: a prefix of "sk-" (and the others),
# or one with its token characters so far; "Bearer" (or a prefix of it), its spaces and token so far.
_SHAPE_START = re.compile(
    r"\b(?:(?:sk|tgp|gsk|xai)-[A-Za-z0-9_\-]*|s|sk|t|tg|tgp|g|gs|gsk|x|xa|xai)$"
    r"|(?i:\bb(?:e(?:a(?:r(?:e(?:r(?:\s+[A-Za-z0-9._\-]*)?)?)?)?)?)?)$"
)


_HEAD = 8  # characters of a secret's start compared first (secrets are at least 6 long)


class StreamRedactor:
    """:func:`redact` for a text that arrives in pieces (a streamed answer).

    Like model answers, streams are redacted by value only unless ``shapes``.

    A secret split across pieces is still removed, however the text is cut and
    whatever surrounds it: only the end of the text that could still be the
    start of a secret is held back (at most about twice the longest secret's
    length; with ``shapes``, a key-shaped token until it ends), and the rest is
    sent. So the concatenation of everything :meth:`feed` and :meth:`flush`
    return is the whole text redacted, and no piece of it gives part of a
    secret away. The secrets are read from the environment when the redactor
    is made.

    Example:
        ```python
        redactor = StreamRedactor()
        shown = [redactor.feed(piece) for piece in pieces] + [redactor.flush()]
        ```
    """

    def __init__(self, *, variables: Iterable[str] = (), shapes: bool = False, hold: int | None = None) -> None:
        """``hold`` is accepted for compatibility and unused: what is held back depends on the secrets."""
        self._values = secret_values(variables)
        self._heads = {v[:_HEAD] for v in self._values}  # a cheap first test of a long tail
        self._longest = max((len(v) for v in self._values), default=0)
        self._shapes = shapes
        self._pending = ""

    def _cut(self, text: str) -> int:
        """Where the text that is certain ends: nothing from there on may be sent yet."""
        cut = len(text)
        for start in range(max(0, len(text) - self._longest + 1), len(text)):
            if len(text) - start >= _HEAD and text[start : start + _HEAD] not in self._heads:
                continue
            tail = text[start:]
            if any(len(v) > len(tail) and v.startswith(tail) for v in self._values):
                cut = start  # the start of a secret, still to be completed
                break
        if self._shapes:
            shape = _SHAPE_START.search(text)
            if shape:
                cut = min(cut, shape.start())
        # never cut through a secret that the text already holds whole
        spans = (
            [(m.start(), m.end()) for m in (*_KEY_SHAPED.finditer(text), *_BEARER.finditer(text))]
            if self._shapes
            else []
        )
        for value in self._values:
            at = text.find(value)
            while 0 <= at < cut:
                spans.append((at, at + len(value)))
                at = text.find(value, at + 1)
        moved = True
        while moved:
            moved = False
            for begin, end in spans:
                if begin < cut < end:
                    cut, moved = begin, True
        return cut

    def feed(self, piece: str) -> str:
        """Add ``piece``; return the redacted text that is certain by now (possibly ``""``)."""
        text = self._pending + piece
        cut = self._cut(text)
        self._pending = text[cut:]
        return _redact_values(text[:cut], self._values, shapes=self._shapes) if cut else ""

    def flush(self) -> str:
        """The redacted text held back; call once the stream has ended."""
        text, self._pending = self._pending, ""
        return _redact_values(text, self._values, shapes=self._shapes) if text else ""


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
