"""What goes on the wire, read off a raw socket: the request line and every header, byte
for byte, for first requests and redirect hops (``fetch/request.py``, ``urls.py``).

curl is the reference where it is right (``test_conformance.py`` compares the two on
httpbin); here the bytes themselves are pinned, with the RFC section that asks for them.
"""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import RawServer, jsonl, raw_response, run_cli

from fetchmany.api import fetch_many
from fetchmany.fetch.retry import RetryPolicy
from fetchmany.options import FetchOptions

UA = "wire-test/1"
GET_HEADERS = [  # in curl's order
    ("Host", "{host}"),
    ("User-Agent", UA),
    ("Accept", "*/*"),
    ("Accept-Encoding", "gzip, deflate, br, zstd"),
]


def head(received: bytes) -> tuple[str, list[tuple[str, str]]]:
    """The request line and the headers, in order, of one request as received."""
    line, *fields = received.decode("latin-1").removesuffix("\r\n\r\n").split("\r\n")
    return line, [(name, value.strip()) for name, _, value in (f.partition(":") for f in fields)]


def fetch(
    server: RawServer, *args: str, path: str = "/x"
) -> list[tuple[str, list[tuple[str, str]]]]:
    """Run fetchmany on one URL of ``server``; the requests it made, as received."""
    result = run_cli("-q", "-A", UA, "--retries", "0", *args, stdin=server.url(path).encode())
    assert result.returncode in (0, 1), result.stderr
    return [head(request) for request in server.received]


def expected(
    server: RawServer, *extra: tuple[str, str], accept: str = "*/*"
) -> list[tuple[str, str]]:
    host = f"127.0.0.1:{server.port}"
    headers = [(n, v.format(host=host)) for n, v in GET_HEADERS]
    headers[2] = ("Accept", accept)
    return [*headers, *extra]


OK = raw_response(b"ok", (b"Content-Type: text/plain",))


@pytest.mark.parametrize("method", ["GET", "HEAD", "DELETE", "OPTIONS", "TRACE", "PURGE"])
def test_a_request_without_content_sends_no_content_headers(
    raw_server: Callable[[dict[str, bytes]], RawServer], method: str
) -> None:
    """RFC 9110 8.6: no Content-Length when there is no content and the method does not
    anticipate any (aiohttp sent Content-Length: 0 with DELETE and with methods of
    one's own); and no Content-Type, which would describe nothing."""
    server = raw_server({"/x": OK})
    ((line, headers),) = fetch(server, "-X", method)
    assert line == f"{method} /x HTTP/1.1"
    assert headers == expected(server)


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
def test_a_method_that_anticipates_content_says_it_has_none(
    raw_server: Callable[[dict[str, bytes]], RawServer], method: str
) -> None:
    """RFC 9110 8.6: Content-Length: 0 where the method defines a meaning for content;
    aiohttp's made-up Content-Type: application/octet-stream is not sent."""
    server = raw_server({"/x": OK})
    ((line, headers),) = fetch(server, "-X", method)
    assert line == f"{method} /x HTTP/1.1"
    assert headers == expected(server, ("Content-Length", "0"))


def test_a_form_body_and_its_headers(raw_server: Callable[[dict[str, bytes]], RawServer]) -> None:
    server = raw_server({"/x": OK})
    ((line, headers),) = fetch(server, "-d", "a=1")
    assert line == "POST /x HTTP/1.1"
    assert sorted(headers) == sorted(
        expected(
            server,
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Content-Length", "3"),
        )
    )


@pytest.mark.parametrize(
    ("given", "accept"),
    [((), "application/json"), (("-H", "Accept: text/csv"), "text/csv")],
)
def test_json_bodies_ask_for_json_unless_accept_is_given(
    raw_server: Callable[[dict[str, bytes]], RawServer], given: tuple[str, ...], accept: str
) -> None:
    """--json sends Accept: application/json, as curl's --json and httpie do; -H Accept
    wins."""
    server = raw_server({"/x": OK})
    ((_, headers),) = fetch(server, "--json", '{"a": 1}', *given)
    assert ("Accept", accept) in headers
    assert [v for n, v in headers if n.lower() == "accept"] == [accept]
    assert ("Content-Type", "application/json") in headers


