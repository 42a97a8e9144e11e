"""The session a run shares: TLS settings, default headers, proxies and .netrc credentials.

Everything here is settled once per run, before the first request, by
``SessionSetup.prepare``: a CA bundle with no certificate or an unreadable .netrc
fails there (``SetupError``), not at the first request, and .netrc is parsed once.
The per-request choices that depend on the URL (which proxy, which credentials)
are ``SessionSetup.proxy_for`` and ``auth_for``.
"""

from __future__ import annotations

import base64
import ipaddress
import netrc
import os
import re
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final
from urllib.parse import unquote, unquote_to_bytes

from multidict import CIMultiDict
from yarl import URL

from fetchmany.fetch.encodings import ACCEPT_ENCODING
from fetchmany.fetch.policy import header_value
from fetchmany.options import DEFAULT_ACCEPT, PROXY_SCHEMES, FetchOptions
from fetchmany.redaction import redact_proxy

if TYPE_CHECKING:
    import ssl

    import aiohttp

    from fetchmany.fetch.request import SentAsGiven

# aiohttp (which builds a TLS context as it is imported) and ssl are imported when
# first needed: a run that fetches nothing (empty input, a usage error found late)
# never pays for them.


def env_proxies() -> dict[str, str]:
    """HTTP(S)_PROXY, ALL_PROXY and NO_PROXY by scheme (``no`` for NO_PROXY); {} at no
    cost when none is set.

    A name in any case, the lower-case one first, as curl and urllib read them; an
    empty variable is as if it were not set, as curl reads it (urllib let an empty
    ``no_proxy`` hide ``NO_PROXY``). Under CGI (``REQUEST_METHOD`` set) only
    ``http_proxy`` itself names the http proxy: a client's ``Proxy:`` header arrives as
    ``HTTP_PROXY`` (httpoxy, CVE-2016-5385), which urllib ignores there too."""
    found: dict[str, str] = {}
    cgi = "REQUEST_METHOD" in os.environ
    for name, value in os.environ.items():
        lowered = name.lower()
        if not value or not lowered.endswith("_proxy"):
            continue
        scheme = lowered.removesuffix("_proxy")
        if cgi and scheme == "http" and name != lowered:
            continue
        if name == lowered or scheme not in found:
            found[scheme] = value
    return found


def bypasses_proxy(target: URL, no_proxy: str) -> bool:
    """Whether NO_PROXY sends ``target`` direct, as curl reads it (its lib/noproxy.c).

    ``*`` alone is every host. Otherwise its entries, parted by commas and blanks: a
    name matches itself and every name under it (``example.com`` matches
    ``www.example.com``, never ``notexample.com``), whatever its case or a dot before or
    after it; an IP address matches only itself, or a CIDR range holding it
    (``10.0.0.0/8``, ``fe80::/10``), never as the end of a name. Beyond curl: a name is
    matched in its Unicode form too (``bücher.example`` as ``xn--bcher-kva.example``);
    ``host:port`` or ``[v6]:port`` matches that port only, as urllib and Go read it
    (curl never matches an entry with a port); an IPv6 address may be in brackets.
    """
    if no_proxy == "*":
        return True
    names = {target.raw_host or "", target.host or ""}
    address = _address(target.raw_host or "")
    for entry in _ENTRIES.split(no_proxy):
        host, port = _host_and_port(entry)
        if port is not None and port != target.port:
            continue
        if address is not None:
            if _holds(host, address):
                return True
        elif any(_under(name, host) for name in names):
            return True
    return False


_ENTRIES: Final = re.compile(r"[\s,]+")
_WITH_PORT: Final = re.compile(r"(?:\[(?P<v6>[^]]*)\]|(?P<host>[^:]*)):(?P<port>[0-9]+)")


def _host_and_port(entry: str) -> tuple[str, int | None]:
    """A NO_PROXY entry's host, and its port if it names one: ``host:port``,
    ``[v6]:port`` (an IPv6 address alone has colons, and no port)."""
    if entry.startswith("[") and entry.endswith("]"):
        return entry[1:-1], None
    found = _WITH_PORT.fullmatch(entry)
    if found is None:
        return entry, None
    return found["v6"] or found["host"], int(found["port"])


