"""What a record holds, by name: its fields, its error kinds, how its body is shown.

The vocabulary the command line, the settings and the writers speak, kept apart from
the ``Record`` class (``fetchmany.records``, which takes these from here) so that
``--help`` and ``--version``, which read the names and make no record, import no
dataclass of it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class ErrorKind(StrEnum):
    """Why a record is not ok. Stable strings: users filter on them."""

    HTTP = "http"
    """The answer's status is not 2xx or 3xx (a 404, a 503 after retries, a 1xx)."""
    INVALID_URL = "invalid_url"
    CONNECT = "connect"
    DNS = "dns"
    TIMEOUT = "timeout"
    TLS = "tls"
    TOO_MANY_REDIRECTS = "too_many_redirects"
    INVALID_REDIRECT = "invalid_redirect"
    BODY_TOO_LARGE = "body_too_large"
    PROTOCOL = "protocol"
    INVALID_JSON = "invalid_json"
    INVALID_CHARSET = "invalid_charset"
    SAVE = "save"
    UNEXPECTED = "unexpected"


class BodyMode(StrEnum):
    """How a response body is put into the record."""

    AUTO = "auto"
    TEXT = "text"
    JSON = "json"
    BASE64 = "base64"
    NONE = "none"


FIELDS: Final[tuple[str, ...]] = (
    "index",
    "input",
    "url",
    "ok",
    "status",
    "final_url",
    "content_type",
    "etag",
    "last_modified",
    "size",
    "elapsed_ms",
    "attempts",
    "error",
    "body",
)


ERROR_MESSAGE_COLUMN: Final = "error_message"
"""In CSV, ``error`` is two columns: its kind under ``error``, its message under this
name, right after it (a pick may not take the name)."""

SAVED_FIELDS: Final[tuple[str, ...]] = ("path", "sha256")
OPTIONAL_FIELDS: Final[tuple[str, ...]] = ("timings", "headers", "redirects", "tls", "unchanged")
"""Fields recorded only when asked for (--timings, --response-headers, --redirects, --tls),
or that only a run of that kind has (``unchanged``: --refresh)."""
