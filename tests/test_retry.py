"""The retry policy's decisions and waits, without any network."""

from __future__ import annotations

import random
from email.utils import formatdate

import pytest

from fetchmany.fetch.retry import RetryPolicy, parse_retry_after
from fetchmany.records import ErrorKind


def test_retry_after_in_seconds_and_as_an_http_date() -> None:
    assert parse_retry_after("7") == 7.0
    now = 1_000_000.0
    assert parse_retry_after(formatdate(now + 30, usegmt=True), now=now) == pytest.approx(30, abs=1)
    assert parse_retry_after(formatdate(now - 30, usegmt=True), now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_retry_after_is_honoured_up_to_the_cap() -> None:
    policy = RetryPolicy(retries=3, max_backoff=10)
    assert policy.delay(1, "GET", 429, None, "4") == 4.0
    assert policy.delay(1, "GET", 503, None, "3600") == 10.0
    # Retry-After on a status that is not 429/503 is not a promise; backoff applies.
    waited = policy.delay(1, "GET", 500, None, "9")
    assert waited is not None
    assert waited <= 0.5


def test_backoff_is_exponential_with_full_jitter_and_capped() -> None:
    policy = RetryPolicy(retries=10, backoff=0.5, max_backoff=3, rng=random.Random(4))
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 3.0), (8, 3.0)]:
        waits = [policy.delay(attempt, "GET", 502, None) for _ in range(200)]
        assert all(w is not None and 0 <= w <= ceiling for w in waits)
        assert max(w for w in waits if w is not None) > ceiling * 0.8  # jitter spans the range
        assert min(w for w in waits if w is not None) < ceiling * 0.2


def test_what_is_retried() -> None:
    policy = RetryPolicy(retries=2)
    assert policy.delay(1, "GET", None, ErrorKind.TIMEOUT) is not None
    assert policy.delay(1, "GET", None, ErrorKind.CONNECT) is not None
    assert policy.delay(1, "GET", None, ErrorKind.DNS) is None
    assert policy.delay(1, "GET", None, ErrorKind.TLS) is None
    assert policy.delay(1, "GET", 404, None) is None
    assert policy.delay(1, "POST", 503, None) is None
    assert policy.delay(3, "GET", 503, None) is None  # attempts = retries + 1 at most
    assert RetryPolicy(retry_on=frozenset({404})).delay(1, "GET", 404, None) is not None
