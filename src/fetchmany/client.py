"""One HTTP request with aiohttp, turned into a Record.

This is the only place that catches network exceptions: whatever aiohttp, the
TLS layer or the OS raises for a request becomes an error kind on the record,
so a failed fetch can never end the run.
"""

from __future__ import annotations

import netrc
import os
import ssl
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib import request as urllib_request
from urllib.parse import urlsplit

import aiohttp
from multidict import CIMultiDict

from fetchmany.limits import Limits
from fetchmany.options import FetchOptions
from fetchmany.picks import apply_picks
from fetchmany.records import ErrorKind, FetchError, Record, decode_body
from fetchmany.saving import SaveDir
from fetchmany.sources import Item

_READ_CHUNK = 256 * 1024
getproxies_environment = urllib_request.getproxies_environment
# Not in typeshed, but public and documented alongside getproxies_environment.
proxy_bypass_environment: Callable[[str, dict[str, str]], bool] = (
    urllib_request.proxy_bypass_environment  # type: ignore[attr-defined]
)


@dataclass(frozen=True, slots=True)
class SavedBody:
    path: str
    sha256: str
    size: int


@dataclass(slots=True)
class Response:
    """What one attempt got back before it is judged: status, headers of note, raw body
    (or, with --save-dir, where the body went)."""

    status: int
    final_url: str
    content_type: str | None
    body: bytes
    truncated: bool
    retry_after: str | None
    saved: SavedBody | None = None


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
        self._routes = RequestRoutes(options)
        self._save = SaveDir(options.save_dir, options.save_name) if options.save_dir else None

    async def attempt(self, item: Item, url: str) -> Response:
        """One request and its body, read up to the size cap. Raises on network failure."""
        options = self._options
        async with self._session.request(
            options.method,
            item.target or url,
            data=item.data,
            headers=self._routes.body_headers if item.data is not None else None,
            proxy=self._routes.proxy_for(url),
            auth=self._routes.auth_for(url),
            allow_redirects=options.max_redirects > 0,
            max_redirects=options.max_redirects,
            timeout=self._timeout,
            ssl=self._ssl,
        ) as resp:
            content_type = resp.headers.get("Content-Type")
            response = Response(
                status=resp.status,
                final_url=str(resp.url),
                content_type=content_type,
                body=b"",
                truncated=False,
                retry_after=resp.headers.get("Retry-After"),
            )
            if self._save is not None:
                await self._save_body(resp, item, response)
            else:
                response.body, response.truncated = await _read_capped(resp, options.max_body_size)
            return response

    async def _save_body(
        self, resp: aiohttp.ClientResponse, item: Item, response: Response
    ) -> None:
        """Stream the body into its file under the size cap; the record gets path and hash."""
        assert self._save is not None
        cap = self._options.max_body_size
        name = self._save.name_for(item.index, item.input, item.fields, response.content_type)
        path = self._save.path_for(name)
        body_file = self._save.open_body()
        try:
            while chunk := await resp.content.read(_READ_CHUNK):
                room = cap - body_file.size
                if len(chunk) > room:
                    body_file.write(chunk[:room])
                    response.truncated = True
                    break
                body_file.write(chunk)
        except BaseException:
            body_file.discard()
            raise
        body_file.keep(path)
        response.saved = SavedBody(path, body_file.sha256, body_file.size)

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
        limits = self.limits
        started = 0.0
        attempt = 0
        while True:
            attempt += 1
            record = Record(item.index, item.input, url, attempts=attempt)
            retry_after = None
            await limits.acquire(url)
            if attempt == 1:  # latency, not time spent queueing for a slot
                started = time.perf_counter()
            try:
                response = await self.attempt(item, url)
            except Exception as exc:
                record.error = classify(exc, options)
            else:
                fill_record(record, response, options)
                retry_after = response.retry_after
            finally:
                limits.release(url)
            wait = options.retry.delay(
                attempt,
                options.method,
                record.status,
                record.error.kind if record.error and record.status is None else None,
                retry_after,
            )
            if wait is None:
                break
            await limits.backoff(wait)
        record.elapsed_ms = round((time.perf_counter() - started) * 1000, 3)
        return record


async def _read_capped(resp: aiohttp.ClientResponse, cap: int) -> tuple[bytes, bool]:
    """The body, or its first ``cap`` bytes and True when there was more."""
    length = resp.content_length
    if length is not None and length <= cap and "Content-Encoding" not in resp.headers:
        return await resp.read(), False
    # Read the decoded stream in chunks so a body over the cap, including a
    # compressed one that inflates, is cut off instead of held whole.
    buffer = bytearray()
    while chunk := await resp.content.read(_READ_CHUNK):
        buffer += chunk
        if len(buffer) > cap:
            del buffer[cap:]
            return bytes(buffer), True
    return bytes(buffer), False


def fill_record(record: Record, response: Response, options: FetchOptions) -> None:
    """Copy a response into a record, decoding the body and judging ``ok``."""
    record.status = response.status
    record.final_url = response.final_url
    record.content_type = response.content_type
    saved = response.saved
    record.size = saved.size if saved is not None else len(response.body)
    if response.truncated:
        record.error = FetchError(
            ErrorKind.BODY_TOO_LARGE,
            f"body larger than {options.max_body_size} bytes; kept the first {record.size}",
        )
    if saved is not None:
        record.extra = {"path": saved.path, "sha256": saved.sha256}
    else:
        decoded = decode_body(response.body, response.content_type, options.body)
        record.body = decoded.value
        if record.error is None:
            record.error = decoded.error
        if options.picks:
            record.extra = apply_picks(options.picks, record.body)
    record.ok = response.status < 400 and record.error is None


class RequestRoutes:
    """Per-request choices that depend on the URL: proxy and .netrc credentials."""

    def __init__(self, options: FetchOptions) -> None:
        self._options = options
        self._env = getproxies_environment() if options.env_proxy and not options.proxy else {}
        self._netrc = load_netrc() if options.netrc else None
        has_auth = any(name.lower() == "authorization" for name, _ in options.headers)
        self._use_netrc = self._netrc is not None and not has_auth
        self.body_headers: dict[str, str] | None = None
        sets_type = any(name.lower() == "content-type" for name, _ in options.headers)
        if options.content_type and not sets_type:
            self.body_headers = {"Content-Type": options.content_type}

    def proxy_for(self, url: str) -> str | None:
        if self._options.proxy:
            return self._options.proxy
        if not self._env:
            return None
        parts = urlsplit(url)
        if proxy_bypass_environment(parts.hostname or "", self._env):
            return None
        return self._env.get(parts.scheme)

    def auth_for(self, url: str) -> aiohttp.BasicAuth | None:
        if not self._use_netrc or self._netrc is None:
            return None
        entry = self._netrc.authenticators(urlsplit(url).hostname or "")
        if entry is None:
            return None
        login, _, password = entry
        return aiohttp.BasicAuth(login or "", password or "")


def load_netrc() -> netrc.netrc | None:
    """The .netrc in $NETRC or ~/.netrc (None if there is none); ValueError if unreadable."""
    path = os.environ.get("NETRC") or os.path.expanduser("~/.netrc")
    try:
        return netrc.netrc(path)
    except FileNotFoundError:
        return None
    except (netrc.NetrcParseError, OSError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None


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
