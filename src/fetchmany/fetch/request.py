"""What goes on the wire for each request a run makes, redirect hops included.

aiohttp follows redirects itself and builds every hop's request with the session's
request class: this one makes each hop obey the rules a first request obeys.

- The URL is sent as given (``fetchmany.urls.sendable``): a ``Location`` reaches here
  unquoted (the session has ``requote_redirect_url=False``), so ``?s=x%2Fy`` is not
  decoded into ``?s=x/y``, and what cannot stand in a URL is escaped by the same rule
  as an input line's.
- A redirect that turns the method into GET drops the content, and with it the
  headers that described it (``Content-Type`` and the other ``Content-*``): RFC 9110
  15.4 (aiohttp drops only the body and its length).
- A request without content whose method does not anticipate any (GET, HEAD, DELETE,
  OPTIONS, TRACE, or one of the user's own) sends no ``Content-Length: 0``, and none
  gets aiohttp's made-up ``Content-Type: application/octet-stream``: RFC 9110 8.6.
  POST, PUT and PATCH keep ``Content-Length: 0``, which RFC 9110 8.6 asks for there.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, ClassVar, Final, Protocol
from urllib.parse import unquote_to_bytes

import aiohttp
from aiohttp import hdrs
from multidict import CIMultiDict, istr
from yarl import URL

from fetchmany.urls import parsed, sendable

if TYPE_CHECKING:
    from aiohttp.connector import Connection

_ANTICIPATE_CONTENT: Final = frozenset({"POST", "PUT", "PATCH"})
_SAME_ON_EVERY_HOP: Final = frozenset({"GET", "HEAD"})
"""Methods that no redirect changes (aiohttp turns a 303 into GET, but not for HEAD) and
whose requests aiohttp sends with no content headers of its own: a run of these needs
only the URL rule on each hop."""


def _content_header(name: str) -> bool:
    lowered = name.lower()
    return lowered.startswith("content-") or lowered in ("digest", "transfer-encoding")


class Vouched:
    """The URL the client last vouched for (``Client.attempt``), held for the request class.

    Held here, not on the class: setting a class attribute on every request would
    invalidate the type's attribute cache, and with it every attribute lookup CPython's
    specialising interpreter had cached on the class and its instances (the request's
    own fields included), which cost ~5% of a request's instructions."""

    __slots__ = ("url",)

    def __init__(self) -> None:
        self.url: URL | None = None


class SentAsGiven(aiohttp.ClientRequest):
    """Every hop's URL by ``sendable``'s rule, and the run's default headers.

    The URL a request starts with was made so when its item was read; the client
    vouches for it (``Client.attempt``) just before handing it to aiohttp, and that very object
    is not looked at again. Anything else (a redirect's ``Location``, a URL the client
    did not vouch for) is checked here."""

    vouched: ClassVar[Vouched] = Vouched()
    """The URL last vouched for: a holder of its own per run (``request_class``)."""
    defaults: ClassVar[tuple[tuple[str, str], ...]] = ()
    """``session.default_headers``: sent after Host and before -H's (which the session
    holds) and the request's own, as curl orders them."""

    def update_host(self, url: URL) -> None:
        """The URL by the rule, checked where aiohttp first looks at it (no ``__init__``
        of our own: it would take and pass on aiohttp's twenty keyword arguments on
        every request)."""
        if url is not self.vouched.url:
            text = str(url)
            sent = sendable(text)
            if sent != text:
                url = self.original_url = parsed(sent)
                self.url = url.with_fragment(None) if url.raw_fragment else url
        super().update_host(url)

    def update_headers(self, headers: Any) -> None:
        """Host, the run's defaults, then the headers aiohttp hands in (-H and the
        request's own, already merged): what aiohttp would send with the defaults on the
        session, without first merging them into a copy for every request. None of a
        request's own headers (a body's type, credentials, a condition) is a default."""
        host = self.url.host_port_subcomponent
        assert host is not None  # an absolute URL
        # Not CIMultiDict[str](): a subscripted class is a typing alias whose call costs
        # an alias object and a failed __orig_class__ on every request.
        made: CIMultiDict[str] = CIMultiDict()
        self.headers = made
        made[hdrs.HOST] = host
        made.extend(self.defaults)
        if headers:
            for key, value in headers.items():
                if key in hdrs.HOST_ALL:  # a Host of -H's replaces the URL's, as aiohttp's
                    made[key] = value
                else:
                    made.add(key, value)


class ContentByTheRules(SentAsGiven):
    """What a run of another method needs besides the URL rule (see the module)."""

    start_method: ClassVar[str] = "GET"
    carried: ClassVar[bool] = False
    """Whether the run's requests carry a body, known from the first that did: a run's
    items all have one (-d, --json) or none, so a request of a run that carries bodies
    without one is a hop whose body a redirect dropped (a 303 after a GET with a body
    leaves the method as it was)."""

    def __init__(self, method_now: str, url: URL, **kwargs: Any) -> None:
        headers = kwargs.get("headers")
        bodiless = kwargs.get("data") is None
        if not bodiless and not self.carried:
            type(self).carried = True  # the run's own class (``request_class``)
        dropped = bodiless and (method_now.upper() != self.start_method or self.carried)
        if dropped and headers is not None:
            # A redirect made it GET: the content and what described it are gone.
            kwargs["headers"] = CIMultiDict(
                (name, value) for name, value in headers.items() if not _content_header(name)
            )
            headers = kwargs["headers"]
        given_length = headers is not None and "Content-Length" in headers
        if bodiless and method_now.upper() in _ANTICIPATE_CONTENT:
            skipped = kwargs.get("skip_auto_headers") or ()
            kwargs["skip_auto_headers"] = {*skipped, "Content-Type"}
        super().__init__(method_now, url, **kwargs)
        if bodiless and self.method not in _ANTICIPATE_CONTENT and not given_length:
            self.headers.popall("Content-Length", None)


