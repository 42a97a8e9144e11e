"""URLs as they are sent: byte for byte as given, unless a character cannot stand there.

A URL that is already valid (RFC 3986) goes out exactly as written: ``%2F`` stays
``%2F``, ``%7e`` stays ``%7e``, ``+`` stays ``+``, since a signed URL, a cache key or
a strict router sees any other spelling as another resource (RFC 3986 2.2, 6.2.2.2:
only a client that knows the scheme's rules may decode, and then only unreserved
characters). The one rewriting is the one every client does when it resolves a
reference (RFC 3986 5.2.2, as curl and browsers do): ``.`` and ``..`` path segments
are removed.

What cannot stand in a URL is escaped, never dropped or decoded into something else:

- in the userinfo, path, query and fragment, each character RFC 3986 does not allow
  there (a space, ``"<>\\^`{|}``, anything beyond ASCII, and ``[`` ``]`` outside an IP
  literal) becomes its UTF-8 bytes percent-encoded, upper case (a space is ``%20``
  wherever it stands, as browsers send it); a ``%`` not followed by two hex digits
  becomes ``%25``; a second ``#`` becomes ``%23`` in the fragment;
- a host beyond ASCII becomes its IDNA (punycode) name, as a resolver needs it.

Control characters are not escaped here: ``input.sources`` refuses a line holding
one (an ``invalid_url`` record), since yarl would drop a tab or newline silently.
The same rule applies to a redirect's ``Location`` (``fetch.session``), so every hop
is sent as its server wrote it.
"""

from __future__ import annotations

import re
from typing import Final

from yarl import URL

_PERCENT: Final = re.compile(r"%[0-9A-Fa-f]{2}")
_UNRESERVED: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
_SUB_DELIMS: Final = "!$&'()*+,;="
_USERINFO: Final = frozenset(_UNRESERVED + _SUB_DELIMS + ":")
_PATH: Final = frozenset(_UNRESERVED + _SUB_DELIMS + ":@/")
_QUERY: Final = frozenset(_PATH | {"?"})
# RFC 3986 appendix B: the generic split, which holds for any string.
_PARTS: Final = re.compile(
    r"^(?:([^:/?#]+):)?(?://([^/?#]*))?([^?#]*)(?:\?([^#]*))?(?:#(.*))?$", re.DOTALL
)
_FIT_URL: Final = re.compile(
    r"(https?)://([A-Za-z0-9\-._~]+(?::[0-9]{1,5})?)"  # a plain host, a port: no userinfo
    r"((?:/[A-Za-z0-9\-._~!$&'()*+,;=:@%/]*)?)"
    r"(?:\?([A-Za-z0-9\-._~!$&'()*+,;=:@/?%]*))?(?:#([A-Za-z0-9\-._~!$&'()*+,;=:@/?%]*))?"
)
"""An http(s) URL each part of which holds only what RFC 3986 allows there (a ``%``
aside, which ``_LONE_PERCENT`` checks), its fragment no second #: split into scheme,
authority, path, query and fragment in one pass. Each part is one character class
repeated, which the regex engine runs in a tight loop: an alternation of a character
and a ``%XX`` escape per character cost twice as much, about a third of a line."""
_LONE_PERCENT: Final = re.compile(r"%(?![0-9A-Fa-f]{2})")


def _fit_parts(url: str) -> re.Match[str] | None:
    """``url`` split into its parts when it is fit to send as it stands: ``_FIT_URL``,
    every % an escape, no dot segment (told by "/.", a little wider than one), and no empty query or
    fragment (``/a?`` is sent as given, the whole way). It may say no where the whole
    way changes nothing, never yes where it would change something: tests/test_urls.py
    holds them to one answer."""
    match = _FIT_URL.fullmatch(url)
    if match is None or "/." in url or match[4] == "" or match[5] == "":
        return None
    if "%" in url and _LONE_PERCENT.search(url) is not None:
        return None  # a % that starts no escape: the whole way makes it %25
    return match


def fit_as_it_stands(url: str) -> bool:
    """Whether ``sendable`` gives ``url`` back unchanged, told in one pass in C."""
    return _fit_parts(url) is not None


def parsed_as_it_stands(url: str) -> URL | None:
    """``parsed(url)`` for a URL fit to send as it stands (the common case), built from
    the parts one regex pass found instead of yarl splitting the text again: about a
    third of the cost of reading an input line. None when it is not fit, or its port is
    past 65535 (which ``parsed`` refuses), or its ASCII host is no valid IDNA name (an
    ``xn--`` label that decodes to nothing, which only decoding tells): the whole way
    decides, and says why."""
    match = _fit_parts(url)
    if match is None:
        return None
    scheme, authority, path, query, fragment = match.groups()
    _, colon, port = authority.partition(":")
    # Five digits at most (``_FIT_URL``): of those, only five can pass 65535, and digit
    # strings of one length compare as their numbers do, with no int made.
    if colon and len(port) == 5 and port > "65535":
        return None
    built = URL.build(
        scheme=scheme,
        authority=authority,
        path=path,
        query_string=query or "",
        fragment=fragment or "",
        encoded=True,
    )
    try:
        built.host  # noqa: B018  # decoded lazily: an invalid IDNA label raises only here
    except UnicodeError:
        return None
    return built


