"""Strict value types of the configuration: booleans are booleans, numbers are finite numbers.

Pydantic's default (lax) mode reads ``"yes"`` and ``1`` as ``True``, ``True``
as ``1``, ``"0.5"`` as ``0.5`` and ``1e400`` as infinity. A configuration comes
from Python, the CLI, JSON files, ``/v1`` bodies, LangServe's ``configurable``
and the Agent Server's context; each of those is held to these types, so a
value of the wrong kind is an error naming the field, wherever it enters.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AllowInfNan, Strict

Flag = Annotated[bool, Strict()]
"""``True`` or ``False``; not ``1``, ``"yes"`` or ``"true"``."""

Whole = Annotated[int, Strict()]
"""An integer; not ``True``, ``2.0`` or ``"2"``."""

Number = Annotated[float, Strict(), AllowInfNan(False)]
"""A finite number (an integer is accepted); not ``True``, ``"0.5"``, ``inf``, ``nan`` or ``1e400``."""