def redirect(status: int, location: str) -> bytes:
    return raw_response(
        status=f"{status} Moved".encode(), headers=(b"Location: " + location.encode("utf-8"),)
    )


@pytest.mark.parametrize("status", [301, 302, 303])
def test_a_redirect_that_makes_a_post_a_get_drops_the_content_headers(
    raw_server: Callable[[dict[str, bytes]], RawServer], status: int
) -> None:
    """RFC 9110 15.4: when a redirect changes the method to GET, the content goes, and
    the headers describing it with it (aiohttp kept Content-Type on the GET), -H ones
    included (they describe content that is no longer sent)."""
    server = raw_server({"/x": redirect(status, "/y"), "/y": OK})
    first, second = fetch(server, "-d", "a=1", "-H", "Content-Language: en")
    assert first[0] == "POST /x HTTP/1.1"
    assert ("Content-Type", "application/x-www-form-urlencoded") in first[1]
    assert second == ("GET /y HTTP/1.1", expected(server))


@pytest.mark.parametrize(
    ("body", "given"),
    [(("-d", "a=1"), "text/csv"), (("--json", "{}"), "application/vnd.api+json")],
)
def test_a_content_type_given_replaces_the_body_s_own(
    raw_server: Callable[[dict[str, bytes]], RawServer], body: tuple[str, str], given: str
) -> None:
    """-H Content-Type with -d or --json: the type given goes out, once, as curl sends it."""
    server = raw_server({"/x": OK})
    ((_, headers),) = fetch(server, *body, "-H", f"Content-Type: {given}")
    assert [value for name, value in headers if name.lower() == "content-type"] == [given]


@pytest.mark.parametrize("content_type", [(), ("-H", "Content-Type: text/plain")])
def test_a_303_that_drops_the_body_of_a_get_drops_its_content_headers(
    raw_server: Callable[[dict[str, bytes]], RawServer], content_type: tuple[str, ...]
) -> None:
    """-X GET -d: a 303 drops the body while the method stays GET; the headers that
    described it go with it, as after a POST (the GET sent Content-Type for no content)."""
    server = raw_server({"/x": redirect(303, "/y"), "/y": OK})
    first, second = fetch(
        server, "-X", "GET", "-d", "a=1", "-H", "Content-Language: en", *content_type
    )
    assert first[0] == "GET /x HTTP/1.1"
    assert ("Content-Length", "3") in first[1]
    assert second == ("GET /y HTTP/1.1", expected(server))


def test_a_get_without_a_body_keeps_the_content_headers_given_on_every_hop(
    raw_server: Callable[[dict[str, bytes]], RawServer],
) -> None:
    """No body was dropped: a -H the user gave is sent on each hop as given (the run
    takes the content rules for its -H Content-Type, and they must not strip it)."""
    server = raw_server({"/x": redirect(303, "/y"), "/y": OK})
    first, second = fetch(server, "-H", "Content-Type: text/plain")
    assert second == ("GET /y HTTP/1.1", first[1])
    assert ("Content-Type", "text/plain") in second[1]


@pytest.mark.parametrize("status", [307, 308])
def test_a_redirect_that_keeps_the_method_keeps_the_content(
    raw_server: Callable[[dict[str, bytes]], RawServer], status: int
) -> None:
    server = raw_server({"/x": redirect(status, "/y"), "/y": OK})
    first, second = fetch(server, "-d", "a=1")
    assert second[0] == "POST /y HTTP/1.1"
    assert second[1] == first[1]


# Every character RFC 3986 allows in a path or a query, %-escapes of reserved characters
# and of unreserved ones in both cases: all must go out exactly as given.
VALID = (
    "/a-._~!$&'()*+,;=:@/%2F%2f%7E%7e%41"
    "?q=a+b&s=x%2Fy%3D&r=%3F%3A%40%21%24%27%28%29%2A%2C/?:@!$'()*"
)


