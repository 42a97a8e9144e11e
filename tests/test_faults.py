"""Failing, throttling, hanging and hostile servers: each ends as a record, never a crash."""

from __future__ import annotations

import itertools
import resource
import time
from urllib.parse import quote

import pytest
from conftest import LoopbackServer, TlsServer

from fetchmany import FetchOptions, Record, fetch_many
from fetchmany.fetch.retry import RetryPolicy

FAST = RetryPolicy(retries=2, backoff=0.01, max_backoff=0.05)
NONE = RetryPolicy(retries=0)


async def fetch(urls: list[str], **options: object) -> list[Record]:
    return [r async for r in fetch_many(urls, FetchOptions(**options))]  # type: ignore[arg-type]


async def test_flaky_server_succeeds_within_the_retries(server: LoopbackServer) -> None:
    ok, exhausted, reset = await fetch(
        [
            server.url("/flaky?key=a&fail=2"),
            server.url("/flaky?key=b&fail=5"),
            server.url("/flaky?key=c&fail=1&how=reset"),
        ],
        retry=FAST,
    )
    assert ok.ok
    assert ok.attempts == 3
    assert ok.body["attempt"] == 3
    assert not exhausted.ok
    assert exhausted.status == 503
    assert exhausted.attempts == 3
    assert reset.ok
    assert reset.attempts == 2


async def test_retry_after_seconds_is_waited(server: LoopbackServer) -> None:
    policy = RetryPolicy(retries=2, backoff=0.01, max_backoff=5)
    (record,) = await fetch([server.url("/flaky?key=ra&fail=1&how=429&after=1")], retry=policy)
    assert record.ok
    assert record.attempts == 2
    (first, _), (second, _) = server.state.arrivals
    assert second - first >= 0.9  # its own backoff would be under 0.01 s


async def test_retry_after_is_capped_by_max_backoff(server: LoopbackServer) -> None:
    capped = RetryPolicy(retries=1, backoff=0.01, max_backoff=0.2)
    started = time.monotonic()
    (record,) = await fetch([server.url("/flaky?key=cap&fail=1&how=503&after=3600")], retry=capped)
    assert record.ok
    assert time.monotonic() - started < 30  # not an hour


async def test_a_backoff_does_not_hold_the_pool(server: LoopbackServer) -> None:
    # limit=1: while the first item waits out Retry-After, the others must use the slot.
    slow_retry = server.url("/flaky?key=bo&fail=1&how=503&after=1")
    others = [server.url(f"/item?id={i}&max_ms=1") for i in range(5)]
    policy = RetryPolicy(retries=2, backoff=0.01, max_backoff=5)
    records = await fetch([slow_retry, *others], limit=1, retry=policy)
    assert all(r.ok for r in records)
    order = [path for _, path in server.state.arrivals]
    assert order[0].startswith("/flaky")
    assert order[-1].startswith("/flaky")  # its retry came after every other item
    assert [r.index for r in records] == list(range(6))  # and output order is unchanged


async def test_rate_limit_spaces_request_starts(server: LoopbackServer) -> None:
    urls = [server.url(f"/item?id={i}&max_ms=0") for i in range(15)]
    records = await fetch(urls, limit=10, rate=20.0)
    assert all(r.ok for r in records)
    starts = sorted(t for t, _ in server.state.arrivals)
    span = starts[-1] - starts[0]
    assert span >= 14 / 20 * 0.8  # 15 starts at 20/s take about 0.7 s
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert sum(1 for g in gaps if g < 0.02) <= 2  # smooth: no bursts of back-to-back starts


async def test_rate_limit_counts_retries(server: LoopbackServer) -> None:
    urls = [server.url(f"/flaky?key=rr{i}&fail=1") for i in range(4)]
    records = await fetch(urls, limit=4, rate=10.0, retry=FAST)
    assert all(r.attempts == 2 for r in records)
    starts = sorted(t for t, _ in server.state.arrivals)
    assert len(starts) == 8
    assert starts[-1] - starts[0] >= 7 / 10 * 0.8


