"""What a response's body becomes in a record: content types, charsets, JSON.

A body is data to report on, never something that may stop a run: every function
here is total over any bytes and any ``Content-Type`` a server sends.
"""

from __future__ import annotations

import base64
import codecs
import functools
import json
from typing import Any, Final, NamedTuple

import orjson

from fetchmany import jsontext
from fetchmany.records import BodyMode, ErrorKind, FetchError, valid_text

_TEXTUAL_APPLICATION_TYPES: Final = frozenset(
    {
        "application/javascript",
        "application/ecmascript",
        "application/xml",
        "application/xhtml+xml",
        "application/x-www-form-urlencoded",
        "application/x-ndjson",
        "application/graphql",
        "application/yaml",
        "application/x-yaml",
        "application/toml",
        "application/csv",
        "application/sql",
    }
)


@functools.lru_cache(maxsize=256)
def split_content_type(header: str | None) -> tuple[str, str | None]:
    """Return the lower-cased media type and the charset parameter, if any.

    Cached: a run sees a handful of distinct Content-Type values, once per record.
    """
    if not header:
        return "", None
    media, _, params = header.partition(";")
    charset = None
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            charset = value.strip().strip("\"'") or None
    return media.strip().lower(), charset


def is_json_type(media: str) -> bool:
    return media == "application/json" or media.endswith("+json") or media == "text/json"


def is_text_type(media: str) -> bool:
    return (
        media.startswith("text/")
        or media in _TEXTUAL_APPLICATION_TYPES
        or media.endswith("+xml")
        or media.endswith("+yaml")
    )


# Labels servers send that Python does not know, for encodings it does (MySQL's names).
_CHARSET_ALIASES: Final = {"utf8mb4": "utf-8", "utf8mb3": "utf-8"}
# Python's own codecs that are text codecs in name only: they cannot decode a body
# with replacement (idna, undefined) or would reinterpret it (unicode_escape).
_NOT_BODY_CODECS: Final = frozenset(
    {"idna", "punycode", "undefined", "unicode-escape", "raw-unicode-escape"}
)


@functools.lru_cache(maxsize=256)
def text_encoding(charset: str) -> str | None:
    """The Python codec for a Content-Type charset, or None when it cannot decode text.

    A charset comes from the server, so it may name anything Python knows, including
    bytes-to-bytes codecs (``base64``, ``zlib``, ``rot13``) that raise instead of
    decoding, or nothing at all. Cached: a run sees a handful of distinct labels.
    """
    label = charset.strip().lower()
    try:
        name = codecs.lookup(_CHARSET_ALIASES.get(label, label)).name
        b"".decode(name)  # raises LookupError for a codec that is not a text encoding
    except (LookupError, ValueError):
        return None
    return None if name in _NOT_BODY_CODECS else name


def decode_text(raw: bytes, charset: str | None) -> tuple[str, FetchError | None]:
    """Decode with the response's charset, and say so when it could not be used.

    Undecodable bytes become U+FFFD rather than an exception: a body is data we
    report on, not something that may stop the run. A charset that cannot decode
    text gives UTF-8 with replacement, and an ``invalid_charset`` error so the
    record does not pass the text off as what the server meant.
    """
    if not charset:
        return raw.decode("utf-8", "replace"), None
    encoding = text_encoding(charset)
    if encoding is not None:
        try:
            return raw.decode(encoding, "replace"), None
        except (UnicodeError, LookupError):  # a codec that breaks its contract
            pass
    problem = FetchError(
        ErrorKind.INVALID_CHARSET,
        f"charset {valid_text(charset)!r} cannot decode text; body decoded as UTF-8",
    )
    return raw.decode("utf-8", "replace"), problem


# A 19-digit run, found with two C-speed passes (a regex here cost 6x the parse itself):
# map every digit to b"1" and everything else to b"0", then look for nineteen ones.
_DIGIT_MASK: Final = bytes(49 if 48 <= c <= 57 else 48 for c in range(256))
_NINETEEN_DIGITS: Final = b"1" * 19


# orjson writes at most this many levels of nesting; a body nested deeper could be
# parsed but never written, so it is kept as text instead.
MAX_JSON_DEPTH: Final = 254


