"""One HTTP request with aiohttp, turned into a Record.

This is the only place that catches network exceptions: whatever aiohttp, the
TLS layer or the OS raises for a request becomes an error kind on the record,
so a failed fetch can never end the run.
"""

from __future__ import annotations

import asyncio
import ssl
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Final, Protocol

import aiohttp
from aiohttp import hdrs
from yarl import URL

from fetchmany.checks import ALL_HEADERS
from fetchmany.fetch.bodies import DecodedBody, body_value, decode_body
from fetchmany.fetch.encodings import ContentDecodingError, decoded, is_encoded, unsupported
from fetchmany.fetch.limits import Limits, Ticket
from fetchmany.fetch.picks import apply_picks
from fetchmany.fetch.retry import parse_retry_after
from fetchmany.fetch.session import Sessions, SessionSetup, ascii_credentials, url_basic_auth
from fetchmany.input.sources import Item
from fetchmany.options import FetchOptions
from fetchmany.records import BodyMode, ErrorKind, FetchError, Record, valid_text
from fetchmany.redaction import redact_parsed, redact_text, redact_url
from fetchmany.urls import fragment_of, has_credentials

if TYPE_CHECKING:  # each imported by a run that turns its feature on
    from multidict import CIMultiDictProxy

    from fetchmany.fetch.quota import Announced
    from fetchmany.fetch.saving import SavedBody, SaveDir
    from fetchmany.fetch.timings import Timings

_READ_CHUNK: Final = 256 * 1024
_FAILED: Final = frozenset({ErrorKind.TIMEOUT, ErrorKind.CONNECT})
"""Errors that may mean a host is full (an attempt that got no answer in time, a
connection refused or reset); others (TLS, DNS, a broken body) say nothing of load."""


@dataclass(slots=True)
class Response:
    """What one attempt got back before it is judged: status, headers of note, raw body
    (or, with --save-dir, what was saved)."""

    status: int
    reason: str | None
    final_url: str
    content_type: str | None
    body: bytes
    truncated: bool
    retry_after: str | None
    etag: str | None = None
    last_modified: str | None = None
    announced: tuple[Announced, ...] = ()
    """With --limit auto: the quotas the answer announced in its headers."""
    hops: int = 0
    """With --limit auto: redirects followed to the same host (each spent its quota)."""
    saved: SavedBody | None = None
    problem: FetchError | None = None
    """Something wrong with a body that still arrived (an encoding we cannot undo)."""
    timings: dict[str, float | None] | None = None
    headers: dict[str, Any] | None = None
    redirects: list[dict[str, Any]] | None = None
    tls: dict[str, Any] | None = None


def host_key(target: URL) -> str:
    """What ``--per-host`` counts by: host and port, never the credentials."""
    return f"{(target.raw_host or '').lower()}:{target.port}"


def classify(exc: BaseException, options: FetchOptions) -> FetchError:
    """Map any exception raised by one attempt to an error kind and a readable message.

    The message may quote a URL or a header from the server, so it is made valid
    text with credentials masked before it goes into a record.
    """
    kind, message = _kind_of(exc, options)
    return FetchError(kind, redact_text(valid_text(message)))


def _is_save_error(exc: BaseException) -> bool:
    """Whether ``exc`` is --save-dir's: a run that saves nothing never imports it."""
    saving = sys.modules.get("fetchmany.fetch.saving")
    return saving is not None and isinstance(exc, saving.SaveError)


