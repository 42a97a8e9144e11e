"""HTTP dates as servers send them (``Retry-After``, ``Date``), read as RFC 9110 5.6.7 asks.

A recipient must accept all three HTTP-date formats: IMF-fixdate (``Sun, 06 Nov 1994
08:49:37 GMT``), RFC 850 (``Sunday, 06-Nov-94 08:49:37 GMT``) and asctime (``Sun Nov  6
08:49:37 1994``). All three are GMT; asctime says no zone, and the standard library
reads it (and a ``-0000`` zone, RFC 5322's "UTC, local zone unknown") as a time with no
zone, which a caller would otherwise have to throw away.
"""

from __future__ import annotations


def http_date(text: str) -> float | None:
    """The POSIX time ``text`` names, or None when it is no date (a server's text: anything)."""
    from datetime import UTC  # rarely needed: not at start-up
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(text)
        if when.tzinfo is None:  # asctime, or -0000: GMT all the same
            when = when.replace(tzinfo=UTC)
        return when.timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
