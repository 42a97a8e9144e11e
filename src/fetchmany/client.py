"""One HTTP request with aiohttp, turned into a Record.

This is the only place that catches network exceptions: whatever aiohttp, the
TLS layer or the OS raises for a request becomes an error kind on the record,
so a failed fetch can never end the run.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
from multidict import CIMultiDict

from fetchmany.limits import Limits
from fetchmany.options import FetchOptions
from fetchmany.records import ErrorKind, FetchError, Record, decode_body
from fetchmany.sources import Item

_READ_CHUNK = 256 * 1024


@dataclass(slots=True)
class Response:
    """What one attempt got back before it is judged: status, headers of note, raw body."""

    status: int
    final_url: str
    content_type: str | None
    body: bytes
    truncated: bool
    retry_after: str | None


def classify(exc: BaseException, options: FetchOptions) -> FetchError:
    """Map any exception raised by one attempt to an error kind and a readable message."""
    message = str(exc) or type(exc).__name__
    kind: ErrorKind
    if isinstance(exc, aiohttp.TooManyRedirects):
        kind = ErrorKind.TOO_MANY_REDIRECTS
        message = f"more than {options.max_redirects} redirects"
    elif isinstance(exc, aiohttp.RedirectClientError):
        kind = ErrorKind.INVALID_REDIRECT
        message = f"redirect to a URL that is not fetched: {exc}"
    elif isinstance(exc, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
        kind = ErrorKind.INVALID_URL
    elif isinstance(exc, aiohttp.ClientConnectorDNSError):
        kind = ErrorKind.DNS
    elif isinstance(exc, aiohttp.ClientSSLError | ssl.SSLError):
        kind = ErrorKind.TLS
    elif isinstance(exc, aiohttp.ConnectionTimeoutError):
        kind = ErrorKind.TIMEOUT
        message = f"no connection within {options.connect_timeout:g}s"
    elif isinstance(exc, TimeoutError):
        kind = ErrorKind.TIMEOUT
        message = f"attempt did not finish within {options.timeout:g}s"
    elif isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ClientResponseError):
        kind = ErrorKind.PROTOCOL
    elif isinstance(exc, aiohttp.ClientConnectionError | OSError):
        kind = ErrorKind.CONNECT
    elif isinstance(exc, aiohttp.ClientError):
        kind = ErrorKind.PROTOCOL
    else:
        kind = ErrorKind.UNEXPECTED
        message = f"{type(exc).__name__}: {message}"
    return FetchError(kind, message)


class Client:
    """Performs attempts over one shared ClientSession and builds records from them."""

    def __init__(
        self, session: aiohttp.ClientSession, options: FetchOptions, limits: Limits
    ) -> None:
        self._session = session
        self._options = options
        self.limits = limits
        self._timeout = aiohttp.ClientTimeout(
            total=options.timeout, sock_connect=options.connect_timeout
        )
        self._ssl = ssl_setting(options)

    async def attempt(self, url: str) -> Response:
        """One request and its body, read up to the size cap. Raises on network failure."""
        options = self._options
        cap = options.max_body_size
        async with self._session.request(
            options.method,
            url,
            allow_redirects=options.max_redirects > 0,
            max_redirects=options.max_redirects,
            timeout=self._timeout,
            ssl=self._ssl,
        ) as resp:
            truncated = False
            length = resp.content_length
            if length is not None and length <= cap and "Content-Encoding" not in resp.headers:
                body = await resp.read()
            else:
                # Read the decoded stream in chunks so a body over the cap, including a
                # compressed one that inflates, is cut off instead of held whole.
                buffer = bytearray()
                while chunk := await resp.content.read(_READ_CHUNK):
                    buffer += chunk
                    if len(buffer) > cap:
                        truncated = True
                        del buffer[cap:]
                        break
                body = bytes(buffer)
            return Response(
                status=resp.status,
                final_url=str(resp.url),
                content_type=resp.headers.get("Content-Type"),
                body=body,
                truncated=truncated,
                retry_after=resp.headers.get("Retry-After"),
            )

    async def fetch(self, item: Item) -> Record:
        """The record for one item, after any retries.

        Never raises for anything the input or the network does; raises
        ``Abandoned`` only when the run stops while the item waits for a slot or
        a backoff, so a stopped run writes no half-made record.
        """
        url = item.url
        if item.error is not None or url is None:
            return Record(item.index, item.input, url, error=item.error)
        options = self._options
        started = time.perf_counter()
        attempt = 0
        while True:
            attempt += 1
            record = Record(item.index, item.input, url, attempts=attempt)
            retry_after = None
            async with self.limits.slot(url):
                try:
                    response = await self.attempt(url)
                except Exception as exc:
                    record.error = classify(exc, options)
                else:
                    fill_record(record, response, options)
                    retry_after = response.retry_after
            wait = options.retry.delay(
                attempt,
                options.method,
                record.status,
                record.error.kind if record.error and record.status is None else None,
                retry_after,
            )
            if wait is None:
                break
            await self.limits.pause(wait)
        record.elapsed_ms = round((time.perf_counter() - started) * 1000, 3)
        return record


def fill_record(record: Record, response: Response, options: FetchOptions) -> None:
    """Copy a response into a record, decoding the body and judging ``ok``."""
    record.status = response.status
    record.final_url = response.final_url
    record.content_type = response.content_type
    record.size = len(response.body)
    if response.truncated:
        record.error = FetchError(
            ErrorKind.BODY_TOO_LARGE,
            f"body larger than {options.max_body_size} bytes; kept the first {record.size}",
        )
    decoded = decode_body(response.body, response.content_type, options.body)
    record.body = decoded.value
    if record.error is None:
        record.error = decoded.error
    record.ok = response.status < 400 and record.error is None


def ssl_setting(options: FetchOptions) -> bool | ssl.SSLContext:
    """Verified TLS by default; a private CA bundle replaces the system store; -k turns it off."""
    if not options.verify_tls:
        return False
    if options.ca_bundle is not None:
        return ssl.create_default_context(cafile=options.ca_bundle)
    return True


def session_headers(options: FetchOptions) -> CIMultiDict[str]:
    """Default headers for every request: the User-Agent unless -H set one, then -H as given."""
    headers: CIMultiDict[str] = CIMultiDict()
    if not any(name.lower() == "user-agent" for name, _ in options.headers):
        headers["User-Agent"] = options.user_agent
    for name, value in options.headers:
        headers.add(name, value)
    return headers


@asynccontextmanager
async def open_client(options: FetchOptions) -> AsyncIterator[Client]:
    """The one ClientSession of a run, its pool sized to the concurrency limit.

    Keep-alive connections are reused across items; there is no cookie jar, so one
    response cannot change what later, unrelated requests send.
    """
    connector = aiohttp.TCPConnector(limit=options.limit, ttl_dns_cache=300)
    limits = Limits(options.limit, options.per_host, options.rate)
    async with aiohttp.ClientSession(
        connector=connector,
        headers=session_headers(options),
        cookie_jar=aiohttp.DummyCookieJar(),
        raise_for_status=False,
    ) as session:
        yield Client(session, options, limits)