@pytest.mark.parametrize(
    ("given", "sent"),
    [
        (VALID, VALID),
        ("/p?q=a b", "/p?q=a%20b"),  # a space is %20 wherever it stands, never +
        ("/a b/c?d", "/a%20b/c?d"),
        ("/é?é=€", "/%C3%A9?%C3%A9=%E2%82%AC"),
        ('/q?x="<>\\^`{|}', "/q?x=%22%3C%3E%5C%5E%60%7B%7C%7D"),
        ("/[x]?[y]", "/%5Bx%5D?%5By%5D"),
        ("/100%?p=5%", "/100%25?p=5%25"),  # a % that starts no escape
        ("/a/./b/../c", "/a/c"),  # dot segments resolved, as curl and browsers do
        ("/p?q=1#frag ment", "/p?q=1"),  # the fragment is not sent
    ],
)
def test_the_request_target_is_the_url_as_given(
    raw_server: Callable[[dict[str, bytes]], RawServer], given: str, sent: str
) -> None:
    """RFC 3986 2.2, 6.2.2.2: a valid URL goes out byte for byte (yarl decoded %2F, %3F,
    %40... in a query, and wrote a space as +); only what cannot stand in a URL is
    escaped, and the record's url is the URL as sent."""
    server = raw_server({})
    result = run_cli("-q", "--retries", "0", stdin=server.url(given).encode())
    (record,) = jsonl(result.stdout)
    (request,) = server.received
    assert head(request)[0] == f"GET {sent} HTTP/1.1"
    fragment = given.partition("#")[2]
    assert record["url"] == server.url(sent) + (
        f"#{fragment.replace(' ', '%20')}" if fragment else ""
    )


def test_a_valid_url_goes_out_as_curl_sends_it(
    raw_server: Callable[[dict[str, bytes]], RawServer],
) -> None:
    """curl (--globoff: [] and {} are not patterns) is the reference for a valid URL, and
    for the headers of a plain GET, asked alike: the same lines in the same order."""
    server = raw_server({})
    run_cli("-q", "-A", UA, stdin=server.url(VALID).encode())
    subprocess.run(
        [
            "curl", "-sS", "--globoff", "-A", UA, "-H", "Accept-Encoding: gzip, deflate, br, zstd",
            "-o", "/dev/null", server.url(VALID),
        ],
        check=False,
        timeout=30,
    )  # fmt: skip
    ours, curls = (head(request) for request in server.received)
    assert ours == curls
    assert ours == (f"GET {VALID} HTTP/1.1", expected(server))


@pytest.mark.parametrize(
    ("location", "hop"),
    [
        ("/y?s=x%2Fy%3D&t=%40", "/y?s=x%2Fy%3D&t=%40"),  # kept, not requoted
        ("/y?q=a b", "/y?q=a%20b"),  # what cannot stand, escaped by the same rule
        ("/y/é", "/y/%C3%A9"),
        ("z/../y?%7e", "/y?%7e"),  # relative, resolved against /x
    ],
)
def test_a_redirect_is_followed_to_the_location_as_written(
    raw_server: Callable[[dict[str, bytes]], RawServer], location: str, hop: str
) -> None:
    server = raw_server({"/x": redirect(302, location)})
    result = run_cli("-q", "--redirects", stdin=server.url("/x").encode())
    _, second = server.received
    assert head(second)[0] == f"GET {hop} HTTP/1.1"
    (record,) = jsonl(result.stdout)
    assert record["final_url"] == server.url(hop)
    assert record["redirects"] == [{"status": 302, "url": server.url("/x")}]


@pytest.mark.parametrize(
    ("given", "locations", "final"),
    [
        ("/a", ["/b#one"], "/b#one"),  # the Location's fragment
        ("/a#given", ["/b"], "/b#given"),  # inherited from the URL given
        ("/a#given", ["/b#one", "/c"], "/c#one"),  # inherited hop to hop
        ("/a#given", ["/b#one", "/c#two"], "/c#two"),
    ],
)
def test_the_fragment_of_a_location_stays_in_final_url(
    raw_server: Callable[[dict[str, bytes]], RawServer],
    given: str,
    locations: list[str],
    final: str,
) -> None:
    """RFC 9110 10.2.2: a Location's fragment belongs to the resulting URI; one without
    a fragment inherits the fragment of the URI it was reached from (final_url lost it)."""
    paths = ["/a", "/b", "/c"]
    routes = {paths[i]: redirect(302, loc) for i, loc in enumerate(locations)}
    server = raw_server(routes)
    result = run_cli("-q", stdin=server.url(given).encode())
    (record,) = jsonl(result.stdout)
    assert record["final_url"] == server.url(final)
    assert all("#" not in head(request)[0] for request in server.received)


