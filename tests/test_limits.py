"""The caps of a run: in flight, per host, rate; waits that give up when the run stops."""

from __future__ import annotations

import asyncio
import resource
import time

import pytest
from conftest import LoopbackServer, in_a_child, run_process
from test_adaptive import Clock

from fetchmany.fetch.adaptive import Lesson, Overload
from fetchmany.fetch.limits import (
    _KEPT_HOSTS,
    Abandoned,
    Limits,
    RateLimiter,
    TooFewFiles,
    fit_open_file_limit,
    join_marks,
)
from fetchmany.fetch.quota import Announced
from fetchmany.options import Adaptive


async def test_the_global_cap_holds_and_frees() -> None:
    limits = Limits(2)
    await limits.acquire("a:80")
    await limits.acquire("b:80")
    third = asyncio.create_task(limits.acquire("c:80"))
    await asyncio.sleep(0)
    assert not third.done()
    limits.release("a:80")
    await asyncio.wait_for(third, 5)


class CountingPool:
    def __init__(self) -> None:
        self.grown = 0

    def grow(self) -> None:
        self.grown += 1


async def test_a_busy_host_parks_the_item_and_tells_the_pool() -> None:
    limits = Limits(10, per_host=1)
    pool = CountingPool()
    limits.attach(pool)
    await limits.acquire("a:80")
    waiting = asyncio.create_task(limits.acquire("a:80"))
    await asyncio.sleep(0)
    assert pool.grown == 1  # the worker waits holding no global slot: the pool grows
    other = asyncio.create_task(limits.acquire("b:80"))
    await asyncio.wait_for(other, 5)  # another host is not held up
    limits.release("a:80")
    await asyncio.wait_for(waiting, 5)


async def test_a_backoff_tells_the_pool_and_a_stop_abandons_it() -> None:
    limits = Limits(1)
    pool = CountingPool()
    limits.attach(pool)
    backing_off = asyncio.create_task(limits.backoff(3600))
    await asyncio.sleep(0)
    assert pool.grown == 1
    limits.stop()
    with pytest.raises(Abandoned):
        await asyncio.wait_for(backing_off, 5)
    with pytest.raises(Abandoned):
        await limits.acquire("a:80")  # nothing starts once stopping


async def test_the_rate_spaces_starts() -> None:
    limits = Limits(10, rate=50)
    started = time.monotonic()
    for _ in range(6):
        await limits.acquire("a:80")
        limits.release("a:80")
    assert time.monotonic() - started >= 5 / 50 * 0.9  # five intervals between six starts


def test_the_rate_spaces_starts_from_now_after_idle_time() -> None:
    """After a stall (slow stdin, one slow request holding the only slot), starts are
    spaced from now: a limiter that kept its old schedule let every start it had
    "missed" go at once (6 at --rate 10/s after 0.6 s)."""
    clock = Clock()
    rate = RateLimiter(10, clock=clock)
    assert [rate.reserve() for _ in range(3)] == pytest.approx([0.0, 0.1, 0.2])
    clock.now += 5.0  # nothing asked for 5 s
    assert [rate.reserve() for _ in range(3)] == pytest.approx([0.0, 0.1, 0.2])
    clock.now += 0.05  # asked again before the starts reserved have gone
    assert rate.reserve() == pytest.approx(0.25)


def starts_within(arrivals: list[float], seconds: float) -> int:
    """The most requests that arrived within any ``seconds`` (server-side times)."""
    times = sorted(arrivals)
    return max(
        sum(1 for later in times[i:] if later < first + seconds) for i, first in enumerate(times)
    )


def test_a_stall_is_not_followed_by_a_burst_at_the_server(server: LoopbackServer) -> None:
    """--rate 10/s, --limit 1, and a first request that takes 1.5 s: the 24 after it
    arrive a tenth of a second apart, not the fifteen "missed" starts at once. Counted
    at the server, with room for a loaded machine: at most 9 in any half second where
    5 are due (a request up to 0.3 s late); the burst put 15 there."""
    urls = [server.url("/sleep?ms=1500")]
    urls += [server.url(f"/item?id={i}&max_ms=0") for i in range(24)]
    result = run_process(
        "--rate", "10/s", "--limit", "1", "-q", "--body", "none", stdin="\n".join(urls).encode()
    )
    assert result.returncode == 0, result.stderr
    after = [at for at, path in server.state.arrivals if path.startswith("/item")]
    assert len(after) == 24
    assert starts_within(after, 0.5) <= 9


