"""The library against a real aiohttp server on 127.0.0.1: order, limits, redirects, decoding."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterable, Iterable, Iterator

import pytest
from conftest import LoopbackServer

from fetchmany import FetchOptions, Record, fetch_many


async def collect(
    items: list[str] | AsyncIterable[str], options: FetchOptions, template: str | None = None
) -> list[Record]:
    return [r async for r in fetch_many(items, options, template=template)]


async def test_order_is_kept_under_random_latency(server: LoopbackServer) -> None:
    ids = [str(i) for i in range(300)]
    records = await collect(ids, FetchOptions(limit=20), template=server.url("/item?id={}"))
    assert [r.index for r in records] == list(range(300))
    assert [r.body["id"] for r in records] == ids
    assert all(r.ok and r.status == 200 and r.attempts == 1 for r in records)


async def test_unordered_still_gives_every_item_one_record(server: LoopbackServer) -> None:
    ids = [str(i) for i in range(200)]
    records = await collect(
        ids, FetchOptions(limit=20, ordered=False), template=server.url("/item?id={}&max_ms=30")
    )
    assert sorted(r.index for r in records) == list(range(200))
    assert {r.body["id"] for r in records} == set(ids)


async def test_concurrency_reaches_the_limit_and_never_exceeds_it(server: LoopbackServer) -> None:
    server.reset(gate_size=8)
    ids = [str(i) for i in range(40)]
    records = await collect(
        ids, FetchOptions(limit=8, timeout=20), template=server.url("/gated?id={}")
    )
    assert all(r.ok for r in records), [r.error for r in records if not r.ok][:3]
    assert server.state.max_in_flight == 8


async def pulled_by_the_first_record(
    items: Iterable[str] | AsyncIterable[str], pulled: list[int]
) -> int:
    """How many of ``items`` the library had taken (``pulled`` counts them) when the first
    record came, at ``--limit 2 --window 4``; every item must then get its record."""
    at_first: int | None = None
    seen = 0
    async for record in fetch_many(items, FetchOptions(limit=2, window=4)):
        if at_first is None:
            assert record.index == 0
            at_first = len(pulled)
        seen += 1
    assert seen == len(pulled)
    assert at_first is not None
    return at_first


async def test_async_generator_input_is_consumed_lazily(server: LoopbackServer) -> None:
    pulled: list[int] = []

    async def ids() -> AsyncIterable[str]:
        for i in range(50):
            pulled.append(i)
            yield server.url(f"/item?id={i}")

    # the window (4), one in the reader's hand, the batch just handed out (up to the
    # window): not the whole input (50)
    assert await pulled_by_the_first_record(ids(), pulled) <= 4 + 1 + 4
    assert len(pulled) == 50


async def test_a_plain_generator_is_consumed_a_few_dozen_at_a_time(
    server: LoopbackServer,
) -> None:
    """A plain iterable is taken in chunks (the engine then needs no await an item), but
    small ones, as the window needs them: a huge generator is never read far ahead."""
    from fetchmany.input.sources import LIBRARY_CHUNK

    pulled: list[int] = []

    def ids() -> Iterator[str]:
        for i in range(1000):
            pulled.append(i)
            yield server.url(f"/item?id={i}")

    # the chunk in hand, and the next one
    assert await pulled_by_the_first_record(ids(), pulled) <= 2 * LIBRARY_CHUNK
    assert len(pulled) == 1000


async def test_a_slow_plain_generator_is_fetched_as_its_values_come(
    server: LoopbackServer,
) -> None:
    """A plain generator that takes a while for each value (a paging API behind it)
    holds the loop while it does: its first value is fetched, and its record given,
    long before it has given a chunk's worth, as each value did before chunks."""
    import time

    from fetchmany.input.sources import LIBRARY_CHUNK

    pulled: list[int] = []

    def ids() -> Iterator[str]:
        for i in range(LIBRARY_CHUNK + 2):
            if i:
                time.sleep(0.05)  # the source's slowness, not synchronisation
            pulled.append(i)
            yield server.url(f"/item?id={i}")

    assert await pulled_by_the_first_record(ids(), pulled) < LIBRARY_CHUNK // 2


