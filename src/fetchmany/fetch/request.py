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

from typing import TYPE_CHECKING, Any, Final

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from fetchmany.fetch.tls import note_connection, remember
from fetchmany.urls import parsed, sendable

if TYPE_CHECKING:
    from aiohttp.connector import Connection

_ANTICIPATE_CONTENT: Final = frozenset({"POST", "PUT", "PATCH"})


def _content_header(name: str) -> bool:
    lowered = name.lower()
    return lowered.startswith("content-") or lowered in ("digest", "transfer-encoding")


def request_class(method: str, *, tls: bool = False) -> type[aiohttp.ClientRequest]:
    """The request class of a run whose requests start as ``method``; with ``tls``
    (``--tls``), one that notes each answer's TLS connection (``fetch/tls.py``)."""

    class Request(aiohttp.ClientRequest):
        def __init__(self, method_now: str, url: URL, **kwargs: Any) -> None:
            text = str(url)
            sent = sendable(text)
            if sent != text:
                url = parsed(sent)
            headers = kwargs.get("headers")
            bodiless = kwargs.get("data") is None
            if bodiless and method_now.upper() != method and headers is not None:
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

    if not tls:
        return Request

    class NotingRequest(Request):
        async def send(self, conn: Connection) -> aiohttp.ClientResponse:
            # The connection is known only here: by the time the response is handed
            # out, an answer without a body has already given it back (or closed it).
            connection = note_connection(conn)
            response = await super().send(conn)
            remember(response, connection)
            return response

    return NotingRequest
