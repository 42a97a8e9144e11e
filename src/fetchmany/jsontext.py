"""Strict JSON text: what RFC 8259 allows and a record can carry back out, nothing else.

Python's ``json.loads`` accepts ``NaN`` and ``Infinity``, turns ``1e999`` into an
infinity, and raises ``RecursionError`` (not ``ValueError``) on deep nesting: each of
those, met in an input row, a response body or a record file, would end as a silently
changed value, a record no writer can put back, or a crash. Here each is a ValueError.

``loads_record`` gives the same value as ``loads`` at orjson's speed, for record files
read back whole (--resume, --merge, --refresh), where parsing is most of the work.
"""

from __future__ import annotations

import json
import math
from typing import Any, Final

import orjson


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


_LONGEST_EXACT: Final = float(2**63)
"""orjson gives an integer beyond 64 bits as a float (of at least this size), losing its
digits; an integer it keeps is below it."""


def loads_record(line: bytes) -> Any:
    """``loads`` of ``line`` read as UTF-8, the same value or the same ValueError, parsed
    by orjson where orjson is exact: everything it refuses (NaN, 1e999, a lone surrogate,
    deep nesting, bad UTF-8) and every value holding a float of 2**63 or more (an integer
    beyond 64 bits, which orjson rounds) is parsed again by ``loads``, which decides.

    Read as UTF-8, as fetchmany writes it: ``json.loads`` of bytes takes a byte-order mark
    (or UTF-16) at the start of any line too, so a line an editor or ``cat`` put there
    passed as a record, and a resumed file went on with it, which no JSON reader takes."""
    try:
        value = orjson.loads(line)
    except ValueError:  # orjson.JSONDecodeError too: the strict parser words the error
        return _loads_utf8(line)
    if isinstance(value, float) and abs(value) >= _LONGEST_EXACT:
        return _loads_utf8(line)
    stack = [value] if isinstance(value, dict | list) else []
    while stack:
        node = stack.pop()
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, dict | list):
                stack.append(child)
            elif isinstance(child, float) and abs(child) >= _LONGEST_EXACT:
                return _loads_utf8(line)
    return value


def _loads_utf8(line: bytes) -> Any:
    # surrogatepass: json.loads of bytes reads a lone surrogate's UTF-8 so, as before
    return loads(line.decode("utf-8", "surrogatepass"))


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
