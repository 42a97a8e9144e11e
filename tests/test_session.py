"""The session a run shares (``fetch/session.py``): which proxy each URL goes through,
SOCKS proxies, .netrc credentials, in process so that mutation testing sees them.

curl is the reference for the proxy variables (``lib/noproxy.c``): each NO_PROXY rule
below is checked against the curl installed, on loopback, where curl is right.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import os
import socket
import ssl
import struct
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import HOST, LoopbackServer, RawServer, TlsServer, jsonl, raw_response, run_cli
from yarl import URL

from fetchmany.fetch.session import (
    SessionSetup,
    SetupError,
    checked_env_proxies,
    socks_connector,
)
from fetchmany.options import FetchOptions

PROXY = "http://proxy.test:3128"
"""The proxy of the NO_PROXY table: never contacted, only named."""


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> Callable[[dict[str, str]], None]:
    """Sets the proxy variables of a test, none of the caller's left."""
    for name in list(os.environ):
        if name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)

    def set_to(variables: dict[str, str]) -> None:
        for name, value in variables.items():
            monkeypatch.setenv(name, value)

    return set_to


def route(url: str, options: FetchOptions | None = None) -> str | None:
    """The proxy a run set up from the environment sends ``url`` through; None: direct."""
    return SessionSetup.prepare(options or FetchOptions()).proxy_for(URL(url))


# (URL, NO_PROXY, whether it goes direct, whether curl 7.88 agrees)
NO_PROXY_RULES = [
    # A name matches itself and every name under it, never a longer name.
    ("http://example.com/", "example.com", True, True),
    ("http://www.example.com/", "example.com", True, True),
    ("http://a.b.example.com/", "b.example.com", True, True),
    ("http://notexample.com/", "example.com", False, True),
    ("http://example.com/", "www.example.com", False, True),
    # A dot before or after counts for nothing; nor does case.
    ("http://www.example.com/", ".example.com", True, True),
    ("http://example.com/", ".example.com", True, True),
    ("http://EXAMPLE.com/", "example.COM", True, True),
    ("http://inbox/", "INBOX", True, True),  # an X at either end is a letter like any other
    ("http://xbox/", "XBOX.", True, True),
    ("http://example.com./", "example.com", True, True),
    ("http://example.com/", "example.com.", True, True),
    ("http://www.example.com/", ".example.com.", True, True),
    ("http://a.example/", ".", False, True),
    # A name beyond ASCII is compared as sent (IDNA), and (beyond curl) as written.
    ("http://xn--bcher-kva.example/", "xn--bcher-kva.example", True, True),
    ("http://bücher.example/", "xn--bcher-kva.example", True, True),
    ("http://xn--bcher-kva.example/", "bücher.example", True, False),
    # A list: commas or blanks between the entries, empty entries.
    ("http://example.com/", "localhost, example.com", True, True),
    ("http://a.example/", "example.com,,a.example", True, True),
    ("http://a.example/", "example.com;a.example", False, True),
    ("http://example.com/", "localhost", False, True),
    ("http://localhost/", "localhost example.com", True, True),
    ("http://example.com/", "localhost example.com", True, True),
    ("http://a.example/", "\ta.example\t", True, True),
    # * alone is every host; in a list, it is a name like any other.
    ("http://example.com/", "*", True, True),
    ("http://example.com/", "localhost,*", False, True),
    ("http://www.example.com/", "*.example.com", False, True),  # no wildcards: use .example.com
    ("http://example.com/", "", False, True),
    # An address matches itself, or a CIDR range that holds it (an entry with host bits
    # set is its network's range); a range never matches a name.
    ("http://127.0.0.1/", "127.0.0.1", True, True),
    ("http://127.0.0.1/", "127.0.0", False, True),
    ("http://127.0.0.1/", "127.0.0.1.", False, True),
    ("http://10.0.0.1/", "0.0.1", False, True),  # an address is not a name
    ("http://10.0.0.1/", ".0.0.1", False, True),
    ("http://10.0.0.1/", "10.0.0.0/8", True, True),
    ("http://10.0.0.1/", "10.0.0.1/8", True, True),
    ("http://10.0.0.1/", "10.0.0.1/32", True, True),
    ("http://10.0.0.1/", "11.0.0.0/8", False, True),
    ("http://10.0.0.1/", "10.0.0.1/33", False, True),
    ("http://10.0.0.1/", "localhost, 10.0.0.0/8", True, True),
    ("http://10.0.0.1/", "bogus/8,10.0.0.0/8", True, True),
    ("http://10.0.0.1/", "10.0.0.0/8/9,10.0.0.0/8", True, True),
    ("http://localhost/", "127.0.0.0/8", False, True),
    # An address in another of the forms the connection reads as one (inet_aton's:
    # hexadecimal parts, fewer than four), as curl normalises it: an address still.
    ("http://0x7f.0.0.1/", "127.0.0.0/8", True, True),
    ("http://0x7F000001/", "127.0.0.1", True, True),
    ("http://127.0.0.0x1/", "127.0.0.1/32", True, True),
    ("http://0x7f.1/", "0x7f.1", False, True),  # an entry is an address as written
    ("http://0x7f.1/", "0.0.1", False, True),
    ("http://[::1]/", "::1", True, True),
    ("http://[fe80::1]/", "FE80::1", True, True),
    ("http://[fe80::1]:8080/", "fe80::1:8080", False, True),  # an address, not a port
    # curl 7.88 compares IPv6 addresses as text and never matches an IPv6 range, though
    # its documentation says it takes CIDR entries (curl.1, --noproxy: since 7.86.0);
    # later curls compare addresses (lib/noproxy.c, Curl_cidr6_match).
    ("http://[::1]/", "0:0:0:0:0:0:0:1", True, False),
    ("http://[::1]/", "::1/128", True, False),
    ("http://[fe80::1]/", "fe80::/10", True, False),
    ("http://[fe80::1]/", "fe90::/16", False, True),
    # Brackets, as in a URL (curl: never a match).
    ("http://[::1]/", "[::1]", True, False),
    # A range of no bits is every address of its family (curl: only the address).
    ("http://10.0.0.1/", "0.0.0.0/0", True, False),
    ("http://[::1]/", "0.0.0.0/0", False, True),
    ("http://[::ffff:127.0.0.1]/", "127.0.0.1", False, True),
    # Beyond curl, which never matches an entry with a port: host:port for that port
    # only, as urllib and Go read NO_PROXY (docs/reference.md).
    ("http://127.0.0.1:8080/", "127.0.0.1:8080", True, False),
    ("http://127.0.0.1:8080/", "127.0.0.1:8081", False, True),
    ("http://a.example/", "a.example:8081,a.example", True, True),  # the next entry counts
    ("http://example.com/", "example.com:80", True, False),
    ("https://example.com/", "example.com:443", True, False),
    ("https://example.com/", "example.com:80", False, True),
    ("http://www.example.com:8080/", "example.com:8080", True, False),
    ("http://[::1]:8080/", "[::1]:8080", True, False),
    ("http://[::1]:8080/", "[::1]:8081", False, True),
    ("http://example.com:8080/", "example.com:http", False, True),
]