def test_the_soft_open_file_limit_is_raised_for_the_concurrency() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        assert fit_open_file_limit(100) == 100
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == 256  # enough already
        assert fit_open_file_limit(500) == 500
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == 532  # 500 sockets and spare
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    # A hard limit too low to raise to is capped instead: the tests below run that in a
    # child process, since a hard limit cannot be raised again once lowered.


def _fits(
    soft: int,
    hard: int,
    limit: int,
    per_request: int = 1,
    extra: int = 0,
    *,
    gives: int,
    raised: int,
) -> None:
    """In a child process under ``ulimit -Sn soft -Hn hard``, ``fit_open_file_limit``
    gives the concurrency ``gives`` and leaves the soft limit at ``raised``."""

    def fit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        got = fit_open_file_limit(limit, per_request, extra)
        assert (got, resource.getrlimit(resource.RLIMIT_NOFILE)[0]) == (gives, raised)

    in_a_child(fit)


def test_a_hard_limit_too_low_caps_the_concurrency_to_what_fits() -> None:
    """The soft limit is raised toward the hard one, and the concurrency capped to the
    descriptors left after the 32 spare ones and ``extra`` (a -P parent's pipes), each
    request holding ``per_request`` (a socket, and a body file with --save-dir)."""
    _fits(soft=50, hard=200, limit=500, gives=168, raised=200)
    _fits(soft=50, hard=200, limit=500, extra=10, gives=158, raised=200)
    _fits(soft=50, hard=200, limit=500, per_request=2, gives=84, raised=200)
    _fits(soft=50, hard=200, limit=500, per_request=2, extra=9, gives=79, raised=200)
    _fits(soft=200, hard=200, limit=100, per_request=2, gives=84, raised=200)
    # 84 requests of two and 32 spare need exactly the 200 there are.
    _fits(soft=200, hard=200, limit=84, per_request=2, gives=84, raised=200)
    # Raised only as far as needed (10 + 32 + 5), or not at all when enough already.
    _fits(soft=20, hard=200, limit=10, extra=5, gives=10, raised=47)
    _fits(soft=50, hard=200, limit=10, extra=5, gives=10, raised=50)


def test_one_request_that_just_fits_is_run() -> None:
    """At exactly the spare descriptors and one request's, one request runs."""
    _fits(soft=33, hard=33, limit=50, gives=1, raised=33)
    _fits(soft=36, hard=36, limit=50, per_request=2, extra=2, gives=1, raised=36)


def test_too_few_files_for_one_request_is_refused_with_what_is_needed() -> None:
    def refuse(files: int, per_request: int, extra: int, needed: int) -> None:
        def fit() -> None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (files, files))
            with pytest.raises(TooFewFiles) as refused:
                fit_open_file_limit(50, per_request, extra)
            assert str(refused.value) == (
                f"the open-file limit (ulimit -n) is {files}; fetchmany needs at least "
                f"{needed} here: raise it (ulimit -n 1024)"
            )

        in_a_child(fit)

    refuse(32, 1, 0, 33)
    refuse(35, 2, 2, 36)
    refuse(12, 3, 1, 36)


async def test_a_retry_waits_for_the_next_slot_only_and_is_counted() -> None:
    """After one 503 under --limit auto the retry waited ~3 s behind every item queued
    meanwhile while the ordered bar froze. Slots now go to the oldest item first, and a
    retry waiting for one is counted for the bar."""
    limits = Limits(1, per_host=1)
    await limits.acquire("a:80", order=50)
    log: list[int] = []

    async def attempt(order: int, attempt: int) -> None:
        await limits.acquire("a:80", order=order, attempt=attempt)
        log.append(order)
        limits.release("a:80")

    later = [asyncio.create_task(attempt(order, 1)) for order in range(100, 110)]
    await asyncio.sleep(0)
    retry = asyncio.create_task(attempt(7, 2))
    await asyncio.sleep(0)
    assert limits.retries_waiting == 1
    limits.release("a:80")
    await asyncio.wait_for(asyncio.gather(retry, *later), 5)
    assert log[0] == 7
    assert limits.retries_waiting == 0


