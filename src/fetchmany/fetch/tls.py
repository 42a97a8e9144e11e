"""``--tls``: the protocol, cipher and certificate of the connection that served an answer.

The connection is noted where a request is sent on it (``request.py``'s request
class, made only with ``--tls``): that is the one connection that is certainly the
answer's, whether it was new or kept alive from an earlier request, and after
redirects it is the final hop's. By the time aiohttp hands the response out, an
answer without a body (a 304, a HEAD) has already given its connection back, or
closed it.

The certificate is read from its DER bytes (``getpeercert(binary_form=True)``),
which the peer sends whether or not it was verified: with ``--insecure`` Python's
parsed form is an empty dict, so ``cryptography`` parses it, imported only when a
run asks for ``--tls``. Certificates are parsed once each (a run talks to few).

Shapes (docs/records.md): ``subject`` and ``issuer`` are RFC 4514 strings
(``CN=example.com,O=Example``), ``san`` the subject alternative names as strings
(DNS names, IP addresses, e-mail addresses and URIs as written), ``not_before`` and
``not_after`` ISO 8601 UTC (``2027-01-31T23:59:59Z``), ``days_left`` the whole days
from the answer to ``not_after``, rounded down: 0 within its last day, negative
exactly when it has expired.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, TypeVar

if TYPE_CHECKING:
    import aiohttp
    from aiohttp.connector import Connection
    from cryptography import x509

_NOTED: Final = "_fetchmany_tls"
"""The attribute of a response that holds its connection's facts."""
_DAY: Final = 86400.0
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Noted:
    """What a TLS connection says of itself when a request is sent on it."""

    version: str | None
    cipher: str | None
    certificate: bytes | None
    """DER."""


def note_connection(conn: Connection) -> Noted | None:
    """The facts of ``conn``, or None for a connection without TLS (http)."""
    transport = conn.transport
    if transport is None:
        return None
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    cipher = ssl_object.cipher()
    return Noted(
        ssl_object.version(),
        cipher[0] if cipher else None,
        ssl_object.getpeercert(binary_form=True),
    )


def remember(response: aiohttp.ClientResponse, noted: Noted | None) -> None:
    setattr(response, _NOTED, noted)


@dataclass(frozen=True, slots=True)
class Certificate:
    subject: str | None
    san: list[str] | None
    issuer: str | None
    not_before: datetime | None
    not_after: datetime | None


def tls_facts(
    response: aiohttp.ClientResponse, now: datetime | None = None
) -> dict[str, Any] | None:
    """The ``tls`` field of an answer: None when it came over http."""
    noted: Noted | None = getattr(response, _NOTED, None)
    if noted is None:
        return None
    certificate = parse_certificate(noted.certificate) if noted.certificate else None
    not_after = certificate.not_after if certificate else None
    days_left = None
    if not_after is not None:
        left = (not_after - (now or datetime.now(UTC))).total_seconds()
        days_left = math.floor(left / _DAY)
    return {
        "version": noted.version,
        "cipher": noted.cipher,
        "subject": certificate.subject if certificate else None,
        "san": certificate.san if certificate else None,
        "issuer": certificate.issuer if certificate else None,
        "not_before": _iso(certificate.not_before) if certificate else None,
        "not_after": _iso(not_after),
        "days_left": days_left,
    }


def _iso(moment: datetime | None) -> str | None:
    """``moment`` (UTC, as cryptography's ``*_utc`` give it) in ISO 8601, the year in four
    digits: strftime's ``%Y`` writes the year 1 as ``1``, and Go's zero time (0001-01-01)
    is the notBefore of some certificates."""
    if moment is None:
        return None
    return moment.replace(tzinfo=None).isoformat(timespec="seconds") + "Z"


@functools.lru_cache(maxsize=256)
def parse_certificate(der: bytes) -> Certificate:
    """A certificate's facts; a part that does not parse is None (never an error: the
    answer arrived, and its record must not fail for a certificate's oddity)."""
    import warnings

    from cryptography import x509
    from cryptography.utils import CryptographyDeprecationWarning

    try:
        with warnings.catch_warnings():
            # A serial number of zero or less, which RFC 5280 forbids and some devices'
            # own certificates have: read all the same, with no warning on the terminal.
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            cert = x509.load_der_x509_certificate(der)
    except (ValueError, x509.InvalidVersion):  # InvalidVersion is not a ValueError
        return Certificate(None, None, None, None, None)
    return Certificate(
        _guarded(lambda: cert.subject.rfc4514_string()),
        _guarded(lambda: _san(cert)),
        _guarded(lambda: cert.issuer.rfc4514_string()),
        _guarded(lambda: cert.not_valid_before_utc),
        _guarded(lambda: cert.not_valid_after_utc),
    )


def _guarded(read: Callable[[], T]) -> T | None:
    from cryptography import x509

    try:
        return read()
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType):
        return None


def _san(cert: x509.Certificate) -> list[str]:
    from cryptography import x509

    try:
        extension = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return [_general_name(name) for name in extension.value]


def _general_name(name: x509.GeneralName) -> str:
    from cryptography import x509

    value = name.value
    if isinstance(value, x509.Name):
        return value.rfc4514_string()
    if isinstance(value, x509.ObjectIdentifier):
        return value.dotted_string
    if isinstance(value, bytes):  # an otherName's DER value
        return value.hex()
    return str(value)
