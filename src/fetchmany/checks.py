"""The check of each setting's value, shared by the library's options and the command line.

Each function takes a value as a caller gives it (plain Python for the library,
the parsed text for the command line), returns it in the one form the run uses,
and raises ``TypeError`` (a value of the wrong kind) or ``ValueError`` (the right
kind, out of range) with a short phrase saying what the setting takes. The
caller names the setting: ``FetchOptions`` as ``"rate: not a rate: 'fast' ..."``,
click as ``"Invalid value for '--rate': not a rate: 'fast' ..."``. So each check is
written once and both say the same thing.

Imported by ``--help`` (through ``options.py``): nothing heavy here.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Final, TypeVar

T = TypeVar("T")

_NUMBER: Final = "int | float"


def named(name: str, check: Callable[[object], T], value: object) -> T:
    """``check(value)``, its error prefixed with ``name``: one error naming the setting."""
    try:
        return check(value)
    except TypeError as exc:
        raise TypeError(f"{name}: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def shown(value: object) -> str:
    """A value as an error message shows it: short, and its type when it is not plain."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    if isinstance(value, bool | int | float | str | type(None)):
        return text
    return f"{text} ({type(value).__name__})"


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def whole(value: object, least: int, most: int | None = None) -> int:
    """A whole number in range (``True``, ``2.5`` or ``"5"`` are not: they would fail
    later, deep in a run, or never be a bound)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"must be a whole number, got {shown(value)}")
    if value < least or (most is not None and value > most):
        bound = f"from {least} to {most:,}" if most is not None else f"at least {least}"
        raise ValueError(f"must be {bound}, got {value}")
    return value


def seconds(value: object, *, zero: bool) -> float:
    """A finite number of seconds, above 0 (``zero`` false) or from 0. Infinity and NaN
    are refused: they would wait forever, or compare false with every deadline."""
    if not _is_number(value):
        raise TypeError(f"must be a number of seconds, got {shown(value)}")
    assert isinstance(value, int | float)
    least = "from 0" if zero else "above 0"
    if math.isnan(value) or math.isinf(value) or value < 0 or (value == 0 and not zero):
        raise ValueError(f"must be a finite number of seconds {least}, got {value:g}")
    return float(value)


def flag(value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"must be True or False, got {shown(value)}")
    return value


def text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"must be text (str), got {shown(value)}")
    return value


def path(value: object) -> str:
    """A file or directory name: text or an ``os.PathLike`` (``pathlib.Path``)."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value:
        raise TypeError(f"must be a path (str or pathlib.Path), got {shown(value)}")
    if "\x00" in value:  # no file can be named so: the OS call would raise mid-run
        raise ValueError(f"a path cannot hold a NUL character, got {shown(value)}")
    return value


_RATE: Final = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:/\s*([smh]))?\s*$", re.IGNORECASE)
_PER: Final = {"s": 1.0, "m": 60.0, "h": 3600.0}
_RATE_HINT: Final = "(try 20, 20/s, 600/m)"


def rate(value: object) -> float:
    """Request starts per second: a positive number, or text ``20``, ``20/s``, ``600/m``,
    ``1000/h``."""
    if isinstance(value, str):
        match = _RATE.match(value)
        if match is None or float(match.group(1)) <= 0:
            raise ValueError(f"not a rate: {value!r} {_RATE_HINT}")
        return float(match.group(1)) / _PER[(match.group(2) or "s").lower()]
    if not _is_number(value):
        raise TypeError(f"must be a number per second or text such as '10/s', got {shown(value)}")
    assert isinstance(value, int | float)
    if not 0 < value < math.inf:  # NaN too
        raise ValueError(f"not a rate: {value!r} {_RATE_HINT}")
    return float(value)


_SIZE_UNITS: Final = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1024**3,
}
_SIZE_HINT: Final = "(try 500KB, 10MB, 1GB)"