def test_credentials_stay_masked_and_leave_with_the_origin(
    raw_server: Callable[[dict[str, bytes]], RawServer],
) -> None:
    other = raw_server({})
    server = raw_server({"/x?k=%2F": redirect(302, other.url("/y?t=%2F"))})
    given = server.url("/x?k=%2F").replace("http://", "http://user:s%40cret@")
    result = run_cli("-q", "--redirects", stdin=given.encode())
    (record,) = jsonl(result.stdout)
    assert record["url"] == server.url("/x?k=%2F").replace("http://", "http://user:****@")
    assert record["final_url"] == other.url("/y?t=%2F")
    assert "cret" not in str([record[name] for name in ("url", "final_url", "redirects")])
    (first,) = server.received
    assert ("Authorization", "Basic dXNlcjpzQGNyZXQ=") in head(first)[1]  # user:s@cret
    (second,) = other.received
    assert not any(name.lower() == "authorization" for name, _ in head(second)[1])


async def fetch_in_process(
    server: RawServer,
    *,
    method: str | None = None,
    data: str | None = None,
    headers: tuple[tuple[str, str], ...] = (),
) -> list[tuple[str, list[tuple[str, str]]]]:
    """``fetch`` through the library, in this process: the same bytes must go out (and
    mutation testing can reach ``fetch/request.py`` only from here)."""
    options = FetchOptions(
        user_agent=UA, retry=RetryPolicy(retries=0), headers=headers, method=method
    )
    records = [r async for r in fetch_many([server.url("/x")], options, data=data)]
    assert records[0].status == 200, records[0]
    return [head(request) for request in server.received]


async def test_in_process_a_post_made_a_get_keeps_the_headers_that_are_not_content(
    raw_server: Callable[[dict[str, bytes]], RawServer],
) -> None:
    server = raw_server({"/x": redirect(303, "/y"), "/y": OK})
    given = (("Content-Language", "en"), ("Digest", "sha-256=X48E9q=="), ("X-Trace", "1"))
    first, second = await fetch_in_process(server, data="a=1", headers=given)
    assert first[0] == "POST /x HTTP/1.1"
    assert ("Content-Type", "application/x-www-form-urlencoded") in first[1]
    assert second == ("GET /y HTTP/1.1", expected(server, ("X-Trace", "1")))


async def test_in_process_a_303_drops_the_content_headers_of_a_get_with_a_body(
    raw_server: Callable[[dict[str, bytes]], RawServer],
) -> None:
    server = raw_server({"/x": redirect(303, "/y"), "/y": OK})
    given = (("Content-Language", "en"),)
    first, second = await fetch_in_process(server, method="GET", data="a=1", headers=given)
    assert first[0] == "GET /x HTTP/1.1"
    assert ("Content-Length", "3") in first[1]
    assert second == ("GET /y HTTP/1.1", expected(server))


@pytest.mark.parametrize(
    ("method", "headers", "extra"),
    [
        ("GET", (), ()),
        ("DELETE", (), ()),
        ("POST", (), (("Content-Length", "0"),)),
        ("PATCH", (), (("Content-Length", "0"),)),
        ("DELETE", (("Content-Length", "0"),), (("Content-Length", "0"),)),  # given: sent
    ],
)
async def test_in_process_content_headers_without_content(
    raw_server: Callable[[dict[str, bytes]], RawServer],
    method: str,
    headers: tuple[tuple[str, str], ...],
    extra: tuple[tuple[str, str], ...],
) -> None:
    """RFC 9110 8.6 as ``test_a_request_without_content_sends_no_content_headers`` and
    its neighbours pin it on the command line: Content-Length: 0 only where the method
    anticipates content or the user gave it, and never aiohttp's made-up Content-Type."""
    server = raw_server({"/x": OK})
    ((line, sent),) = await fetch_in_process(server, method=method, headers=headers)
    assert line == f"{method} /x HTTP/1.1"
    assert sent == expected(server, *extra)