@pytest.mark.parametrize(("url", "no_proxy", "direct", "curl_agrees"), NO_PROXY_RULES)
def test_no_proxy_sends_the_hosts_it_names_direct(
    environment: Callable[[dict[str, str]], None],
    url: str,
    no_proxy: str,
    direct: bool,
    curl_agrees: bool,
) -> None:
    environment({"http_proxy": PROXY, "https_proxy": PROXY, "no_proxy": no_proxy})
    assert route(url) == (None if direct else PROXY)


@pytest.mark.parametrize(
    ("url", "no_proxy", "direct"),
    [(url, no, direct) for url, no, direct, agrees in NO_PROXY_RULES if agrees],
)
def test_curl_reads_no_proxy_as_the_table_says(
    raw_server: Callable[[dict[str, bytes]], RawServer], url: str, no_proxy: str, direct: bool
) -> None:
    """The reference for the table above: curl, sent to one loopback server whether it
    goes direct (``--connect-to``: no name is looked up) or through the proxy (the same
    server, which then sees an absolute URL or a CONNECT, not a path)."""
    server = raw_server({})
    target = URL(url).with_port(server.port) if URL(url).port in (80, 443) else URL(url)
    proxy = f"http://{HOST}:{server.port}"
    env = {"PATH": os.environ["PATH"], "http_proxy": proxy, "https_proxy": proxy}
    env["no_proxy"] = no_proxy.replace("8080", str(server.port))
    subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "--max-time", "10", "--connect-to",
         f"::{HOST}:{server.port}", str(target).replace(":8080", f":{server.port}")],
        env=env, check=False, timeout=30,
    )  # fmt: skip
    (head,) = server.received
    assert head.split(b" ")[1].startswith(b"/") is direct, head