def _under(name: str, entry: str) -> bool:
    """Whether ``entry``, a name in NO_PROXY, is ``name`` or a domain above it (an empty
    entry, or ``.``, is neither: ``name`` is never empty and ends in no dot)."""
    name, entry = name.rstrip(".").lower(), entry.strip(".").lower()
    return name == entry or name.endswith("." + entry)


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``host`` as the address a connection to it dials, if it is one: also an IPv4
    address in inet_aton's other forms (``0x7f.0.0.1``, ``0x7f000001``), which the URL
    check lets through and getaddrinfo reads as ``127.0.0.1`` (curl normalises them)."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _INET_ATON.fullmatch(host) is None:
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


_INET_ATON: Final = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+)){0,3}", re.I)


def _holds(entry: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether ``entry``, an address or a CIDR range (host bits allowed, as curl), is or
    holds ``address``."""
    try:
        if "/" in entry:
            return address in ipaddress.ip_network(entry, strict=False)
        return address == ipaddress.ip_address(entry)
    except ValueError:
        return False


def checked_env_proxies(proxies: dict[str, str]) -> dict[str, str]:
    """The environment's proxies, each checked as --proxy is: a broken HTTPS_PROXY is one
    line before any request, not the same error in every record."""
    for scheme, proxy in proxies.items():
        if scheme == "no":
            continue
        try:
            checked_proxy(proxy)
        except SetupError as exc:
            raise SetupError(
                str(exc).replace("--proxy", f"{scheme.upper()}_PROXY in the environment", 1)
            ) from None
    return proxies


class SetupError(ValueError):
    """An option that cannot work (a CA bundle without certificates, a broken .netrc),
    found before any request; the message says which and why."""


_SOCKS: Final = frozenset(scheme for scheme in PROXY_SCHEMES if scheme.startswith("socks"))


def is_socks(proxy: str) -> bool:
    return proxy.partition(":")[0].lower() in _SOCKS


def checked_proxy(proxy: str) -> str:
    """``--proxy`` if it can be used; a ``SetupError`` (credentials masked) if not,
    rather than the same error in every record."""
    shown = redact_proxy(proxy)
    if proxy.partition(":")[0].lower() not in PROXY_SCHEMES:
        raise SetupError(
            f"--proxy {shown!r}: use one of {', '.join(s + '://' for s in PROXY_SCHEMES)}"
        )
    if _CONTROL.search(proxy):
        raise SetupError(f"--proxy {shown!r} contains a control character or space")
    try:
        parsed = URL(proxy)
        host = parsed.host
    except (ValueError, TypeError):
        raise SetupError(f"--proxy {shown!r} is not a valid URL") from None
    if not host:
        raise SetupError(f"--proxy {shown!r} has no host")
    if not is_socks(proxy) and ":" in unquote(parsed.raw_user or ""):
        raise SetupError(f"--proxy {shown!r}: a user name with a colon (%3A) cannot be sent")
    if is_socks(proxy) and not all(
        part.isascii() and len(part) < 256 for part in (parsed.user or "", parsed.password or "")
    ):  # python-socks encodes them as ASCII, each length in one byte (RFC 1929)
        raise SetupError(
            f"--proxy {shown!r}: a SOCKS proxy's user name and password must be ASCII, "
            "255 characters at most"
        )
    return proxy


_CONTROL: Final = re.compile(r"[\x00-\x20\x7f]")


_QUOTED_TOKEN: Final = re.compile(r" (?:'.*'|\".*\")$", re.DOTALL)


_Entry = tuple[str, str, str]


class _FirstOfEachHost(dict[str, _Entry]):
    """A .netrc's entries by host, the first of each kept, as curl and ftp read the
    file (Python's parser stores each entry it meets: the last one won); and
    ``every`` entry in the file's order, which ``Netrc.entry_for`` searches."""

    def __init__(self) -> None:
        super().__init__()
        self.every: list[tuple[str, _Entry]] = []

    def __setitem__(self, host: str, entry: _Entry) -> None:
        if not isinstance(entry, tuple):
            return  # the parser's placeholder while it reads an entry: it ends as a tuple
        self.every.append((host, entry))
        if not isinstance(self.get(host), tuple):
            super().__setitem__(host, entry)


class Netrc(netrc.netrc):
    """Python's .netrc, read as curl reads it (``_FirstOfEachHost``)."""

    @property
    def hosts(self) -> _FirstOfEachHost:
        return self._hosts

    @hosts.setter
    def hosts(self, value: dict[str, _Entry]) -> None:
        # The parser's {} to fill, set just before it parses.
        self._hosts = _FirstOfEachHost()

    def entry_for(self, target: URL, login: str | None = None) -> _Entry | None:
        """The first entry for ``target``'s host, else the first ``default``; with
        ``login`` (a URL's user), the first of these whose login it is. A host matches
        whatever its case or a dot after it, as curl compares them, in its ASCII
        (``xn--``) form as curl looks it up or, beyond curl, its Unicode one."""
        names = {(name or "").rstrip(".").lower() for name in (target.raw_host, target.host)}
        for wanted in (names, {"default"}):
            for host, entry in self.hosts.every:
                if host.rstrip(".").lower() in wanted and login in (None, entry[0]):
                    return entry
        return None


def load_netrc() -> Netrc | None:
    """The .netrc in $NETRC or ~/.netrc (None if there is none); SetupError if unreadable."""
    path = os.environ.get("NETRC") or os.path.expanduser("~/.netrc")
    try:
        return Netrc(path)
    except FileNotFoundError:
        return None
    except netrc.NetrcParseError as exc:
        # Its message quotes the word it stumbled on, which in an entry whose "password"
        # keyword was left out is the password: say where, not what.
        reason = _QUOTED_TOKEN.sub("", exc.msg)
        raise SetupError(f"cannot read {path}: {reason} (line {exc.lineno})") from None
    except (OSError, UnicodeDecodeError) as exc:
        # UnicodeDecodeError: text neither in UTF-8 nor in the locale's encoding.
        raise SetupError(f"cannot read {path}: {exc}") from None


def ssl_setting(options: FetchOptions) -> bool | ssl.SSLContext:
    """Verified TLS by default (aiohttp's own context); a private CA bundle replaces the
    system store; -k turns verification off. SetupError for a bundle that cannot be used."""
    if not options.verify_tls:
        return False
    if options.ca_bundle is None:
        return True
    import ssl

    try:
        return ssl.create_default_context(cafile=options.ca_bundle)
    except (ssl.SSLError, OSError) as exc:
        reason: object = exc
        if isinstance(exc, ssl.SSLError) and "NO_CERTIFICATE" in str(exc):
            reason = "it holds no PEM certificate"
        elif isinstance(exc, OSError) and exc.strerror:
            reason = exc.strerror
        raise SetupError(f"cannot use --ca-bundle {options.ca_bundle}: {reason}") from None


def default_headers(options: FetchOptions) -> tuple[tuple[str, str], ...]:
    """The headers every request sends before -H's: the User-Agent, Accept and
    Accept-Encoding unless -H sets them, in curl's order. We ask only for the encodings
    ``encodings`` undoes. They go out right after Host (``fetch/request.py``), then -H
    as given, then the request's own."""
    headers: list[tuple[str, str]] = []
    if header_value(options.headers, "User-Agent") is None:
        headers.append(("User-Agent", options.user_agent))
    if header_value(options.headers, "Accept") is None:
        headers.append(("Accept", options.accept or DEFAULT_ACCEPT))
    if header_value(options.headers, "Accept-Encoding") is None:
        headers.append(("Accept-Encoding", ACCEPT_ENCODING))
    return tuple(headers)


@dataclass(frozen=True)
class SessionSetup:
    """What the session of a run is built from, prepared (and checked) once."""

    ssl: bool | ssl.SSLContext
    defaults: tuple[tuple[str, str], ...]
    """``default_headers``: sent by the request class, so no request merges them."""
    headers: CIMultiDict[str]
    """-H as given: the session's headers."""
    body_headers: dict[str, str] | None
    """Added to requests that carry a body: the plan's Content-Type, unless -H sets one."""
    proxy: str | None
    env_proxies: dict[str, str]
    netrc: Netrc | None

    @classmethod
    def prepare(cls, options: FetchOptions) -> SessionSetup:
        """Read and check everything the session needs; raises ``SetupError``."""
        body_headers = None
        if options.content_type and header_value(options.headers, "Content-Type") is None:
            body_headers = {"Content-Type": options.content_type}
        use_env = options.env_proxy and not options.proxy
        # -H Authorization wins over .netrc, which is then not even read.
        wants_netrc = options.netrc and header_value(options.headers, "Authorization") is None
        return cls(
            ssl=ssl_setting(options),
            defaults=default_headers(options),
            headers=CIMultiDict(options.headers),
            body_headers=body_headers,
            proxy=checked_proxy(options.proxy) if options.proxy else None,
            env_proxies=checked_env_proxies(env_proxies()) if use_env else {},
            netrc=load_netrc() if wants_netrc else None,
        )

    def proxy_for(self, target: URL) -> str | None:
        """The proxy for ``target``: --proxy, else the environment's for its scheme, else
        ALL_PROXY (as curl reads it), unless NO_PROXY names the host."""
        if self.proxy:
            return self.proxy
        if not self.env_proxies:
            return None
        no_proxy = self.env_proxies.get("no")
        if no_proxy is not None and bypasses_proxy(target, no_proxy):
            return None
        return self.env_proxies.get(target.scheme) or self.env_proxies.get("all")

    def http_proxy_for(self, target: URL) -> URL | None:
        """``proxy_for`` as aiohttp takes it per request: an HTTP(S) proxy, parsed, or
        None (direct, or a SOCKS proxy, which is a session's connector instead)."""
        proxy = self.proxy_for(target)
        return None if proxy is None or is_socks(proxy) else URL(proxy)

    def socks_proxies(self) -> set[str]:
        """The SOCKS proxies this run may use: each gets its own connector."""
        candidates = (
            [self.proxy, *self.env_proxies.values()] if self.proxy is None else [self.proxy]
        )
        return {proxy for proxy in candidates if proxy and is_socks(proxy)}

    def auth_for(self, target: URL, login: str | None = None) -> str | None:
        """The Authorization header .netrc gives ``target``'s host, if any: its first
        entry's, or with ``login`` (a URL's user without a password) that login's, as
        curl uses .netrc (curl.1, --netrc)."""
        if self.netrc is None:
            return None
        entry = self.netrc.entry_for(target, login)
        if entry is None:
            return None
        login, _, password = entry
        return basic_auth(login or "", password or "")


def basic_auth(login: str, password: str) -> str:
    """A Basic Authorization value, UTF-8 encoded as RFC 7617 allows and curl and browsers
    send (aiohttp's own BasicAuth is Latin-1, deprecated, and raised on anything beyond).
    ``login`` and ``password`` are .netrc's, decoded strictly (``load_netrc``)."""
    return _basic(f"{login}:{password}".encode())


def url_basic_auth(url: URL) -> str:
    """A URL's own credentials as a Basic Authorization value: the bytes its userinfo
    spells, each %XX decoded (RFC 3986 3.2.1), as curl sends them."""
    return _basic(_userinfo_bytes(url))


def ascii_credentials(url: URL) -> bool:
    """Whether aiohttp sends ``url``'s credentials as curl does, so they can be left to
    it (it also follows a redirect to a URL with credentials of its own, which a header
    given with the request would refuse): only when they are ASCII, %XX decoded. It
    decodes them to text as UTF-8 and sends Latin-1 (``us%C3%A9r`` as ``us\xe9r``, where
    curl sends c3 a9), and sends a %XX that is no UTF-8 as the three characters."""
    return _userinfo_bytes(url).isascii()


def _userinfo_bytes(url: URL) -> bytes:
    return unquote_to_bytes(url.raw_user or "") + b":" + unquote_to_bytes(url.raw_password or "")


def _basic(credentials: bytes) -> str:
    return "Basic " + base64.b64encode(credentials).decode("ascii")


@dataclass
class Sessions:
    """The sessions of a run: one direct (HTTP proxies go through it per request), and
    one per SOCKS proxy, since a SOCKS proxy is a connector, not a request option.

    What every request of the run shares is set on them once (headers, timeouts, the
    TLS setting, the request class), so a request passes aiohttp only what is its own."""

    direct: aiohttp.ClientSession
    socks: dict[str, aiohttp.ClientSession]
    request_class: type[SentAsGiven]
    """The run's request class (``fetch/request.py``), which sends each URL by the rule.
    The client vouches for each item's target (made by ``sendable``'s rule when the item
    was read) in its ``vouched`` just before the request, so that the first request is
    not checked again."""

    def route(self, proxy: str | None) -> tuple[aiohttp.ClientSession, str | None]:
        """The session for a request through ``proxy``, and the proxy to pass it."""
        if proxy is not None and proxy in self.socks:
            return self.socks[proxy], None
        return self.direct, proxy


def socks_connector(proxy: str, limit: int, tls: bool | ssl.SSLContext) -> aiohttp.BaseConnector:
    """aiohttp-socks' connector for ``proxy``. socks5h and socks4a resolve names at the
    proxy (as curl's), socks5 and socks4 here. ``tls``: how the target's TLS is checked
    (``ssl_setting``)."""
    from aiohttp_socks import ProxyConnector, ProxyType

    parsed = URL(proxy)
    scheme = parsed.scheme.lower()
    return ProxyConnector(
        proxy_type=ProxyType.SOCKS5 if scheme.startswith("socks5") else ProxyType.SOCKS4,
        host=parsed.host or "",
        port=parsed.port or 1080,
        username=parsed.user,
        password=parsed.password,
        rdns=scheme in ("socks5h", "socks4a"),
        limit=limit,
        ssl=tls,
    )


@asynccontextmanager
async def open_session(options: FetchOptions, setup: SessionSetup) -> AsyncIterator[Sessions]:
    """The sessions of a run, each connection pool sized to the concurrency limit.

    Keep-alive connections are reused across items; there is no cookie jar, so one
    response cannot change what later, unrelated requests send. The run's defaults
    live on the session (headers, timeouts) and its connector (TLS verification), set
    once, so that aiohttp takes them as they are rather than from every request.
    """
    import aiohttp

    from fetchmany.fetch.request import request_class, through_proxies

    content = options.content_type is not None or "Content-Type" in setup.headers
    sent_as_given = request_class(
        options.http_method, setup.defaults, tls=options.tls, content=content
    )
    direct_class = sent_as_given
    if setup.proxy is None and setup.env_proxies:
        # A redirect's hop goes the way its own URL says.
        direct_class = through_proxies(sent_as_given, routed_by=setup)
    elif setup.proxy is not None and not is_socks(setup.proxy):
        direct_class = through_proxies(sent_as_given, routed_by=None)
    # --timeout bounds one whole attempt (connect, send, headers, body), as -m bounds an item.
    timeout = aiohttp.ClientTimeout(total=options.timeout, sock_connect=options.connect_timeout)

    traces = None
    if options.timings:
        from fetchmany.fetch.timings import trace_config

        traces = [trace_config()]

    def session(
        connector: aiohttp.BaseConnector, request: type[SentAsGiven] = sent_as_given
    ) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            connector=connector,
            headers=setup.headers,
            timeout=timeout,
            cookie_jar=aiohttp.DummyCookieJar(),
            raise_for_status=False,
            auto_decompress=False,  # fetch.encodings decodes, and reports what it cannot
            trace_configs=traces,
            # A Location is taken as written and sent by the request class's rule.
            requote_redirect_url=False,
            request_class=request,
        )

    async with AsyncExitStack() as stack:
        direct = aiohttp.TCPConnector(limit=options.limit, ttl_dns_cache=300, ssl=setup.ssl)
        sessions = Sessions(
            await stack.enter_async_context(session(direct, direct_class)), {}, sent_as_given
        )
        for proxy in setup.socks_proxies():
            connector = socks_connector(proxy, options.limit, setup.ssl)
            sessions.socks[proxy] = await stack.enter_async_context(session(connector))
        yield sessions
