"""Request handling of one item, with aioresponses standing in for the network."""

from __future__ import annotations

import asyncio
import base64
import gzip
import inspect
import random
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aioresponses import aioresponses
from conftest import LoopbackServer, RawServer, jsonl, raw_response, run_cli
from hypothesis import given
from hypothesis import strategies as st
from yarl import URL

from fetchmany.fetch.adaptive import Lesson, Overload
from fetchmany.fetch.client import (
    Client,
    Response,
    classify,
    fill_record,
    host_key,
    milliseconds_since,
    record_filler,
)
from fetchmany.fetch.limits import Limits
from fetchmany.fetch.retry import RetryPolicy
from fetchmany.fetch.session import SessionSetup, default_headers, open_session
from fetchmany.input.sources import Item, make_item
from fetchmany.input.templates import RequestTemplate
from fetchmany.options import Adaptive, FetchOptions
from fetchmany.records import BodyMode, ErrorKind, FetchError, Record

URL_A = "http://api.test/a"
NO_RETRY = FetchOptions(retry=RetryPolicy(retries=0))
FAST_RETRY = RetryPolicy(retries=3, backoff=0.001, max_backoff=0.002)


class _NoUpload:
    """Stands in for the request's stream writer: aioresponses sends no body."""

    output_size = 0


class _CompatResponse(aiohttp.ClientResponse):
    """aiohttp 3.14 made ``stream_writer`` required and aioresponses 0.7.9 does not pass
    it (pnuckowski/aioresponses#289, still open); supply one so mocks build."""

    def __init__(self, *args: Any, stream_writer: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, stream_writer=stream_writer or _NoUpload(), **kwargs)


@pytest.fixture
def mocked(monkeypatch: pytest.MonkeyPatch) -> Iterator[aioresponses]:
    if "stream_writer" in inspect.signature(aiohttp.ClientResponse.__init__).parameters:
        monkeypatch.setattr("aioresponses.core.ClientResponse", _CompatResponse)
    with aioresponses() as m:
        yield m


@asynccontextmanager
async def open_client(options: FetchOptions) -> AsyncIterator[Client]:
    """A client assembled as fetch_batches assembles one, for one item at a time."""
    setup = SessionSetup.prepare(options)
    async with open_session(options, setup) as sessions:
        yield Client(sessions, options, Limits(options.limit), setup)


def item(index: int, url: str) -> Item:
    return make_item(index, url, RequestTemplate())


async def fetch_one(options: FetchOptions, url: str = URL_A) -> tuple[Client, Record]:
    async with open_client(options) as client:
        return client, await client.fetch(item(4, url))


async def test_success_fills_every_field(mocked: aioresponses) -> None:
    mocked.get(URL_A, payload={"title": "hello"}, headers={"X-Other": "1"})
    _, record = await fetch_one(FetchOptions())
    data = record.to_dict()
    assert data["index"] == 4
    assert data["ok"] is True
    assert data["status"] == 200
    assert data["final_url"] == URL_A
    assert data["content_type"].startswith("application/json")
    assert data["body"] == {"title": "hello"}
    assert data["size"] == len(b'{"title": "hello"}')
    assert data["attempts"] == 1
    assert data["error"] is None
    assert data["elapsed_ms"] >= 0


async def test_http_error_status_is_a_record_not_ok(mocked: aioresponses) -> None:
    mocked.get(URL_A, status=503, body="busy", content_type="text/plain")
    _, record = await fetch_one(NO_RETRY)
    assert record.ok is False
    assert record.status == 503
    assert record.error == FetchError(ErrorKind.HTTP, "503 Service Unavailable")
    assert record.body == "busy"


@pytest.mark.parametrize(
    ("exception", "kind"),
    [
        (aiohttp.ClientConnectionError("refused"), ErrorKind.CONNECT),
        (ConnectionResetError("reset"), ErrorKind.CONNECT),
        (TimeoutError(), ErrorKind.TIMEOUT),
        (aiohttp.ServerDisconnectedError(), ErrorKind.CONNECT),
        (aiohttp.ClientPayloadError("truncated"), ErrorKind.PROTOCOL),
        (ssl.SSLError("bad cert"), ErrorKind.TLS),
    ],
)
async def test_network_exceptions_become_error_kinds(
    mocked: aioresponses, exception: Exception, kind: ErrorKind
) -> None:
    mocked.get(URL_A, exception=exception)
    _, record = await fetch_one(NO_RETRY)
    assert record.ok is False
    assert record.status is None
    assert record.error.kind is kind
    assert record.error.message


def _from_module(module: str, base: type[Exception] = Exception) -> type[Exception]:
    """An exception class as if defined in ``module`` (a SOCKS library's, say)."""
    return type("ProxyError", (base,), {"__module__": module})


def _raised_from(exc: Exception, cause: Exception) -> Exception:
    exc.__cause__ = cause
    return exc


@pytest.mark.parametrize(
    ("exception", "kind", "message"),
    [
        (  # aiohttp-socks: a certificate refused through a SOCKS proxy
            _raised_from(aiohttp.ClientOSError(1, "verify failed"), ssl.SSLError(1, "verify")),
            ErrorKind.TLS,
            "[Errno 1] verify failed",
        ),
        (
            _raised_from(aiohttp.ClientOSError(104, "reset"), ConnectionResetError(104, "reset")),
            ErrorKind.CONNECT,
            "[Errno 104] reset",
        ),
        (
            ValueError("Cannot combine AUTHORIZATION header with AUTH argument or credentials"),
            ErrorKind.INVALID_REDIRECT,
            "redirect to a URL with credentials while others were being sent",
        ),
        (
            ValueError("Port out of range 0-65535"),
            ErrorKind.INVALID_REDIRECT,
            "redirect to a URL whose port is out of range (0-65535)",
        ),
        (ValueError("something else"), ErrorKind.UNEXPECTED, "ValueError: something else"),
        (aiohttp.ClientPayloadError("cut short"), ErrorKind.PROTOCOL, "cut short"),
        (aiohttp.ClientError("odd answer"), ErrorKind.PROTOCOL, "odd answer"),  # any other
        (  # a CONNECT refused with no reason phrase: no trailing blank
            aiohttp.ClientHttpProxyError(
                aiohttp.RequestInfo(URL("http://p.test/"), "CONNECT", {}, URL("http://p.test/")),  # type: ignore[arg-type]
                (),
                status=407,
                message="",
            ),
            ErrorKind.CONNECT,
            "the proxy refused the tunnel: 407",
        ),
        (aiohttp.InvalidURL("http://[x"), ErrorKind.INVALID_URL, "http://[x"),
        (aiohttp.ConnectionTimeoutError(), ErrorKind.TIMEOUT, "no connection within 7s"),
        (TimeoutError(), ErrorKind.TIMEOUT, "attempt did not finish within 9s"),
        (EOFError(), ErrorKind.CONNECT, "connection closed early: EOFError"),
        (_from_module("python_socks._errors")("refused"), ErrorKind.CONNECT, "refused"),
        (_from_module("aiohttp_socks.connector")("bad auth"), ErrorKind.CONNECT, "bad auth"),
        (_from_module("elsewhere")("odd"), ErrorKind.UNEXPECTED, "ProxyError: odd"),
        (KeyError(), ErrorKind.UNEXPECTED, "KeyError: KeyError"),
    ],
)
def test_classify_names_each_kind_and_says_what_happened(
    exception: Exception, kind: ErrorKind, message: str
) -> None:
    """Each branch of the mapping, with the words a user reads in the record."""
    error = classify(exception, FetchOptions(timeout=9, connect_timeout=7))
    assert (error.kind, error.message) == (kind, message)