@pytest.mark.parametrize(
    ("variables", "http", "https"),
    [
        ({"http_proxy": "http://a:1"}, "http://a:1", None),
        ({"https_proxy": "http://b:1"}, None, "http://b:1"),
        ({"all_proxy": "socks5://c:1"}, "socks5://c:1", "socks5://c:1"),
        ({"http_proxy": "http://a:1", "all_proxy": "http://c:1"}, "http://a:1", "http://c:1"),
        # Any case (docs/reference.md), the lower-case one first, as curl and urllib.
        ({"HTTPS_PROXY": "http://b:1", "ALL_PROXY": "http://c:1"}, "http://c:1", "http://b:1"),
        ({"https_proxy": "http://b:1", "HTTPS_PROXY": "http://x:1"}, None, "http://b:1"),
        # An empty variable is as if it were not set (curl's curl_getenv): it hides no
        # other case of its name (urllib's rule, which sent these direct).
        ({"https_proxy": "", "HTTPS_PROXY": "http://b:1"}, None, "http://b:1"),
        ({"all_proxy": "", "ALL_PROXY": "http://c:1"}, "http://c:1", "http://c:1"),
        ({"https_proxy": "", "all_proxy": "http://c:1"}, "http://c:1", "http://c:1"),
        ({}, None, None),
        ({"no_proxy": "example.com"}, None, None),
    ],
)
def test_each_scheme_goes_through_its_own_proxy_else_all_proxy(
    environment: Callable[[dict[str, str]], None],
    variables: dict[str, str],
    http: str | None,
    https: str | None,
) -> None:
    environment(variables)
    assert (route("http://example.com/"), route("https://example.com/")) == (http, https)


def test_an_empty_no_proxy_hides_no_other_case_of_it(
    environment: Callable[[dict[str, str]], None],
) -> None:
    """curl reads no_proxy, else NO_PROXY, an empty one as unset: with ``no_proxy=`` left
    empty by a login script, ``NO_PROXY=example.com`` still sends example.com direct."""
    environment({"http_proxy": PROXY, "no_proxy": "", "NO_PROXY": "example.com"})
    assert route("http://example.com/") is None
    assert route("http://other.example/") == PROXY


