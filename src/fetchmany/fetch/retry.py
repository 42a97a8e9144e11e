"""When to try a request again, and how long to wait first.

Exponential backoff with full jitter (a uniform wait between 0 and the capped
exponential) spreads retries of many workers instead of synchronising them on a
struggling server; a server's own ``Retry-After`` on 429/503 wins, up to the cap.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from typing import Final

from fetchmany.records import ErrorKind

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
    from email.utils import parsedate_to_datetime  # rarely needed: not at start-up

    try:
        when = parsedate_to_datetime(value)
        if when.tzinfo is None:
            return None
        return max(0.0, when.timestamp() - (time.time() if now is None else now))
    except (TypeError, ValueError, IndexError, OverflowError):  # the server's text: anything
        return None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    retries: int = DEFAULT_RETRIES
    retry_on: frozenset[int] = DEFAULT_RETRY_ON
    backoff: float = DEFAULT_BACKOFF
    max_backoff: float = DEFAULT_MAX_BACKOFF
    retry_all_methods: bool = False
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError(f"retries cannot be negative, got {self.retries}")
        if not (0 <= self.backoff < math.inf and 0 <= self.max_backoff < math.inf):
            raise ValueError("backoff times must be finite and not negative")

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