async def test_a_plain_generator_that_raises_gives_every_value_before_it_a_record(
    server: LoopbackServer,
) -> None:
    """The values taken before the generator raised are items: each gets its record
    (in a chunk not yet full when it raised too), then the error is raised."""

    def ids() -> Iterator[str]:
        for i in range(10):
            yield server.url(f"/item?id={i}")
        raise RuntimeError("the source broke")

    records: list[Record] = []

    async def take() -> None:
        async for record in fetch_many(ids(), FetchOptions(limit=2)):
            records.append(record)

    with pytest.raises(RuntimeError, match="the source broke"):
        await take()
    assert [r.index for r in records] == list(range(10))
    assert all(r.ok for r in records)


async def test_invalid_items_get_records_in_place(server: LoopbackServer) -> None:
    items = [server.url("/item?id=a"), "not a url", "", server.url("/item?id=b")]
    records = await collect(items, FetchOptions())
    assert [r.index for r in records] == [0, 1, 2, 3]
    assert [r.ok for r in records] == [True, False, False, True]
    assert records[1].error is not None
    assert records[1].error.kind == "invalid_url"


async def test_redirects_are_followed_up_to_the_limit(server: LoopbackServer) -> None:
    ok, capped, loop = await collect(
        [server.url("/redirect/4"), server.url("/redirect/5"), server.url("/redirect-loop")],
        FetchOptions(max_redirects=4),
    )
    assert ok.ok
    assert ok.final_url == server.url("/redirect/0")
    assert ok.body == {"arrived": True}
    assert capped.error is not None
    assert capped.error.kind == "too_many_redirects"
    assert loop.error is not None
    assert loop.error.kind == "too_many_redirects"


async def test_max_redirects_zero_records_the_redirect_itself(server: LoopbackServer) -> None:
    (record,) = await collect([server.url("/redirect/2")], FetchOptions(max_redirects=0))
    assert record.status == 302
    assert record.ok  # a 3xx is a response below 400
    assert record.final_url == server.url("/redirect/2")


async def test_charset_and_broken_json_bodies(server: LoopbackServer) -> None:
    latin1, broken, missing = await collect(
        [server.url(p) for p in ("/latin1", "/not-json", "/status/404")], FetchOptions()
    )
    assert latin1.body == "café déjà vu"
    assert latin1.ok
    assert broken.body == "{not json"
    assert broken.error is not None
    assert broken.error.kind == "invalid_json"
    assert broken.status == 200
    assert not broken.ok
    assert missing.status == 404
    assert not missing.ok
    assert missing.error is not None
    assert (missing.error.kind, missing.error.message) == ("http", "404 Not Found")


async def test_headers_method_and_user_agent_reach_the_server(server: LoopbackServer) -> None:
    options = FetchOptions(method="POST", headers=(("X-Api-Key", "k1"),), user_agent="ua/9")
    (record,) = await collect([server.url("/echo")], options)
    assert record.body["method"] == "POST"
    assert record.body["headers"]["X-Api-Key"] == "k1"
    assert record.body["headers"]["User-Agent"] == "ua/9"


async def test_connection_refused_is_a_record(server: LoopbackServer) -> None:
    (record,) = await collect(["http://127.0.0.1:1/"], FetchOptions())
    assert record.error is not None
    assert record.error.kind == "connect"
    assert record.status is None


async def test_keep_alive_reuses_connections(server: LoopbackServer) -> None:
    ids = [str(i) for i in range(60)]
    records = await collect(ids, FetchOptions(limit=3), template=server.url("/item?id={}"))
    assert all(r.ok for r in records)
    assert server.state.requests == 60
    assert len(server.state.peers) <= 3  # one pool of at most `limit` connections, reused


async def test_elapsed_excludes_waiting_for_a_slot(server: LoopbackServer) -> None:
    # 10 requests of ~100 ms through one slot: the last waits ~900 ms for its turn,
    # but its own request still takes ~100 ms.
    urls = [server.url(f"/sleep?ms=100&id={i}") for i in range(10)]
    records = await collect(urls, FetchOptions(limit=1))
    assert all(r.ok for r in records)
    assert max(r.elapsed_ms or 0 for r in records) < 600