def test_under_cgi_only_the_lower_case_http_proxy_names_the_http_proxy(
    environment: Callable[[dict[str, str]], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CGI script gets a client's ``Proxy:`` header as HTTP_PROXY (httpoxy)."""
    monkeypatch.setenv("REQUEST_METHOD", "GET")
    environment({"HTTP_PROXY": "http://client-chose:1", "HTTPS_PROXY": "http://b:1"})
    assert (route("http://example.com/"), route("https://example.com/")) == (None, "http://b:1")
    environment({"http_proxy": "http://a:1"})
    assert route("http://example.com/") == "http://a:1"


@pytest.mark.parametrize(
    ("variables", "start", "hop", "heads"),
    [
        # Direct (NO_PROXY), then to a host NO_PROXY does not name: through the proxy.
        ({"http_proxy": "{proxy}", "no_proxy": HOST}, "http://{origin}/start",
         "http://[::1]:{port}/next", ["GET /start", "GET http://[::1]:{port}/next"]),
        # Through the proxy, then to a host NO_PROXY names: direct.
        ({"http_proxy": "{proxy}", "no_proxy": HOST}, "http://[::1]:{port}/start",
         "http://{origin}/next", ["GET http://[::1]:{port}/start", "GET /next"]),
        # http, which has no proxy, then https, which has: CONNECT.
        ({"https_proxy": "{proxy}"}, "http://{origin}/start", "https://[::1]:{port}/next",
         ["GET /start", "CONNECT [::1]:{port}"]),
    ],
)  # fmt: skip
def test_each_redirect_hop_goes_the_way_the_proxy_variables_say_for_its_url(
    environment: Callable[[dict[str, str]], None],
    raw_server: Callable[[dict[str, bytes]], RawServer],
    variables: dict[str, str],
    start: str,
    hop: str,
    heads: list[str],
) -> None:
    """As curl -L chooses the proxy of each hop's URL (aiohttp, given one proxy for the
    request, used it on every hop). One loopback server is origin and proxy: a proxied
    request reaches it as an absolute URL (or a CONNECT), a direct one as a path."""
    server = raw_server({})
    names = {"proxy": f"http://{HOST}:{server.port}", "origin": f"{HOST}:{server.port}"}
    names["port"] = str(server.port)
    start, hop = start.format(**names), hop.format(**names)
    moved = raw_response(headers=(b"Location: " + hop.encode(),), status=b"302 Found")
    done = raw_response(b"done")
    server.routes.update({"/start": moved, start: moved, "/next": done, hop: done})
    environment({name: value.format(**names) for name, value in variables.items()})
    run_cli("-q", "--retries", "0", stdin=start.encode())
    lines = [head.split(b" HTTP/1.1")[0].decode() for head in server.received]
    assert lines == [line.format(**names) for line in heads]


def test_the_proxy_option_wins_over_the_environment_and_no_proxy(
    environment: Callable[[dict[str, str]], None],
) -> None:
    """--proxy sends every request through it (docs/reference.md); without the
    environment's proxies, nothing is proxied."""
    environment({"http_proxy": "http://a:1", "no_proxy": "*"})
    assert route("http://example.com/", FetchOptions(proxy="http://mine:1")) == "http://mine:1"
    assert route("http://example.com/", FetchOptions(env_proxy=False)) is None


def test_a_socks_user_name_may_hold_a_colon_which_socks_sends_apart_from_the_password() -> None:
    """RFC 1929 sends the user name and the password as fields of their own."""
    proxies = {"all": "socks5://a%3Ab:pw@x:1"}
    assert checked_env_proxies(proxies) == proxies


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("all", "socks9://u:s3cret@x:1", "ALL_PROXY in the environment 'socks9://u:****@x:1': "
         "use one of http://, https://, socks4://, socks4a://, socks5://, socks5h://"),
        ("https", "http://u:s3cret@/x",
         "HTTPS_PROXY in the environment 'http://u:****@/x' is not a valid URL"),
        ("all", "socks5://", "ALL_PROXY in the environment 'socks5://' has no host"),
        # The value is quoted as it is, whatever it holds: only the option's name is replaced.
        ("http", "--proxy", "HTTP_PROXY in the environment '--proxy': use one of http://, "
         "https://, socks4://, socks4a://, socks5://, socks5h://"),
        ("http", "http://a b:1", "HTTP_PROXY in the environment 'http://a b:1' contains a "
         "control character or space"),
        # No scheme:// to tell the userinfo by its place: all up to the last @ is masked.
        ("https", "u:s3cret@127.0.0.1:3128", "HTTPS_PROXY in the environment "
         "'****@127.0.0.1:3128': use one of http://, https://, socks4://, socks4a://, "
         "socks5://, socks5h://"),
        ("all", "socks5:/u:s3:cret@x:1", "ALL_PROXY in the environment '****@x:1' has no host"),
        ("http", "http://a%3Ab:s3cret@x:1", "HTTP_PROXY in the environment "
         "'http://a%3Ab:****@x:1': a user name with a colon (%3A) cannot be sent"),
        # What aiohttp-socks can send (it failed every record as "unexpected").
        ("all", "socks5://us%C3%A9r:s3cret@x:1", "ALL_PROXY in the environment "
         "'socks5://us%C3%A9r:****@x:1': a SOCKS proxy's user name and password must be "
         "ASCII, 255 characters at most"),
        ("all", "socks4a://" + "u" * 256 + "@x:1", "ALL_PROXY in the environment "
         "'socks4a://****@x:1': a SOCKS proxy's user name and password must be ASCII, "
         "255 characters at most"),
    ],
)  # fmt: skip
def test_a_broken_proxy_variable_says_which_and_why(
    variable: str, value: str, message: str
) -> None:
    with pytest.raises(SetupError) as caught:
        checked_env_proxies({"no": "localhost", variable: value})
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "it holds no PEM certificate"),
        (b"not a certificate at all\n", "it holds no PEM certificate"),
        (None, "No such file or directory"),
    ],
)
def test_a_ca_bundle_that_cannot_be_used_says_why(
    tmp_path: Path, content: bytes | None, reason: str
) -> None:
    """In words a user can act on, not OpenSSL's ``[X509: NO_CERTIFICATE_OR_CRL_FOUND]``."""
    bundle = tmp_path / "ca.pem"
    if content is not None:
        bundle.write_bytes(content)
    with pytest.raises(SetupError) as caught:
        SessionSetup.prepare(FetchOptions(ca_bundle=str(bundle)))
    assert str(caught.value) == f"cannot use --ca-bundle {bundle}: {reason}"


def test_a_ca_bundle_with_a_broken_certificate_says_openssl_s_reason(tmp_path: Path) -> None:
    """A certificate is there but broken: OpenSSL's reason, not "no certificate"."""
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    with pytest.raises(SetupError) as caught:
        SessionSetup.prepare(FetchOptions(ca_bundle=str(bundle)))
    message = str(caught.value)
    assert message.startswith(f"cannot use --ca-bundle {bundle}: ")
    assert "PEM" in message
    assert "no PEM certificate" not in message


@pytest.mark.parametrize(
    ("given", "body_headers"),
    [((), {"Content-Type": "application/json"}), ((("content-TYPE", "text/csv"),), None)],
)
def test_a_body_s_content_type_is_sent_unless_one_is_given(
    given: tuple[tuple[str, str], ...], body_headers: dict[str, str] | None
) -> None:
    """--json's type goes with each body, unless -H gives one (any case): then only
    that one, which the session sends."""
    options = FetchOptions(content_type="application/json", headers=given)
    assert SessionSetup.prepare(options).body_headers == body_headers