def _kind_of(exc: BaseException, options: FetchOptions) -> tuple[ErrorKind, str]:
    message = str(exc) or type(exc).__name__
    kind: ErrorKind
    if _is_save_error(exc):
        kind = ErrorKind.SAVE
    elif isinstance(exc, ContentDecodingError):
        kind = ErrorKind.PROTOCOL
    elif isinstance(exc, aiohttp.TooManyRedirects):
        kind = ErrorKind.TOO_MANY_REDIRECTS
        message = f"more than {options.max_redirects} redirects"
    elif isinstance(exc, ValueError) and "Cannot combine AUTHORIZATION" in message:
        kind = ErrorKind.INVALID_REDIRECT  # aiohttp: a Location with credentials of its own
        message = "redirect to a URL with credentials while others were being sent"
    elif isinstance(exc, ValueError) and message.startswith("Port out of range"):
        # yarl, as aiohttp reads the next hop's URL: an item's own URL with such a port
        # never gets this far (an invalid_url record), so only a Location can hold one.
        kind = ErrorKind.INVALID_REDIRECT
        message = "redirect to a URL whose port is out of range (0-65535)"
    elif isinstance(exc, aiohttp.RedirectClientError):
        kind = ErrorKind.INVALID_REDIRECT
        message = f"redirect to a URL that is not fetched: {redact_url(str(exc))}"
    elif isinstance(exc, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
        kind = ErrorKind.INVALID_URL
    elif isinstance(exc, aiohttp.ClientConnectorDNSError):
        kind = ErrorKind.DNS
    elif isinstance(exc, aiohttp.ClientSSLError | ssl.SSLError) or isinstance(
        exc.__cause__,
        ssl.SSLError,  # aiohttp-socks: a ClientOSError from the handshake's
    ):
        kind = ErrorKind.TLS
    elif isinstance(exc, aiohttp.ConnectionTimeoutError):
        kind = ErrorKind.TIMEOUT
        message = f"no connection within {options.connect_timeout:g}s"
    elif isinstance(exc, TimeoutError):
        kind = ErrorKind.TIMEOUT
        message = f"attempt did not finish within {options.timeout:g}s"
    elif isinstance(exc, aiohttp.ClientHttpProxyError):  # a CONNECT answered, not with 200
        kind = ErrorKind.CONNECT
        message = f"the proxy refused the tunnel: {exc.status} {exc.message}".rstrip()
    elif isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ClientResponseError):
        kind = ErrorKind.PROTOCOL
    elif isinstance(exc, aiohttp.ClientConnectionError | OSError | EOFError) or _from_socks(exc):
        kind = ErrorKind.CONNECT
        if isinstance(exc, EOFError):  # a peer (a SOCKS proxy refusing) hung up mid-answer
            message = f"connection closed early: {message}"
    elif isinstance(exc, aiohttp.ClientError):
        kind = ErrorKind.PROTOCOL
    else:
        kind = ErrorKind.UNEXPECTED
        message = f"{type(exc).__name__}: {message}"
    return kind, message


def _from_socks(exc: BaseException) -> bool:
    """python-socks' errors (a proxy that refuses, bad credentials) are not all OSError;
    told by module so that python-socks is imported only when a SOCKS proxy is used."""
    return type(exc).__module__.startswith(("python_socks", "aiohttp_socks"))


class Fetch(Protocol):
    """``Client.fetch``: the record of an item, its requests made conditional by
    ``conditional`` (``--refresh``), ``spent`` seconds of its --max-time already used."""

    def __call__(
        self, item: Item, conditional: dict[str, str] | None = None, spent: float = 0.0
    ) -> Awaitable[Record]: ...


Note = Callable[[Response, aiohttp.ClientResponse, URL], None]
"""What a run takes from each answer besides what every record holds (``Client._notes``)."""