def test_only_a_global_cap_is_plain() -> None:
    """``plain`` lets the client take a free slot with no coroutine and nothing else: it
    must be False as soon as anything else holds a request back, or a per-host cap, a
    rate or --limit auto would be skipped."""
    assert Limits(4).plain is True
    assert Limits(4, per_host=2).plain is False
    assert Limits(4, rate=5.0).plain is False
    assert Limits(4, adaptive=Adaptive(ceiling=4)).plain is False
    assert Limits(4, per_host=2, rate=5.0, adaptive=Adaptive(ceiling=4)).plain is False


async def test_a_first_attempt_waiting_for_a_slot_is_not_a_retry() -> None:
    """``attempt`` defaults to a first one: the bar's count of retries waiting stays 0."""
    limits = Limits(1)
    await limits.acquire("a:80")
    waiting = asyncio.create_task(limits.acquire("a:80", order=1))
    await asyncio.sleep(0)
    assert not waiting.done()
    assert limits.retries_waiting == 0
    limits.release("a:80")
    await asyncio.wait_for(waiting, 5)


async def test_auto_keeps_at_most_so_many_hosts_and_never_one_in_use() -> None:
    """--limit auto over millions of hosts keeps a controller for the most recently used
    ``_KEPT_HOSTS`` (memory stays flat), but never drops one with a request in flight,
    whose answer must still reach it: the oldest in use stops the trimming."""
    limits = Limits(100, adaptive=Adaptive(ceiling=40))
    first = await limits.acquire("busy:80", 0, 1)
    limits.release("busy:80", first, Lesson(0.01))  # its limit grows past one
    busy = await limits.acquire("busy:80", 1, 1)
    assert not limits.hosts["busy:80"].locked()  # in flight, and room for more
    for n in range(_KEPT_HOSTS + 10):
        host = f"h{n}:80"
        ticket = await limits.acquire(host, 2 + n, 1)
        limits.release(host, ticket, Lesson(0.01))
    assert "busy:80" in limits.hosts  # kept while in use, and those after it with it
    assert len(limits.hosts) == _KEPT_HOSTS + 11
    limits.release("busy:80", busy, Lesson(0.01))
    assert limits.settled()["busy:80"].limit == 3  # its answers reached its own limit
    ticket = await limits.acquire("new:80", 0, 1)  # now the oldest go, to the bound
    limits.release("new:80", ticket, Lesson(0.01))
    assert len(limits.hosts) == _KEPT_HOSTS
    assert list(limits.hosts)[-2:] == [f"h{_KEPT_HOSTS + 9}:80", "new:80"]
    assert "busy:80" not in limits.hosts


async def test_auto_paces_a_spent_quota_and_tells_the_pool() -> None:
    """--limit auto through Limits: a start that need not wait parks nothing; after an
    answer saying the quota is spent until a reset, the next start waits for it, parked
    so that the pool keeps its concurrency with another worker."""
    limits = Limits(100, adaptive=Adaptive(ceiling=40))
    pool = CountingPool()
    limits.attach(pool)
    first = await limits.acquire("a:80", 0, 1)
    assert pool.grown == 0
    spent = (Announced(quota=100, window=60, remaining=0, reset=0.5),)
    limits.release("a:80", first, Lesson(0.01, announced=spent))
    began = time.monotonic()
    second = await asyncio.wait_for(limits.acquire("a:80", 1, 1), 10)
    assert time.monotonic() - began >= 0.4  # the reset, less the clock's rounding
    assert pool.grown == 1
    limits.release("a:80", second, Lesson(0.01))


async def test_auto_waits_no_longer_than_the_longest_wait_it_is_given() -> None:
    """A quota said to be spent for a day holds a start only as long as ``longest_wait``
    (--max-backoff), passed down to each host's controller."""
    limits = Limits(100, adaptive=Adaptive(ceiling=40), longest_wait=0.2)
    first = await limits.acquire("a:80", 0, 1)
    spent = (Announced(quota=100, window=86400, remaining=0, reset=86400),)
    limits.release("a:80", first, Lesson(0.01, announced=spent))
    second = await asyncio.wait_for(limits.acquire("a:80", 1, 1), 10)  # not the default 60
    limits.release("a:80", second, Lesson(0.01))


