"""URLs as sent (``urls.py``): hypothesis draws URLs of every character, and what goes on
the wire, read off a raw socket, must be the stated rule (docs/reference.md "Input"): a valid URL
byte for byte; each character that cannot stand in a URL percent-encoded as UTF-8; a
``%`` that starts no escape as ``%25``; never a character decoded. The oracle below is
written from that rule, not from the module.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import pytest
from conftest import RawServer
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from fetchmany import FetchOptions, fetch_many
from fetchmany.redaction import redact_url
from fetchmany.urls import _sendable, parsed, parsed_as_it_stands, remove_dot_segments, sendable

UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
PATH_ALLOWED = set(UNRESERVED + "!$&'()*+,;=" + ":@" + "/")  # RFC 3986 3.3 pchar and /
QUERY_ALLOWED = PATH_ALLOWED | {"?"}  # 3.4, and the fragment (3.5) alike


def oracle(text: str, allowed: set[str]) -> str:
    """The rule, character by character."""
    out = []
    at = 0
    while at < len(text):
        if re.fullmatch(r"%[0-9A-Fa-f]{2}", text[at : at + 3]):
            out.append(text[at : at + 3])
            at += 3
            continue
        char = text[at]
        out.append(char if char in allowed else "".join(f"%{b:02X}" for b in char.encode()))
        at += 1
    return "".join(out)


# Characters a URL may hold, characters it may not, %-escapes valid and not, and text
# beyond ASCII (a combining accent, an emoji, an ideographic space).
TOKENS = [
    *"abcXYZ019-._~!$&'()*+,;=:@/",
    *' "<>\\^`{|}[]%',
    "%2F", "%2f", "%3F", "%40", "%7E", "%41", "%20", "%25", "%zz", "%4", "%%",
    "é", "e\u0301", "€", "😀", "\u3000", "ß",
]  # fmt: skip
PIECE = st.lists(st.sampled_from(TOKENS), max_size=12).map("".join)


@st.composite
def url_parts(draw: st.DrawFn) -> tuple[str, str | None, str | None]:
    path = "/" + draw(PIECE)
    # A literal . or .. segment is resolved away (tests/test_request.py pins that).
    assume(remove_dot_segments(path) == path)
    query = draw(st.none() | PIECE.map(lambda q: q.replace("#", "")))
    fragment = draw(st.none() | PIECE)
    return path, query, fragment


def joined(path: str, query: str | None, fragment: str | None) -> str:
    return (
        path + ("" if query is None else f"?{query}") + ("" if fragment is None else f"#{fragment}")
    )


@given(url_parts())
@example(("/p", "s=x%2Fy%3D&q=a b+c", None))
@example(("/a%2fb", "%3F%3A%40%21%24%27%28%29%2A%2C", "f%20g"))
def test_sendable_is_the_stated_rule(parts: tuple[str, str | None, str | None]) -> None:
    path, query, fragment = parts
    sent = sendable("http://h.test" + joined(path, query, fragment))
    expected = oracle(path, PATH_ALLOWED)
    if query is not None:
        expected += "?" + oracle(query, QUERY_ALLOWED)
    if fragment is not None:
        expected += "#" + oracle(fragment, QUERY_ALLOWED)
    assert sent == "http://h.test" + expected
    assert sendable(sent) == sent  # escaping what was sent changes nothing


# Mostly what a URL may hold, now and then one thing it may not: each draw sits near the
# edge of what is fit to send as it is.
FIT = st.lists(
    st.sampled_from([*"abXZ09-._~!$&'()*+,;=:@/?", "%2F", "%7e"]) | st.sampled_from(TOKENS),
    max_size=10,
).map("".join)
AUTHORITIES = st.sampled_from(
    [
        "h.test",
        "H.Test:8080",
        "127.0.0.1:80",
        "u:p@h",
        "@h",
        "a@b@h",
        "[::1]:8",
        "a b",
        "é.test",
        "",
        "h:",
    ]
)
SCHEMES = st.sampled_from(["http", "https", "HTTPS", "ftp", "a+b.c-d", "1x", ""])


@given(
    SCHEMES,
    AUTHORITIES,
    st.lists(FIT | st.sampled_from(["/.", "/..", "/./", "/../", "#", "?"]), max_size=5).map(
        "".join
    ),
)
@example("http", "h.test", "/p?id=1")  # the common case
@example("http", "h.test", "/p.?q=/./x#/../")  # "/." off the path
@example("http", "h.test", "/p#a#b")  # a second # (escaped in the fragment)
@example("http", "h.test", "/a%zz?%4")  # a % that starts no escape
@example("http", "a@b@h", "x")  # a userinfo holding an @ (escaped)
@example("https", "h.test", "a/./b/../c")  # dot segments (resolved)
def test_sendable_takes_its_short_way_only_where_the_whole_way_agrees(
    scheme: str, authority: str, rest: str
) -> None:
    """A URL already fit to send is given back at once (one pattern, for every request and
    redirect hop); that shortcut must answer exactly as the whole rule does, whatever the
    scheme, authority (credentials, an IP literal, a host beyond ASCII), dot segments,
    escapes and a second ``#``."""
    url = f"{scheme}://{authority}/{rest}"
    assert sendable(url) == _sendable(url)