async def test_a_library_value_no_text_can_be_made_of_is_its_record(
    server: LoopbackServer,
) -> None:
    """Found by a hostile tester: one such value ended the run with an exception and the
    values after it got no record."""
    items: list[object] = [
        server.url("/item?id=a"),
        10**5000,  # beyond int-to-text conversion
        {("a",): "x", "id": "2"},  # a key JSON cannot hold
        server.url("/item?id=b"),
    ]
    records = [r async for r in fetch_many(items, template=server.url("/item?id={id}"))]  # type: ignore[arg-type]
    assert [r.index for r in records] == [0, 1, 2, 3]
    assert [r.ok for r in records] == [True, False, False, True]
    assert all(r.error.kind == "invalid_url" for r in records[1:3] if r.error)


def test_many_retries_with_a_tiny_backoff_stay_a_number() -> None:
    from fetchmany.fetch.retry import RetryPolicy

    policy = RetryPolicy(retries=1100, backoff=1e-300, max_backoff=1e-300)
    wait = policy.delay(1100, "GET", 503, None)
    assert wait is not None
    assert 0 <= wait <= 1e-300


LEAVE_EARLY = r'''
import asyncio, socketserver, sys, threading, time
from contextlib import aclosing
from fetchmany import FetchOptions, fetch_many

how, then = sys.argv[1], sys.argv[2]
lock = threading.Lock()
connections = 0
all_closed = threading.Event()


class Answer(socketserver.StreamRequestHandler):
    """HTTP/1.1 keep-alive answers after a short wait, so that requests are in flight
    when the loop is left; counts open connections, to see the client close its session."""

    def handle(self):
        global connections
        with lock:
            connections += 1
            all_closed.clear()
        try:
            while True:
                head = b""
                while not head.endswith(b"\r\n\r\n"):
                    line = self.rfile.readline()
                    if not line:
                        return
                    head += line
                time.sleep(0.02)
                self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        except ConnectionError:
            pass
        finally:
            with lock:
                connections -= 1
                if connections == 0:
                    all_closed.set()


socketserver.ThreadingTCPServer.daemon_threads = True
server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Answer)
threading.Thread(target=server.serve_forever, daemon=True).start()
url = f"http://127.0.0.1:{server.server_address[1]}/"


def records():
    return fetch_many((f"{url}?id={i}" for i in range(200)), FetchOptions(limit=8))


async def main():
    if how == "break":
        async for record in records():
            if record.index == 2:
                break
    elif how == "raise":
        try:
            async for record in records():
                raise ValueError(record.index)
        except ValueError:
            pass
    elif how == "cancel":
        first = asyncio.Event()

        async def consume():
            async for record in records():
                first.set()

        task = asyncio.create_task(consume())
        await first.wait()
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
    elif how == "aclosing":
        async with aclosing(records()) as each:
            async for record in each:
                break
    if then == "go on":  # the program goes on: the session is closed meanwhile
        assert await asyncio.to_thread(all_closed.wait, 20), "session left open"


asyncio.run(main())
assert all_closed.wait(20), "session left open"
print("left early, session closed")
'''


@pytest.mark.parametrize("then", ["return", "go on"])
@pytest.mark.parametrize("how", ["break", "raise", "cancel", "aclosing"])
def test_leaving_the_loop_early_is_silent_and_closes_the_session(how: str, then: str) -> None:
    """A user's ``break``, an exception in the loop body, a cancelled task: no warning or
    traceback at exit ("async generator ignored GeneratorExit", "aclose(): asynchronous
    generator is already running"), and the session's connections are closed, whether
    the program ends right there or goes on."""
    result = subprocess.run(
        [sys.executable, "-W", "always::ResourceWarning", "-c", LEAVE_EARLY, how, then],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.stderr.decode() == ""
    assert result.stdout == b"left early, session closed\n"
    assert result.returncode == 0
