"""Strict JSON text: what RFC 8259 allows and a record can carry back out, nothing else.

Python's ``json.loads`` accepts ``NaN`` and ``Infinity``, turns ``1e999`` into an
infinity, and raises ``RecursionError`` (not ``ValueError``) on deep nesting: each of
those, met in an input row, a response body or a record file, would end as a silently
changed value, a record no writer can put back, or a crash. Here each is a ValueError.
"""

from __future__ import annotations

import json
import math
from typing import Any


class TooDeep(ValueError):
    """Nested deeper than the parser can go."""


class NumberText(str):
    """A JSON number as it was written (``1e2``, ``1.50``, ``-0``), for where the text is
    what is wanted (a row's field filling a placeholder), not its value."""


def loads(text: str | bytes, *, numbers_as_text: bool = False) -> Any:
    """Parse JSON text; ValueError for anything that is not JSON a record can hold.
    ``numbers_as_text``: numbers come back as ``NumberText``, as they were written."""
    try:
        if numbers_as_text:
            return json.loads(
                text, parse_constant=_no_constant, parse_float=_finite_text, parse_int=NumberText
            )
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except RecursionError:
        raise TooDeep("nested too deeply to parse") from None


def _finite_text(text: str) -> NumberText:
    _finite(text)
    return NumberText(text)


def _no_constant(name: str) -> Any:
    """NaN and Infinity are not JSON (RFC 8259); no writer can put them back (orjson
    writes null, the stdlib writes invalid JSON)."""
    raise ValueError(f"{name} is not a JSON value")


def _finite(text: str) -> float:
    """A JSON number that a double cannot hold (1e999) is refused as orjson refuses it:
    the stdlib would make it infinity, which no writer can put back."""
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number {text[:40]} is beyond what a double holds")
    return value