class Client:
    """Performs attempts over the run's one ClientSession and builds records from them.

    The session, its setup and the limits are the run's, made once where the run is
    assembled (``api.fetch_batches``) and handed in. The request path is chosen here,
    once, for what the run does: ``fetch`` is the plain loop when the global cap is the
    only limit and there is no --max-time, the governed one otherwise; a request passes
    aiohttp arguments of its own only when the run has some (a body, a proxy, .netrc
    credentials, a condition, timings); answers are read for headers, redirects, TLS
    facts or quotas only when asked; records are filled by ``record_filler``'s choice.
    Every policy stays where it lives (``retry.py``, ``limits.py``, ``fill_record``):
    what is chosen is which steps run, never what a step decides.
    """

    fetch: Fetch
    """The record for one item, after any retries (``_fetch_plain`` or ``_fetch_governed``).

    Never raises for anything the input or the network does; raises ``Abandoned``
    only when the run stops while the item waits for a slot or a backoff, so a
    stopped run writes no half-made record."""

    def __init__(
        self,
        sessions: Sessions,
        options: FetchOptions,
        limits: Limits,
        setup: SessionSetup,
    ) -> None:
        self._sessions = sessions
        self._direct = sessions.direct
        self._vouched = sessions.request_class.vouched
        self._options = options
        self._limits = limits
        self._setup = setup
        self._method = options.http_method
        self._retry_on = options.retry.retry_on
        self._save: SaveDir | None = None
        if options.save_dir:
            from fetchmany.fetch.saving import SaveDir

            self._save = SaveDir(options.save_dir, options.save_name)
        self._cap = options.max_body_size
        self._adaptive = options.adaptive is not None
        self._by_host = self._adaptive or options.per_host is not None  # limits keyed by host
        self._proxied = bool(setup.proxy or setup.env_proxies)
        self._netrc = setup.netrc is not None
        self._timed = options.timings
        # What every request passes besides method and URL (the session holds the rest).
        self._arguments = redirect_arguments(options.max_redirects)
        # Arguments a request may have of its own besides a body, a condition or a URL's
        # credentials (which only some items or runs carry, and each says so by being there).
        self._own = self._proxied or self._netrc or self._timed
        self._note = self._notes()
        self._fill = record_filler(options)
        # A lean run (the filler's lean case, nothing noted, saved or timed): an answer
        # goes from aiohttp's response into the record with no Response between.
        self._lean = fills_lean(options) and self._note is None and not self._timed
        self._mode = options.body
        self.fetch = (
            self._fetch_plain if limits.plain and options.max_time is None else self._fetch_governed
        )

    def _notes(self) -> Note | None:
        """What this run takes from each answer besides what every record holds: the
        headers, redirects and TLS facts asked for, the quotas --limit auto paces by;
        None when it takes nothing more."""
        options = self._options
        takers: list[Note] = []
        if options.response_headers is not None or options.redirects or options.tls:
            takers.append(self._record_extras)
        if self._adaptive:
            takers.append(_quotas)
        if len(takers) < 2:
            return takers[0] if takers else None

        def every(response: Response, resp: aiohttp.ClientResponse, target: URL) -> None:
            for taker in takers:
                taker(response, resp, target)

        return every

    def _request_of(
        self, item: Item, target: URL, conditional: dict[str, str] | None
    ) -> tuple[aiohttp.ClientSession, URL, dict[str, Any], Timings | None]:
        """The session, URL and arguments of a request that has arguments of its own: a
        body, a proxy, credentials (.netrc, or a URL's that aiohttp cannot send), a
        condition (--refresh), a clock for --timings."""
        setup = self._setup
        arguments = dict(self._arguments)
        session = self._direct
        if self._proxied:
            session, proxy = self._sessions.route(setup.proxy_for(target))
            if proxy is not None:
                arguments["proxy"] = proxy
        headers = None
        if item.data is not None:
            arguments["data"] = item.data
            headers = setup.body_headers
        auth = None
        if not has_credentials(target):
            if self._netrc:
                auth = setup.auth_for(target)
        elif (
            self._netrc
            and target.raw_password is None
            and target.user is not None
            and ((auth := setup.auth_for(target, login=target.user)) is not None)
        ):  # a user without a password: that user's .netrc entry, if it has one
            target = target.with_user(None)
        elif not ascii_credentials(target):  # aiohttp would send other bytes than curl
            auth = url_basic_auth(target)
            target = target.with_user(None)
        if auth is not None:
            headers = {**(headers or {}), "Authorization": auth}
        if conditional is not None:  # --refresh: If-None-Match, If-Modified-Since
            headers = {**(headers or {}), **conditional}
        if headers is not None:
            arguments["headers"] = headers
        timings = None
        if self._timed:
            from fetchmany.fetch.timings import Timings

            timings = arguments["trace_request_ctx"] = Timings()
        return session, target, arguments, timings

    def _request(
        self, item: Item, target: URL, conditional: dict[str, str] | None
    ) -> tuple[aiohttp.ClientSession, URL, dict[str, Any], Timings | None]:
        """The session, URL and arguments of an attempt, and its clock (--timings)."""
        if (
            self._own
            or item.data is not None
            or conditional is not None
            or item.credentials  # credentials aiohttp may not send as curl does
        ):
            return self._request_of(item, target, conditional)
        # The common case: a request with nothing of its own to pass.
        return self._direct, target, self._arguments, None

    async def attempt(
        self, item: Item, target: URL, conditional: dict[str, str] | None = None
    ) -> Response:
        """One request and its body, read up to the size cap. Raises on network failure."""
        session, url, arguments, timings = self._request(item, target, conditional)
        self._vouched.url = url  # made by the URL rule: the request class takes it as it is
        async with session.request(self._method, url, **arguments) as resp:
            return await self._response(item, resp, target, timings)

    def _fill_lean(
        self, record: Record, item: Item, resp: aiohttp.ClientResponse, body: bytes
    ) -> None:
        """The run's filler for an answer that arrived whole and as sent, in a lean run
        (``_lean``; ``_fetch_plain`` tells such an answer): from aiohttp's response into
        ``record``, with no ``Response`` between."""
        status = record.status = resp.status
        record.final_url = final_url(item, resp)
        content_type, record.etag, record.last_modified = _noted(resp.headers)
        record.content_type = content_type
        record.size = len(body)
        record.body, record.error = body_value(body, content_type, self._mode)
        judge(record, status, resp.reason)

    async def _response(
        self,
        item: Item,
        resp: aiohttp.ClientResponse,
        target: URL,
        timings: Timings | None,
    ) -> Response:
        """What an attempt got back: the answer's status and headers of note, and its
        body read (or saved) up to the size cap."""
        answered = resp.headers
        content_type, etag, last_modified = _noted(answered)
        response = Response(
            resp.status,
            resp.reason,
            final_url(item, resp),
            content_type,
            b"",
            False,
            answered.get(hdrs.RETRY_AFTER),
            etag,
            last_modified,
        )
        if self._note is not None:
            self._note(response, resp, target)
        codings = answered.getall(hdrs.CONTENT_ENCODING, None)
        encoding = None
        if codings is not None:
            encoding = ", ".join(codings)  # one list (RFC 9110)
            if (why := unsupported(encoding)) is not None:
                response.problem = FetchError(ErrorKind.PROTOCOL, valid_text(why))
                encoding = None  # read (and save) the bytes as they came
        if self._save is not None and resp.status != HTTPStatus.NOT_MODIFIED:
            # A 304 has no content (RFC 9110 15.4.5): saved, it would empty the file
            # the item's earlier answer left (--refresh keeps that one).
            await self._saved(response, item, resp, encoding)
        elif (
            encoding is None and (length := resp.content_length) is not None and length <= self._cap
        ):
            response.body = await resp.read()  # the common case, without another frame
        else:
            response.body, response.truncated = await _read_capped(resp, encoding, self._cap)
        if timings is not None:
            timings.end = time.perf_counter()
            response.timings = timings.to_dict()
        return response

    async def _saved(
        self,
        response: Response,
        item: Item,
        resp: aiohttp.ClientResponse,
        encoding: str | None,
    ) -> None:
        """With --save-dir: the body written to its file as it arrives (and kept for picks)."""
        assert self._save is not None
        saved = await self._save.save(
            decoded(resp.content.iter_chunked(_READ_CHUNK), encoding),
            index=item.index,
            text=item.input,
            fields=item.fields,
            content_type=response.content_type,
            cap=self._cap,
            keep=bool(self._options.picks),  # picks need the body too
        )
        response.saved, response.body, response.truncated = saved, saved.body, saved.truncated

    def reserve_saved(self, path: str, index: int) -> None:
        """--refresh --save-dir: the file ``path`` is item ``index``'s own
        (``SaveDir.reserve``)."""
        if self._save is not None:
            self._save.reserve(path, index)

    def _unsave(self, response: Response | None) -> None:
        """An attempt about to be retried: the body it saved is not the item's answer, so
        its file goes and its name is given back for the retry (else the answer lands
        under ``-2`` beside an error page)."""
        if self._save is not None and response is not None and response.saved is not None:
            self._save.remove(response.saved.path)

    def _record_extras(self, response: Response, resp: aiohttp.ClientResponse, target: URL) -> None:
        """What is recorded only when asked for, taken as the headers arrive (before the
        body is read and the connection given back for another request)."""
        options = self._options
        if options.response_headers is not None:
            response.headers = response_headers(resp, options.response_headers)
        if options.redirects:
            response.redirects = hops(resp.history, resp)
        if options.tls:
            from fetchmany.fetch.tls import tls_facts

            response.tls = tls_facts(resp)

    def _failed(self, record: Record, exc: Exception) -> int | None:
        """An attempt that raised: its error kind in ``record`` (``classify``), and with
        --redirects the loop a link checker wants. Returns the status a proxy refused a
        tunnel with, which decides a retry as an answer's status would: a 407 (wrong
        proxy credentials) is final, a 503 retried, as --retry-on says."""
        record.error = classify(exc, self._options)
        if self._options.redirects and isinstance(exc, aiohttp.TooManyRedirects):
            record.redirects = hops(exc.history)
        return exc.status if isinstance(exc, aiohttp.ClientHttpProxyError) else None

    def _retry_delay(
        self, attempt: int, record: Record, response: Response | None, refused: int | None
    ) -> float | None:
        """The retry policy's word on ``record``: seconds before the next attempt, or None.
        ``refused``: the status of a tunnel the proxy refused (``_failed``)."""
        status = record.status if refused is None else refused
        error = record.error
        return self._options.retry.delay(
            attempt,
            self._method,
            status,
            error.kind if error is not None and status is None else None,
            None if response is None else response.retry_after,
        )

    def _teach(
        self,
        host: str,
        ticket: Ticket,
        record: Record,
        began: float,
        response: Response | None,
    ) -> None:
        """Release the attempt's slot with what it tells ``--limit auto``. Overload is a
        --retry-on status (rejected), or a timeout or a connection that failed. Any
        other answer, an error too (a broken body, a bad certificate), is a latency. A
        Retry-After is honoured no longer than --max-backoff, as it delays a retry no
        longer: one answer of "a day" must not freeze the run."""
        from fetchmany.fetch.adaptive import Lesson, Overload  # --limit auto's, imported once

        retry = self._options.retry
        overload = None
        if record.status is not None:
            if record.status in retry.retry_on:
                overload = Overload.REJECTED
        elif record.error is not None and record.error.kind in _FAILED:
            overload = Overload.FAILED
        lesson = Lesson(time.perf_counter() - began, overload)
        if response is not None:
            hold = parse_retry_after(response.retry_after)
            lesson.retry_after = None if hold is None else min(hold, retry.max_backoff)
            lesson.announced = response.announced
            lesson.hops = response.hops
        self._limits.release(host, ticket, lesson)

    async def _fetch_plain(
        self, item: Item, conditional: dict[str, str] | None = None, spent: float = 0.0
    ) -> Record:
        """``fetch`` when the global cap is the run's only limit and there is no
        --max-time (``spent`` then bounds nothing): an attempt takes a free slot with no
        wait and no coroutine, and gives it back with nothing to teach."""
        target = item.target
        if item.error is not None or target is None:
            return Record(item.index, item.input, item.url, error=item.error)
        limits = self._limits
        retry_on = self._retry_on
        lean = self._lean
        vouched = self._vouched
        method = self._method
        cap = self._cap
        attempt = 1
        started = 0.0
        while True:
            if not limits.take_free():
                await limits.acquire("", item.index, attempt)
            record = Record(item.index, item.input, item.url)
            record.attempts = attempt  # stored, not passed: a keyword costs twice the store
            if attempt == 1:  # latency, not time spent queueing for a slot
                started = time.perf_counter()
            response: Response | None = None
            refused = None
            try:
                if lean:
                    # ``attempt`` and the filler in one, with no coroutine of their own: an
                    # answer that arrived whole and as sent (no Content-Encoding, a
                    # Content-Length within the cap: nearly every one) and is not to be
                    # retried goes straight into the record (``_fill_lean``); any other
                    # takes ``attempt``'s way, its Response kept for the retry policy.
                    session, url, arguments, timings = self._request(item, target, conditional)
                    vouched.url = url
                    async with session.request(method, url, **arguments) as resp:
                        body = None
                        if (
                            resp.status in retry_on
                            or hdrs.CONTENT_ENCODING in resp.headers
                            or (length := resp.content_length) is None
                            or length > cap
                        ):
                            response = await self._response(item, resp, target, timings)
                            self._fill(record, response)
                        else:
                            body = await resp.read()
                    if body is not None:
                        self._fill_lean(record, item, resp, body)
                else:
                    response = await self.attempt(item, target, conditional)
                    # Inside the try: whatever a response holds, judging it ends in a record.
                    self._fill(record, response)
            except Exception as exc:
                refused = self._failed(record, exc)
            finally:
                limits.release_free()
            status = record.status
            if status is not None and status not in retry_on:
                break  # an answer not to retry: most attempts end here
            wait = self._retry_delay(attempt, record, response, refused)
            if wait is None:
                break
            self._unsave(response)
            await limits.backoff(wait)
            attempt += 1
        record.elapsed_ms = milliseconds_since(started)
        return record

    async def _fetch_governed(
        self, item: Item, conditional: dict[str, str] | None = None, spent: float = 0.0
    ) -> Record:
        """``fetch`` under per-host, rate or adaptive limits, or --max-time: each attempt
        takes its host's slot and the rate's turn, --limit auto learns from it, and the
        item's deadline cuts waits and attempts. ``spent``: seconds of the item's
        --max-time already used, when it is asked again (``--refresh`` after a 304 it
        cannot keep), so that -m bounds the item whole."""
        target = item.target
        if item.error is not None or target is None:
            return Record(item.index, item.input, item.url, error=item.error)
        options = self._options
        limits = self._limits
        retry_on = self._retry_on
        host = host_key(target) if self._by_host else ""
        started = 0.0
        deadline: float | None = None  # --max-time, in the loop's time, from attempt 1
        attempt = 0
        record: Record | None = None
        while True:
            attempt += 1
            if deadline is None:
                ticket = await limits.acquire(host, item.index, attempt)
            else:
                try:
                    async with asyncio.timeout_at(deadline):
                        ticket = await limits.acquire(host, item.index, attempt)
                except TimeoutError:
                    assert record is not None
                    self._ran_out(record, f"waiting for a slot for retry {attempt - 1}")
                    break
            record = Record(item.index, item.input, item.url)
            record.attempts = attempt
            began = time.perf_counter()
            if attempt == 1:  # latency, not time spent queueing for a slot
                started = began
                if options.max_time is not None:
                    deadline = asyncio.get_running_loop().time() + options.max_time - spent
            response: Response | None = None
            refused = None
            try:
                if deadline is None:
                    response = await self.attempt(item, target, conditional)
                else:
                    response = await self._attempt_by(deadline, item, target, conditional)
                self._fill(record, response)
            except DeadlineReached:
                self._ran_out(record, f"during attempt {attempt}", cut=True)
                break  # after the finally: the slot is given back first
            except Exception as exc:
                refused = self._failed(record, exc)
            finally:
                if self._adaptive:
                    self._teach(host, ticket, record, began, response)
                else:
                    limits.release(host)
            status = record.status
            if status is not None and status not in retry_on:
                break
            wait = self._retry_delay(attempt, record, response, refused)
            if wait is None:
                break
            if deadline is not None and asyncio.get_running_loop().time() + wait >= deadline:
                self._ran_out(record, f"before retry {attempt} (a backoff of {wait:.2f}s)")
                break
            self._unsave(response)
            await limits.backoff(wait)
        record.elapsed_ms = milliseconds_since(started)
        return record

    async def _attempt_by(
        self, deadline: float, item: Item, target: URL, conditional: dict[str, str] | None
    ) -> Response:
        """``attempt``, cut at ``deadline`` (the loop's time): ``DeadlineReached`` then."""
        cut = asyncio.timeout_at(deadline)
        try:
            async with cut:
                return await self.attempt(item, target, conditional)
        except TimeoutError:
            if cut.expired():
                raise DeadlineReached from None
            raise  # the attempt's own --timeout

    def _ran_out(self, record: Record, when: str, cut: bool = False) -> None:
        """The record of an item whose --max-time ended it: a ``timeout`` saying when, and
        how the last attempt had ended (a cut attempt has nothing else to say)."""
        assert self._options.max_time is not None
        message = f"--max-time {self._options.max_time:g}s ran out {when}"
        if not cut:
            before = record.error
            last = f"{before.kind}: {before.message}" if before else f"status {record.status}"
            message += f"; attempt {record.attempts} ended with {last}"
        record.error = FetchError(ErrorKind.TIMEOUT, message)
        record.ok = False