def size(value: object) -> int:
    """Bytes: a whole number, or text ``500KB``, ``10MB``, ``1GiB`` (a plain count too)."""
    if not isinstance(value, str):
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"must be a number of bytes or text such as '10MB', got {shown(value)}")
        if value < 0:
            raise ValueError(f"not a size: {value} {_SIZE_HINT}")
        return value
    stripped = value.strip().lower()
    number = stripped.rstrip("kmgib")
    unit = stripped[len(number) :]
    try:
        amount = float(number)
    except ValueError:
        raise ValueError(f"not a size: {value!r} {_SIZE_HINT}") from None
    if unit not in _SIZE_UNITS or not math.isfinite(amount) or amount < 0:
        raise ValueError(f"not a size: {value!r} {_SIZE_HINT}")
    return int(amount * _SIZE_UNITS[unit])


def format_size(count: int) -> str:
    """Bytes as the shortest unit that is exact, as ``size`` reads it: 10000000 -> 10MB."""
    units = (("GB", 1000**3), ("MB", 1000**2), ("KB", 1000))
    for unit, factor in (*units, ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if count >= factor and count % factor == 0:
            return f"{count // factor}{unit}"
    return str(count)


TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
"""A header name (RFC 9110 5.1)."""
_VALUE_CONTROL: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # a tab is allowed


def header_value_problem(value: str) -> str | None:
    """Why ``value`` cannot be sent as a header value (RFC 9110 5.5), or None."""
    if (bad := _VALUE_CONTROL.search(value)) is not None:
        return f"contains a control character ({bad.group()!r})"
    return None


def header_text(value: object) -> str:
    """Text that can be sent as a header value."""
    value = text(value)
    if (problem := header_value_problem(value)) is not None:
        raise ValueError(f"{problem}: {value!r}")
    return value


def header(name: object, value: object) -> tuple[str, str]:
    """One request header. An error shows its value masked when it may be a secret
    (``Authorization: ****``)."""
    if not isinstance(name, str) or not isinstance(value, str):
        raise TypeError(f"a header is a name and a value, both text; got {shown((name, value))}")
    if not TOKEN.fullmatch(name):
        raise ValueError(f"not a header name: {name!r}")
    if (problem := header_value_problem(value)) is not None:
        from fetchmany.redaction import redact_header

        raise ValueError(f"header value {problem}: {f'{name}: {redact_header(name, value)}'!r}")
    return name, value


def several(value: object, what: str) -> list[object]:
    """The entries of a setting that takes several: a mapping's (key, value) items, or
    the elements of any other iterable except text (a string is one value, not its
    letters, and a caller who passed one meant something else)."""
    if isinstance(value, Mapping):
        return list(value.items())
    if isinstance(value, Iterable) and not isinstance(value, str | bytes):
        return list(value)
    raise TypeError(f"must be {what}; got {shown(value)}")


def headers(value: object) -> tuple[tuple[str, str], ...]:
    """Request headers: a mapping of name to value (``{"Accept": "application/json"}``),
    or (name, value) pairs, which may repeat a name. Kept in the order given."""
    out = []
    for pair in several(value, "a mapping of name to value, or (name, value) pairs"):
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise TypeError(f"each header is a (name, value) pair, got {shown(pair)}")
        out.append(header(pair[0], pair[1]))
    return tuple(out)


ALL_HEADERS: Final = frozenset({"*"})
"""``--response-headers all``."""


def header_names(value: object) -> frozenset[str]:
    """Response headers to record: ``"all"``, names as text (``"etag,content-type"``) or
    an iterable of names; lower-cased."""
    if isinstance(value, str):
        if value.strip().lower() == "all":
            return ALL_HEADERS
        names: Iterable[object] = value.split(",")
    elif isinstance(value, Iterable) and not isinstance(value, bytes | Mapping):
        names = list(value)
        if names == ["*"]:
            return ALL_HEADERS
    else:
        raise TypeError(f"must be header names (a,b), a list of them, or all; got {shown(value)}")
    if not all(isinstance(name, str) for name in names):
        raise TypeError(f"must be header names (text), got {shown(value)}")
    found = frozenset(name.strip().lower() for name in names if isinstance(name, str))
    found -= {""}
    if not found or not all(TOKEN.fullmatch(name) for name in found):
        raise ValueError(f"expected header names (a,b) or all, got {value!r}")
    return found


def optional(check: Callable[[object], T]) -> Callable[[object], T | None]:
    """``check`` for a setting that may also be None (not set)."""

    def checked(value: object) -> T | None:
        return None if value is None else check(value)

    return checked