def parse_json(raw: bytes | str) -> Any:
    """Parse JSON quickly with orjson, falling back to the stdlib for what orjson refuses.

    orjson turns integers beyond 64 bits (which real APIs do send: snowflake IDs,
    balances) into floats, losing digits, so text holding a 19-digit run goes to
    the stdlib, which keeps them exact. Raises ``ValueError`` when it is not JSON,
    or is nested deeper than a record can hold (``MAX_JSON_DEPTH``).
    """
    data = raw.encode() if isinstance(raw, str) else raw
    value: Any
    try:
        # find, not in: bytes.__contains__ first tries the needle as an int, and the
        # TypeError it raises and clears costs more than the search (about 1.2k).
        if data.translate(_DIGIT_MASK).find(_NINETEEN_DIGITS) >= 0:
            raise ValueError("long number")  # the stdlib keeps its digits
        value = orjson.loads(data)
    except ValueError:  # orjson.JSONDecodeError too: the stdlib decides, and words the error
        try:
            # detect_encoding: a BOM, or UTF-16/32 told by its zero bytes (RFC 8259 8.1)
            text = data.decode(json.detect_encoding(data), errors="replace")
            value = jsontext.loads(text)
        except jsontext.TooDeep:
            raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels") from None
    if (
        len(data) > 2 * MAX_JSON_DEPTH  # shorter cannot open that many levels
        and data.count(b"[") + data.count(b"{") > MAX_JSON_DEPTH
        and _depth(value) > MAX_JSON_DEPTH
    ):
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def _depth(value: Any) -> int:
    """Nesting depth of a parsed JSON value, without recursion (it may be deep)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict):
            node = list(node.values())
        elif not isinstance(node, list):
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in node)
    return deepest


class DecodedBody(NamedTuple):
    value: Any
    error: FetchError | None = None


_PLAIN_JSON: Final = frozenset({"application/json", "application/json; charset=utf-8"})
_AUTO: Final = BodyMode.AUTO  # read once: an enum member is a lookup on its class each time
_TEXT: Final = BodyMode.TEXT
_JSON: Final = BodyMode.JSON
_BASE64: Final = BodyMode.BASE64
_NONE: Final = BodyMode.NONE


def decode_body(raw: bytes, content_type: str | None, mode: BodyMode) -> DecodedBody:
    """Turn a response body into the record's ``body`` value according to ``mode``.

    ``auto`` picks by content type: JSON types give the parsed value, textual types
    decoded text, anything else base64. A JSON body that does not parse keeps its
    text and reports ``invalid_json`` so nothing the server sent is lost.
    """
    return DecodedBody._make(body_value(raw, content_type, mode))


def body_value(
    raw: bytes, content_type: str | None, mode: BodyMode
) -> tuple[Any, FetchError | None]:
    """``decode_body``'s value and error as a plain pair (what a record takes, without
    a named tuple made for every response)."""
    if mode is _AUTO and content_type in _PLAIN_JSON and raw:
        # The common case first (an API's JSON, no charset): what the steps below do for it.
        try:
            return parse_json(raw), None
        except ValueError as exc:
            return (
                raw.decode("utf-8", "replace"),
                FetchError(ErrorKind.INVALID_JSON, f"body is not JSON: {exc}"),
            )
    if mode is _NONE:
        return None, None
    if mode is _BASE64:
        return base64.b64encode(raw).decode("ascii"), None
    media, charset = split_content_type(content_type)
    if mode is _TEXT:
        return decode_text(raw, charset)
    if mode is _JSON or is_json_type(media):
        if not raw and mode is _AUTO:
            return None, None
        try:
            return parse_json(_json_text(raw, charset)), None
        except ValueError as exc:
            text, _ = decode_text(raw, charset)
            return text, FetchError(ErrorKind.INVALID_JSON, f"body is not JSON: {exc}")
    if is_text_type(media) or (not media and _looks_textual(raw)):
        return decode_text(raw, charset)
    return base64.b64encode(raw).decode("ascii"), None


def _json_text(raw: bytes, charset: str | None) -> bytes | str:
    """JSON as sent, or decoded first when the server names a charset other than UTF-8
    (JSON is UTF-8 by RFC 8259, but servers do send Latin-1 and UTF-16 with a label)."""
    if charset is None:
        return raw
    encoding = text_encoding(charset)
    if encoding is None or encoding == "utf-8":
        return raw
    try:
        return raw.decode(encoding, "replace").removeprefix("\ufeff")
    except (UnicodeError, LookupError):  # a codec that breaks its contract
        return raw


def _looks_textual(raw: bytes) -> bool:
    """A body with no content type is text when it is valid UTF-8 without NULs."""
    if b"\x00" in raw[:4096]:
        return False
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
