"""Conformance with the real web: fetchmany and curl side by side on httpbin.

httpbin (PyPI ``httpbin``, the well-known HTTP test service) is served by werkzeug's
WSGI server on 127.0.0.1 (``tests/httpbin_server.py``); curl from Debian is the
reference. Each endpoint is fetched by both, asking alike (the same User-Agent and
Accept-Encoding, so that endpoints echoing the request answer alike), and what each got
must be equal: the status, the final URL, every redirect hop (its status and the URL
requested), every response header but those that legitimately differ between two
requests (``Date``), and the body's exact bytes once its Content-Encoding is undone.
Where curl is wrong, fetchmany's side is asserted with the RFC section that says so.

fetchmany runs through ``main()`` in this process (the command line, without the cost of
a process each) and, for one batch of every plain endpoint, as the installed command.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import jsonl, run_cli, run_process

HERE = Path(__file__).resolve().parent
UA = "conformance/1"
ACCEPT_ENCODING = "gzip, deflate, br, zstd"
DIFFER = frozenset({"date"})
"""Response headers that legitimately differ between two requests."""


@pytest.fixture(scope="module")
def httpbin() -> Iterator[str]:
    """httpbin on 127.0.0.1, in a process of its own; its base URL."""
    server = subprocess.Popen(
        [sys.executable, str(HERE / "httpbin_server.py")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())  # printed once it listens
        yield f"http://127.0.0.1:{port}"
    finally:
        server.kill()
        server.wait(10)


@dataclass
class Seen:
    """What one client got for one URL."""

    status: int | None
    final_url: str | None
    hops: list[tuple[int, str]]
    """Each redirect answer's status and the URL it answered."""
    headers: dict[str, Any]
    """The final answer's, by lower-case name; repeats comma-joined, set-cookie a list."""
    body: bytes


def header_map(lines: list[tuple[str, str]]) -> dict[str, Any]:
    """Headers as fetchmany's ``headers`` field holds them (docs/records.md)."""
    out: dict[str, Any] = {}
    for name, value in lines:
        key = name.lower()
        if key in DIFFER:
            continue
        if key == "set-cookie":
            out.setdefault(key, []).append(value)
        elif key in out:
            out[key] = f"{out[key]}, {value}"
        else:
            out[key] = value
    return out


_REQUEST = re.compile(r"^> ([A-Z]+) (\S+) HTTP/[\d.]+$")
_HOST = re.compile(r"^> Host: (\S+)$")