def test_a_library_run_told_not_to_read_proxy_variables_reads_none(
    environment: Callable[[dict[str, str]], None],
) -> None:
    environment({"http_proxy": "http://127.0.0.1:3128"})
    assert SessionSetup.prepare(FetchOptions()).proxy_for(URL("http://a.test/")) is not None
    setup = SessionSetup.prepare(FetchOptions(env_proxy=False))
    assert setup.proxy_for(URL("http://a.test/")) is None


@pytest.mark.parametrize(
    ("netrc", "headers"),
    [(False, ()), (True, (("Authorization", "Bearer mine"),))],
)
def test_netrc_is_read_only_when_asked_and_no_authorization_is_given(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    netrc: bool,
    headers: tuple[tuple[str, str], ...],
) -> None:
    """Without --netrc the file is not read; with -H Authorization it is not read either:
    the header given is the one sent (docs/reference.md)."""
    (tmp_path / "netrc").write_text("machine a.test login alice password s3cret\n")
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    assert SessionSetup.prepare(FetchOptions(netrc=True)).auth_for(URL("http://a.test/"))
    setup = SessionSetup.prepare(FetchOptions(netrc=netrc, headers=headers))
    assert setup.auth_for(URL("http://a.test/")) is None


def test_with_a_proxy_given_the_environment_s_socks_proxies_get_no_connector(
    environment: Callable[[dict[str, str]], None],
) -> None:
    """--proxy replaces the environment's proxies: none of them is used, so a SOCKS
    proxy named there gets no connector (and no session) of its own."""
    environment({"all_proxy": "socks5://127.0.0.1:1080"})
    assert SessionSetup.prepare(FetchOptions()).socks_proxies() == {"socks5://127.0.0.1:1080"}
    given = SessionSetup.prepare(FetchOptions(proxy="http://127.0.0.1:3128"))
    assert given.socks_proxies() == set()


@pytest.mark.parametrize("scheme", ["http", "https"])
@pytest.mark.parametrize(
    "userinfo",
    [
        "us%C3%A9r:p%C3%A4ss",  # UTF-8 (aiohttp sent Latin-1: us\xe9r)
        "us%E2%82%AC:x",  # beyond Latin-1 (an "unexpected" error in every record)
        "u:pa%FFss",  # a byte that is no UTF-8 (aiohttp sent the three characters %FF)
        "u:p%3A%40%25ss",
        "u:",
        "u",
    ],
)
def test_an_http_proxy_gets_the_credentials_curl_sends(
    raw_server: Callable[[dict[str, bytes]], RawServer], userinfo: str, scheme: str
) -> None:
    """The bytes the proxy URL's %XX spell, as curl -x sends them, in the request
    (http) or in the CONNECT (https)."""
    server = raw_server({})
    proxy = f"http://{userinfo}@{HOST}:{server.port}"
    url = f"{scheme}://{HOST}:{server.port}/x"
    subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "--max-time", "10", "-x", proxy, url],
        check=False, timeout=30,
    )  # fmt: skip
    result = run_cli("-q", "--retries", "0", "--proxy", proxy, stdin=url.encode())
    assert "unexpected" not in result.stdout.decode()
    by_curl, by_us = (
        [line for line in head.split(b"\r\n") if line.lower().startswith(b"proxy-authorization:")]
        for head in server.received
    )
    assert len(by_us) == 1
    assert by_us == by_curl


@pytest.mark.parametrize(
    ("status", "attempts"),
    [(b"407 Proxy Authentication Required", 1), (b"403 Forbidden", 1), (b"503 Busy", 3)],
)
@pytest.mark.parametrize("governed", [(), ("-m", "30")])  # the two attempt loops
def test_a_tunnel_the_proxy_refuses_is_a_connect_error_retried_as_its_status_says(
    raw_server: Callable[[dict[str, bytes]], RawServer],
    status: bytes,
    attempts: int,
    governed: tuple[str, ...],
) -> None:
    """It was a "protocol" error (a malformed answer, which it is not), retried whatever
    the status, so wrong proxy credentials were sent three times."""
    server = raw_server({})
    server.routes[f"{HOST}:{server.port}"] = raw_response(status=status)
    url = f"https://{HOST}:{server.port}/x"
    result = run_cli(
        "-q", "--retries", "2", "--backoff", "0.01", "--proxy", f"http://u:s3cret@{HOST}:{server.port}",
        *governed, stdin=url.encode(),
    )  # fmt: skip
    (record,) = jsonl(result.stdout)
    assert record["error"] == {
        "kind": "connect",
        "message": f"the proxy refused the tunnel: {status.decode()}",
    }
    assert (record["status"], record["attempts"]) == (None, attempts)
    assert len(server.received) == attempts


# ---------------------------------------------------------------- SOCKS