async def test_limits_show_the_fixed_limit_and_no_mark() -> None:
    assert Limits(7).current_limit() == 7
    assert Limits(7).mark() == ""


async def test_no_free_slot_is_taken_once_the_run_stops() -> None:
    """The plain path's take_free: after stop() no attempt starts, though slots are free;
    acquire abandons the item instead."""
    limits = Limits(4)
    assert limits.take_free()
    limits.release_free()
    limits.stop()
    assert not limits.take_free()
    with pytest.raises(Abandoned):
        await asyncio.wait_for(limits.acquire(""), 5)


async def test_auto_limits_keep_one_limit_per_host_and_say_what_holds_them() -> None:
    """--limit auto through Limits, in process: a host's first request goes alone and holds
    back no other host; each host's controller learns from its own answers; the display
    is told what holds the limits, each mark once."""
    limits = Limits(100, adaptive=Adaptive(ceiling=40))
    first = await limits.acquire("a.test:80", 0, 1)
    waiting = asyncio.create_task(limits.acquire("a.test:80", 1, 1))
    await asyncio.sleep(0)  # one turn of the loop: a free slot would have been taken
    assert not waiting.done()
    other = await asyncio.wait_for(limits.acquire("b.test:80", 2, 1), 5)
    assert limits.current_limit() == 2
    assert limits.mark() == "probe"
    limits.release("a.test:80", first, Lesson(0.01))
    second = await asyncio.wait_for(waiting, 5)
    limits.release("a.test:80", second, Lesson(0.01))
    limits.release("b.test:80", other, Lesson(None, Overload.REJECTED))
    settled = limits.settled()
    assert (settled["a.test:80"].limit, settled["a.test:80"].overloads) == (3, 0)
    assert (settled["b.test:80"].limit, settled["b.test:80"].overloads) == (1, 1)
    assert settled["b.test:80"].reason == "overload"
    assert limits.current_limit() == 4
    assert limits.mark() == "cut, probe"


def test_marks_of_many_hosts_are_said_once_the_most_telling_first() -> None:
    assert join_marks(["probe", "cut, held", "", "held", "spaced"]) == "held, cut, spaced, probe"
    assert join_marks([]) == ""


async def test_per_host_caps_each_hosts_auto_limit() -> None:
    """--per-host N with --limit auto: the probe that follows a host's first answer may
    not take the host past N."""
    limits = Limits(100, per_host=2, adaptive=Adaptive(ceiling=40))
    first = await limits.acquire("a.test:80", 0, 1)
    limits.release("a.test:80", first, Lesson(0.01))
    held = [await asyncio.wait_for(limits.acquire("a.test:80", i, 1), 5) for i in (1, 2)]
    third = asyncio.create_task(limits.acquire("a.test:80", 3, 1))
    await asyncio.sleep(0)  # one turn of the loop: a free slot would have been taken
    assert not third.done()
    assert limits.settled()["a.test:80"].limit == 2
    limits.release("a.test:80", held[0], Lesson(0.01))
    await asyncio.wait_for(third, 5)


async def test_a_hosts_slots_are_let_go_once_nobody_holds_or_waits_for_them() -> None:
    """--per-host keeps an entry per host only while a request holds or waits for one of
    its slots (memory stays flat over millions of hosts): a wait given up (Ctrl-C), a
    global slot not had (the run stopped), and a release each let go of theirs."""
    limits = Limits(1, per_host=1)
    first = await limits.acquire("a:80")
    given_up = asyncio.create_task(limits.acquire("a:80"))  # waits for a's slot
    behind = asyncio.create_task(limits.acquire("b:80"))  # has b's slot, waits for the global
    await asyncio.sleep(0)
    assert sorted(limits._hosts) == ["a:80", "b:80"]
    given_up.cancel()
    with pytest.raises(asyncio.CancelledError):
        await given_up
    limits.release("a:80", first)
    await asyncio.wait_for(behind, 5)
    assert sorted(limits._hosts) == ["b:80"]  # a's holder and waiter are both gone
    stopped = asyncio.create_task(limits.acquire("c:80"))  # c's slot, then the global
    await asyncio.sleep(0)
    assert sorted(limits._hosts) == ["b:80", "c:80"]
    limits.stop()
    limits.release("b:80")  # the slot c waited for: taken, and given back unused
    with pytest.raises(Abandoned):
        await asyncio.wait_for(stopped, 5)
    assert limits._hosts == {}


