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
from typing import Any
from urllib import request as urllib_request

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from fetchmany.fetch.limits import Limits
from fetchmany.fetch.picks import apply_picks
from fetchmany.fetch.saving import SaveDir, SaveError
from fetchmany.input.sources import Item
from fetchmany.options import FetchOptions
from fetchmany.records import ErrorKind, FetchError, Record, decode_body, valid_text
from fetchmany.redaction import redact_text

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


def host_key(target: URL) -> str:
    """What ``--per-host`` counts by: host and port, never the credentials."""
    return f"{target.raw_host}:{target.port}"


def classify(exc: BaseException, options: FetchOptions) -> FetchError:
    """Map any exception raised by one attempt to an error kind and a readable message.

    The message may quote a URL or a header from the server, so it is made valid
    text with credentials masked before it goes into a record.
    """
    kind, message = _kind_of(exc, options)
    return FetchError(kind, redact_text(valid_text(message)))


def _kind_of(exc: BaseException, options: FetchOptions) -> tuple[ErrorKind, str]:
    message = str(exc) or type(exc).__name__
    kind: ErrorKind
    if isinstance(exc, SaveError):
        kind = ErrorKind.SAVE
    elif isinstance(exc, aiohttp.TooManyRedirects):
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
    return kind, message


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

    async def attempt(self, item: Item, target: URL) -> Response:
        """One request and its body, read up to the size cap. Raises on network failure."""
        options = self._options
        async with self._session.request(
            options.http_method,
            target,
            data=item.data,
            headers=self._routes.body_headers if item.data is not None else None,
            proxy=self._routes.proxy_for(target),
            auth=self._routes.auth_for(target),
            allow_redirects=options.max_redirects > 0,
            max_redirects=options.max_redirects,
            timeout=self._timeout,
            ssl=self._ssl,
        ) as resp:
            content_type = resp.headers.get("Content-Type")
            if content_type is not None:
                content_type = valid_text(content_type)
            response = Response(
                status=resp.status,
                final_url=redact_text(valid_text(str(resp.url))),
                content_type=content_type,
                body=b"",
                truncated=False,
                retry_after=resp.headers.get("Retry-After"),
            )
            if self._save is not None:
                response.saved, response.body, response.truncated = await self._save_body(
                    resp, item, response.content_type
                )
            else:
                response.body, response.truncated = await _read_capped(resp, options.max_body_size)
            return response

    async def _save_body(
        self, resp: aiohttp.ClientResponse, item: Item, content_type: str | None
    ) -> tuple[SavedBody, bytes, bool]:
        """Stream the body into its file under the size cap: what was saved, the body
        itself when ``--pick`` needs it (else empty), and whether it was cut off."""
        assert self._save is not None
        cap = self._options.max_body_size
        keep = bytearray() if self._options.picks else None
        truncated = False
        path = self._save.path_for(item.index, item.input, item.fields, content_type)
        try:
            body_file = self._save.open_body()
        except SaveError:
            self._save.release(path)
            raise
        try:
            while chunk := await resp.content.read(_READ_CHUNK):
                room = cap - body_file.size
                if len(chunk) > room:
                    chunk = chunk[:room]
                    truncated = True
                body_file.write(chunk)
                if keep is not None:
                    keep += chunk
                if truncated:
                    break
            body_file.keep(path)
        except BaseException:
            body_file.discard()
            self._save.release(path)
            raise
        saved = SavedBody(path, body_file.sha256, body_file.size)
        return saved, bytes(keep or b""), truncated

    async def fetch(self, item: Item) -> Record:
        """The record for one item, after any retries.

        Never raises for anything the input or the network does; raises
        ``Abandoned`` only when the run stops while the item waits for a slot or
        a backoff, so a stopped run writes no half-made record.
        """
        target = item.target
        if item.error is not None or target is None:
            return Record(item.index, item.input, item.url, error=item.error)
        options = self._options
        limits = self.limits
        host = host_key(target)
        started = 0.0
        attempt = 0
        while True:
            attempt += 1
            record = Record(item.index, item.input, item.url, attempts=attempt)
            retry_after = None
            await limits.acquire(host)
            if attempt == 1:  # latency, not time spent queueing for a slot
                started = time.perf_counter()
            try:
                response = await self.attempt(item, target)
                retry_after = response.retry_after
                # Inside the try: whatever a response holds, judging it ends in a record.
                fill_record(record, response, options)
            except Exception as exc:
                record.error = classify(exc, options)
            finally:
                limits.release(host)
            wait = options.retry.delay(
                attempt,
                options.http_method,
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
    extra: dict[str, Any] = {}
    if saved is not None:
        extra = {"path": saved.path, "sha256": saved.sha256}
    if saved is None or options.picks:  # with --save-dir, the body is kept only for picks
        decoded = decode_body(response.body, response.content_type, options.body)
        if saved is None:
            record.body = decoded.value
        if record.error is None:
            record.error = decoded.error
        if options.picks:
            extra.update(apply_picks(options.picks, decoded.value))
    record.extra = extra or None
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

    def proxy_for(self, target: URL) -> str | None:
        if self._options.proxy:
            return self._options.proxy
        if not self._env:
            return None
        if proxy_bypass_environment(target.host or "", self._env):
            return None
        return self._env.get(target.scheme)

    def auth_for(self, target: URL) -> aiohttp.BasicAuth | None:
        if not self._use_netrc or self._netrc is None:
            return None
        entry = self._netrc.authenticators(target.host or "")
        if entry is None:
            return None
        login, _, password = entry
        return aiohttp.BasicAuth(login or "", password or "")


class SetupError(ValueError):
    """An option that cannot work (a CA bundle without certificates, a broken .netrc),
    found before any request; the message says which and why."""


def check_session_setup(options: FetchOptions) -> None:
    """Build what the session will build, so a bad file fails now, not mid-run."""
    try:
        ssl_setting(options)
    except (ssl.SSLError, OSError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        if isinstance(exc, ssl.SSLError) and "NO_CERTIFICATE" in str(exc):
            reason = "it holds no PEM certificate"
        raise SetupError(f"cannot use --ca-bundle {options.ca_bundle}: {reason}") from None
    if options.netrc:
        try:
            load_netrc()
        except ValueError as exc:
            raise SetupError(str(exc)) from None


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