@dataclass(frozen=True)
class Asked:
    """What a SOCKS client asked its proxy for."""

    version: int
    user: str | None
    password: str | None
    host: str
    """A name when the proxy is to resolve it (socks5h, socks4a), else an address."""
    port: int


class SocksRecorder:
    """A SOCKS4(a) and SOCKS5 proxy on 127.0.0.1 that records what each client asks for,
    then refuses it or, with ``relay``, connects it (loopback targets only)."""

    def __init__(self, relay: bool = False) -> None:
        self.relay = relay
        self.asked: list[Asked] = []
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.port = 0

        async def start() -> None:
            server = await asyncio.start_server(self._handle, HOST, 0)
            self.port = server.sockets[0].getsockname()[1]

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(start())
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert ready.wait(10)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            version = (await reader.readexactly(1))[0]
            asked = await (self._socks4(reader) if version == 4 else self._socks5(reader, writer))
            self.asked.append(asked)
            if not self.relay or not _is_loopback(asked.host):
                writer.write(_reply(version, granted=False))
                return
            to_reader, to_writer = await asyncio.open_connection(asked.host, asked.port)
            writer.write(_reply(version, granted=True))
            await asyncio.gather(_pipe(reader, to_writer), _pipe(to_reader, writer))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    @staticmethod
    async def _socks4(reader: asyncio.StreamReader) -> Asked:
        _, port, address = struct.unpack("!BH4s", await reader.readexactly(7))
        user = (await reader.readuntil(b"\0"))[:-1].decode()
        host = socket.inet_ntoa(address)
        if address[:3] == bytes(3) and address[3]:  # 0.0.0.x: SOCKS4a, a name follows
            host = (await reader.readuntil(b"\0"))[:-1].decode()
        return Asked(4, user, None, host, port)

    @staticmethod
    async def _socks5(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Asked:
        methods = await reader.readexactly((await reader.readexactly(1))[0])
        user = password = None
        if 2 in methods:  # username and password (RFC 1929)
            writer.write(b"\x05\x02")
            _, length = await reader.readexactly(2)
            user = (await reader.readexactly(length)).decode()
            password = (await reader.readexactly((await reader.readexactly(1))[0])).decode()
            writer.write(b"\x01\x00")
        else:
            writer.write(b"\x05\x00")
        kind = (await reader.readexactly(4))[3]
        if kind == 3:
            host = (await reader.readexactly((await reader.readexactly(1))[0])).decode()
        else:
            family, size = (socket.AF_INET, 4) if kind == 1 else (socket.AF_INET6, 16)
            host = socket.inet_ntop(family, await reader.readexactly(size))
        (port,) = struct.unpack("!H", await reader.readexactly(2))
        return Asked(5, user, password, host, port)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
    except OSError:
        return False


def _reply(version: int, granted: bool) -> bytes:
    """The proxy's answer to a request: SOCKS4's 90 or 91, SOCKS5's 0 or 5 (refused)."""
    if version == 4:
        return bytes([0, 90 if granted else 91]) + bytes(6)
    return bytes([5, 0 if granted else 5, 0, 1]) + bytes(6)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


@pytest.fixture
def socks_recorder() -> Iterator[SocksRecorder]:
    recorder = SocksRecorder()
    yield recorder
    recorder.close()


@pytest.fixture(scope="module")
def socks_relay() -> Iterator[SocksRecorder]:
    relay = SocksRecorder(relay=True)
    yield relay
    relay.close()


@pytest.mark.parametrize(
    ("scheme", "version", "password", "resolved_here"),
    [
        ("socks5", 5, "s3cret", True),
        ("socks5h", 5, "s3cret", False),
        ("SOCKS5H", 5, "s3cret", False),
        ("socks4", 4, None, True),  # SOCKS4 has a user id and no password
        ("socks4a", 4, None, False),
    ],
)
def test_each_socks_scheme_speaks_its_version_and_resolves_where_it_says(
    socks_recorder: SocksRecorder, scheme: str, version: int, password: str, resolved_here: bool
) -> None:
    """socks5 and socks4 resolve names here, socks5h and socks4a at the proxy, as curl;
    the proxy's credentials go to it, and a proxy that refuses is a connect record."""
    proxy = f"{scheme}://alice:s3cret@{HOST}:{socks_recorder.port}"
    result = run_cli("--retries", "0", "--proxy", proxy, stdin=b"http://localhost:9/x\n")
    (record,) = jsonl(result.stdout)
    assert record["error"]["kind"] == "connect"
    assert "s3cret" not in result.stderr + json.dumps(record)
    (asked,) = socks_recorder.asked
    if resolved_here:
        assert ipaddress.ip_address(asked.host).is_loopback
        asked = Asked(asked.version, asked.user, asked.password, "localhost", asked.port)
    assert asked == Asked(version, "alice", password, "localhost", 9)


def test_a_socks_proxy_from_all_proxy_carries_requests_that_no_proxy_does_not_name(
    environment: Callable[[dict[str, str]], None],
    socks_relay: SocksRecorder,
    server: LoopbackServer,
) -> None:
    environment({"ALL_PROXY": f"socks5h://{HOST}:{socks_relay.port}", "NO_PROXY": "localhost"})
    before = len(socks_relay.asked)
    urls = f"{server.url('/item?id=1')}\n{server.url('/item?id=2').replace(HOST, 'localhost')}\n"
    result = run_cli("-q", "--retries", "0", stdin=urls.encode())
    assert [r["body"]["id"] for r in jsonl(result.stdout)] == ["1", "2"]
    assert socks_relay.asked[before:] == [Asked(5, None, None, HOST, server.port)]


def test_tls_through_a_socks_proxy_is_checked_as_the_run_says(
    socks_relay: SocksRecorder, tls_server: TlsServer
) -> None:
    """A certificate refused through a SOCKS proxy is a ``tls`` record, not retried, as
    it is direct (aiohttp-socks raised it as an OSError: a ``connect`` record, retried)."""
    proxy = ("--proxy", f"socks5://{HOST}:{socks_relay.port}", "-q", "--backoff", "0.01")
    url = tls_server.server.url("/item?id=7").encode()
    trusted = jsonl(run_cli(*proxy, "--ca-bundle", tls_server.ca_pem, stdin=url).stdout)
    assert [r["body"]["id"] for r in trusted] == ["7"]
    (untrusted,) = jsonl(run_cli(*proxy, "--retries", "2", stdin=url).stdout)
    assert (untrusted["error"]["kind"], untrusted["attempts"]) == ("tls", 1)
    assert "CERTIFICATE_VERIFY_FAILED" in untrusted["error"]["message"]
    assert [r["body"]["id"] for r in jsonl(run_cli(*proxy, "-k", stdin=url).stdout)] == ["7"]


@pytest.mark.parametrize("through_socks", [False, True])
def test_as_many_requests_as_the_limit_are_in_flight_at_once(
    server: LoopbackServer, socks_relay: SocksRecorder, through_socks: bool
) -> None:
    """Each connection pool is sized to --limit, past aiohttp's default of 100: the
    server answers none of these until all 101 are in flight."""
    server.reset(gate_size=101)
    args = ["-q", "--limit", "101", "--timeout", "20", "--retries", "0"]
    if through_socks:
        args += ["--proxy", f"socks5://{HOST}:{socks_relay.port}"]
    ids = [str(i) for i in range(101)]
    result = run_cli(*args, "-t", server.url("/gated?id={}"), stdin="\n".join(ids).encode())
    assert [r["body"]["id"] for r in jsonl(result.stdout)] == ids


async def test_a_socks_proxy_s_connector_is_built_from_its_url() -> None:
    """The connector of a SOCKS proxy (aiohttp-socks'): its host, and its port, 1080
    unless given (curl's), which no test can serve on loopback without taking it."""
    from aiohttp_socks import ProxyType

    tls = ssl.create_default_context()
    connector = socks_connector("socks4a://u@proxy.test", 7, tls)
    assert (connector._proxy_type, connector._proxy_host, connector._proxy_port) == (
        ProxyType.SOCKS4,
        "proxy.test",
        1080,
    )
    assert (connector.limit, connector._ssl) == (7, tls)
    await connector.close()


# ---------------------------------------------------------------- .netrc


TWO_LOGINS = "machine 127.0.0.1 login alice password pw\nmachine 127.0.0.1 login bob password pw2"


@pytest.mark.parametrize(
    ("entry", "user"),
    [
        ("machine 127.0.0.1 login alice password s3cret", ""),
        ("machine 127.0.0.1 password s3cret", ""),  # no login: ":s3cret"
        ("machine 127.0.0.1 login alice", ""),  # no password: "alice:"
        ("machine other.test login bob password pw\ndefault login carol password pw2", ""),
        ("machine 127.0.0.1 login usér password pässword", ""),  # UTF-8, as curl sends it
        # The first entry for the host, as curl and ftp read .netrc (Python's, the last).
        (TWO_LOGINS, ""),
        # A URL that names the user without a password: that user's entry (curl.1, -n).
        (TWO_LOGINS, "bob"),
        (TWO_LOGINS, "alice"),
        # A host's name in any case, as curl compares it (Python's lookup is exact).
        ("machine LOCALHOST login alice password pw", ""),
        ("machine Localhost login alice password pw\nmachine localhost login bob password x", ""),
    ],
)
def test_netrc_credentials_are_sent_as_curl_sends_them(
    raw_server: Callable[[dict[str, bytes]], RawServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    entry: str,
    user: str,
) -> None:
    server = raw_server({})
    netrc = tmp_path / "netrc"
    netrc.write_text(entry + "\n", encoding="utf-8")
    netrc.chmod(0o600)
    url = server.url("/").replace("://", f"://{user}@" if user else "://")
    if "localhost" in entry.lower():
        url = url.replace(HOST, "localhost")
    subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "--netrc-file", str(netrc), url], check=True, timeout=30
    )
    monkeypatch.setenv("NETRC", str(netrc))
    run_cli("-q", "--retries", "0", "--netrc", stdin=url.encode())
    by_curl, by_us = (
        [line for line in head.split(b"\r\n") if line.lower().startswith(b"authorization:")]
        for head in server.received
    )
    assert len(by_us) == 1
    assert by_us == by_curl


