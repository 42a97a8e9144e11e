"""Failing, throttling, hanging and hostile servers: each ends as a record, never a crash."""

from __future__ import annotations

import asyncio
import base64
import itertools
import resource
import time
import zlib
from collections.abc import Callable
from urllib.parse import quote

import pytest
from aiohttp import web
from conftest import LoopbackServer, TlsServer

from fetchmany import FetchOptions, Record, fetch_many
from fetchmany.fetch.retry import RetryPolicy

FAST = RetryPolicy(retries=2, backoff=0.01, max_backoff=0.05)
NONE = RetryPolicy(retries=0)


async def fetch(urls: list[str], **options: object) -> list[Record]:
    return [r async for r in fetch_many(urls, FetchOptions(**options))]  # type: ignore[arg-type]


def flaky_app(
    failures: int, how: str = "503", retry_after: str | None = None
) -> tuple[web.Application, list[tuple[float, str]]]:
    """An app whose /k/{key} fails ``failures`` times per key (a status, or a reset mid-
    body), then answers; and the list of (time, path) of every request it saw."""
    seen: dict[str, int] = {}
    arrivals: list[tuple[float, str]] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        key = request.match_info["key"]
        arrivals.append((time.monotonic(), request.path))
        seen[key] = seen.get(key, 0) + 1
        if seen[key] > failures:
            return web.json_response({"key": key, "attempt": seen[key]})
        if how == "reset":
            response = web.StreamResponse(headers={"Content-Length": "1000"})
            await response.prepare(request)
            await response.write(b"partial")
            assert request.transport is not None
            request.transport.abort()
            return response
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        return web.Response(status=int(how), text="try later", headers=headers)

    app = web.Application()
    app.router.add_get("/k/{key}", handler)
    return app, arrivals


async def test_flaky_servers_succeed_within_the_retries(
    serve: Callable[[web.Application], LoopbackServer],
) -> None:
    twice, _ = flaky_app(2)
    always, _ = flaky_app(99)
    resets, _ = flaky_app(1, how="reset")
    ok, exhausted, reset = await fetch(
        [serve(twice).url("/k/a"), serve(always).url("/k/b"), serve(resets).url("/k/c")],
        retry=FAST,
    )
    assert (ok.ok, ok.attempts, ok.body["attempt"]) == (True, 3, 3)
    assert (exhausted.ok, exhausted.status, exhausted.attempts) == (False, 503, 3)
    assert (reset.ok, reset.attempts) == (True, 2)


async def test_retry_after_seconds_is_waited(
    serve: Callable[[web.Application], LoopbackServer],
) -> None:
    app, arrivals = flaky_app(1, how="429", retry_after="1")
    policy = RetryPolicy(retries=2, backoff=0.01, max_backoff=5)
    (record,) = await fetch([serve(app).url("/k/ra")], retry=policy)
    assert (record.ok, record.attempts) == (True, 2)
    (first, _), (second, _) = arrivals
    assert second - first >= 0.9  # its own backoff would be under 0.01 s


async def test_retry_after_is_capped_by_max_backoff(
    serve: Callable[[web.Application], LoopbackServer],
) -> None:
    app, arrivals = flaky_app(1, how="503", retry_after="3600")
    capped = RetryPolicy(retries=1, backoff=0.01, max_backoff=0.2)
    (record,) = await fetch([serve(app).url("/k/cap")], retry=capped)
    assert record.ok
    (first, _), (second, _) = arrivals
    assert second - first < 30  # not an hour


@pytest.mark.parametrize("after", ["soon", "²", "-5", "Wed, 99 Foo 2026 99:99:99 GMT", ""])
async def test_a_retry_after_that_means_nothing_is_ignored(
    serve: Callable[[web.Application], LoopbackServer], after: str
) -> None:
    app, _ = flaky_app(1, how="503", retry_after=after)
    (record,) = await fetch([serve(app).url("/k/x")], retry=FAST)
    assert (record.ok, record.attempts) == (True, 2)


async def test_a_backoff_does_not_hold_the_pool(
    serve: Callable[[web.Application], LoopbackServer], server: LoopbackServer
) -> None:
    # limit=1: while the first item waits out Retry-After, the others must use the slot.
    app, arrivals = flaky_app(1, how="503", retry_after="1")
    slow_retry = serve(app).url("/k/bo")
    others = [server.url(f"/item?id={i}&max_ms=1") for i in range(5)]
    policy = RetryPolicy(retries=2, backoff=0.01, max_backoff=5)
    records = await fetch([slow_retry, *others], limit=1, retry=policy)
    assert all(r.ok for r in records)
    (first, _), (retry, _) = arrivals
    others_at = sorted(t for t, _ in server.state.arrivals)
    assert first < others_at[0]
    assert retry > others_at[-1]  # its retry came after every other item
    assert [r.index for r in records] == list(range(6))  # and output order is unchanged


