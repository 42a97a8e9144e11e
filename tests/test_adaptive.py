"""--limit auto: the controller finds a server's capacity, counted at the server."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

import pytest
from aiohttp import web
from capacity_server import Capacity
from conftest import LoopbackServer, jsonl, run_cli

from fetchmany.fetch.adaptive import DECREASE, AdaptiveLimit
from fetchmany.options import Adaptive


def run_auto(
    serve: Callable[..., LoopbackServer], capacity: Capacity, n: int, *args: str
) -> list[dict[str, object]]:
    url = serve(capacity.app()).url("/cap?id={}")
    ids = "".join(f"{i}\n" for i in range(n)).encode()
    result = run_cli("-q", "-t", url, "--limit", "auto", *args, stdin=ids)
    records = jsonl(result.stdout)
    assert len(records) == n
    return records


def test_a_small_capacity_is_found_with_few_overload_answers(
    serve: Callable[..., LoopbackServer],
) -> None:
    capacity = Capacity(12, delay=0.04)
    records = run_auto(serve, capacity, 800)
    assert all(r["ok"] for r in records)  # retries carry the few 503s
    assert capacity.rejected <= 0.10 * 800  # a fixed --limit 30 draws ~2.9 per request
    assert capacity.max_in_flight == 12  # it reached the capacity, not stayed below it


def test_ample_capacity_is_used_not_left_at_the_start(serve: Callable[..., LoopbackServer]) -> None:
    capacity = Capacity(1000, delay=0.04)
    run_auto(serve, capacity, 1500)
    assert capacity.rejected == 0
    assert capacity.max_in_flight >= 60  # far above the fixed default of 10


def test_the_ceiling_holds(serve: Callable[..., LoopbackServer]) -> None:
    capacity = Capacity(1000, delay=0.02)
    run_auto(serve, capacity, 600, "--limit", "auto:25")
    assert capacity.max_in_flight <= 25


def test_a_capacity_that_drops_is_followed(serve: Callable[..., LoopbackServer]) -> None:
    capacity = Capacity(40, delay=0.04, change_after=800, changed_to=10)
    records = run_auto(serve, capacity, 1600)
    assert all(r["ok"] for r in records)
    assert capacity.rejected <= 0.15 * 1600


@pytest.mark.parametrize(("text", "ceiling"), [("auto", 256), ("auto:40", 40), ("AUTO:7", 7)])
def test_limit_auto_parses(text: str, ceiling: int) -> None:
    assert Adaptive.parse(text.lower()) == Adaptive(ceiling)


@pytest.mark.parametrize("value", ["auto:0", "auto:x", "0", "many"])
def test_a_bad_limit_is_a_usage_error(value: str) -> None:
    result = run_cli("--limit", value, stdin=b"")
    assert result.returncode == 2
    assert "--limit" in result.stderr


async def test_slow_start_doubles_per_round_trip_until_an_overload() -> None:
    gate = AdaptiveLimit(ceiling=1000, start=10)
    for _ in range(10):
        await gate.acquire()
    for _ in range(10):
        gate.release(0.01, False, None)
    assert gate.current == 20
    for _ in range(20):
        await gate.acquire()
    gate.release(0.01, True, None)  # an overload: cut, and never above the others in flight
    assert gate.current == int(20 * DECREASE)
    # The same round trip: no second cut, but once the others in flight are fewer than
    # the limit, each rejected slot goes (the server is full with the others).
    for expected in (14, 14, 14, 14, 14, 13, 12):
        gate.release(0.01, True, None)
        assert gate.current == expected


async def test_after_an_overload_growth_is_one_per_round_trip() -> None:
    gate = AdaptiveLimit(ceiling=1000, start=11)
    for _ in range(11):
        await gate.acquire()
    gate.release(0.01, True, None)
    limit = gate.limit
    assert limit == 11 * DECREASE
    for _ in range(7):  # about one round trip of answers at this limit
        gate.release(0.01, False, None)
    assert limit + 0.8 < gate.limit < limit + 1.01


async def test_retry_after_holds_the_limit() -> None:
    gate = AdaptiveLimit(ceiling=1000, start=10)
    await gate.acquire()
    gate.release(0.01, False, 30.0)
    for _ in range(5):
        await gate.acquire()
        gate.release(0.01, False, None)
    assert gate.current == 10


async def test_queueing_latency_stops_the_growth() -> None:
    gate = AdaptiveLimit(ceiling=1000, start=10)
    for _ in range(5):
        await gate.acquire()
        gate.release(0.01, False, None)
    grown = gate.current
    for _ in range(5):
        await gate.acquire()
        gate.release(0.2, False, None)  # 20x the baseline: requests wait at the server
    assert gate.current <= grown


async def test_waiters_start_as_the_limit_allows() -> None:
    gate = AdaptiveLimit(ceiling=2, start=2)
    await gate.acquire()
    await gate.acquire()
    third = asyncio.ensure_future(gate.acquire())
    await asyncio.sleep(0)
    assert not third.done()
    gate.release(0.01, False, None)
    await third
    assert gate.in_flight == 2


def test_a_retry_after_of_a_day_holds_the_limit_no_longer_than_max_backoff(
    serve: Callable[..., LoopbackServer],
) -> None:
    """Found by a hostile tester: one 503 with Retry-After: 86400 froze the limit for the
    rest of the run. The hold is capped by --max-backoff, as the retry's wait is."""
    answered = 0

    async def handler(request: web.Request) -> web.Response:
        nonlocal answered
        answered += 1
        if answered == 1:
            return web.Response(status=503, headers={"Retry-After": "86400"})
        await asyncio.sleep(0.02)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/{id}", handler)
    url = serve(app).url("/{}")
    ids = "".join(f"{i}\n" for i in range(600)).encode()
    args = ("-t", url, "--limit", "auto", "--max-backoff", "0.2", "-o", "/dev/null")
    result = run_cli(*args, stdin=ids)
    assert result.returncode == 0, result.stderr
    settled = re.search(r"limit auto settled at: 127\.0\.0\.1:\d+ (\d+)", result.stderr)
    assert settled is not None, result.stderr
    assert int(settled[1]) > 10  # it grew past its start once the hold ended