def by_curl(url: str, *options: str) -> Seen:
    """curl's answer: the headers of every answer (-D), the requests it sent (-v), the
    final URL (-w), the body decoded (--compressed)."""
    with tempfile.TemporaryDirectory() as folder:
        heads, body = Path(folder, "heads"), Path(folder, "body")
        proc = subprocess.run(
            [
                "curl", "-sS", "-v", "--globoff", "-L", "--max-redirs", "10", "-A", UA,
                "-H", f"Accept-Encoding: {ACCEPT_ENCODING}", "--compressed",
                "-D", str(heads), "-o", str(body), "-w", "%{json}", *options, url,
            ],
            capture_output=True,
            check=False,
            timeout=30,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")
        info = json.loads(proc.stdout)
        answers = [block for block in heads.read_bytes().split(b"\r\n\r\n") if block]
        # -I (HEAD) writes the headers where the body would go: a HEAD answer has none.
        got = body.read_bytes() if body.exists() and "-I" not in options else b""
    statuses, finals = [], []
    for block in answers:
        status_line, *fields = block.decode("latin-1").split("\r\n")
        statuses.append(int(status_line.split(" ", 2)[1]))
        finals = [(n, v.strip()) for n, _, v in (f.partition(":") for f in fields)]
    requests: list[str] = []
    target = ""
    for line in proc.stderr.decode("latin-1").splitlines():
        if found := _REQUEST.match(line):
            target = found[2]
        elif (found := _HOST.match(line)) and target:
            requests.append(f"http://{found[1]}{target}")
            target = ""
    hops = list(zip(statuses[:-1], requests[:-1], strict=True))
    return Seen(info["response_code"], info["url_effective"], hops, header_map(finals), got)


FIELDS = "status,final_url,redirects,headers,body"


def seen_in(record: dict[str, Any]) -> Seen:
    hops = [(hop["status"], hop["url"]) for hop in record["redirects"] or []]
    headers = {k: v for k, v in (record["headers"] or {}).items() if k not in DIFFER}
    body = base64.b64decode(record["body"]) if record["body"] else b""
    return Seen(record["status"], record["final_url"], hops, headers, body)


FETCHMANY = ("-q", "-A", UA, "--retries", "0", "--redirects", "--response-headers", "all")
FETCHMANY += ("--body", "base64", "--fields", FIELDS)


def by_fetchmany(url: str, *options: str) -> Seen:
    result = run_cli(*FETCHMANY, *options, stdin=url.encode())
    assert result.returncode in (0, 1), result.stderr
    (record,) = jsonl(result.stdout)
    return seen_in(record)


@dataclass(frozen=True)
class Case:
    path: str
    both: tuple[str, ...] = ()
    """Options both take alike (-d, --json, -H, -X)."""
    ours: tuple[str, ...] = ()
    """fetchmany's own, for what curl says another way."""
    curls: tuple[str, ...] = ()
    userinfo: str = ""


# Endpoints fetched with no option: the same in one batch by the installed command.
PLAIN = {
    "get": "/get",
    "reserved-characters": "/anything/a%2Fb;c=d,e?x=%2F%3D%3F%40&y=a+b&z=!$'()*,:@/?&w=%7e~",
    "status-404": "/status/404",
    "status-418": "/status/418",
    "status-500": "/status/500",
    "status-204": "/status/204",
    "redirect": "/redirect/3",
    "absolute-redirect": "/absolute-redirect/2",
    "relative-redirect": "/relative-redirect/2",
    "redirect-301": "/redirect-to?url=/get%3Fa%3D%252F&status_code=301",
    "redirect-302": "/redirect-to?url=/anything/x%2Fy&status_code=302",
    "redirect-303": "/redirect-to?url=/get&status_code=303",
    "redirect-307": "/redirect-to?url=/get&status_code=307",
    "redirect-308": "/redirect-to?url=/get&status_code=308",
    "redirect-fragment": "/redirect-to?url=/get%23part-2&status_code=302",
    "gzip": "/gzip",
    "deflate": "/deflate",
    "brotli": "/brotli",
    "utf8": "/encoding/utf8",
    "html": "/html",
    "xml": "/xml",
    "json": "/json",
    "robots": "/robots.txt",
    "bytes": "/bytes/2048?seed=7",
    "stream-bytes": "/stream-bytes/4096?seed=3&chunk_size=100",
    "stream": "/stream/5",
    "drip": "/drip?duration=0&numbytes=20&code=200&delay=0",
    "range": "/range/1000",
    "png": "/image/png",
    "svg": "/image/svg",
    "response-headers": "/response-headers?X-Twice=a&X-Twice=b&Set-Cookie=a%3D1&Set-Cookie=b%3D2",
    "cookies-set": "/cookies/set?k=v",
    "etag": "/etag/abc",
    "cache": "/cache/60",
    "base64": "/base64/SFRUUEJJTiBpcyBhd2Vzb21l",
    "links": "/links/3/1",
    "headers": "/headers",
    "user-agent": "/user-agent",
    "hidden-basic-auth": "/hidden-basic-auth/u/p",
}

CASES = {
    **{name: Case(path) for name, path in PLAIN.items()},
    "basic-auth": Case("/basic-auth/u/p%40ss", userinfo="u:p%40ss"),
    "basic-auth-wrong": Case("/basic-auth/u/p", userinfo="u:nope"),
    "bearer": Case("/bearer", ("-H", "Authorization: Bearer t0k")),
    "etag-not-modified": Case("/etag/abc", ("-H", 'If-None-Match: "abc"')),
    "post-form": Case("/post", ("-d", "a=1&b=%2F")),
    "post-json": Case("/post", ("--json", '{"a": [1, "x"]}')),
    "put": Case("/put", ("-X", "PUT", "-d", "x=1")),
    "patch": Case("/patch", ("-X", "PATCH", "-d", "x=1")),
    "delete": Case("/delete", ("-X", "DELETE")),
    "head": Case("/get", ours=("-X", "HEAD"), curls=("-I",)),
    "options": Case("/get", ("-X", "OPTIONS")),
    # A POST redirected: 301, 302 and 303 make it a GET without the form or its headers
    # (RFC 9110 15.4), 307 and 308 send it again.
    **{
        f"post-{status}": Case(
            f"/redirect-to?url=/anything&status_code={status}", ("-d", "a=1")
        )
        for status in (301, 302, 303, 307, 308)
    },
}  # fmt: skip


def url_of(base: str, case: Case) -> str:
    return (
        base.replace("://", f"://{case.userinfo}@") + case.path
        if case.userinfo
        else base + case.path
    )


@pytest.mark.parametrize("name", list(CASES))
def test_fetchmany_gets_what_curl_gets(httpbin: str, name: str) -> None:
    case = CASES[name]
    url = url_of(httpbin, case)
    ours = by_fetchmany(url, *case.both, *case.ours)
    curls = by_curl(url, *case.both, *case.curls)
    if case.userinfo:  # curl's url_effective keeps the credentials; final_url never shows them
        curls.final_url = (curls.final_url or "").replace(f"{case.userinfo}@", "")
        curls.hops = [(status, hop.replace(f"{case.userinfo}@", "")) for status, hop in curls.hops]
    assert ours == curls


def test_the_installed_command_gets_what_curl_gets_in_one_run(httpbin: str) -> None:
    """Every plain endpoint in one run of the installed command, records in input order.
    (Not the seeded random bytes: httpbin seeds the process's one random generator per
    request, so two of them served at once in its threads draw each other's bytes.)"""
    urls = [httpbin + path for path in PLAIN.values() if "seed=" not in path]
    result = run_process(*FETCHMANY, "--limit", "8", stdin="\n".join(urls).encode() + b"\n")
    assert result.returncode == 1, result.stderr  # the 404, 418 and 500
    records = jsonl(result.stdout)
    assert len(records) == len(urls)
    for url, record in zip(urls, records, strict=True):
        assert seen_in(record) == by_curl(url), url


def test_a_303_after_post_is_a_get_where_curl_keeps_post(httpbin: str) -> None:
    """curl -X POST -L keeps POST after a 303; RFC 9110 15.4.4 says the redirect is to be
    followed with a GET (or HEAD). fetchmany's -X POST is the first request's method."""
    url = httpbin + "/redirect-to?url=/anything&status_code=303"
    ours = by_fetchmany(url, "-X", "POST", "-d", "a=1")
    curls = by_curl(url, "-X", "POST", "-d", "a=1")
    assert json.loads(curls.body)["method"] == "POST"  # curl: the same request again
    echoed = json.loads(ours.body)
    assert echoed["method"] == "GET"
    assert echoed["form"] == {}
    assert "Content-Type" not in echoed["headers"]
    assert "Content-Length" not in echoed["headers"]
    assert (ours.status, ours.hops) == (200, [(303, url)])