def test_classify_covers_dns_bad_redirects_and_the_unexpected() -> None:
    options = FetchOptions(max_redirects=3)
    key = aiohttp.client_reqrep.ConnectionKey("h.test", 443, True, True, None, None, None)
    dns = aiohttp.ClientConnectorDNSError(key, OSError(-2, "Name or service not known"))
    assert classify(dns, options).kind is ErrorKind.DNS
    redirect = aiohttp.NonHttpUrlRedirectClientError("ftp://h.test/")
    assert classify(redirect, options).kind is ErrorKind.INVALID_REDIRECT
    assert classify(KeyError("bug"), options).kind is ErrorKind.UNEXPECTED


async def test_method_headers_and_user_agent_are_sent(mocked: aioresponses) -> None:
    mocked.add(URL_A, method="DELETE", status=204)
    options = FetchOptions(method="delete", headers=(("X-Token", "t1"), ("Accept", "text/csv")))
    setup = SessionSetup.prepare(options)
    async with open_session(options, setup) as sessions:
        client = Client(sessions, options, Limits(options.limit), setup)
        record = await client.fetch(item(0, URL_A))
        # Every request's, set once on the session rather than passed with each.
        assert sessions.direct.timeout.total == options.timeout
        assert sessions.direct.timeout.sock_connect == options.connect_timeout
    assert record.status == 204
    assert [k for k in mocked.requests if k[0] == "DELETE"] == [("DELETE", URL(URL_A))]
    defaults = dict(default_headers(options))  # every request's, before -H's
    assert defaults["User-Agent"].startswith("fetchmany/")
    assert "Accept" not in defaults  # -H gives it
    assert setup.headers["X-Token"] == "t1"  # the session's: -H as given


@pytest.mark.parametrize(
    ("name", "value"),
    [("user-agent", "mine/1"), ("ACCEPT", "text/csv"), ("accept-Encoding", "identity")],
)
def test_a_header_given_wins_over_its_default(name: str, value: str) -> None:
    """-H User-Agent, Accept or Accept-Encoding (any case) replaces the default: the
    request carries the one given, never both."""
    options = FetchOptions(headers=((name, value),))
    assert name.lower() not in {key.lower() for key, _ in default_headers(options)}
    assert SessionSetup.prepare(options).headers.getall(name) == [value]


async def test_body_over_the_cap_is_cut_and_reported(mocked: aioresponses) -> None:
    mocked.get(URL_A, body=b"z" * 5000, content_type="text/plain")
    _, record = await fetch_one(FetchOptions(max_body_size=1000))
    assert record.ok is False
    assert record.status == 200
    assert record.size == 1000
    assert record.error.kind is ErrorKind.BODY_TOO_LARGE


async def test_invalid_items_are_recorded_without_a_request(mocked: aioresponses) -> None:
    from fetchmany.input.sources import make_item
    from fetchmany.input.templates import RequestTemplate

    async with open_client(FetchOptions()) as client:
        record = await client.fetch(make_item(0, "not-a-url", RequestTemplate()))
    assert record.attempts == 0
    assert record.error is not None
    assert record.error.kind is ErrorKind.INVALID_URL
    assert not mocked.requests


async def test_cancellation_is_not_swallowed(mocked: aioresponses) -> None:
    async def hang(url: URL, **kwargs: object) -> None:
        await asyncio.Event().wait()

    mocked.get(URL_A, callback=hang)
    async with open_client(FetchOptions()) as client:
        task = asyncio.create_task(client.fetch(item(0, URL_A)))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_retries_until_success_and_counts_attempts(mocked: aioresponses) -> None:
    mocked.get(URL_A, status=503, body="busy")
    mocked.get(URL_A, exception=aiohttp.ClientConnectionError("refused"))
    mocked.get(URL_A, payload={"ok": 1})
    _, record = await fetch_one(FetchOptions(retry=FAST_RETRY))
    assert record.ok
    assert record.attempts == 3
    assert record.body == {"ok": 1}


@pytest.mark.parametrize(
    "answer",
    [
        *[{"status": status} for status in (429, 500, 502, 503, 504)],
        {"exception": aiohttp.ClientConnectionError("refused")},
        {"exception": TimeoutError()},
        {"exception": aiohttp.ClientPayloadError("cut short")},
    ],
)
async def test_gives_up_after_the_retries_with_the_last_result(
    mocked: aioresponses, answer: dict[str, Any]
) -> None:
    """--retries 3: four requests sent, and attempts says four, for every kind retried."""
    mocked.get(URL_A, repeat=True, **answer)
    _, record = await fetch_one(FetchOptions(retry=FAST_RETRY))
    assert len(mocked.requests[("GET", URL(URL_A))]) == 4
    assert record.attempts == 4
    assert record.status == answer.get("status")
    assert not record.ok


@pytest.mark.parametrize("status", [400, 404, 501])
async def test_statuses_outside_retry_on_are_final(mocked: aioresponses, status: int) -> None:
    mocked.get(URL_A, status=status)
    _, record = await fetch_one(FetchOptions(retry=FAST_RETRY))
    assert record.attempts == 1


async def test_post_is_not_retried_unless_asked(mocked: aioresponses) -> None:
    mocked.post(URL_A, status=503)
    _, record = await fetch_one(FetchOptions(method="POST", retry=FAST_RETRY))
    assert record.attempts == 1
    mocked.post(URL_A, status=503)
    mocked.post(URL_A, status=201)
    retry_all = RetryPolicy(retries=3, backoff=0.001, retry_all_methods=True)
    _, record = await fetch_one(FetchOptions(method="POST", retry=retry_all))
    assert record.attempts == 2
    assert record.status == 201


async def test_tls_errors_are_not_retried(mocked: aioresponses) -> None:
    mocked.get(URL_A, exception=ssl.SSLError("bad cert"))
    _, record = await fetch_one(FetchOptions(retry=FAST_RETRY))
    assert record.attempts == 1
    assert record.error.kind is ErrorKind.TLS