def milliseconds_since(started: float) -> float:
    """Milliseconds from ``started`` (``perf_counter``) to now, to the microsecond (as a
    division of whole microseconds: ``round(x, 3)`` goes through decimal text)."""
    return round((time.perf_counter() - started) * 1_000_000) / 1000


def redirect_arguments(max_redirects: int) -> dict[str, Any]:
    """What every request of a run passes aiohttp for --max-redirects: aiohttp raises on
    reaching its max, so it follows one fewer: N redirects followed is N + 1 for it (as
    curl --max-redirs N and requests count); 0 follows none."""
    if max_redirects == 0:
        return {"allow_redirects": False}
    return {"max_redirects": max_redirects + 1}


def _quotas(response: Response, resp: aiohttp.ClientResponse, target: URL) -> None:
    """With --limit auto: the quotas an answer announced, and the redirects it took to
    the same host (each spent its quota)."""
    from fetchmany.fetch.quota import read_announced

    response.announced = read_announced(resp.headers)
    response.hops = sum(1 for hop in resp.history if hop.url.host == target.host)


class DeadlineReached(Exception):
    """An attempt cut by the item's --max-time (not by its own --timeout)."""


async def _read_capped(
    resp: aiohttp.ClientResponse, encoding: str | None, cap: int
) -> tuple[bytes, bool]:
    """The decoded body, or its first ``cap`` bytes and True when there was more."""
    length = resp.content_length
    if length is not None and length <= cap and not is_encoded(encoding):
        return await resp.read(), False
    # Read the decoded stream in pieces so a body over the cap, including a
    # compressed one that inflates, is cut off instead of held whole.
    buffer = bytearray()
    async for piece in decoded(resp.content.iter_chunked(_READ_CHUNK), encoding):
        buffer += piece
        if len(buffer) > cap:
            del buffer[cap:]
            return bytes(buffer), True
    return bytes(buffer), False


