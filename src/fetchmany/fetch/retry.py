"""When to try a request again, and how long to wait first.

Exponential backoff with full jitter (a uniform wait between 0 and the capped
exponential) spreads retries of many workers instead of synchronising them on a
struggling server; a server's own ``Retry-After`` on 429/503 wins, up to the cap.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from fetchmany.checks import flag, named, seconds, shown, whole
from fetchmany.fields import ErrorKind

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
RETRYABLE_ERRORS = frozenset({ErrorKind.CONNECT, ErrorKind.TIMEOUT, ErrorKind.PROTOCOL})
DEFAULT_RETRIES: Final = 2
DEFAULT_RETRY_ON: Final = frozenset({429, 500, 502, 503, 504})
DEFAULT_BACKOFF: Final = 0.5
DEFAULT_MAX_BACKOFF: Final = 60.0


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # not str.isdigit alone: it accepts "²"
        return float(value)
    from fetchmany.fetch.httpdate import http_date  # rarely needed: not at start-up

    when = http_date(value)
    if when is None:
        return None
    return max(0.0, when - (time.time() if now is None else now))


def statuses(value: object) -> frozenset[int]:
    """HTTP statuses: text ``"429,503"`` (the command line's) or an iterable of numbers."""
    if isinstance(value, str):
        codes = set()
        for part in value.split(","):
            part = part.strip()
            if not part:
                continue
            if not (part.isascii() and part.isdigit() and 100 <= int(part) <= 599):
                raise ValueError(f"not an HTTP status: {part!r}")
            codes.add(int(part))
        return frozenset(codes)
    if not isinstance(value, Iterable) or isinstance(value, bytes):
        raise TypeError(
            f"must be HTTP statuses (numbers, or text such as '429,503'), got {shown(value)}"
        )
    found = list(value)
    for code in found:
        if not isinstance(code, int) or isinstance(code, bool):
            raise TypeError(f"must be HTTP statuses (numbers), got {shown(code)}")
        if not 100 <= code <= 599:
            raise ValueError(f"not an HTTP status: {code}")
    return frozenset(found)


def retries(value: object) -> int:
    return whole(value, 0)


def backoff_seconds(value: object) -> float:
    return seconds(value, zero=True)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When to try a request again (``--retries``, ``--retry-on``, ``--retry-all-methods``)
    and how long to wait first (``--backoff``, ``--max-backoff``).

    Takes plain Python, checked as the command line checks it: ``retry_on`` as numbers
    (``{429, 503}``) or text (``"429,503"``); a value of the wrong kind is a
    ``TypeError`` and one out of range a ``ValueError``, each naming the setting.
    """

    retries: int = DEFAULT_RETRIES
    """Retries after the first attempt (0: none)."""
    retry_on: frozenset[int] = DEFAULT_RETRY_ON
    """Statuses that are retried; connection errors, timeouts and broken answers always are."""
    backoff: float = DEFAULT_BACKOFF
    """Seconds: the first backoff's ceiling, doubled each retry, with full jitter."""
    max_backoff: float = DEFAULT_MAX_BACKOFF
    """Seconds: the longest wait before a retry, a server's Retry-After included."""
    retry_all_methods: bool = False
    """Retry methods that are not idempotent (POST, PATCH) too."""
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    if TYPE_CHECKING:  # what a caller may give; __post_init__ makes it the fields' types

        def __init__(
            self,
            *,
            retries: int = ...,
            retry_on: Iterable[int] | str = ...,
            backoff: float = ...,
            max_backoff: float = ...,
            retry_all_methods: bool = ...,
            rng: random.Random = ...,
        ) -> None: ...

    def __post_init__(self) -> None:
        checks = {
            "retries": retries,
            "retry_on": statuses,
            "backoff": backoff_seconds,
            "max_backoff": backoff_seconds,
            "retry_all_methods": flag,
        }
        for name, check in checks.items():
            object.__setattr__(self, name, named(name, check, getattr(self, name)))
        if not isinstance(self.rng, random.Random):
            raise TypeError(f"rng: must be a random.Random, got {shown(self.rng)}")

    def delay(
        self,
        attempt: int,
        method: str,
        status: int | None,
        error: ErrorKind | None,
        retry_after: str | None = None,
    ) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or ``None`` if this result is final."""
        if attempt > self.retries:
            return None
        if not self.retry_all_methods and method not in IDEMPOTENT_METHODS:
            return None
        if error is not None:
            if error not in RETRYABLE_ERRORS:
                return None
        elif status is None or status not in self.retry_on:
            return None
        if status in (429, 503):
            asked = parse_retry_after(retry_after)
            if asked is not None:
                return min(asked, self.max_backoff)
        # 2.0 ** n stays a float: 2 ** 1100 would not convert (OverflowError), and past
        # 2 ** 64 every ceiling is max_backoff anyway.
        ceiling = min(self.max_backoff, self.backoff * 2.0 ** min(attempt - 1, 64))
        return self.rng.uniform(0, ceiling)