@pytest.mark.parametrize(
    ("status_line", "status", "message"),
    [
        (b"404 Not Found", 404, "404 Not Found"),
        (b"418 I'm a teapot", 418, "418 I'm a teapot"),
        (b"503 Nicht verf\xfcgbar", 503, "503 Nicht verf\\xfcgbar"),  # as sent, as text
        (b"500 ", 500, "500"),  # no reason phrase: the bare status
        (b"599 Whatever", 599, "599 Whatever"),
    ],
)
def test_an_answer_of_400_or_more_is_an_http_error_with_its_reason(
    raw_server: Callable[[dict[str, bytes]], RawServer],
    status_line: bytes,
    status: int,
    message: str,
) -> None:
    """error is null exactly when ok is true: `select(.ok|not) | .error.kind` counts
    every failure, an HTTP one as kind http (it was error: null)."""
    server = raw_server(
        {"/x": raw_response(b"{not json", (b"Content-Type: application/json",), status_line)}
    )
    result = run_cli("-q", "--retries", "0", stdin=server.url("/x").encode())
    (record,) = jsonl(result.stdout)
    assert (record["ok"], record["status"]) == (False, status)
    assert record["error"] == {"kind": "http", "message": message}  # not invalid_json
    assert record["body"] == "{not json"
    assert result.returncode == 1


def test_an_error_message_quoting_the_url_masks_its_credentials(
    raw_server: Callable[[dict[str, bytes]], RawServer],
) -> None:
    """aiohttp's message for a bad status line quotes the URL it asked for, with the
    credentials of a URL nested in its query: the record masks them as it does in url."""
    path = "/p?next=http://bob:hunter2@x.test/"
    server = raw_server({path: b"HTTP/1.1 abc\r\n\r\n"})
    url = server.url(path).replace("http://", "http://alice:s3cret@", 1)
    result = run_cli("-q", "--retries", "0", stdin=url.encode())
    (record,) = jsonl(result.stdout)
    assert record["error"]["kind"] == "protocol"
    assert "next=http://bob:****@x.test/" in record["error"]["message"]
    assert "hunter2" not in record["error"]["message"]
    assert "s3cret" not in record["error"]["message"]


@pytest.mark.parametrize(
    ("status", "ok"),
    [
        *[(status, True) for status in (200, 204, 301, 304, 399)],
        *[(status, False) for status in (100, 199, 400, 404, 503, 599)],
    ],
)
def test_ok_is_an_answer_from_200_to_399_with_nothing_wrong(status: int, ok: bool) -> None:
    """What a record's ok means (records.py): a status from 200 to 399 (a redirect not
    followed is the answer asked for, as a 304 of --refresh is) and no error; anything
    else is an error of kind http, whatever the body held."""
    record = Record(0, "x", URL_A)
    answer = Response(status, "Why", URL_A, "text/plain", b"text", False, None)
    fill_record(record, answer, NO_RETRY)
    assert (record.ok, record.status, record.body) == (ok, status, "text")
    assert record.error == (None if ok else FetchError(ErrorKind.HTTP, f"{status} Why"))


_answers = st.builds(
    Response,
    status=st.sampled_from([200, 204, 302, 304, 404, 503]),
    reason=st.sampled_from([None, "", "Why", "Caf\udce9"]),
    final_url=st.just(URL_A),
    content_type=st.sampled_from(
        [None, "application/json", "text/plain; charset=latin-1", "image/png", "text/html"]
    ),
    body=st.sampled_from([b"", b'{"a": 1}', b"{not json", b"caf\xe9", b"\x89PNG\x00"]),
    truncated=st.booleans(),
    retry_after=st.none(),
    etag=st.sampled_from([None, '"v1"', 'W/"v2"']),
    last_modified=st.sampled_from([None, "Sat, 05 Dec 2026 06:00:00 GMT"]),
    problem=st.sampled_from([None, FetchError(ErrorKind.PROTOCOL, "unsupported coding")]),
)


@given(_answers, st.sampled_from(BodyMode), st.integers(1, 100))
def test_the_run_s_own_filler_makes_the_record_fill_record_makes(
    answer: Response, mode: BodyMode, cap: int
) -> None:
    """``record_filler`` chooses a filler for the run once (the common run gets one that
    skips what is off); whatever the answer, it must make the record ``fill_record``
    makes, field for field."""
    options = FetchOptions(body=mode, max_body_size=cap)
    general, specialised = Record(3, "x", URL_A), Record(3, "x", URL_A)
    fill_record(general, answer, options)
    record_filler(options)(specialised, answer)
    assert specialised == general
    assert (general.content_type, general.etag) == (answer.content_type, answer.etag)


@pytest.mark.parametrize("status", [200, 302])
def test_an_answer_with_a_broken_body_is_not_ok(status: int) -> None:
    record = Record(0, "x", URL_A)
    answer = Response(status, "Why", URL_A, "application/json", b"{not json", False, None)
    fill_record(record, answer, NO_RETRY)
    assert record.ok is False
    assert record.error is not None
    assert record.error.kind is ErrorKind.INVALID_JSON
    cut = Response(status, "Why", URL_A, "text/plain", b"x" * 10, True, None)
    fill_record(record := Record(0, "x", URL_A), cut, NO_RETRY)
    assert record.ok is False
    assert record.error == FetchError(
        ErrorKind.BODY_TOO_LARGE, "body larger than 10000000 bytes; kept the first 10"
    )


@pytest.mark.parametrize("port", ["65536", "99999"])
def test_a_redirect_to_a_port_out_of_range_is_an_invalid_redirect(
    raw_server: Callable[[dict[str, bytes]], RawServer], port: str
) -> None:
    """yarl refuses the Location's port as aiohttp reads the next hop: a record of kind
    invalid_redirect, tried once, not ``unexpected`` (which asks to report a bug)."""
    location = f"Location: http://127.0.0.1:{port}/x".encode()
    server = raw_server({"/x": raw_response(b"", (location,), b"302 Found")})
    result = run_cli("-q", stdin=server.url("/x").encode())
    (record,) = jsonl(result.stdout)
    assert record["error"] == {
        "kind": "invalid_redirect",
        "message": "redirect to a URL whose port is out of range (0-65535)",
    }
    assert (record["ok"], record["attempts"], result.returncode) == (False, 1, 1)


def test_a_3xx_that_is_not_followed_is_an_ok_answer(
    raw_server: Callable[[dict[str, bytes]], RawServer],
) -> None:
    """With --max-redirects 0 the redirect is the answer asked for: ok, error null, as
    curl without -L reports it (a redirect that cannot be followed is an error of its
    own: too_many_redirects, invalid_redirect)."""
    server = raw_server({"/x": raw_response(b"", (b"Location: /y",), b"301 Moved Permanently")})
    result = run_cli("-q", "--max-redirects", "0", stdin=server.url("/x").encode())
    (record,) = jsonl(result.stdout)
    assert (record["ok"], record["status"], record["error"]) == (True, 301, None)
    assert result.returncode == 0


