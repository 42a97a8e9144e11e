"""--timings, --response-headers, --redirects, HEAD, and SOCKS proxies, against loopback
servers whose answers are known."""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import json
import threading
import time
from collections.abc import Callable, Iterator

import pproxy
import pytest
from aiohttp import web
from conftest import LoopbackServer, RawServer, jsonl, raw_response, run_cli, run_process

HOP_STATUS = {"a": 301, "b": 302}


def hops_app() -> web.Application:
    async def hop(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        target = {"a": "/hop/b", "b": "/end"}[name]
        return web.Response(status=HOP_STATUS[name], headers={"Location": target})

    async def end(request: web.Request) -> web.Response:
        return web.json_response({"arrived": True})

    async def late(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(0.2)  # before the status line: the first byte is late
        return web.json_response({"late": True})

    async def cookies(request: web.Request) -> web.Response:
        response = web.Response(text="ok")
        response.headers.add("X-Many", "one")
        response.headers.add("X-Many", "two")
        response.headers.add("Set-Cookie", "a=1; Path=/")
        response.headers.add("Set-Cookie", "b=2, c=3")
        return response

    app = web.Application()
    app.router.add_get("/hop/{name}", hop)
    app.router.add_get("/end", end)
    app.router.add_get("/late", late)
    app.router.add_get("/cookies", cookies)
    return app


@pytest.fixture
def hops(serve: Callable[[web.Application], LoopbackServer]) -> LoopbackServer:
    return serve(hops_app())


def one(*args: str, url: str) -> dict[str, object]:
    result = run_cli("-q", "--retries", "0", *args, stdin=f"{url}\n".encode())
    (record,) = jsonl(result.stdout)
    return record


def test_a_late_first_byte_shows_in_ttfb(hops: LoopbackServer) -> None:
    before = time.perf_counter()
    timings = one("--timings", url=hops.url("/late"))["timings"]
    run_ms = (time.perf_counter() - before) * 1000
    assert isinstance(timings, dict)
    assert set(timings) == {"dns_ms", "connect_ms", "tls_ms", "ttfb_ms", "total_ms"}
    assert 200 <= timings["ttfb_ms"] <= timings["total_ms"] <= run_ms  # all within the run
    assert timings["dns_ms"] is None  # an IP address: nothing was resolved
    assert timings["tls_ms"] is None


def test_a_fresh_connection_has_connect_time_and_a_reused_one_none(hops: LoopbackServer) -> None:
    urls = f"{hops.url('/end')}\n{hops.url('/end')}\n".encode()
    result = run_cli("-q", "--limit", "1", "--fields", "index,timings", stdin=urls)
    first, second = jsonl(result.stdout)
    assert first["timings"]["connect_ms"] is not None
    assert second["timings"]["connect_ms"] is None  # the keep-alive connection of the first


def test_a_redirect_onto_a_kept_alive_connection_has_no_dns_or_connect_time(
    hops: LoopbackServer, server: LoopbackServer
) -> None:
    """The phases are the final request's: the first hop's name lookup and connection
    (another server's) are not the answer's, which came on a connection kept alive."""
    landing = hops.url("/end").replace("127.0.0.1", "localhost")
    away = server.url("/redirect-to").replace("127.0.0.1", "localhost") + "?url=" + landing
    urls = f"{landing}\n{away}\n".encode()
    # --limit 1: one request at a time, so the redirect lands on the first one's connection.
    result = run_cli("-q", "--limit", "1", "--fields", "index,final_url,timings", stdin=urls)
    first, redirected = jsonl(result.stdout)
    assert redirected["final_url"] == landing
    assert first["timings"]["dns_ms"] is not None
    assert first["timings"]["connect_ms"] is not None
    assert (redirected["timings"]["dns_ms"], redirected["timings"]["connect_ms"]) == (None, None)
    assert redirected["timings"]["ttfb_ms"] <= redirected["timings"]["total_ms"]


def test_a_name_is_resolved_and_timed(hops: LoopbackServer) -> None:
    url = hops.url("/end").replace("127.0.0.1", "localhost")
    timings = one("--timings", url=url)["timings"]
    assert isinstance(timings, dict)
    assert timings["dns_ms"] is not None


def test_a_two_hop_redirect_chain_is_recorded(hops: LoopbackServer) -> None:
    record = one("--redirects", url=hops.url("/hop/a"))
    assert record["redirects"] == [
        {"status": 301, "url": hops.url("/hop/a")},
        {"status": 302, "url": hops.url("/hop/b")},
    ]
    assert record["final_url"] == hops.url("/end")


def test_redirect_urls_never_show_a_password(hops: LoopbackServer) -> None:
    url = hops.url("/hop/a").replace("http://", "http://bob:hunter2@")
    record = one("--redirects", url=url)
    assert "hunter2" not in json.dumps(record["redirects"])  # (input is what the user gave)
    assert [hop["status"] for hop in record["redirects"]] == [301, 302]


def test_repeated_headers_are_joined_and_set_cookie_is_a_list(hops: LoopbackServer) -> None:
    headers = one("--response-headers", "X-Many,set-cookie,content-type", url=hops.url("/cookies"))[
        "headers"
    ]
    assert headers == {
        "x-many": "one, two",
        "set-cookie": ["a=1; Path=/", "b=2, c=3"],
        "content-type": "text/plain; charset=utf-8",
    }


def test_all_headers_and_names_in_lower_case(hops: LoopbackServer) -> None:
    headers = one("--response-headers", "all", url=hops.url("/end"))["headers"]
    assert isinstance(headers, dict)
    assert headers["content-type"] == "application/json; charset=utf-8"
    assert all(name == name.lower() for name in headers)


def test_a_header_that_is_not_text_is_escaped_not_dropped(
    raw_server: Callable[[dict[str, bytes]], RawServer],
) -> None:
    server = raw_server({"/x": raw_response(b"ok", (b"X-Name: caf\xe9",))})
    headers = one("--response-headers", "x-name", url=server.url("/x"))["headers"]
    assert headers == {"x-name": "caf\\xe9"}


def test_head_reports_content_length_and_no_body_size(hops: LoopbackServer) -> None:
    record = one("-X", "HEAD", "--response-headers", "content-length", url=hops.url("/end"))
    assert record["size"] is None
    assert int(record["headers"]["content-length"]) > 0


def test_naming_a_field_turns_it_on_and_csv_holds_it_as_json(hops: LoopbackServer) -> None:
    fields = "index,timings,headers,redirects"
    result = run_cli(
        "-q", "-f", "csv", "--fields", fields, stdin=f"{hops.url('/hop/b')}\n".encode()
    )
    (row,) = csv.DictReader(io.StringIO(result.stdout.decode(), newline=""))
    assert json.loads(row["redirects"]) == [{"status": 302, "url": hops.url("/hop/b")}]
    assert "content-type" in json.loads(row["headers"])
    assert json.loads(row["timings"])["total_ms"] > 0


def test_asked_fields_come_before_the_body_by_default(hops: LoopbackServer) -> None:
    record = one("--timings", "--redirects", url=hops.url("/end"))
    names = list(record)
    assert names[-3:] == ["timings", "redirects", "body"]


def test_none_of_them_unless_asked(hops: LoopbackServer) -> None:
    record = one(url=hops.url("/end"))
    assert not {"timings", "headers", "redirects"} & set(record)


@pytest.mark.parametrize(
    "args", [["--response-headers", "bad name"], ["--timings", "--fields", "index,ok"]]
)
def test_rich_record_misuse_is_a_usage_error(args: list[str]) -> None:
    assert run_cli(*args, stdin=b"").returncode == 2


# ---------------------------------------------------------------- SOCKS


class SocksServer:
    """pproxy's SOCKS5 server on 127.0.0.1, in a thread with its own asyncio loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.port = 0
        self.log: list[str] = []
        """pproxy's line per connection it carried."""

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            server = pproxy.Server("socks5://127.0.0.1:0")
            handler = self.loop.run_until_complete(
                server.start_server({"rserver": [], "verbose": self.log.append})
            )
            self.port = handler.sockets[0].getsockname()[1]
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert ready.wait(10)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture(scope="module")
def socks() -> Iterator[SocksServer]:
    server = SocksServer()
    yield server
    server.close()


@pytest.mark.parametrize("scheme", ["socks5", "socks5h"])
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_requests_go_through_a_socks_proxy(
    hops: LoopbackServer, socks: SocksServer, scheme: str, host: str
) -> None:
    url = hops.url("/end").replace("127.0.0.1", host)
    proxy = f"{scheme}://user:s3cret@127.0.0.1:{socks.port}"
    carried = len(socks.log)
    result = run_process("--retries", "0", "--proxy", proxy, stdin=f"{url}\n".encode())
    (record,) = jsonl(result.stdout)
    assert record["ok"] is True
    assert record["body"] == {"arrived": True}
    assert len(socks.log) > carried  # the proxy carried it
    assert any(str(hops.port) in line for line in socks.log[carried:])
    assert "s3cret" not in result.stderr


def test_all_proxy_is_used_and_no_proxy_bypasses_it(hops: LoopbackServer) -> None:
    url = f"{hops.url('/end')}\n".encode()
    dead = "socks5://user:s3cret@127.0.0.1:9"  # nothing listens: every request through it fails
    through = run_process("--retries", "0", stdin=url, env={"ALL_PROXY": dead})
    (record,) = jsonl(through.stdout)
    assert record["error"]["kind"] == "connect"
    assert "s3cret" not in through.stderr + json.dumps(record)
    bypassed = run_process("-q", stdin=url, env={"ALL_PROXY": dead, "NO_PROXY": "127.0.0.1"})
    assert jsonl(bypassed.stdout)[0]["ok"] is True


def test_a_socks_proxy_that_refuses_is_a_connect_record(socks: SocksServer) -> None:
    proxy = f"socks5://user:s3cret@127.0.0.1:{socks.port}"
    result = run_process("--retries", "0", "--proxy", proxy, stdin=b"http://127.0.0.1:9/closed\n")
    (record,) = jsonl(result.stdout)
    assert record["ok"] is False
    assert record["error"]["kind"] == "connect"
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "s3cret" not in result.stderr + json.dumps(record)


def test_url_credentials_beyond_latin1_are_sent_as_utf8(
    serve: Callable[[web.Application], LoopbackServer],
) -> None:
    seen: list[str] = []

    async def echo(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", echo)
    url = serve(app).url("/").replace("http://", "http://%C4%80:%E2%82%AC@")
    record = one(url=url)
    assert record["ok"] is True
    assert seen == ["Basic " + base64.b64encode("Ā:€".encode()).decode()]


def test_credentials_in_a_location_header_are_masked(
    raw_server: Callable[[dict[str, bytes]], RawServer],
) -> None:
    location = b"Location: http://user:s3cret@127.0.0.1:9/next"
    server = raw_server({"/r": raw_response(b"", (location,), status=b"302 Found")})
    record = one("--max-redirects", "0", "--response-headers", "location", url=server.url("/r"))
    assert record["headers"] == {"location": "http://user:****@127.0.0.1:9/next"}


def test_a_socks_proxy_that_rejects_the_credentials_is_a_connect_record() -> None:
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    port = 0

    def run() -> None:
        nonlocal port
        asyncio.set_event_loop(loop)
        server = pproxy.Server("socks5://127.0.0.1:0#alice:right")
        handler = loop.run_until_complete(
            server.start_server({"rserver": [], "verbose": lambda *a: None})
        )
        port = handler.sockets[0].getsockname()[1]
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        assert ready.wait(10)
        proxy = f"socks5://alice:wrong@127.0.0.1:{port}"
        result = run_process("--retries", "0", "--proxy", proxy, stdin=b"http://127.0.0.1:9/x\n")
        (record,) = jsonl(result.stdout)
        assert record["error"]["kind"] == "connect", record
        assert "wrong" not in result.stderr + json.dumps(record)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


@pytest.mark.parametrize(
    ("variable", "value", "shown"),
    [
        ("ALL_PROXY", "socks5://", "ALL_PROXY in the environment 'socks5://' has no host"),
        ("ALL_PROXY", "socks9://x:1", "ALL_PROXY in the environment 'socks9://x:1': use one of"),
        ("HTTPS_PROXY", "http://u:s3cret@/x", "HTTPS_PROXY in the environment 'http://u:****@/x'"),
    ],
)
def test_a_broken_proxy_variable_is_one_line_before_any_request(
    variable: str, value: str, shown: str
) -> None:
    result = run_process("-q", stdin=b"http://127.0.0.1:9/\n", env={variable: value})
    assert result.returncode == 2
    assert shown in result.stderr
    assert "s3cret" not in result.stderr


def test_no_proxy_takes_cidr_ranges(hops: LoopbackServer) -> None:
    env = {"ALL_PROXY": "socks5://127.0.0.1:9", "no_proxy": "localhost,127.0.0.0/8"}
    result = run_process("-q", stdin=f"{hops.url('/end')}\n".encode(), env=env)
    assert jsonl(result.stdout)[0]["ok"] is True


def test_no_proxy_takes_a_host_and_port_for_that_port_only(hops: LoopbackServer) -> None:
    url = hops.url("/end")
    port = url.split(":")[2].split("/")[0]
    env = {"ALL_PROXY": "socks5://127.0.0.1:9", "NO_PROXY": f"127.0.0.1:{port}"}
    result = run_process("-q", "--retries", "0", stdin=f"{url}\n".encode(), env=env)
    assert jsonl(result.stdout)[0]["ok"] is True
    env["NO_PROXY"] = f"127.0.0.1:{int(port) + 1}"  # another port: through the (dead) proxy
    result = run_process("-q", "--retries", "0", stdin=f"{url}\n".encode(), env=env)
    assert jsonl(result.stdout)[0]["error"]["kind"] == "connect"


def test_a_redirect_loop_keeps_its_chain(server: LoopbackServer) -> None:
    record = one("--redirects", "--max-redirects", "3", url=server.url("/redirect-loop"))
    assert record["error"]["kind"] == "too_many_redirects"
    assert record["error"]["message"] == "more than 3 redirects"
    # Three followed, and the fourth, refused:
    assert [hop["status"] for hop in record["redirects"]] == [302, 302, 302, 302]


@pytest.mark.parametrize("limit", ["1", "2"])
def test_max_redirects_n_follows_exactly_n(hops: LoopbackServer, limit: str) -> None:
    """/hop/a -> /hop/b -> /end is two redirects: --max-redirects 2 follows both (as curl
    --max-redirs 2 does), 1 follows one and refuses the second."""
    record = one("--redirects", "--max-redirects", limit, url=hops.url("/hop/a"))
    statuses = [hop["status"] for hop in record["redirects"]]
    if limit == "2":
        assert record["ok"] is True
        assert record["final_url"] == hops.url("/end")
        assert statuses == [301, 302]
    else:
        assert record["error"] == {"kind": "too_many_redirects", "message": "more than 1 redirects"}
        assert statuses == [301, 302]


@pytest.mark.parametrize("location", [(), (b"Location: ",)])
def test_a_3xx_without_a_location_is_the_answer_not_a_hop(
    raw_server: Callable[[dict[str, bytes]], RawServer], location: tuple[bytes, ...]
) -> None:
    server = raw_server({"/r": raw_response(b"", location, status=b"302 Found")})
    record = one("--redirects", "--max-redirects", "1", url=server.url("/r"))
    assert record["status"] == 302
    assert record["error"] is None
    assert record["redirects"] == []