def final_url(item: Item, resp: aiohttp.ClientResponse) -> str:
    """Where the answer came from, as text: the item's own ``url`` when nothing redirected
    it and it had no credentials (made once, when the item was read), else the URL
    requested last, with the fragment RFC 9110 10.2.2 gives it: the last ``Location``'s
    own, or the one it inherited."""
    target = item.target
    plain = target is not None and not item.credentials
    if plain and not resp.history and item.url is not None:
        return item.url
    fragment = fragment_of(item.url) if item.url is not None else None
    for hop in resp.history:
        location = hop.headers.get("Location")
        if location is not None and (given := fragment_of(location)) is not None:
            fragment = given
    url = valid_text(redact_parsed(resp.url.with_fragment(None)))
    return url if fragment is None else f"{url}#{valid_text(fragment)}"


def hops(
    history: Sequence[aiohttp.ClientResponse], final: aiohttp.ClientResponse | None = None
) -> list[dict[str, Any]]:
    """The ``redirects`` field: each hop's status and URL, credentials masked. A 3xx
    without a Location ends the chain, and aiohttp lists it in its own history too: it
    is the ``final`` answer, not a hop."""
    return [
        {"status": hop.status, "url": valid_text(redact_parsed(hop.url))}
        for hop in history
        if hop is not final
    ]