async def test_per_host_caps_each_host(
    server: LoopbackServer, other_server: LoopbackServer
) -> None:
    urls = []
    for i in range(12):
        urls.append(server.url(f"/sleep?ms=40&id={i}"))
        urls.append(other_server.url(f"/sleep?ms=40&id={i}"))
    records = await fetch(urls, limit=10, per_host=2)
    assert all(r.ok for r in records)
    assert server.state.max_in_flight == 2
    assert other_server.state.max_in_flight == 2


@pytest.mark.parametrize("path", ["/hang", "/trickle"])
async def test_hanging_and_trickling_servers_time_out(server: LoopbackServer, path: str) -> None:
    (record,) = await fetch([server.url(path)], timeout=0.5, retry=NONE)
    assert record.error is not None
    assert record.error.kind == "timeout"
    assert record.elapsed_ms is not None
    assert record.elapsed_ms < 10_000


async def test_reset_mid_response_is_an_error_record(server: LoopbackServer) -> None:
    (record,) = await fetch([server.url("/reset")], retry=NONE)
    assert not record.ok
    assert record.error is not None
    assert record.error.kind in ("connect", "protocol")


async def test_huge_body_stops_at_the_cap(server: LoopbackServer) -> None:
    (record,) = await fetch([server.url("/big?bytes=3000000")], max_body_size=100_000)
    assert record.error is not None
    assert record.error.kind == "body_too_large"
    assert record.size == 100_000
    assert record.status == 200


async def test_gzip_bomb_is_caught_without_inflating_it(server: LoopbackServer) -> None:
    await fetch([server.url("/gzip-bomb?mb=300")], max_body_size=1, retry=NONE)  # warm the bomb
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    (record,) = await fetch([server.url("/gzip-bomb?mb=300")], max_body_size=1_000_000)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert record.error is not None
    assert record.error.kind == "body_too_large"
    assert record.size == 1_000_000
    assert grown_mib < 100  # 300 MB inflated would show here


async def test_redirect_to_another_scheme_is_refused(server: LoopbackServer) -> None:
    target = quote("file:///etc/passwd", safe="")
    (record,) = await fetch([server.url(f"/redirect-to?url={target}")], retry=NONE)
    assert record.error is not None
    assert record.error.kind == "invalid_redirect"
    assert record.body is None


async def test_bad_charset_and_binary_bodies_decode_safely(server: LoopbackServer) -> None:
    bad, binary = await fetch([server.url("/bad-charset"), server.url("/binary")])
    assert bad.body == "caf\ufffd \ufffd"  # UTF-8 with replacement characters
    assert bad.status == 200
    assert bad.error is not None  # the record says the text may not be what was meant
    assert bad.error.kind == "invalid_charset"
    assert not bad.ok
    assert binary.ok
    assert isinstance(binary.body, str)


CREDENTIALS = (("Authorization", "Bearer s3cret"), ("Cookie", "session=s3cret"))


async def test_credentials_never_follow_a_redirect_to_another_origin(
    server: LoopbackServer, other_server: LoopbackServer
) -> None:
    headers = (*CREDENTIALS, ("Proxy-Authorization", "Basic s3cret"), ("X-Trace", "t-1"))
    elsewhere = quote(other_server.url("/echo"), safe="")
    same = quote(server.url("/echo"), safe="")
    cross, local = await fetch(
        [server.url(f"/redirect-to?url={elsewhere}"), server.url(f"/redirect-to?url={same}")],
        headers=headers,
    )
    assert cross.ok
    assert cross.final_url == other_server.url("/echo")
    got = {k.lower() for k in cross.body["headers"]}
    assert "authorization" not in got
    assert "cookie" not in got
    assert "proxy-authorization" not in got
    assert "x-trace" in got  # other headers may follow
    assert local.body["headers"]["Authorization"] == "Bearer s3cret"  # same origin keeps them


async def test_tls_is_verified_by_default(tls_server: TlsServer) -> None:
    url = tls_server.server.url("/item?id=1")
    (default,) = await fetch([url], retry=NONE)
    assert default.error is not None
    assert default.error.kind == "tls"
    (insecure,) = await fetch([url], verify_tls=False)
    assert insecure.ok
    (trusted,) = await fetch([url], ca_bundle=tls_server.ca_pem)
    assert trusted.ok