async def test_max_time_cuts_an_attempt_that_never_ends(silent_url: str) -> None:
    """--max-time bounds the item, not the attempt: against a server that never answers,
    with a --timeout of 5 s and 3 retries (up to 20 s and more), the record comes at
    the deadline, a timeout that names --max-time, counting the one attempt made."""
    options = FetchOptions(timeout=5, max_time=0.5, retry=RetryPolicy(retries=3))
    began = time.monotonic()
    _, record = await fetch_one(options, silent_url)
    took = time.monotonic() - began
    assert record.error == FetchError(ErrorKind.TIMEOUT, "--max-time 0.5s ran out during attempt 1")
    assert (record.ok, record.status, record.attempts) == (False, None, 1)
    assert 0.5 <= took < 4  # cut at the deadline, long before --timeout would end it
    assert record.elapsed_ms is not None
    assert record.elapsed_ms >= 500


async def test_max_time_still_retries_fast_failures(mocked: aioresponses) -> None:
    for _ in range(4):
        mocked.get(URL_A, exception=aiohttp.ClientConnectionError("refused"))
    _, record = await fetch_one(FetchOptions(retry=FAST_RETRY, max_time=30))
    assert record.attempts == 4
    assert record.error is not None
    assert record.error.kind is ErrorKind.CONNECT


async def test_a_backoff_past_max_time_is_not_taken(mocked: aioresponses) -> None:
    """A Retry-After longer than what is left of the deadline: no waiting it out only to
    be cut; the record is the answer's, ended by --max-time, at once."""
    mocked.get(URL_A, status=503, headers={"Retry-After": "30"})
    began = time.monotonic()
    _, record = await fetch_one(FetchOptions(max_time=5, retry=RetryPolicy(max_backoff=60)))
    assert time.monotonic() - began < 4
    assert (record.status, record.attempts, record.ok) == (503, 1, False)
    assert record.error == FetchError(
        ErrorKind.TIMEOUT,
        "--max-time 5s ran out before retry 1 (a backoff of 30.00s); attempt 1 ended with "
        "http: 503 Service Unavailable",
    )


async def test_max_time_ends_a_retry_waiting_for_a_slot(mocked: aioresponses) -> None:
    """The slot a retry waits for counts too: with the one slot taken while the item
    backs off, and kept past its deadline, the retry is not made and the record says
    why."""
    answered = asyncio.Event()

    def answer(url: URL, **kwargs: Any) -> None:
        answered.set()

    mocked.get(URL_A, status=503, callback=answer)
    retry = RetryPolicy(retries=1, backoff=0.05, rng=random.Random(1))  # a wait above 0
    options = FetchOptions(max_time=0.3, retry=retry)
    limits = Limits(1)
    setup = SessionSetup.prepare(options)
    async with open_session(options, setup) as sessions:
        client = Client(sessions, options, limits, setup)
        first = asyncio.ensure_future(client.fetch(item(0, URL_A)))
        await answered.wait()
        await limits.acquire("")  # once the first attempt gives the slot back
        try:
            record = await first
        finally:
            limits.release("")
    assert (record.attempts, record.status) == (1, 503)
    assert record.error is not None
    assert record.error.kind is ErrorKind.TIMEOUT
    assert record.error.message == (
        "--max-time 0.3s ran out waiting for a slot for retry 1; attempt 1 ended with "
        "http: 503 Service Unavailable"
    )