_URL_HEADERS: Final = frozenset({"location", "content-location"})


def response_headers(resp: aiohttp.ClientResponse, wanted: frozenset[str]) -> dict[str, Any]:
    """The asked-for headers by lower-case name: repeats comma-joined (RFC 9110 5.3),
    except Set-Cookie, which cannot be joined and is a list; values as valid text."""
    out: dict[str, Any] = {}
    every = wanted == ALL_HEADERS
    for name, value in resp.headers.items():
        key = valid_text(name).lower()
        if not every and key not in wanted:
            continue
        text = valid_text(value)
        # A Location is one URL: masked whatever its userinfo holds; other values are text.
        text = redact_url(text) if key in _URL_HEADERS else redact_text(text)
        if key == "set-cookie":
            out.setdefault(key, []).append(text)
        elif key in out:
            out[key] = f"{out[key]}, {text}"
        else:
            out[key] = text
    return out


def fill_record(record: Record, response: Response, options: FetchOptions) -> None:
    """Copy a response into a record, decoding the body and judging ``ok``."""
    record.status = response.status
    record.final_url = response.final_url
    record.content_type = response.content_type
    record.etag, record.last_modified = response.etag, response.last_modified
    saved = response.saved
    # HEAD has no body: size is the bytes read, so null rather than a pretended 0
    # (the Content-Length the server announced is in --response-headers).
    head = options.http_method == "HEAD"
    record.size = None if head else saved.size if saved is not None else len(response.body)
    record.timings, record.headers = response.timings, response.headers
    record.redirects, record.tls = response.redirects, response.tls
    body_mode = options.body
    if response.problem is not None or response.truncated:
        body_mode = _at_fault(record, response, body_mode, options.max_body_size)
    if saved is not None:
        record.path, record.sha256 = saved.path, saved.sha256
    if head:  # no body to judge: none is null whatever --body asks (not invalid_json)
        if options.picks:
            record.picks = apply_picks(options.picks, None)
    elif saved is None or options.picks:  # with --save-dir, the body is kept only for picks
        decoded = decode_body(response.body, response.content_type, body_mode)
        if saved is None:
            record.body = decoded.value
        if record.error is None:
            record.error = decoded.error
        if options.picks:
            record.picks = apply_picks(options.picks, _pick_source(response, body_mode, decoded))
    judge(record, response.status, response.reason)


