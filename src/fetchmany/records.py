"""The Record type every input line turns into (its field names, error kinds and body
modes are ``fetchmany.fields``', which this module passes on).

A record is the one unit that crosses from the engine to the writers. Every input
item yields exactly one, whether it was fetched, failed, or was never valid, so
downstream tools can rely on a 1:1 mapping between input lines and records.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from fetchmany.fields import (
    ERROR_MESSAGE_COLUMN,
    FIELDS,
    OPTIONAL_FIELDS,
    SAVED_FIELDS,
    BodyMode,
    ErrorKind,
)

__all__ = [
    "ERROR_MESSAGE_COLUMN",
    "FIELDS",
    "OPTIONAL_FIELDS",
    "SAVED_FIELDS",
    "BodyMode",
    "ErrorKind",
    "FetchError",
    "Record",
    "Refresh",
    "valid_text",
]

_ATTRIBUTES: Final = frozenset((*FIELDS, *SAVED_FIELDS, *OPTIONAL_FIELDS))


class Refresh(StrEnum):
    """What ``--refresh`` made of an item, for the summary (the record says ``unchanged``)."""

    UNCHANGED = "unchanged"
    """The server answered 304 to the conditional request: the previous record is carried."""
    CHANGED = "changed"
    """Asked conditionally, answered whole: the resource changed (or the server ignores
    conditionals)."""
    UNTAGGED = "untagged"
    """The previous record was ok but had neither an ETag nor a Last-Modified to ask with."""
    NEW = "new"
    """No previous record to ask with: none at this index, or one that was not ok."""


@dataclass(frozen=True, slots=True)
class FetchError:
    """Why a record is not ok: the kind is for machines, the message for people."""

    kind: ErrorKind
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind.value, "message": self.message}


@dataclass(slots=True)
class Record:
    """The outcome for one input item, in the field order users see.

    ``ok`` is true exactly when a response arrived with a status from 200 to 399 and
    nothing is missing from it, and ``error`` is set exactly when ``ok`` is false. A
    record can carry both a response and an error: an answer of 400 or more (kind
    ``http``), or a body that is not right (cut at the size cap, JSON that did not
    parse), and the error says what is wrong.
    """

    index: int
    input: str
    url: str | None
    ok: bool = False
    status: int | None = None
    final_url: str | None = None
    content_type: str | None = None
    etag: str | None = None
    """The response's ``ETag`` as sent (weak ``W/"..."`` included), for a later --refresh."""
    last_modified: str | None = None
    """The response's ``Last-Modified`` as sent, for a later --refresh."""
    size: int | None = None
    elapsed_ms: float | None = None
    attempts: int = 0
    error: FetchError | None = None
    body: Any = None
    picks: Mapping[str, Any] | None = None
    """``--pick`` values by name (None when nothing is picked)."""
    path: str | None = None
    """With ``--save-dir``: the file the body went to."""
    sha256: str | None = None
    """With ``--save-dir``: the SHA-256 of the saved body."""
    timings: dict[str, float | None] | None = None
    """With ``--timings``: the final attempt's phases in ms (see ``fetch/timings.py``)."""
    headers: dict[str, Any] | None = None
    """With ``--response-headers``: lower-case names, repeats comma-joined (set-cookie: a list)."""
    redirects: list[dict[str, Any]] | None = None
    """With ``--redirects``: each hop before the final URL, ``{"status", "url"}``."""
    tls: dict[str, Any] | None = None
    """With ``--tls``: the final connection's protocol and certificate (``fetch/tls.py``)."""
    refresh: Refresh | None = None
    """With ``--refresh``: what became of the item (``unchanged`` is derived from it)."""

    @property
    def unchanged(self) -> bool | None:
        """With ``--refresh``: true exactly when the record is the previous one, carried
        over on a 304; false when it comes from this run's answer (or failure)."""
        refresh = self.refresh
        return None if refresh is None else refresh is Refresh.UNCHANGED

    def to_dict(self, fields: tuple[str, ...] = FIELDS) -> dict[str, Any]:
        """The record as plain JSON-able values, only ``fields``, in that order; a name
        that is not a field of the record is a pick."""
        if fields is FIELDS:  # the default, once per record of most runs: spelled out
            error = self.error
            return {
                "index": self.index,
                "input": self.input,
                "url": self.url,
                "ok": self.ok,
                "status": self.status,
                "final_url": self.final_url,
                "content_type": self.content_type,
                "etag": self.etag,
                "last_modified": self.last_modified,
                "size": self.size,
                "elapsed_ms": self.elapsed_ms,
                "attempts": self.attempts,
                "error": None if error is None else error.to_dict(),
                "body": self.body,
            }
        out: dict[str, Any] = {}
        for name in fields:
            if name in _ATTRIBUTES:
                value = getattr(self, name)
                if name == "error" and value is not None:
                    value = value.to_dict()
            else:
                value = self.picks.get(name) if self.picks else None
            out[name] = value
        return out


def valid_text(text: str) -> str:
    """``text`` as valid Unicode, so no record field can hold a string that cannot be
    written out: bytes that were not UTF-8 (kept as surrogate escapes by aiohttp's
    header parsing and by our input reader) become ``\\xNN``, other lone surrogates
    (a JSON ``"\\ud800"``) ``\\uXXXX``. ASCII text (nearly all of it: a header's
    value, a URL) is valid as it is, told by a flag the string carries; other text
    is checked by one encode."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "".join(_escape_surrogate(char) for char in text)
    return text


def _escape_surrogate(char: str) -> str:
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:
        return f"\\x{code - 0xDC00:02x}"
    if 0xD800 <= code <= 0xDFFF:
        return f"\\u{code:04x}"
    return char