def escape(text: str, allowed: frozenset[str]) -> str:
    """``text`` with every character outside ``allowed`` percent-encoded as UTF-8, and
    each ``%`` that starts a valid ``%XX`` kept as it is.

    Bytes that were not UTF-8 in the input (kept as surrogate escapes) are encoded as
    the bytes they were. Idempotent: escaping escaped text changes nothing.
    """
    if all(char in allowed for char in text):  # the common case: nothing to escape
        return text
    out: list[str] = []
    for at, char in enumerate(text):
        if char in allowed or (char == "%" and _PERCENT.match(text, at)):
            out.append(char)
        else:
            encoded = char.encode("utf-8", "surrogateescape")
            out.append("".join(f"%{byte:02X}" for byte in encoded))
    return "".join(out)


def remove_dot_segments(path: str) -> str:
    """RFC 3986 5.2.4: ``/a/./b/../c`` is ``/a/c``. Only the literal segments ``.`` and
    ``..`` are dots (as curl reads them); ``%2e`` is text."""
    if "." not in path:
        return path
    segments = path.split("/")
    if not any(segment in (".", "..") for segment in segments):
        return path
    out: list[str] = []
    for segment in segments[1:] if path.startswith("/") else segments:
        if segment == ".":
            continue
        if segment == "..":
            if out:
                out.pop()
            continue
        out.append(segment)
    # A path that ended in a dot segment names a directory: it keeps its final slash.
    if segments[-1] in (".", ".."):
        out.append("")
    return ("/" if path.startswith("/") else "") + "/".join(out)


class NotSendable(ValueError):
    """A URL that no escaping can make sendable (a host IDNA refuses); the message says
    why."""


def _host(host: str) -> str:
    """The host as a resolver takes it: as given when ASCII, its IDNA name when not."""
    if host.isascii() or host.startswith("["):
        return host
    try:
        encoded = URL.build(scheme="http", host=host).raw_host
    except (ValueError, UnicodeError) as exc:
        raise NotSendable(str(exc)) from None
    assert encoded is not None
    return encoded


def sendable(url: str) -> str:
    """``url`` as it is sent: as given, with the characters that cannot stand in a URL
    escaped, dot segments removed and a host beyond ASCII in IDNA (see the module).

    Raises ``NotSendable`` for a host that has no IDNA name.
    """
    if fit_as_it_stands(url):
        return url  # the common case: already valid, no dot segment, nothing to escape
    return _sendable(url)


def _sendable(url: str) -> str:
    """``sendable`` the whole way: split, escape each part, IDNA for the host."""
    match = _PARTS.match(url)
    assert match is not None  # every string matches the generic split
    scheme, authority, path, query, fragment = match.groups()
    out = [f"{scheme}:" if scheme is not None else ""]
    if authority is not None:
        userinfo, at, hostport = authority.rpartition("@")
        host, port = hostport, ""
        if not hostport.endswith("]") and ":" in hostport:
            host, colon, port = hostport.rpartition(":")
            port = colon + port
        out.append("//")
        if at:
            out.append(escape(userinfo, _USERINFO) + "@")
        out.append(_host(host) + port)
    out.append(escape(remove_dot_segments(path), _PATH))
    if query is not None:
        out.append("?" + escape(query, _QUERY))
    if fragment is not None:
        out.append("#" + escape(fragment, _QUERY))
    return "".join(out)


def parsed(sent: str) -> URL:
    """``sent`` (a URL as ``sendable`` gives it) for aiohttp, which sends its path and
    query as they stand; a ``?`` with an empty query is kept (yarl drops it, and
    ``/a?`` is another target than ``/a`` to a server, as curl sends it). Raises
    ``ValueError`` for a URL yarl cannot take (a bad port, a backslash in the host)."""
    url = URL(sent, encoded=True)
    if not url.raw_query_string and "?" in sent.partition("#")[0].partition("//")[2]:
        url = url.with_path(url.raw_path + "?", encoded=True)
    return url


def has_credentials(url: URL) -> bool:
    """Whether ``url`` has a userinfo: a user, or a password with an empty user
    (``http://:pw@host``, where yarl's ``raw_user`` is None). Told by the @ that only a
    userinfo puts in an authority: one lookup, as every request asks it."""
    return "@" in url.raw_authority


def fragment_of(reference: str) -> str | None:
    """The fragment of a URL reference (a ``Location``), escaped as sent, or None when
    it has none."""
    _, hash_sign, fragment = reference.partition("#")
    return escape(fragment, _QUERY) if hash_sign else None