@pytest.mark.parametrize(
    "userinfo",
    [
        "u:p",
        "us%C3%A9r:p%C3%A4ss",
        "usér:päss",
        "caf%E9:x",
        "u",
        "u:",
        "u:p%40ss%3Aw%2F",
        "%75:p",
        ":p%C3%A4ss",  # no user name: yarl's raw_user is None (found by a hostile tester)
        "us%C3%A9r",  # no password, and none made up (found by mutation testing)
        "us%C3%A9r:",
    ],
)
def test_a_url_s_credentials_are_sent_as_curl_sends_them(
    raw_server: Callable[[dict[str, bytes]], RawServer], userinfo: str
) -> None:
    """Found by mutation testing (``_latin1``), with curl as the reference: a URL's
    credentials are the bytes their %XX spell (RFC 3986 3.2.1). aiohttp sent non-ASCII
    ones as Latin-1 (``us\\xe9r``, where curl sends UTF-8's two bytes) and a %XX that is
    no UTF-8 as the three characters themselves."""
    server = raw_server({"/x": OK})
    url = server.url("/x").replace("http://", f"http://{userinfo}@")
    subprocess.run(["curl", "-s", "-o", "/dev/null", url], check=True, timeout=30)
    result = run_cli("-q", "--retries", "0", stdin=url.encode())
    assert result.returncode == 0, result.stderr
    by_curl, by_us = ([v for n, v in head(r)[1] if n == "Authorization"] for r in server.received)
    assert by_us == by_curl
    assert len(by_us) == 1
    (record,) = jsonl(result.stdout)
    assert record["final_url"] == server.url("/x")  # the URL asked, its credentials gone


def test_netrc_credentials_go_with_the_request_in_process(
    raw_server: Callable[[dict[str, bytes]], RawServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """--netrc's credentials for the URL's host (test_shell.py checks the flag from a
    shell; this is where mutation testing sees it)."""
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login alice password s3cr:et\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    server = raw_server({"/x": OK})
    ((_, headers),) = fetch(server, "--netrc")
    assert ("Authorization", "Basic " + base64.b64encode(b"alice:s3cr:et").decode()) in headers


@pytest.mark.parametrize(
    ("name", "describes_content"),
    [
        ("Content-Type", True),
        ("content-language", True),
        ("Transfer-Encoding", True),  # how the body is framed: gone with the body
        ("TRANSFER-ENCODING", True),
        ("Digest", True),
        ("Host", False),
        ("X-Content-Id", False),
        ("Content", False),  # no "Content-" prefix: a header of its own
    ],
)
def test_the_headers_a_dropped_body_takes_with_it(name: str, describes_content: bool) -> None:
    """What a redirect that drops the body drops with it (RFC 9110 15.4, 8.6): a GET after
    a 303 that kept -H 'Transfer-Encoding: chunked' would tell the server a body follows."""
    from fetchmany.fetch.request import _content_header

    assert _content_header(name) is describes_content


async def test_in_process_a_host_given_replaces_the_url_s_and_repeats_are_all_sent(
    raw_server: Callable[[dict[str, bytes]], RawServer],
) -> None:
    """-H Host: one Host, the one given, in the Host's place (as curl sends it); a header
    given twice goes out twice, in order."""
    server = raw_server({"/x": OK})
    given = (("Host", "api.example.test"), ("X-Tag", "a"), ("X-Tag", "b"))
    (request,) = await fetch_in_process(server, headers=given)
    assert request == (
        "GET /x HTTP/1.1",
        [
            ("Host", "api.example.test"),
            *expected(server)[1:],
            ("X-Tag", "a"),
            ("X-Tag", "b"),
        ],
    )