async def test_a_wait_given_up_just_as_its_slot_came_lets_the_host_go() -> None:
    """Ctrl-C lands as the holder's release hands the waiter its slot: the slot is passed
    on, and the host's entry goes with its last user."""
    limits = Limits(1, per_host=1)
    first = await limits.acquire("a:80")
    waiter = asyncio.create_task(limits.acquire("a:80"))
    await asyncio.sleep(0)
    limits.release("a:80", first)  # a's slot is handed to the waiter...
    waiter.cancel()  # ...which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert limits._hosts == {}
    await asyncio.wait_for(limits.acquire("a:80"), 5)  # and the slot is free


@pytest.mark.parametrize(("per_host", "auto"), [(None, False), (1, False), (None, True)])
async def test_a_free_slot_goes_to_the_oldest_item_waiting(
    per_host: int | None, auto: bool
) -> None:
    """Items wait in index order, whoever asked first: the global slot, a host's, or an
    auto limit's (the host's first request goes alone; the rest then go by index)."""
    limits = Limits(
        1 if not auto else 100, per_host=per_host, adaptive=Adaptive() if auto else None
    )
    await limits.acquire("a:80", order=0)
    served: list[int] = []

    async def item(order: int) -> None:
        await limits.acquire("a:80", order=order)
        served.append(order)
        limits.release("a:80")

    waiting = [asyncio.create_task(item(order)) for order in (9, 4, 6)]
    await asyncio.sleep(0)
    limits.release("a:80")
    await asyncio.wait_for(asyncio.gather(*waiting), 5)
    assert served == [4, 6, 9]


@pytest.mark.parametrize("adaptive", [None, Adaptive(ceiling=40)])
async def test_only_a_retry_waiting_for_a_slot_is_counted(adaptive: Adaptive | None) -> None:
    """The bar's "retries waiting": a first attempt waiting for a slot is not one, a
    second is; under --limit auto too (the host's first request goes alone)."""
    limits = Limits(1 if adaptive is None else 100, adaptive=adaptive)
    held = await limits.acquire("a:80", 0, 1)
    first = asyncio.create_task(limits.acquire("a:80", 1, 1))
    await asyncio.sleep(0)
    assert not first.done()
    assert limits.retries_waiting == 0
    retry = asyncio.create_task(limits.acquire("a:80", 2, 2))
    await asyncio.sleep(0)
    assert limits.retries_waiting == 1
    third = asyncio.create_task(limits.acquire("a:80", 3, 3))
    await asyncio.sleep(0)
    assert limits.retries_waiting == 2
    limits.release("a:80", held, None if adaptive is None else Lesson(0.01))
    for waiting in (first, retry, third):
        limits.release("a:80", await asyncio.wait_for(waiting, 5))
    assert limits.retries_waiting == 0


async def test_only_a_backoff_that_waits_parks_the_item() -> None:
    """A retry with no wait (or none left) holds its worker; one that waits, however
    briefly, lets the pool grow so the run keeps its concurrency."""
    limits = Limits(1)
    pool = CountingPool()
    limits.attach(pool)
    await limits.backoff(0)
    assert pool.grown == 0
    await limits.backoff(0.001)
    assert pool.grown == 1


async def test_an_auto_limit_released_without_a_lesson_learns_nothing_wrong() -> None:
    """The library may give a slot back with no lesson: an answer with no latency, not
    an overload, and no crash."""
    limits = Limits(100, adaptive=Adaptive(ceiling=40))
    ticket = await limits.acquire("a.test:80", 0, 1)
    limits.release("a.test:80", ticket)
    assert limits.settled()["a.test:80"].overloads == 0
    assert limits.hosts["a.test:80"].in_flight == 0