class NotingConnection(SentAsGiven):
    """With ``--tls``: notes each answer's TLS connection (``fetch/tls.py``)."""

    async def send(self, conn: Connection) -> aiohttp.ClientResponse:
        # The connection is known only here: by the time the response is handed
        # out, an answer without a body has already given it back (or closed it).
        from fetchmany.fetch.tls import note_connection, remember  # --tls's alone

        # An http request through an https proxy goes over TLS too, but the proxy's:
        # its certificate is not the answer's, and http has no facts (docs/records.md).
        connection = note_connection(conn) if self.is_ssl() else None
        response = await super().send(conn)
        remember(response, connection)
        return response


class Router(Protocol):
    """What routes a hop: ``session.SessionSetup``."""

    def http_proxy_for(self, target: URL) -> URL | None: ...


class ProxyCredentials(SentAsGiven):
    """An HTTP proxy's credentials as curl -x sends them: the bytes the proxy URL's
    %XX spell (aiohttp decodes them to text as UTF-8 and sends Latin-1, ``us%C3%A9r``
    as ``us\xe9r``, a %XX that is no UTF-8 as its three characters, and a character
    beyond Latin-1 as an error), in the request (http) or the CONNECT (https)."""

    def update_proxy(
        self, proxy: URL | None, proxy_auth: aiohttp.BasicAuth | None, proxy_headers: Any
    ) -> None:
        if proxy is not None and proxy_auth is None and "@" in proxy.raw_authority:
            proxy_auth = proxy_credentials(proxy)
        super().update_proxy(proxy, proxy_auth, proxy_headers)


@functools.lru_cache(maxsize=64)
def proxy_credentials(proxy: URL) -> aiohttp.BasicAuth:
    """``proxy``'s userinfo as a BasicAuth whose value is its bytes: each byte one
    Latin-1 character, sent as Latin-1 (``session.checked_proxy`` refuses a user name
    with a colon, which Basic auth cannot carry)."""
    import warnings

    user = unquote_to_bytes(proxy.raw_user or "").decode("latin-1")
    password = unquote_to_bytes(proxy.raw_password or "").decode("latin-1")
    with warnings.catch_warnings():
        # Deprecated for a request's credentials (we send those as a header), but still
        # what aiohttp 3 takes for a proxy's, and what it makes of the proxy URL itself.
        warnings.simplefilter("ignore", DeprecationWarning)
        return aiohttp.BasicAuth(user, password, encoding="latin-1")


class RoutedEachHop(ProxyCredentials):
    """With the environment's proxies: each hop through the proxy its own URL is given,
    as curl -L does (aiohttp, given one proxy for a request, uses it on every hop): a
    redirect to a host NO_PROXY names goes direct, one from http to https takes
    HTTPS_PROXY. The direct session's alone: a SOCKS proxy is its session's connector,
    which a hop cannot leave (nor can a hop of the direct session take one)."""

    setup: ClassVar[Router]

    def __init__(self, method: str, url: URL, **kwargs: Any) -> None:
        kwargs["proxy"] = self.setup.http_proxy_for(url)
        super().__init__(method, url, **kwargs)


def through_proxies(base: type[SentAsGiven], routed_by: Router | None) -> type[SentAsGiven]:
    """``base`` (the run's ``request_class``) for the direct session of a run with an
    HTTP proxy: its credentials as curl sends them, and with ``routed_by`` (the
    environment's proxies) each hop routed. It shares ``base``'s URL vouched for."""
    if routed_by is None:
        return type("Request", (ProxyCredentials, base), {})
    return type("Request", (RoutedEachHop, base), {"setup": routed_by})


def request_class(
    method: str,
    defaults: tuple[tuple[str, str], ...] = (),
    *,
    tls: bool = False,
    content: bool = False,
) -> type[SentAsGiven]:
    """The request class of a run whose requests start as ``method``, made for it alone
    (it holds the URL vouched for): the URL rule and ``defaults`` (the run's default
    headers), the content rules unless every hop is GET or HEAD and the run sends no
    content headers (``content``: a body, or -H Content-Type), and with ``tls``
    (``--tls``) the connection noted."""
    bases: list[type[SentAsGiven]] = []
    # istr names: the header table takes them without folding their case per request.
    namespace: dict[str, Any] = {
        "vouched": Vouched(),
        "defaults": tuple((istr(name), value) for name, value in defaults),
    }
    if tls:
        bases.append(NotingConnection)
    if content or method not in _SAME_ON_EVERY_HOP:
        bases.append(ContentByTheRules)
        namespace["start_method"] = method
    return type("Request", (*bases, SentAsGiven), namespace)