@pytest.mark.speed
async def test_rate_limit_spaces_request_starts(server: LoopbackServer) -> None:
    """Seen from the server: the starts spread over the time the rate asks for, with
    no bursts. (The spacing itself is tested on a fake clock in test_limits.py; here
    arrival times depend on the client keeping pace, which mutmut's bookkeeping on a
    busy machine does not: a stall lets starts that fell due during it arrive together.)"""
    urls = [server.url(f"/item?id={i}&max_ms=0") for i in range(15)]
    records = await fetch(urls, limit=10, rate=20.0)
    assert all(r.ok for r in records)
    starts = sorted(t for t, _ in server.state.arrivals)
    span = starts[-1] - starts[0]
    assert span >= 14 / 20 * 0.8  # 15 starts at 20/s take about 0.7 s
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert sum(1 for g in gaps if g < 0.02) <= 2  # smooth: no bursts of back-to-back starts


async def test_rate_limit_counts_retries(
    serve: Callable[[web.Application], LoopbackServer],
) -> None:
    app, arrivals = flaky_app(1)
    base = serve(app)
    records = await fetch([base.url(f"/k/rr{i}") for i in range(4)], limit=4, rate=10.0, retry=FAST)
    assert all(r.attempts == 2 for r in records)
    starts = sorted(t for t, _ in arrivals)
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


async def test_hanging_and_trickling_servers_time_out(
    serve: Callable[[web.Application], LoopbackServer],
) -> None:
    async def hang(request: web.Request) -> web.Response:
        await asyncio.Event().wait()  # never answers (until the server stops)
        raise AssertionError("unreachable")

    async def trickle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        while True:  # a byte every 50 ms, forever: only a total timeout ends it
            await response.write(b".")
            await asyncio.sleep(0.05)

    app = web.Application()
    app.router.add_get("/hang", hang)
    app.router.add_get("/trickle", trickle)
    base = serve(app)
    records = await fetch([base.url("/hang"), base.url("/trickle")], timeout=0.5, retry=NONE)
    for record in records:
        assert record.error is not None
        assert record.error.kind == "timeout"
        assert record.elapsed_ms is not None
        assert record.elapsed_ms < 10_000


async def test_reset_mid_response_is_an_error_record(
    serve: Callable[[web.Application], LoopbackServer],
) -> None:
    app, _ = flaky_app(99, how="reset")
    (record,) = await fetch([serve(app).url("/k/r")], retry=NONE)
    assert not record.ok
    assert record.error is not None
    assert record.error.kind in ("connect", "protocol")


async def test_huge_body_stops_at_the_cap(server: LoopbackServer) -> None:
    (record,) = await fetch([server.url("/big?bytes=3000000")], max_body_size=100_000)
    assert record.error is not None
    assert record.error.kind == "body_too_large"
    assert record.size == 100_000
    assert record.status == 200


async def test_gzip_bomb_is_caught_without_inflating_it(
    serve: Callable[[web.Application], LoopbackServer],
) -> None:
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(1 << 20)
    bomb = b"".join(packer.compress(zeros) for _ in range(300)) + packer.flush()  # 300 MB

    async def handler(request: web.Request) -> web.Response:
        headers = {"Content-Encoding": "gzip", "Content-Type": "text/plain"}
        return web.Response(body=bomb, headers=headers)

    app = web.Application()
    app.router.add_get("/bomb", handler)
    url = serve(app).url("/bomb")
    await fetch([url], max_body_size=1, retry=NONE)  # warm up: imports, connections
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    (record,) = await fetch([url], max_body_size=1_000_000)
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


async def test_bad_charset_and_binary_bodies_decode_safely(
    serve: Callable[[web.Application], LoopbackServer],
) -> None:
    async def bad_charset(request: web.Request) -> web.Response:
        headers = {"Content-Type": "text/plain; charset=no-such-charset"}
        return web.Response(body=b"caf\xe9 \xff", headers=headers)

    async def binary(request: web.Request) -> web.Response:
        return web.Response(body=bytes(range(256)), content_type="application/octet-stream")

    app = web.Application()
    app.router.add_get("/bad-charset", bad_charset)
    app.router.add_get("/binary", binary)
    base = serve(app)
    bad, raw = await fetch([base.url("/bad-charset"), base.url("/binary")])
    assert bad.body == "caf\ufffd \ufffd"  # UTF-8 with replacement characters
    assert bad.status == 200
    assert bad.error is not None  # the record says the text may not be what was meant
    assert bad.error.kind == "invalid_charset"
    assert not bad.ok
    assert raw.ok
    assert base64.b64decode(raw.body) == bytes(range(256))


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