@given(
    SCHEMES,
    AUTHORITIES | st.sampled_from(["h:65535", "h:65536", "h:0", "h:080", "h-1.b_c~d", "xn--a"]),
    st.lists(FIT | st.sampled_from(["/.", "#", "?", "/"]), max_size=5).map("".join),
)
@example("http", "h.test", "p?id=1")  # the common case
@example("http", "h.test:8080", "")  # no path
@example("http", "h.test", "?q")  # a query and no path
@example("http", "h.test", "a?")  # an empty query: kept, the whole way
@example("http", "h.test", "a#")  # an empty fragment
@example("https", "h:443", "x")  # a default port given
@example("http", "h:99999", "x")  # a port past 65535: refused, the whole way
@example("http", "h:65536", "x")  # the first port past it
@example("http", "h:09999", "x")  # five digits, a leading zero: a port
@example("http", "h.test", "a%zz?q=%4")  # a % that starts no escape: %25, the whole way
@example("http", "h.test", "a?q=%41%4")  # an escape, then a % at the end
def test_a_url_fit_to_send_is_parsed_in_one_pass_as_the_whole_way_parses_it(
    scheme: str, authority: str, rest: str
) -> None:
    """Input lines fit to send as they stand are split by one pattern and built from the
    parts; the URL must be the one ``parsed`` makes of the text, every part of it, and
    only for a URL ``sendable`` leaves as it is."""
    url = (
        f"{scheme}://{authority}/{rest}"
        if rest[:1] not in ("?", "")
        else f"{scheme}://{authority}{rest}"
    )
    fast = parsed_as_it_stands(url)
    if fast is None:
        return
    assert _sendable(url) == url
    whole = parsed(url)
    assert fast == whole
    assert str(fast) == str(whole)
    parts = (
        "scheme",
        "raw_user",
        "raw_host",
        "port",
        "raw_path",
        "raw_query_string",
        "raw_fragment",
    )
    assert [getattr(fast, name) for name in parts] == [getattr(whole, name) for name in parts]
    assert fast.raw_path_qs == whole.raw_path_qs
    assert fast.host_port_subcomponent == whole.host_port_subcomponent


@pytest.fixture(scope="module")
def wire() -> Iterator[RawServer]:
    server = RawServer({})  # every request answered 404: only what arrives matters here
    yield server
    server.close()


async def _records(urls: list[str]) -> list[dict[str, object]]:
    options = FetchOptions(limit=4, retry=FetchOptions().retry.__class__(retries=0))
    return [record.to_dict() async for record in fetch_many(urls, options)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(url_parts(), min_size=1, max_size=6))
@example([("//@", None, None)])  # found by hypothesis: the path's //@ was masked as a user
@example([("/a//b@c", "n=//u@k", None)])
def test_what_goes_on_the_wire_is_the_stated_rule(
    wire: RawServer, urls: list[tuple[str, str | None, str | None]]
) -> None:
    wire.received.clear()
    given_urls = [wire.url(joined(*parts)) for parts in urls]
    records = asyncio.run(_records(given_urls))
    targets = sorted(request.split(b" ", 2)[1].decode("ascii") for request in wire.received)
    expected = []
    for record, (path, query, fragment) in zip(records, urls, strict=True):
        target = oracle(path, PATH_ALLOWED) + (
            "" if query is None else "?" + oracle(query, QUERY_ALLOWED)
        )
        expected.append(target)
        tail = "" if fragment is None else "#" + oracle(fragment, QUERY_ALLOWED)
        # As given, but for credentials in it (a query's ``=//user@host``), masked.
        assert record["url"] == redact_url(wire.url(target) + tail)
        assert record["status"] == 404, record  # sent, and answered
    assert targets == sorted(expected)  # ASCII only, nothing decoded, nothing dropped


@given(url_parts(), st.sampled_from(["\t", "\n", "\r", "\x00", "\x1b", "\x7f"]), st.data())
def test_a_control_character_is_an_invalid_url_never_sent(
    wire: RawServer, parts: tuple[str, str | None, str | None], control: str, data: st.DataObject
) -> None:
    """yarl drops a tab or newline silently: such a URL is refused, not sent as another."""
    text = joined(*parts)
    at = data.draw(st.integers(0, len(text)))
    wire.received.clear()
    (record,) = asyncio.run(_records([wire.url(text[:at] + control + text[at:])]))
    assert record["error"] is not None
    assert record["error"]["kind"] == "invalid_url"  # type: ignore[index]
    assert wire.received == []


@pytest.mark.parametrize(
    ("host", "sent"),
    [
        ("пример.рф", "xn--e1afmkfd.xn--p1ai"),
        ("FAß.de", "xn--fa-hia.de"),
        ("Example.COM", "Example.COM"),
    ],
)
def test_a_host_beyond_ascii_is_sent_as_its_idna_name(host: str, sent: str) -> None:
    assert sendable(f"http://{host}/p?q") == f"http://{sent}/p?q"


@pytest.mark.parametrize(
    ("path", "resolved"),
    [
        # RFC 3986 5.2.4's own examples, and the ends curl keeps.
        ("/a/b/c/./../../g", "/a/g"),
        ("mid/content=5/../6", "mid/6"),
        ("/a/b/..", "/a/"),  # ended in a dot segment: a directory, its slash kept
        ("/a/b/.", "/a/b/"),
        ("/..", "/"),
        ("/a/%2e%2e/b", "/a/%2e%2e/b"),  # %2e is text, not a dot
        ("/a.b/c..d/", "/a.b/c..d/"),
    ],
)
def test_dot_segments_are_removed_as_rfc_3986_and_curl_remove_them(
    path: str, resolved: str
) -> None:
    assert remove_dot_segments(path) == resolved