def fills_lean(options: FetchOptions) -> bool:
    """Whether a run's records are filled the lean way (``record_filler``): its bodies
    read whole into records (not HEAD, no --save-dir, no picks), nothing extra recorded
    (no timings, headers, redirects or TLS)."""
    extras = options.timings or options.response_headers is not None or options.redirects
    return not (
        options.http_method == "HEAD"
        or options.save_dir is not None
        or options.picks
        or extras
        or options.tls
    )


def record_filler(options: FetchOptions) -> Callable[[Record, Response], None]:
    """``fill_record`` as this run needs it, chosen once: a lean run (``fills_lean``)
    copies the answer and decodes its body, and asks nothing of what it does not do.
    The same steps as ``fill_record``'s, each decided in the same place
    (``body_value``, ``_at_fault``, ``judge``)."""
    if not fills_lean(options):

        def fill(record: Record, response: Response) -> None:
            fill_record(record, response, options)

        return fill
    mode = options.body
    cap = options.max_body_size

    def fill_body(record: Record, response: Response) -> None:
        record.status = response.status
        record.final_url = response.final_url
        record.content_type = content_type = response.content_type
        record.etag, record.last_modified = response.etag, response.last_modified
        body = response.body
        record.size = len(body)
        if response.problem is None and not response.truncated:
            record.body, record.error = body_value(body, content_type, mode)
        else:  # the fault is the record's error (``_at_fault`` sets it), not the body's
            record.body = body_value(body, content_type, _at_fault(record, response, mode, cap))[0]
        judge(record, response.status, response.reason)

    return fill_body