def test_netrc_is_read_from_the_home_directory_without_netrc_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".netrc").write_text("machine example.com login alice password s3cret\n")
    (tmp_path / ".netrc").chmod(0o600)
    monkeypatch.delenv("NETRC", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    setup = SessionSetup.prepare(FetchOptions(netrc=True))
    expected = "Basic " + base64.b64encode(b"alice:s3cret").decode()
    assert setup.auth_for(URL("https://example.com/x")) == expected
    assert setup.auth_for(URL("https://other.example/x")) is None


@pytest.mark.parametrize("machine", ["xn--bcher-kva.example", "BÜCHER.example."])
@pytest.mark.parametrize("url", ["https://bücher.example/", "https://xn--bcher-kva.EXAMPLE./"])
def test_a_netrc_host_matches_in_either_form_of_its_name_whatever_its_case(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, machine: str, url: str
) -> None:
    """curl looks a host up in its ASCII (xn--) form, any case, no trailing dot."""
    (tmp_path / "netrc").write_text(f"machine {machine} login alice password s3cret\n")
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    setup = SessionSetup.prepare(FetchOptions(netrc=True))
    expected = "Basic " + base64.b64encode(b"alice:s3cret").decode()
    assert setup.auth_for(URL(url)) == expected


def test_a_netrc_machine_ending_in_x_is_found_whatever_its_case(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "netrc").write_text("machine MAILBOX. login alice password s3cret\n")
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    setup = SessionSetup.prepare(FetchOptions(netrc=True))
    expected = "Basic " + base64.b64encode(b"alice:s3cret").decode()
    assert setup.auth_for(URL("https://mailbox/")) == expected


def test_a_netrc_that_cannot_be_parsed_says_which_file_and_where(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine\n")
    monkeypatch.setenv("NETRC", str(netrc))
    with pytest.raises(SetupError) as caught:
        SessionSetup.prepare(FetchOptions(netrc=True))
    assert str(caught.value) == f"cannot read {netrc}: missing 'machine' name (line 2)"
    netrc.write_text("machine 127.0.0.1 login alice s3cret\n")  # "password" left out
    with pytest.raises(SetupError) as caught:
        SessionSetup.prepare(FetchOptions(netrc=True))
    assert str(caught.value) == f"cannot read {netrc}: bad follower token (line 2)"


def test_a_netrc_that_is_not_text_is_a_usage_error_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A .netrc in Latin-1 (neither UTF-8 nor the locale's encoding) was an internal
    error (exit 70) that asked the user to report a bug."""
    netrc = tmp_path / "netrc"
    netrc.write_bytes(b"machine 127.0.0.1 login alice password caf\xe9\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    result = run_cli("--netrc", stdin=b"http://127.0.0.1:9/\n")
    assert (result.returncode, result.stdout) == (2, b"")
    reason = "'utf-8' codec can't decode byte 0xe9 in position 42: invalid continuation byte"
    assert f"cannot read {netrc}: {reason}" in result.stderr
    assert "internal error" not in result.stderr


@pytest.mark.parametrize(
    "text",
    [
        "machine 127.0.0.1 login alice s3cret\n",  # "password" left out
        "s3cret\n",
        "machine 127.0.0.1 login alice password pw s3cret\n",
    ],
)
def test_a_netrc_that_cannot_be_parsed_never_shows_the_word_it_stumbled_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    """Python's parser quotes the word it did not expect, which in a .netrc whose
    ``password`` keyword was left out is the password itself, on a CI log."""
    netrc = tmp_path / "netrc"
    netrc.write_text(text)
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    result = run_cli("--netrc", stdin=b"http://127.0.0.1:9/\n")
    assert (result.returncode, result.stdout) == (2, b"")
    assert f"cannot read {netrc}: " in result.stderr
    assert "(line " in result.stderr  # where, if not what
    assert "s3cret" not in result.stderr
