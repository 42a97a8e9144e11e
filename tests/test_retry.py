"""The retry policy's decisions and waits, without any network."""

from __future__ import annotations

import random
import time
from email.utils import formatdate

import pytest

from fetchmany.fetch.retry import RetryPolicy, parse_retry_after, statuses
from fetchmany.records import ErrorKind


def test_retry_after_in_seconds_and_as_an_http_date() -> None:
    assert parse_retry_after("7") == 7.0
    now = 1_000_000.0
    assert parse_retry_after(formatdate(now + 30, usegmt=True), now=now) == pytest.approx(30, abs=1)
    assert parse_retry_after(formatdate(now - 30, usegmt=True), now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


@pytest.mark.parametrize(
    "date",
    [
        "Sun, 06 Nov 1994 08:49:37 GMT",  # IMF-fixdate
        "Sunday, 06-Nov-94 08:49:37 GMT",  # RFC 850
        "Sun Nov  6 08:49:37 1994",  # asctime: GMT, though it says no zone
        "Sun, 06 Nov 1994 08:49:37 -0000",  # RFC 5322's UTC (email.utils.formatdate's)
    ],
)
def test_retry_after_reads_every_http_date_format(
    date: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RFC 9110 5.6.7: a recipient MUST accept all three formats. asctime and -0000 carry
    no zone the standard library keeps, and were taken for no date: the wait ignored.
    All are GMT whatever the machine's zone (here not UTC, where local time would pass)."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        assert parse_retry_after(date, now=784111777.0 - 30) == 30.0
    finally:
        monkeypatch.undo()
        time.tzset()


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


def tries(policy: RetryPolicy, method: str, status: int | None, error: ErrorKind | None) -> int:
    """Attempts made for a result that repeats: the first, then one per delay given."""
    for attempt in range(1, 100):
        if policy.delay(attempt, method, status, error) is None:
            return attempt
    raise AssertionError("still retrying after 99 attempts")


# What docs/reference.md says is retried, spelled out rather than read from retry.py.
RETRIED = [(status, None) for status in (429, 500, 502, 503, 504)] + [
    (None, kind) for kind in (ErrorKind.CONNECT, ErrorKind.TIMEOUT, ErrorKind.PROTOCOL)
]


@pytest.mark.parametrize(("status", "error"), RETRIED)
@pytest.mark.parametrize("retries", [0, 1, 2, 5])
def test_a_result_that_is_retried_gets_exactly_retries_plus_one_attempts(
    retries: int, status: int | None, error: ErrorKind | None
) -> None:
    """--retries N: N retries after the first attempt, for every idempotent method; a
    method that is not idempotent, one attempt unless --retry-all-methods."""
    policy = RetryPolicy(retries=retries)
    for method in ("GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"):
        assert tries(policy, method, status, error) == retries + 1
    assert tries(policy, "POST", status, error) == 1
    assert tries(RetryPolicy(retries=retries, retry_all_methods=True), "POST", status, error) == (
        retries + 1
    )


@pytest.mark.parametrize(
    ("status", "error"),
    [
        *[(status, None) for status in (200, 301, 404, 501)],
        *[(None, kind) for kind in (ErrorKind.DNS, ErrorKind.TLS, ErrorKind.INVALID_URL)],
    ],
)
def test_a_result_that_is_not_retried_gets_one_attempt(
    status: int | None, error: ErrorKind | None
) -> None:
    assert tries(RetryPolicy(retries=5), "GET", status, error) == 1


@pytest.mark.parametrize(
    ("given", "codes"),
    [
        ("100,599", {100, 599}),  # the first and last statuses there are
        ("429,,503", {429, 503}),  # an empty part is skipped, and what follows read
        (" 429 , 503 ,", {429, 503}),
        ("", set()),
        ([100, 599], {100, 599}),
        ((429, 429), {429}),
    ],
)
def test_retry_on_takes_every_status_from_100_to_599(given: object, codes: set[int]) -> None:
    assert statuses(given) == codes


@pytest.mark.parametrize(
    ("given", "error", "message"),
    [
        ("99", ValueError, "not an HTTP status: '99'"),
        ("600", ValueError, "not an HTTP status: '600'"),
        ("429,abc", ValueError, "not an HTTP status: 'abc'"),
        ("４２９", ValueError, "not an HTTP status: '４２９'"),  # digits, but not ASCII ones
        ([99], ValueError, "not an HTTP status: 99"),
        ([429, 600], ValueError, "not an HTTP status: 600"),
        ([True], TypeError, "must be HTTP statuses (numbers), got True"),
        ([429, "503"], TypeError, "must be HTTP statuses (numbers), got '503'"),
        ([1.5], TypeError, "must be HTTP statuses (numbers), got 1.5"),
    ],
)
def test_retry_on_refuses_what_is_no_status_saying_which(
    given: object, error: type[Exception], message: str
) -> None:
    """``--retry-on`` and ``RetryPolicy(retry_on=...)``: the value named, whole."""
    with pytest.raises(error) as refused:
        statuses(given)
    assert str(refused.value) == message