def _at_fault(record: Record, response: Response, mode: BodyMode, cap: int) -> BodyMode:
    """A body that arrived wrong (an encoding we cannot undo, cut at the size cap): its
    error in ``record``, and how to show it (still encoded: not the text its type says)."""
    if response.problem is not None:
        record.error = response.problem
        return BodyMode.BASE64 if mode is BodyMode.AUTO else mode
    record.error = FetchError(
        ErrorKind.BODY_TOO_LARGE, f"body larger than {cap} bytes; kept the first {record.size}"
    )
    return mode


def judge(record: Record, status: int, reason: str | None) -> None:
    """``ok`` exactly when the answer is 2xx or 3xx and nothing is wrong with it: not 000,
    not 1xx, whatever the body holds."""
    if not 200 <= status < 400:
        record.error = http_error(status, reason)
    record.ok = record.error is None


def _noted(answered: CIMultiDictProxy[str]) -> tuple[str | None, str | None, str | None]:
    """What every record takes of an answer's headers, as valid text: its Content-Type,
    ETag and Last-Modified (for a later --refresh); None for each it lacks."""
    content_type = answered.get(hdrs.CONTENT_TYPE)  # istr names: no case-folding
    etag = answered.get(hdrs.ETAG)
    last_modified = answered.get(hdrs.LAST_MODIFIED)
    return (
        None if content_type is None else valid_text(content_type),
        None if etag is None else valid_text(etag),
        None if last_modified is None else valid_text(last_modified),
    )


def http_error(status: int, reason: str | None) -> FetchError:
    """An answer that is not 2xx or 3xx: ``404 Not Found``, the reason phrase as the
    server sent it (made valid text), or the bare status when it sent none."""
    message = f"{status} {valid_text(reason)}" if reason else str(status)
    return FetchError(ErrorKind.HTTP, message)


def _pick_source(response: Response, mode: BodyMode, decoded: DecodedBody) -> Any:
    """What ``--pick`` reads: the parsed JSON body, whatever ``--body`` shows (``none``
    or ``base64`` keep it out of the record, not out of reach of picks)."""
    if mode is BodyMode.JSON or (mode is BodyMode.AUTO and not isinstance(decoded.value, str)):
        return decoded.value
    return decode_body(response.body, response.content_type, BodyMode.JSON).value