async def test_without_max_time_an_attempt_is_not_wrapped(
    mocked: aioresponses, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Off, --max-time costs the request path nothing: no timeout context per attempt."""
    made: list[float] = []
    real = asyncio.timeout_at

    def counting(when: float | None) -> asyncio.Timeout:
        made.append(when or 0.0)
        return real(when)

    monkeypatch.setattr(asyncio, "timeout_at", counting)
    mocked.get(URL_A, status=503)
    mocked.get(URL_A, status=200)
    await fetch_one(FetchOptions(retry=FAST_RETRY))
    assert made == []
    mocked.get(URL_A, status=503)
    mocked.get(URL_A, status=200)
    _, record = await fetch_one(FetchOptions(retry=FAST_RETRY, max_time=30))
    assert record.ok
    assert len(made) == 3  # two attempts, and the retry's slot


NESTED = "http://alice:s3cret@other.test/"
"""A URL with credentials inside a query, as a login page's ``?next=`` holds one."""


def landing_app() -> web.Application:
    """``/login`` redirects to ``/landing?next=NESTED``, ``/twice`` to ``/login?next=NESTED``;
    ``/landing`` answers 200 and ``/gone`` 500, each echoing its ``next``."""

    async def login(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"/landing?next={NESTED}")

    async def twice(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"/login?next={NESTED}")

    async def landing(request: web.Request) -> web.Response:
        return web.json_response({"next": request.query.get("next")})

    async def gone(request: web.Request) -> web.Response:
        return web.json_response({"next": request.query.get("next")}, status=500)

    app = web.Application()
    app.router.add_get("/login", login)
    app.router.add_get("/twice", twice)
    app.router.add_get("/landing", landing)
    app.router.add_get("/gone", gone)
    return app


@pytest.mark.parametrize(
    ("path", "userinfo"),
    [
        ("/login", ""),  # redirected: final_url is the URL requested last
        (f"/landing?next={NESTED}", ""),  # not: the item's own URL, masked when read
        (f"/landing?next={NESTED}", "me:pw9@"),  # credentials of its own too
        ("/login", "TOKEN9@"),
    ],
)
async def test_final_url_masks_credentials_in_its_query_and_its_own(
    serve: Callable[[web.Application], LoopbackServer], path: str, userinfo: str
) -> None:
    """The rule of redaction.py, for final_url as for url: a URL written out in the
    query (``?next=http://u:p@...``) is masked as a URL of its own, ``user:****@``; an
    @ that is no userinfo stays. The origin's own credentials go as a header (aiohttp
    takes them out of the URL), and final_url never shows them (curl's url_effective
    does: see test_conformance.py)."""
    base = serve(landing_app()).url("")
    given = base.replace("http://", f"http://{userinfo}") + path
    async with open_client(NO_RETRY) as client:
        record = await client.fetch(item(0, given))
    assert (record.ok, record.status) == (True, 200)
    assert record.body == {"next": NESTED}  # the server got the URL as given
    assert record.final_url == f"{base}/landing?next=http://alice:****@other.test/"
    for secret in ("s3cret", "pw9", "TOKEN9"):
        assert secret not in str((record.url, record.final_url))


def test_each_redirect_hop_is_shown_with_its_credentials_masked(
    serve: Callable[[web.Application], LoopbackServer],
) -> None:
    """--redirects lists each hop's status and URL, a URL in its query masked as
    final_url is (``/login?next=http://alice:s3cret@...`` is a hop of /twice)."""
    base = serve(landing_app()).url("")
    result = run_cli("--redirects", "-q", "--retries", "0", stdin=f"{base}/twice".encode())
    (record,) = jsonl(result.stdout)
    assert record["redirects"] == [
        {"status": 302, "url": f"{base}/twice"},
        {"status": 302, "url": f"{base}/login?next=http://alice:****@other.test/"},
    ]


@pytest.mark.parametrize(
    "extra",
    [
        (),  # the lean path
        ("--pick", "id=id", "--fields", "url,final_url,id"),  # the Response's path
        ("--per-host", "2"),  # the governed path
    ],
)
def test_final_url_of_an_answer_not_redirected_is_the_url_as_given(
    server: LoopbackServer, extra: tuple[str, ...]
) -> None:
    """Nothing redirected it: final_url is the item's url, spelled as the user gave it
    (a URL goes out as given), not the parsed URL's normal form, which lowers the
    scheme and drops a default port's leading zero."""
    base = server.url("/item?id=7")
    given = [
        base.replace("http://", "HTTP://"),
        base.replace("/item?id=7", "/item?id=%7e#Part"),
    ]
    result = run_cli("-q", *extra, stdin="\n".join(given).encode())
    records = jsonl(result.stdout)
    assert [r["final_url"] for r in records] == given
    assert [r["url"] for r in records] == given


@pytest.mark.parametrize(("seconds", "ms"), [(1.2345678, 1234.568), (0.0000004, 0.0), (2, 2000.0)])
def test_elapsed_is_milliseconds_to_the_microsecond(
    monkeypatch: pytest.MonkeyPatch, seconds: float, ms: float
) -> None:
    """elapsed_ms: whole microseconds, as milliseconds; the clock read once, now."""
    monkeypatch.setattr(time, "perf_counter", lambda: 100.0 + seconds)
    assert milliseconds_since(100.0) == ms


class _Taught(Limits):
    """An auto limit that keeps what each attempt taught it."""

    def __init__(self) -> None:
        super().__init__(100, adaptive=Adaptive(ceiling=40), longest_wait=0.2)
        self.lessons: list[tuple[str, Lesson]] = []

    def release(self, host: str, ticket: Any = (0, 0), lesson: Lesson | None = None) -> None:
        assert lesson is not None
        self.lessons.append((host, lesson))
        super().release(host, ticket, lesson)


async def test_each_attempt_teaches_limit_auto_what_the_answer_said(
    serve: Callable[[web.Application], LoopbackServer],
) -> None:
    """--limit auto learns from every attempt (``Client._teach``): a --retry-on status is
    an overload answer, its Retry-After capped by --max-backoff (one "a day" must not
    freeze the run); a refused connection is a failure; any other answer is a latency,
    with the quota it announced and the redirects it took to the same host."""
    quota = {"RateLimit-Policy": '"default";q=100;w=1', "RateLimit": '"default";r=42;t=1'}

    async def answer(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name == "day":
            return web.Response(status=503, headers={"Retry-After": "86400"})
        if name == "soon":
            return web.Response(status=429, headers={"Retry-After": "0"})
        if name == "hop":
            raise web.HTTPFound("/quota")
        if name == "quota":
            return web.Response(text="{}", headers=quota)
        return web.Response(status=404 if name == "missing" else 200)

    app = web.Application()
    app.router.add_get("/{name}", answer)
    base = serve(app).url("")
    options = FetchOptions(
        adaptive=Adaptive(ceiling=40), retry=RetryPolicy(retries=0, max_backoff=0.2)
    )
    setup = SessionSetup.prepare(options)
    limits = _Taught()
    refused = f"http://127.0.0.1:{_closed_port()}/x"
    async with open_session(options, setup) as sessions:
        client = Client(sessions, options, limits, setup)
        for index, path in enumerate(("day", "soon", "missing", "ok", "hop", "quota")):
            await client.fetch(item(index, f"{base}/{path}"))
        await client.fetch(item(9, refused))
    taught = [lesson for _, lesson in limits.lessons]
    assert [lesson.overload for lesson in taught] == [
        Overload.REJECTED,  # 503
        Overload.REJECTED,  # 429
        None,  # 404: not a --retry-on status
        None,
        None,
        None,
        Overload.FAILED,  # connection refused
    ]
    assert [lesson.retry_after for lesson in taught] == [0.2, 0.0, None, None, None, None, None]
    assert [lesson.hops for lesson in taught] == [0, 0, 0, 0, 1, 0, 0]
    assert [bool(lesson.announced) for lesson in taught] == [False] * 4 + [True, True, False]
    assert all(lesson.latency is not None and lesson.latency >= 0 for lesson in taught)
    hosts = {host for host, _ in limits.lessons}
    assert len(hosts) == 2  # the server's host and the refusing one, each its own limit


async def test_limit_auto_learns_quotas_while_headers_and_redirects_are_recorded(
    serve: Callable[[web.Application], LoopbackServer],
) -> None:
    """Two takers of an answer at once (``Client._notes``): --limit auto's quotas and
    hops, and the headers and redirects a record was asked for. Each gets every answer,
    whole: neither is dropped for the other."""
    quota = {"RateLimit-Policy": '"default";q=100;w=1', "RateLimit": '"default";r=42;t=1'}

    async def answer(request: web.Request) -> web.StreamResponse:
        if request.match_info["name"] == "hop":
            raise web.HTTPFound("/quota")
        return web.Response(text="{}", headers=quota)

    app = web.Application()
    app.router.add_get("/{name}", answer)
    base = serve(app).url("")
    options = FetchOptions(
        adaptive=Adaptive(ceiling=40),
        response_headers=frozenset({"ratelimit"}),
        redirects=True,
        retry=RetryPolicy(retries=0),
    )
    setup = SessionSetup.prepare(options)
    limits = _Taught()
    async with open_session(options, setup) as sessions:
        client = Client(sessions, options, limits, setup)
        record = await client.fetch(item(0, f"{base}/hop"))
    assert record.headers == {"ratelimit": '"default";r=42;t=1'}
    assert record.redirects == [{"status": 302, "url": f"{base}/hop"}]
    ((_, lesson),) = limits.lessons
    assert (lesson.hops, bool(lesson.announced)) == (1, True)


@pytest.mark.parametrize("head", [("-X", "HEAD"), ("-I",)])
def test_a_head_answer_has_no_body_and_no_size(
    serve: Callable[[web.Application], LoopbackServer], head: tuple[str, ...]
) -> None:
    """HEAD's answer has headers and no content (RFC 9110 9.3.2): its record's body and
    size are null, never an empty body of size 0, whatever the type it names."""

    async def answer(request: web.Request) -> web.Response:
        if request.match_info["name"] == "text":
            return web.Response(text="hello", headers={"ETag": '"t"'})
        return web.json_response({"a": 1})

    app = web.Application()
    app.router.add_route("*", "/{name}", answer)
    server = serve(app)
    urls = f"{server.url('/json')}\n{server.url('/text')}\n".encode()
    result = run_cli("-q", *head, "--fields", "status,content_type,etag,size,body", stdin=urls)
    assert result.returncode == 0, result.stderr
    assert [(r["status"], r["size"], r["body"]) for r in jsonl(result.stdout)] == [
        (200, None, None),
        (200, None, None),
    ]
    assert jsonl(result.stdout)[1]["etag"] == '"t"'


@pytest.mark.parametrize(
    ("mode", "bodies"),
    [
        ("auto", [{"a": 1}, None]),  # an empty JSON body is no body, not invalid JSON
        ("text", ['{"a": 1}', ""]),
        ("base64", ["eyJhIjogMX0=", ""]),
        ("none", [None, None]),
    ],
)
def test_body_modes_shape_the_body_on_the_lean_path(
    serve: Callable[[web.Application], LoopbackServer], mode: str, bodies: list[Any]
) -> None:
    """--body as the record's body, for answers that come whole (the lean path, where
    most answers go): the mode the run was given, each time."""

    async def answer(request: web.Request) -> web.Response:
        text = "" if request.match_info["name"] == "empty" else '{"a": 1}'
        return web.Response(text=text, content_type="application/json")

    app = web.Application()
    app.router.add_get("/{name}", answer)
    server = serve(app)
    urls = f"{server.url('/full')}\n{server.url('/empty')}\n".encode()
    result = run_cli("-q", "--body", mode, "--fields", "body,error", stdin=urls)
    assert result.returncode == 0, result.stderr
    assert [(r["body"], r["error"]) for r in jsonl(result.stdout)] == [(b, None) for b in bodies]


class _Waits(Limits):
    """The global cap alone (the plain path), with each retry's backoff kept, not slept,
    and an event set once ``expected`` fetches wait for a slot."""

    def __init__(self, limit: int, expected: int = 0) -> None:
        super().__init__(limit, longest_wait=60)
        self.waits: list[float] = []
        self.waiting = 0
        self.expected = expected
        self.all_waiting = asyncio.Event()

    async def backoff(self, seconds: float) -> None:
        self.waits.append(seconds)

    async def acquire(self, host: str, order: int = 1 << 62, attempt: int = 1) -> Any:
        self.waiting += 1
        if self.waiting == self.expected:
            self.all_waiting.set()
        try:
            return await super().acquire(host, order, attempt)
        finally:
            self.waiting -= 1


async def test_the_plain_path_waits_what_retry_after_says(
    serve: Callable[[web.Application], LoopbackServer],
) -> None:
    """With the global cap alone (``_fetch_plain``, the lean way), a --retry-on answer's
    Retry-After is the wait before its retry, as on the governed path."""
    asked = 0

    async def busy_once(request: web.Request) -> web.Response:
        nonlocal asked
        asked += 1
        if asked == 1:
            return web.Response(status=503, headers={"Retry-After": "3"})
        return web.Response(text="{}")

    app = web.Application()
    app.router.add_get("/x", busy_once)
    options = FetchOptions(retry=RetryPolicy(retries=1, backoff=0.001, max_backoff=60))
    setup = SessionSetup.prepare(options)
    limits = _Waits(4)
    async with open_session(options, setup) as sessions:
        client = Client(sessions, options, limits, setup)
        assert client.fetch == client._fetch_plain
        record = await client.fetch(item(0, serve(app).url("/x")))
    assert (record.status, record.attempts, limits.waits) == (200, 2, [3.0])


async def test_a_retry_takes_the_next_slot_before_the_items_behind_it(
    serve: Callable[[web.Application], LoopbackServer],
) -> None:
    """An item's retry waits for a slot in the item's place, not behind every item that
    came after it: its record holds back every later one (the reorder window), so it
    goes first. At --limit 1, with three items waiting when the first is refused, the
    server sees 0, 1, then 0 again, then 2 and 3. The progress line counts it, alone,
    as a retry waiting for a slot."""
    seen: list[str] = []
    retries_shown: list[int] = []
    limits = _Waits(1, expected=3)

    async def answer(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        seen.append(name)
        if name == "1":
            retries_shown.append(limits.retries_waiting)  # the progress line's count
        if seen == ["0"]:
            await limits.all_waiting.wait()
            return web.Response(status=503, headers={"Retry-After": "0"})
        return web.Response(text="{}")

    app = web.Application()
    app.router.add_get("/{name}", answer)
    base = serve(app).url("")
    options = FetchOptions(limit=1, retry=RetryPolicy(retries=1, backoff=0.001))
    setup = SessionSetup.prepare(options)
    async with open_session(options, setup) as sessions:
        client = Client(sessions, options, limits, setup)
        records = await asyncio.gather(*(client.fetch(item(i, f"{base}/{i}")) for i in range(4)))
    assert [r.status for r in records] == [200] * 4
    assert seen == ["0", "1", "0", "2", "3"]
    assert retries_shown == [1]  # item 0's retry; the items behind it are no retries


def _closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then closed)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_each_host_and_port_is_its_own_key_whatever_its_case() -> None:
    """What --per-host and --limit auto count by: hosts compare without case (RFC 3986
    3.2.2), and another host or port is another server."""
    assert host_key(URL("http://API.test:8080/a")) == host_key(URL("http://api.test:8080/b"))
    urls = ("http://a.test/", "http://b.test/", "http://a.test:81/", "https://a.test/")
    assert len({host_key(URL(url)) for url in urls}) == len(urls)


def _answers_app() -> web.Application:
    """Answers by path, for the in-process tests below."""

    async def answer(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name == "loop":
            raise web.HTTPFound("/loop")
        if name == "conditional":
            if request.headers.get("If-None-Match") == '"v1"':
                return web.Response(status=304)
            return web.Response(text="new", headers={"ETag": '"v2"'})
        if name == "headers":
            headers = {
                "Location": "http://a b:secret@h.test/",  # one URL, whatever its userinfo
                "X-Mirrors": "http://u:pw@h.test/ (primary), http://v:pw2@h.test/ (backup)",
            }
            return web.Response(text="x", headers=headers)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/{name}", answer)
    return app


async def fetch_from(base: str, path: str, options: FetchOptions, **kwargs: Any) -> Record:
    setup = SessionSetup.prepare(options)
    async with open_session(options, setup) as sessions:
        client = Client(sessions, options, Limits(options.limit), setup)
        return await client.fetch(item(0, f"{base}/{path}"), **kwargs)


async def test_response_headers_mask_a_location_as_a_url_and_others_as_text(
    serve: Callable[[web.Application], LoopbackServer],
) -> None:
    base = serve(_answers_app()).url("")
    options = FetchOptions(response_headers=frozenset({"location", "x-mirrors"}), max_redirects=0)
    record = await fetch_from(base, "headers", options)
    assert record.headers == {
        "location": "http://a b:****@h.test/",
        "x-mirrors": "http://u:****@h.test/ (primary), http://v:****@h.test/ (backup)",
    }


@pytest.mark.parametrize("asked", [False, True])
async def test_a_redirect_loop_records_its_hops_only_when_asked(
    serve: Callable[[web.Application], LoopbackServer], asked: bool
) -> None:
    base = serve(_answers_app()).url("")
    options = FetchOptions(max_redirects=2, redirects=asked, retry=RetryPolicy(retries=0))
    record = await fetch_from(base, "loop", options)
    assert record.error is not None
    assert record.error.kind is ErrorKind.TOO_MANY_REDIRECTS
    if asked:
        assert record.redirects is not None
        assert [hop["status"] for hop in record.redirects] == [302, 302, 302]
    else:
        assert record.redirects is None


async def test_a_conditional_request_keeps_its_condition_under_max_time(
    serve: Callable[[web.Application], LoopbackServer],
) -> None:
    """--refresh with -m: the attempt cut at the item's deadline still sends If-None-Match."""
    base = serve(_answers_app()).url("")
    options = FetchOptions(max_time=10)
    record = await fetch_from(base, "conditional", options, conditional={"If-None-Match": '"v1"'})
    assert record.status == 304


async def test_a_conditional_request_keeps_its_condition_under_a_per_host_cap(
    serve: Callable[[web.Application], LoopbackServer],
) -> None:
    """--refresh with --per-host, --rate or --limit auto (the governed path, no -m): the
    attempt still sends If-None-Match, and the unchanged resource answers 304."""
    base = serve(_answers_app()).url("")
    options = FetchOptions(per_host=2)
    setup = SessionSetup.prepare(options)
    async with open_session(options, setup) as sessions:
        client = Client(sessions, options, Limits(options.limit, per_host=2), setup)
        record = await client.fetch(
            item(0, f"{base}/conditional"), conditional={"If-None-Match": '"v1"'}
        )
    assert record.status == 304


async def test_max_time_says_how_an_attempt_without_an_error_ended(
    serve: Callable[[web.Application], LoopbackServer],
) -> None:
    """A status retried though it is no error (--retry-on 200): the record says the status."""
    base = serve(_answers_app()).url("")
    retry = RetryPolicy(retries=3, retry_on=[200], backoff=30, max_backoff=30)
    options = FetchOptions(max_time=0.5, retry=retry)
    record = await fetch_from(base, "ok", options)
    assert record.error is not None
    assert record.error.kind is ErrorKind.TIMEOUT
    assert record.error.message.endswith("; attempt 1 ended with status 200")


@pytest.mark.parametrize(
    ("mode", "body"),
    [(BodyMode.AUTO, base64.b64encode(b"caf\xe9").decode()), (BodyMode.TEXT, "caf\ufffd")],
)
def test_a_body_that_arrived_wrong_is_shown_still_encoded_unless_asked_as_text(
    mode: BodyMode, body: str
) -> None:
    """An encoding that could not be undone: --body auto shows the bytes as base64 (they
    are not the text their type says); --body text is what the user asked for."""
    problem = FetchError(ErrorKind.PROTOCOL, "unsupported content coding")
    answer = Response(200, "OK", URL_A, "text/plain", b"caf\xe9", False, None, problem=problem)
    fill_record(record := Record(0, "x", URL_A), answer, FetchOptions(body=mode))
    assert (record.body, record.error) == (body, problem)


@pytest.mark.parametrize("mode", [BodyMode.AUTO, BodyMode.TEXT, BodyMode.NONE])
@pytest.mark.parametrize("content_type", ["application/json", "text/plain"])
def test_picks_read_the_body_as_json_whatever_body_shows(mode: BodyMode, content_type: str) -> None:
    answer = Response(200, "OK", URL_A, content_type, b'{"a": {"b": 7}}', False, None)
    options = FetchOptions(body=mode, picks=("b=a.b",))
    fill_record(record := Record(0, "x", URL_A), answer, options)
    assert record.picks == {"b": 7}


def test_a_head_answer_has_every_pick_null() -> None:
    """HEAD has no body to pick from: each pick is there, null, as for a body without it."""
    answer = Response(200, "OK", URL_A, "application/json", b"", False, None)
    options = FetchOptions(method="HEAD", picks=("b=a.b", "c=c"))
    fill_record(record := Record(0, "x", URL_A), answer, options)
    assert record.picks == {"b": None, "c": None}


def test_picks_read_json_in_the_charset_the_server_named() -> None:
    """--body text shows the text; picks parse the same bytes as JSON, in the same charset."""
    answer = Response(
        200, "OK", URL_A, "application/json; charset=iso-8859-1", b'{"a": "caf\xe9"}', False, None
    )
    fill_record(
        record := Record(0, "x", URL_A), answer, FetchOptions(body=BodyMode.TEXT, picks=("a=a",))
    )
    assert (record.body, record.picks) == ('{"a": "café"}', {"a": "café"})


@pytest.mark.parametrize("max_time", [None, 30.0])  # the plain path, and the governed one
async def test_an_invalid_item_s_record_keeps_its_url_on_either_path(
    max_time: float | None,
) -> None:
    invalid = item(2, "http://h.test:99999/a")
    assert invalid.error is not None
    async with open_client(FetchOptions(max_time=max_time)) as client:
        record = await client.fetch(invalid)
    assert (record.index, record.url, record.error) == (2, invalid.url, invalid.error)
    assert record.url == "http://h.test:99999/a"


class _Lessons(Limits):
    """Limits that keep the lessons each release was given, and release nothing."""

    def __init__(self) -> None:
        super().__init__(10)
        self.lessons: list[Lesson | None] = []

    def release(self, host: str, ticket: Any = None, lesson: Lesson | None = None) -> None:
        self.lessons.append(lesson)


@pytest.mark.parametrize(
    ("status", "kind", "overload"),
    [
        (503, ErrorKind.HTTP, Overload.REJECTED),  # a --retry-on status
        (404, ErrorKind.HTTP, None),  # an answer: a latency
        (None, ErrorKind.TIMEOUT, Overload.FAILED),
        (None, ErrorKind.CONNECT, Overload.FAILED),
        (None, ErrorKind.TLS, None),  # no answer, but no sign of overload either
        (None, ErrorKind.INVALID_REDIRECT, None),
    ],
)
async def test_what_an_attempt_teaches_limit_auto(
    status: int | None, kind: ErrorKind, overload: Overload | None
) -> None:
    """Overload is a --retry-on status or a connection that failed or timed out; any
    other end of an attempt is a latency, measured from its start."""
    options = FetchOptions(adaptive=Adaptive())
    setup = SessionSetup.prepare(options)
    taught = _Lessons()
    async with open_session(options, setup) as sessions:
        client = Client(sessions, options, taught, setup)
        record = Record(0, "x", URL_A, status=status, error=FetchError(kind, "m"))
        began = time.perf_counter()
        client._teach("api.test:80", None, record, began, None)  # type: ignore[arg-type]
        took = time.perf_counter() - began
    (lesson,) = taught.lessons
    assert lesson is not None
    assert lesson.overload is overload
    assert lesson.latency is not None
    assert 0 <= lesson.latency <= took


class _Asked(Limits):
    """Per-host limits that keep what each acquire was asked."""

    def __init__(self) -> None:
        super().__init__(10, per_host=1)
        self.asked: list[tuple[str, int, int]] = []

    async def acquire(self, host: str, order: int = 1 << 62, attempt: int = 1) -> Any:
        self.asked.append((host, order, attempt))
        return await super().acquire(host, order, attempt)


@pytest.mark.parametrize("max_time", [None, 30.0])
async def test_each_attempt_asks_its_host_s_slot_by_the_item_s_age(
    serve: Callable[[web.Application], LoopbackServer], max_time: float | None
) -> None:
    """Under per-host caps (and rate, auto, -m) each attempt takes its host's slot in the
    item's order, so a retry, older than what queued since, goes first; its attempt
    number is what the bar counts as a retry waiting."""
    answered = 0

    async def flaky(request: web.Request) -> web.Response:
        nonlocal answered
        answered += 1
        return web.Response(status=503 if answered == 1 else 200)

    app = web.Application()
    app.router.add_get("/x", flaky)
    server = serve(app)
    options = FetchOptions(per_host=1, retry=FAST_RETRY, max_time=max_time)
    setup = SessionSetup.prepare(options)
    limits = _Asked()
    async with open_session(options, setup) as sessions:
        record = await Client(sessions, options, limits, setup).fetch(item(7, server.url("/x")))
    assert record.attempts == 2
    host = host_key(URL(server.url("/x")))
    assert limits.asked == [(host, 7, 1), (host, 7, 2)]


@pytest.mark.parametrize("length", [False, True])
@pytest.mark.parametrize(("size", "cut"), [(10, False), (11, True)])
async def test_a_body_at_the_size_cap_is_whole_and_one_byte_past_it_is_cut(
    serve: Callable[[web.Application], LoopbackServer], length: bool, size: int, cut: bool
) -> None:
    """--max-body-size N keeps a body of N bytes whole, told by its Content-Length or,
    chunked, by reading up to it; N + 1 is cut to N and the record says so."""

    async def body(request: web.Request) -> web.StreamResponse:
        if length:
            return web.Response(body=b"x" * size, content_type="text/plain")
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(size):
            await response.write(b"x")
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/{name}", body)
    record = await fetch_from(serve(app).url(""), "body", FetchOptions(max_body_size=10))
    assert record.size == 10
    assert record.body == "x" * 10
    if cut:
        assert record.error == FetchError(
            ErrorKind.BODY_TOO_LARGE, "body larger than 10 bytes; kept the first 10"
        )
    else:
        assert (record.ok, record.error) == (True, None)


async def test_a_body_said_to_be_identity_coded_is_read_whole(
    serve: Callable[[web.Application], LoopbackServer],
) -> None:
    """Content-Encoding: identity (no coding at all) takes the capped reader's own short
    way, which must not call a whole body cut."""

    async def body(request: web.Request) -> web.Response:
        headers = {"Content-Encoding": "identity"}
        return web.Response(body=b'{"a": 1}', content_type="application/json", headers=headers)

    app = web.Application()
    app.router.add_get("/{name}", body)
    record = await fetch_from(serve(app).url(""), "body", FetchOptions(max_body_size=100))
    assert (record.ok, record.error, record.body) == (True, None, {"a": 1})


async def test_a_body_in_a_coding_not_supported_is_kept_as_sent_and_says_so(
    serve: Callable[[web.Application], LoopbackServer],
) -> None:
    """An unknown Content-Encoding: the bytes as they came (base64, not the text their
    type says), and a protocol error naming the coding, whole."""

    async def body(request: web.Request) -> web.Response:
        headers = {"Content-Encoding": "zzz"}
        return web.Response(body=b"\x01\x02", content_type="text/plain", headers=headers)

    app = web.Application()
    app.router.add_get("/{name}", body)
    record = await fetch_from(serve(app).url(""), "body", FetchOptions())
    assert record.error == FetchError(
        ErrorKind.PROTOCOL, "Content-Encoding 'zzz' is not supported; body kept as sent"
    )
    assert (record.ok, record.body) == (False, base64.b64encode(b"\x01\x02").decode())


_ANSWERS: dict[str, bytes] = {
    "/json": raw_response(
        b'{"id": 12345678901234567890123, "a": [1]}',
        (b"Content-Type: application/json", b'ETag: W/"e1"', b"Last-Modified: x\xffy"),
    ),
    "/missing": raw_response(b"gone", (b"Content-Type: text/plain",), b"404 Not Here"),
    "/odd-type": raw_response(b"caf\xe9", (b"Content-Type: text/plain; charset=\xff",)),
    "/latin": raw_response(b"caf\xe9", (b"Content-Type: text/plain; charset=latin-1",)),
    "/not-json": raw_response(b"{nope", (b"Content-Type: application/json",)),
    "/empty": raw_response(b"", (), b"204 No Content"),
    "/busy": raw_response(b"later", (b"Retry-After: 0",), b"503 Service Unavailable"),
    "/gzip": raw_response(
        gzip.compress(b'{"z": 1}'), (b"Content-Type: application/json", b"Content-Encoding: gzip")
    ),
    "/binary": raw_response(b"\x00\x01\x02", (b"Content-Type: application/octet-stream",)),
}


@pytest.mark.parametrize("path", sorted(_ANSWERS))
async def test_a_lean_run_records_every_answer_as_the_whole_way_does(
    raw_server: Callable[[dict[str, bytes]], RawServer], path: str
) -> None:
    """A run that records nothing past the plain fields puts an answer into its record
    without a Response between; the record must be the one the whole way makes (here a
    run with --timings, which takes it), field for field, whatever the answer."""
    server = raw_server(_ANSWERS)
    records = []
    for options in (
        FetchOptions(retry=RetryPolicy(retries=1)),
        FetchOptions(retry=RetryPolicy(retries=1), timings=True),
    ):
        setup = SessionSetup.prepare(options)
        async with open_session(options, setup) as sessions:
            client = Client(sessions, options, Limits(options.limit), setup)
            assert client._lean is not options.timings
            record = await client.fetch(item(0, server.url(path)))
        fields = record.to_dict()
        del fields["elapsed_ms"]
        records.append(fields)
    lean, whole = records
    assert lean == whole
    assert lean["status"] is not None
