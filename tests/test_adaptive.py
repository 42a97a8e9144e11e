"""--limit auto: the controller against model servers (a simulated clock), then the
command against loopback servers of each shape, counted at the server."""

from __future__ import annotations

import asyncio
import heapq
import random
import re
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import pytest
from aiohttp import web
from conftest import LoopbackServer, jsonl, run_cli, run_process
from shapes_server import Shape

from fetchmany.fetch.adaptive import (
    DECREASE,
    MARK_FOR,
    MIN_WINDOW,
    PLATEAU,
    PROBE_LIMIT,
    PROBE_SAMPLES,
    QUIET,
    RECENT,
    REPROBE_EVERY,
    SLACK,
    TOLERANCE,
    AdaptiveLimit,
    Lesson,
    Overload,
    Settled,
)
from fetchmany.fetch.quota import HEADROOM, Announced
from fetchmany.options import Adaptive

# ---------------------------------------------------------------- the model servers


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


Answer = tuple[float, bool]
"""(latency, overloaded) of one request."""


class Server(Protocol):
    def answer(self, at: float) -> Answer: ...


@dataclass
class Queueing:
    """``capacity`` servers of ``service`` seconds each; the rest wait in line."""

    capacity: int
    service: float = 0.04
    free_at: list[float] = field(default_factory=list)

    def answer(self, at: float) -> Answer:
        if len(self.free_at) < self.capacity:
            heapq.heappush(self.free_at, at)
        start = max(at, heapq.heappop(self.free_at))
        heapq.heappush(self.free_at, start + self.service)
        return start + self.service - at, False


@dataclass
class Rejecting:
    """Serves ``capacity(at)`` at once, ``service`` seconds each; rejects the rest at once."""

    capacity: Callable[[float], int]
    service: float = 0.04
    busy_until: list[float] = field(default_factory=list)

    def answer(self, at: float) -> Answer:
        self.busy_until = [t for t in self.busy_until if t > at]
        if len(self.busy_until) >= self.capacity(at):
            return 0.001, True
        self.busy_until.append(at + self.service)
        return self.service, False


@dataclass
class Jittery:
    """No capacity limit; each answer after a delay drawn evenly from ``low..high``."""

    low: float = 0.0
    high: float = 0.05
    rng: random.Random = field(default_factory=lambda: random.Random(7))

    def answer(self, at: float) -> Answer:
        return self.rng.uniform(self.low, self.high), False


@dataclass
class Run:
    limits: list[int] = field(default_factory=list)
    """The limit in force after each answer."""
    latencies: list[float] = field(default_factory=list)
    overloads: int = 0
    most_in_flight: int = 0


class Simulation:
    """Keeps ``gate`` full (up to ``demand`` in flight) and answers requests in the order
    ``server`` finishes them, the clock jumping to each answer; what is in flight stays
    between calls."""

    def __init__(self, gate: AdaptiveLimit, clock: Clock, server: Server) -> None:
        self.gate, self.clock, self.server = gate, clock, server
        self.in_flight: list[tuple[float, int, float, int, bool]] = []
        self.order = 0
        self.overload = Overload.REJECTED
        """What an overloaded answer of this server is taken for."""

    async def run(self, answers: int, demand: int = 10_000) -> Run:
        gate, clock = self.gate, self.clock
        run = Run()
        while len(run.limits) < answers:
            while not gate.locked() and len(self.in_flight) < demand:
                await gate.acquire(self.order)
                ticket, number, wait = gate.pace(clock.now)
                gate.started()
                at = clock.now + wait  # it goes out after its pace (in model time)
                latency, overloaded = self.server.answer(at)
                entry = (at + latency, self.order, latency, ticket * 2**20 + number, overloaded)
                heapq.heappush(self.in_flight, entry)
                self.order += 1
            run.most_in_flight = max(run.most_in_flight, len(self.in_flight))
            self._answer(run)
        return run

    def drain(self) -> None:
        """Answer everything in flight, starting nothing new."""
        while self.in_flight:
            self._answer(Run())

    def _answer(self, run: Run) -> None:
        done, _, latency, packed, overloaded = heapq.heappop(self.in_flight)
        self.clock.now = max(self.clock.now, done)
        ticket, number = divmod(packed, 2**20)
        overload = self.overload if overloaded else None
        self.gate.release(ticket, number, Lesson(latency, overload))
        run.overloads += overloaded
        if not overloaded:
            run.latencies.append(latency)
        run.limits.append(self.gate.current)


async def simulate(
    gate: AdaptiveLimit,
    clock: Clock,
    server: Server,
    answers: int,
    demand: int = 10_000,
) -> Run:
    """``answers`` answers of a new simulation; what is left in flight is answered."""
    simulation = Simulation(gate, clock, server)
    run = await simulation.run(answers, demand)
    simulation.drain()
    return run


def controller(ceiling: int = 256, start: int = 10) -> tuple[AdaptiveLimit, Clock]:
    clock = Clock()
    return AdaptiveLimit(ceiling, start, clock=clock), clock


# ---------------------------------------------------------------- the controller


async def begin(gate: AdaptiveLimit, order: int, clock: Clock) -> tuple[int, int]:
    """One request through the gate, as ``Limits.acquire`` takes it; its pace ignored."""
    await gate.acquire(order)
    ticket, number, _ = gate.pace(clock.now)
    gate.started()
    return ticket, number


def end(
    gate: AdaptiveLimit,
    started: tuple[int, int],
    latency: float | None = 0.04,
    overload: Overload | None = None,
    retry_after: float | None = None,
) -> None:
    gate.release(*started, Lesson(latency, overload, retry_after))


async def test_the_first_request_goes_alone_then_a_probe_at_low_concurrency() -> None:
    """The first answer may announce a quota, and the baseline is measured where no
    real server queues: one request, then PROBE_LIMIT at a time."""
    gate, clock = controller()
    first = await begin(gate, 0, clock)
    assert gate.locked()
    end(gate, first)
    assert gate.current == PROBE_LIMIT
    run = await simulate(gate, clock, Queueing(100), PROBE_SAMPLES)
    assert max(run.limits[: PROBE_SAMPLES - 2]) == PROBE_LIMIT
    assert gate.current == 10  # the probe done, the start limit


async def test_a_queueing_server_is_kept_near_its_capacity() -> None:
    """The shape that flooded the old controller (70-91 in flight against 12 served):
    the limit stays within half again of the capacity, and answers stay fast."""
    gate, clock = controller()
    run = await simulate(gate, clock, Queueing(12), 3000)
    later = run.limits[1000:]
    assert 12 <= statistics.median(later) <= 18
    assert max(later) <= 24
    assert statistics.median(run.latencies[1000:]) <= 2 * 0.04
    assert gate.settled().reason == "latency"


@pytest.mark.parametrize("capacity", [12, 40])
async def test_slow_start_ends_at_the_first_cut(capacity: int) -> None:
    """Until the first cut the limit grows by half each window; after it, it searches
    back toward the level of the last cut by halving the distance (adaptive.py), so a
    queue found once is not flooded again at once. A slow start that never ended went
    from 14 straight back to 21 after a cut at 22, and was cut there again and again.
    (This server rejects nothing: every drop is a latency cut, or a probe's pin to
    PROBE_LIMIT, which is no cut.)"""
    gate, clock = controller()
    simulation = Simulation(gate, clock, Queueing(capacity))
    level, cut_at, searches = gate.current, None, 0
    for _ in range(3000):
        (now,) = (await simulation.run(1)).limits
        if PROBE_LIMIT < now < level:
            cut_at = level
        elif now > level > PROBE_LIMIT and cut_at is not None and level < cut_at - 1:
            # Halfway to just under the cut's level (+1: the limit is a float shown whole).
            assert now <= level + 1 + (cut_at - 1 - level) / 2, (level, now, cut_at)
            searches += 1
        level = now
    assert searches >= 5


async def test_the_baseline_cannot_drift_up_into_a_queue() -> None:
    gate, clock = controller()
    await simulate(gate, clock, Queueing(12), 5000)
    baseline = gate.settled().baseline_ms
    assert baseline == pytest.approx(40, abs=1)


async def test_jitter_is_not_read_as_queueing() -> None:
    """Latency even over 0-50 ms whatever the load: the old controller read one slow
    answer as a queue and sat at 2-3. Medians of windows see no queue: it grows."""
    gate, clock = controller()
    run = await simulate(gate, clock, Jittery(), 4000)
    assert max(run.limits) == 256
    assert statistics.median(run.limits[2000:]) >= 200


async def test_a_rejecting_server_is_found_with_few_overload_answers() -> None:
    gate, clock = controller()
    run = await simulate(gate, clock, Rejecting(lambda at: 12), 3000)
    assert run.overloads <= 0.05 * 3000
    assert 8 <= statistics.median(run.limits[1000:]) <= 13
    assert gate.settled().reason == "overload"


async def test_a_capacity_that_steps_down_and_up_is_followed() -> None:
    gate, clock = controller()
    start = clock.now
    simulation = Simulation(gate, clock, Rejecting(lambda at: 10 if 2 <= at - start < 4 else 40))
    limits: list[tuple[float, int]] = []
    overloads = answers = 0
    while clock.now - start < 7:
        step = await simulation.run(20)
        limits.append((clock.now - start, step.limits[-1]))
        overloads += step.overloads
        answers += 20
    assert overloads <= 0.1 * answers
    assert max(limit for at, limit in limits if 3 <= at < 4) <= 12  # down within 1 s
    assert min(limit for at, limit in limits if 6 <= at < 7) >= 28  # back up within 2 s


async def test_an_overload_cuts_once_per_round_trip_and_frees_no_slot() -> None:
    gate, clock = controller(start=20)
    await simulate(gate, clock, Queueing(100), PROBE_SAMPLES + 1)  # past the probe
    started = [await begin(gate, n, clock) for n in range(gate.current)]
    limit = gate.current
    clock.now += 0.001
    end(gate, started.pop(), None, Overload.REJECTED)
    assert gate.current == int(limit * DECREASE)
    # The same round trip: no second cut; but once fewer others are in flight than the
    # limit, each rejected slot goes (the server is full with the others).
    while len(started) > gate.current:
        end(gate, started.pop(), None, Overload.REJECTED)
        assert gate.current == int(limit * DECREASE)
    end(gate, started.pop(), None, Overload.REJECTED)
    assert gate.current == len(started)


async def test_a_retry_after_holds_the_limit_then_stops_probing_past_what_worked() -> None:
    """A Retry-After holds the limit (no growth) for that long, then the limit returns to
    what worked before and does not probe past it for QUIET times as long."""
    gate, clock = controller()
    server = Rejecting(lambda at: 12)
    await simulate(gate, clock, server, 500)
    started = [await begin(gate, n, clock) for n in range(gate.current)]
    clock.now += 0.01
    end(gate, started.pop(), None, Overload.REJECTED, retry_after=2.0)  # 429, Retry-After: 2
    assert gate.mark() == "held"
    for each in started:
        end(gate, each)
    run = await simulate(gate, clock, server, 400)
    assert clock.now - 1000 < 500 + 2 * QUIET  # still within the quiet time
    assert run.overloads == 0


async def test_a_retry_after_at_one_request_at_a_time_pauses_the_host() -> None:
    """Rejected and told to wait when only one request at a time is left: the host's new
    starts wait that long too (the bar said "held" while requests kept going out)."""
    gate, clock = controller(start=1)
    await simulate(gate, clock, Queueing(100), PROBE_SAMPLES + 1)
    first = await begin(gate, 0, clock)
    end(gate, first, None, Overload.REJECTED, retry_after=2.0)
    await gate.acquire(1)
    _, _, wait = gate.pace(clock.now)
    assert wait == pytest.approx(2.0, abs=0.02)


@dataclass
class RateLimited:
    """``rate`` requests a second whatever the concurrency, 429 beyond, saying nothing
    of its quota (no headers): one request at a time can already be too many."""

    rate: float
    service: float = 0.02
    allowed_at: float = 0.0

    def answer(self, at: float) -> Answer:
        if at < self.allowed_at:
            return 0.001, True
        self.allowed_at = max(at, self.allowed_at) + 1 / self.rate
        return self.service, False


async def test_a_rate_limit_not_announced_spaces_the_starts() -> None:
    """20 a second with no headers, 20 ms answers: at one request at a time the old
    controller still drew 61% 429s. Rejected with nothing else in flight, it now spaces
    its starts, doubling the gap at each cut and closing it as answers come through."""
    gate, clock = controller()
    run = await simulate(gate, clock, RateLimited(20), 600)
    assert run.overloads <= 0.25 * 600
    later = await simulate(gate, clock, RateLimited(20), 300)
    assert later.overloads <= 0.2 * 300
    assert gate.settled().gap_ms is not None
    assert "between starts" in gate.settled().why()
    assert gate.mark(clock.now + 60.0) == "spaced"  # past any cut: the gap is what holds it


@dataclass
class Slowing:
    """No capacity limit; answers take ``before`` seconds until ``at``, then ``after``:
    the host got slower, whatever the load."""

    at: float
    before: float = 0.015
    after: float = 0.045

    def answer(self, at: float) -> Answer:
        return (self.before if at < self.at else self.after), False


async def test_a_host_that_got_slower_is_measured_again_not_starved() -> None:
    """3x slower for every request from some point on: the stale baseline cut the limit
    to 1 and kept it there until the next probe, 15-45 s later. Latency as high at the
    probe's concurrency as under load now measures the baseline again at once."""
    gate, clock = controller()
    server = Slowing(at=clock.now + 1.0)
    await simulate(gate, clock, server, 600)
    run = await simulate(gate, clock, server, 3000)
    assert statistics.median(run.limits[1500:]) >= 100


@dataclass
class Flaky:
    """No capacity limit; a share of connections fail whatever the load."""

    failing: float
    rng: random.Random = field(default_factory=lambda: random.Random(3))

    def answer(self, at: float) -> Answer:
        if self.rng.random() < self.failing:
            return 0.005, True
        return 0.04, False


async def test_failures_that_do_not_grow_with_load_are_noise() -> None:
    """20% of connections reset whatever the load: each cut the limit, and the run took
    3x as long as --limit 10. Failures at no higher a rate than measured alone are the
    network's, and cut nothing; a rejection by status always counts."""
    gate, clock = controller()
    simulation = Simulation(gate, clock, Flaky(0.2))
    simulation.overload = Overload.FAILED
    run = await simulation.run(3000)
    assert statistics.median(run.limits[1500:]) >= 40


async def test_an_idle_limit_does_not_grow() -> None:
    """Three requests in flight prove nothing about a limit of 200."""
    gate, clock = controller()
    run = await simulate(gate, clock, Jittery(), 3000, demand=3)
    assert max(run.limits) <= 15


async def test_the_ceiling_holds() -> None:
    gate, clock = controller(ceiling=25)
    run = await simulate(gate, clock, Jittery(), 2000)
    assert max(run.limits) == 25
    assert run.most_in_flight <= 25


async def test_the_baseline_is_measured_again_on_the_clock_grid() -> None:
    gate, clock = controller()
    simulation = Simulation(gate, clock, Jittery(0.04, 0.04))
    run = await simulation.run(1000)
    assert run.limits[-1] > PROBE_LIMIT
    clock.now = (clock.now // REPROBE_EVERY + 2) * REPROBE_EVERY  # past the next grid point
    run = await simulation.run(1500)
    assert PROBE_LIMIT in run.limits  # pinned low for a moment...
    assert run.limits[-1] > 100  # ...then back where it was


async def test_a_share_probes_at_its_share() -> None:
    """Under -P 3, three workers probing at 3 would put 9 on the host at once."""
    clock = Clock()
    gate = AdaptiveLimit(256, 4, share=1 / 3, clock=clock)
    end(gate, await begin(gate, 0, clock))
    assert gate.current == 1


def test_settled_says_why() -> None:
    gate, _ = controller()
    assert gate.settled().why() == "no signal yet"


@pytest.mark.parametrize(
    ("settled", "why"),
    [
        (Settled(3, 9, "overload"), "overload answers"),
        (Settled(1, 9, "overload", gap_ms=250.0), "overload answers, 250 ms between starts"),
        (
            Settled(30, 0, "latency", baseline_ms=40.0, latency_ms=52.5),
            "latency 52.5 ms, 40 ms alone",
        ),
        # No window judged yet: nothing to quote, so no "latency None ms".
        (Settled(30, 0, "latency", baseline_ms=40.0), "no signal yet"),
        (Settled(8, 0, "quota", quota_rate=12.345), "paced by a quota at 12.3/s"),
        (Settled(8, 0, "quota"), "paced by a quota"),
        (Settled(256, 0, "ceiling"), "the ceiling"),
        (Settled(90, 0, "open", latency_ms=41.0), "no overload or queue seen"),
        (Settled(10, 0, "start"), "no signal yet"),
    ],
)
def test_each_reason_reads_as_the_summary_says_it(settled: Settled, why: str) -> None:
    assert settled.why() == why


@pytest.mark.parametrize(
    ("one", "other", "both"),
    [
        # Each figure known to one worker only is kept as that worker's.
        (
            Settled(4, 1, "quota", quota_rate=10.0, gap_ms=None),
            Settled(5, 0, "open", baseline_ms=30.0, latency_ms=35.0, gap_ms=200.0),
            Settled(9, 1, "quota", 30.0, 35.0, quota_rate=10.0, gap_ms=200.0),
        ),
        (
            Settled(5, 0, "open", baseline_ms=30.0, latency_ms=35.0, gap_ms=200.0),
            Settled(4, 1, "quota", quota_rate=10.0, gap_ms=None),
            Settled(9, 1, "quota", 30.0, 35.0, quota_rate=10.0, gap_ms=200.0),
        ),
        # Known to both: the host alone is as fast as the faster measure said, loaded
        # as slow as the slower one; quota rates add up (each paced its share); the
        # wider gap between starts is the one the host needed.
        (
            Settled(1, 3, "overload", 42.0, 50.0, quota_rate=6.0, gap_ms=100.0),
            Settled(1, 4, "overload", 41.0, 60.0, quota_rate=4.5, gap_ms=400.0),
            Settled(2, 7, "overload", 41.0, 60.0, quota_rate=10.5, gap_ms=400.0),
        ),
        (
            Settled(1, 4, "overload", 41.0, 60.0, quota_rate=4.5, gap_ms=400.0),
            Settled(1, 3, "overload", 42.0, 50.0, quota_rate=6.0, gap_ms=100.0),
            Settled(2, 7, "overload", 41.0, 60.0, quota_rate=10.5, gap_ms=400.0),
        ),
    ],
)
def test_two_workers_figures_join_as_one_hosts(one: Settled, other: Settled, both: Settled) -> None:
    assert one.plus(other) == both


async def test_the_mark_says_what_holds_the_limit_until_the_moment_it_stops() -> None:
    """The bar's word for the host, each for exactly as long as it holds: a Retry-After
    for its length, a cut or a quota's pacing for MARK_FOR after, a gap between starts
    while there is one; nothing when the limit runs free. The moment asked about is the
    one given, not the clock's."""
    gate, clock = controller(start=20)
    await simulate(gate, clock, Queueing(100), PROBE_SAMPLES + 1)  # past the probe
    assert gate.mark() == ""
    started = [await begin(gate, n, clock) for n in range(4)]
    clock.now += 0.01
    held = clock.now
    end(gate, started.pop(), None, Overload.REJECTED, retry_after=2.0)
    assert gate.mark() == "held"
    assert gate.mark(held + 1.999) == "held"
    assert gate.mark(held + 2.0) == ""  # the hold is over, and the cut at ``held`` too
    clock.now = held + 5.0
    cut = clock.now
    end(gate, started.pop(), None, Overload.REJECTED)  # others in flight: no gap
    for each in started:
        end(gate, each)
    assert gate.mark(cut + MARK_FOR - 0.001) == "cut"
    assert gate.mark(cut + MARK_FOR) == ""
    gate.quota.paced_until = paced = cut + 10.0  # a request waited for a quota until then
    assert gate.mark(paced + MARK_FOR - 0.001) == "quota"
    assert gate.mark(paced + MARK_FOR) == ""


async def test_a_slot_given_back_is_free_and_was_never_in_flight() -> None:
    """The run stopped, or the global cap was not had, after the host's slot was taken:
    the slot is free again and nothing is counted as having gone out."""
    gate, clock = controller(start=1)
    await gate.acquire(0)
    assert gate.locked()
    gate.give_back()
    assert gate.in_flight == 0
    first = await asyncio.wait_for(begin(gate, 1, clock), 1.0)  # not left waiting
    end(gate, first)
    assert gate.in_flight == 0


# ---------------------------------------------------------------- one guarantee at a time


@dataclass
class Steady:
    """No capacity limit: every answer after ``latency`` seconds."""

    latency: float = 0.04

    def answer(self, at: float) -> Answer:
        return self.latency, False


async def windows(simulation: Simulation, count: int, most: int = 5000) -> list[int]:
    """The limit after each of the next ``count`` changes of it (each a window judged,
    or a probe begun or ended), answering as the simulation goes."""
    gate, seen = simulation.gate, []
    level = gate.current
    for _ in range(most):
        await simulation.run(1)
        if gate.current != level:
            level = gate.current
            seen.append(level)
            if len(seen) == count:
                return seen
    raise AssertionError(f"only {seen} in {most} answers")


async def test_slow_start_grows_by_half_and_settles_on_the_recent_median() -> None:
    """Until a cut, each window's limit is SLOW_START times the last (whole requests);
    the settled limit is the median of the recent windows' limits, not the moment's; it
    is "open" once grown, and the ceiling is the reason only while that median is at it.
    Figures are in ms to 0.1."""
    gate, clock = controller(ceiling=40, start=10)
    simulation = Simulation(gate, clock, Steady(latency=0.04123))
    assert await windows(simulation, 2) == [PROBE_LIMIT, 10]  # the probe, then the start
    assert gate.settled() == Settled(10, 0, "start", baseline_ms=41.2)
    grown, settled = [], []
    for _ in range(4):
        grown += await windows(simulation, 1)
        settled.append(gate.settled())
    assert grown == [15, 22, 33, 40]  # 10 x 1.5, 15 x 1.5 = 22.5 ... to the ceiling
    assert [s.limit for s in settled] == [15, 22, 22, 33]  # medians of 1, 2, 3, 4 windows
    # Grown with nothing holding it: "no overload or queue seen", not "no signal yet".
    assert [s.reason for s in settled] == ["open"] * 4
    assert settled[-1] == Settled(33, 0, "open", baseline_ms=41.2, latency_ms=41.2)
    await simulation.run(10 * 40)  # more windows at the ceiling: their median
    assert gate.settled() == Settled(40, 0, "ceiling", baseline_ms=41.2, latency_ms=41.2)


async def alone(gate: AdaptiveLimit, clock: Clock, overload: Overload | None = None) -> float:
    """One request with nothing else in flight, started after its pace and answered
    (at once if an ``overload``, else in 40 ms); the pace it waited."""
    await gate.acquire(0)
    ticket, number, wait = gate.pace(clock.now)
    gate.started()
    clock.now += wait + (0.001 if overload else 0.04)
    end(gate, (ticket, number), 0.04, overload)
    return wait


async def test_rejected_alone_the_starts_are_spaced_by_a_gap_that_doubles_and_closes() -> None:
    """Rejected alone at a limit of one, the host's starts are spaced by GAP_MIN, doubled
    at a rejection once the gap has been tried on GAP_TRIED starts (a spent quota's run of
    rejections is one signal), and closed by GAP_CLOSE at each good window until under
    GAP_MIN, when it is gone. Rejected alone above one, the limit is cut to one, no gap."""
    gate, clock = controller(start=2)
    for _ in range(1 + PROBE_SAMPLES):
        await alone(gate, clock)
    assert gate.current == 2
    await alone(gate, clock, overload=Overload.REJECTED)
    assert gate.settled() == Settled(1, 1, "overload", baseline_ms=40.0)  # cut to one, no gap
    gaps = []
    for _ in range(1 + 4 * 4):
        await alone(gate, clock, overload=Overload.REJECTED)
        gaps.append(gate.settled().gap_ms)
    assert gaps == [10.0, 10.0, 10.0, 10.0, 20.0, 20.0, 20.0, 20.0, 40.0] + [40.0] * 3 + [
        80.0
    ] * 4 + [160.0]
    assert gate.settled().overloads == 1 + 1 + 4 * 4
    assert gate.current == 1
    # The new gap spaces the starts paced after it: 160 ms from one start to the next.
    assert await alone(gate, clock) == pytest.approx(0.08 - 0.001)
    assert await alone(gate, clock) == pytest.approx(0.16 - 0.04)
    closing, answers = [160.0], 2
    while closing[-1] is not None and answers < 100:
        await alone(gate, clock)
        answers += 1
        if gate.settled().gap_ms != closing[-1]:
            closing.append(gate.settled().gap_ms)
    assert answers == 8 * MIN_WINDOW  # closed at each window of good answers
    assert closing[1:] == [112.0, 78.4, 54.9, 38.4, 26.9, 18.8, 13.2, None]  # 9.2 < GAP_MIN
    assert await alone(gate, clock) == 0.0


@dataclass
class Quickening:
    """No capacity limit; each answer 20 us quicker than the last, so that each window's
    median latency is its own and says when a window was judged; the next ``rejecting``
    requests are rejected at once."""

    latency: float = 0.04
    rejecting: int = 0
    slow: int = 0
    """The next ``slow`` answers take ten times as long (a queue, as a window reads it)."""

    def answer(self, at: float) -> Answer:
        if self.rejecting:
            self.rejecting -= 1
            return 0.001, True
        if self.slow:
            self.slow -= 1
            return 10 * self.latency, False
        self.latency -= 0.00002
        return self.latency, False


async def judged(simulation: Simulation, count: int) -> list[int]:
    """The limit after each of the next ``count`` windows judged (a Quickening server)."""
    gate, limits = simulation.gate, []
    latency = gate.settled().latency_ms
    for _ in range(100 * count):
        await simulation.run(1)
        if gate.settled().latency_ms != latency:
            latency = gate.settled().latency_ms
            limits.append(gate.current)
            if len(limits) == count:
                return limits
    raise AssertionError(f"only {limits}")


async def test_after_a_cut_the_search_halves_the_distance_then_holds_then_probes() -> None:
    """BIC's search after a cut from 33: halfway to just under 33 each window (by one at
    least), PLATEAU windows run at 32, then past it by one, then by half the distance past."""
    gate, clock = controller(start=10)
    server = Quickening()
    simulation = Simulation(gate, clock, server)
    assert await judged(simulation, 3) == [15, 22, 33]  # slow start
    await simulation.run(1)  # the raise to 33 filled
    server.rejecting = 1
    while not gate.overloads:
        await simulation.run(1)  # a rejection with the other 32 in flight
    assert gate.current == 23  # 33 x DECREASE
    limits = await judged(simulation, 15)
    # 23.1 + 4.45 = 27.55, + 2.225, + 1.11, + 1 (at least), then 32 = 33 - 1 (not 32.9)
    assert limits == [27, 29, 30, 31, 32] + [32] * (PLATEAU - 1) + [33, 34, 35, 36, 37, 39, 43]
    # The level settled at: the median of the last RECENT windows' limits, not of all.
    assert gate.settled().limit == sorted(limits[-RECENT:])[RECENT // 2] == 35
    server.rejecting = 1
    while gate.overloads < 2:
        await simulation.run(1)  # cut at 43: the next search holds PLATEAU windows again
    assert gate.current == 30
    limits = await judged(simulation, 10)
    assert limits == [36, 39, 40, 41, 42] + [42] * (PLATEAU - 1) + [43, 44]


async def test_failures_cut_only_above_a_tenth_and_twice_the_share_seen_alone() -> None:
    """Timeouts and failed connections while probing are counted, not acted on: they
    are the share a flaky network fails alone. After, they cut the limit once their
    recent share (smoothed over some fifty answers) passes the larger of a tenth and
    twice that share plus 5%: with 1 of 13 failing alone, the twelfth in a row cuts."""
    gate, clock = controller(start=10)
    await alone(gate, clock, Overload.FAILED)  # alone, then the probe
    for _ in range(PROBE_SAMPLES):
        await alone(gate, clock)
    assert gate.settled() == Settled(10, 0, "start", baseline_ms=40.0)
    for _ in range(11):  # 1 - 0.98 ** 11 = 0.199 <= 2 / 13 + 0.05
        await alone(gate, clock, Overload.FAILED)
    assert (gate.current, gate.overloads) == (10, 0)
    await alone(gate, clock, Overload.FAILED)  # 0.215: the host's, not the network's
    assert (gate.current, gate.overloads) == (1, 1)  # cut, to the none others in flight
    gate, clock = controller(start=10)
    for _ in range(1 + PROBE_SAMPLES):
        await alone(gate, clock)
    for _ in range(5):  # 0.096: none alone, and a tenth is tolerated
        await alone(gate, clock, Overload.FAILED)
    assert gate.overloads == 0
    await alone(gate, clock, Overload.FAILED)  # 0.114
    assert gate.overloads == 1


async def probed(
    gate: AdaptiveLimit,
    clock: Clock,
    latencies: list[float],
    done: float | None = None,
    first: float = 0.04,
) -> None:
    """The first request alone (answered in ``first`` seconds), then the probe's
    answers, ``gate.current`` at a time, with these latencies (as many as end the
    probe), the last at ``done``."""
    end(gate, await begin(gate, 0, clock), first)
    pending = list(latencies)
    while pending:
        batch = [await begin(gate, n, clock) for n in range(min(gate.current, len(pending)))]
        for started in batch:
            clock.now += 0.001
            if done is not None and len(pending) == 1:
                clock.now = done
            end(gate, started, pending.pop(0))


async def judge(
    gate: AdaptiveLimit,
    clock: Clock,
    latencies: list[float],
    at: float | None = None,
    at_once: int = 1000,
) -> None:
    """The answers a raise lets in at once (left out of the window), then one window of
    answers with these latencies; ``at_once`` of them in flight together, all answered
    ``at`` if given."""
    for answers in ([0.04] * (gate.current - 1), list(latencies)):
        while answers:
            batch = [await begin(gate, n, clock) for n in range(min(at_once, len(answers)))]
            for started in batch:
                clock.now = clock.now + 0.001 if at is None else at
                end(gate, started, answers.pop(0))


BASELINE = [0.028, 0.030, 0.032, 0.034, 0.036, 0.038, 0.042, 0.044, 0.046, 0.048, 0.050, 0.052]
"""Twelve answers alone: median 40 ms (the mean of the middle two), interquartile range
14 ms (the 10th less the 4th)."""


@pytest.mark.parametrize(
    ("window", "settled"),
    [
        # Under the band: no queue, and slow start grows the limit by half.
        (
            [0.060, 0.061, 0.062, 0.063, 0.065, 0.066, 0.067, 0.068],
            Settled(12, 0, "open", baseline_ms=40.0, latency_ms=64.0),
        ),
        # Over it: cut to 8 x 52 / 66 = 6.3, in proportion to target over median.
        (
            [0.062, 0.063, 0.064, 0.065, 0.067, 0.068, 0.069, 0.070],
            Settled(6, 0, "latency", baseline_ms=40.0, latency_ms=66.0),
        ),
    ],
)
async def test_a_window_is_a_queue_only_past_the_tolerance_and_the_noise_of_both_medians(
    window: list[float], settled: Settled
) -> None:
    """A window's median is a queue past TOLERANCE x the baseline + SLACK (52 ms here) by
    more than Z standard errors of the difference of the two medians, each 0.93 x the
    spread alone / sqrt(its count): 2 x 0.93 x 14 ms x sqrt(1.25^2 / 12 + 1 / 8) = 13.2
    ms, so 65.2 ms. Then the limit is cut toward the level that would meet the target."""
    gate, clock = controller(start=8)
    await probed(gate, clock, BASELINE)
    assert gate.settled() == Settled(8, 0, "start", baseline_ms=40.0)
    await judge(gate, clock, window)
    assert gate.settled() == settled


async def test_a_window_is_the_limits_answers_in_slow_start_then_half_of_them() -> None:
    """Growing on half a round trip would grow again before the first's queue showed: in
    slow start a window is the limit's answers, after the first cut half of them (at
    least MIN_WINDOW). Its latency is the median: the middle answer of an odd count."""
    gate, clock = controller(start=27)
    await probed(gate, clock, [0.04] * PROBE_SAMPLES)
    for started in [await begin(gate, n, clock) for n in range(26)]:
        end(gate, started)  # the raise's burst, left out
    window = [await begin(gate, n, clock) for n in range(27)]
    for started in window[:-1]:
        end(gate, started, 0.072)
    assert gate.settled().latency_ms is None  # 26 answers of a limit of 27: not yet
    end(gate, window[-1], 0.072)
    # 27 x 52 / 72 = 19.5
    assert gate.settled() == Settled(19, 0, "latency", baseline_ms=40.0, latency_ms=72.0)
    for started in [await begin(gate, n, clock) for n in range(18)]:
        end(gate, started)
    window = [await begin(gate, n, clock) for n in range(9)]  # 19 // 2
    latencies = [0.049, 0.041, 0.048, 0.042, 0.047, 0.043, 0.046, 0.044, 0.045]
    for started, latency in zip(window[:-1], latencies, strict=False):
        end(gate, started, latency)
    assert gate.settled().latency_ms == 72.0  # 8 answers: not yet
    end(gate, window[-1], latencies[-1])
    # The search back toward the cut's level: 19.5 + (26 - 19.5) / 2 = 22.75.
    assert gate.settled() == Settled(22, 0, "latency", baseline_ms=40.0, latency_ms=45.0)


@pytest.mark.parametrize(
    ("done", "grid"),
    [(1000.5, 1020.0), (1005.0, 1020.0), (1008.0, 1050.0)],
)
async def test_the_baseline_is_measured_again_at_the_first_grid_point_half_a_period_on(
    done: float, grid: float
) -> None:
    """-P workers probe together on a REPROBE_EVERY grid of the monotonic clock, never
    less than half a period after the last probe: a probe done at 1005 (15 s before the
    grid point 1020) probes again at 1020; one done at 1008 skips to 1050."""
    gate, clock = controller(start=8)
    await probed(gate, clock, [0.04] * PROBE_SAMPLES, done=done)
    await judge(gate, clock, [0.04] * 8, at=grid - 0.001)
    assert (gate.current, gate.mark(grid - 0.001)) == (12, "")  # a window judged; grown
    await judge(gate, clock, [0.04] * 12, at=grid)
    assert (gate.current, gate.mark(grid)) == (PROBE_LIMIT, "probe")


async def test_the_probe_ends_at_its_samples_or_a_slow_servers_round_after_probe_time() -> None:
    """The baseline is PROBE_SAMPLES answers; a slow server's probe ends sooner, at the
    first moment it has a round of answers (as many as the probe's limit) and PROBE_TIME
    has passed since it began."""
    gate, clock = controller(start=8)
    await probed(gate, clock, [0.04] * (PROBE_SAMPLES - 1))
    assert gate.current == PROBE_LIMIT
    end(gate, await begin(gate, 0, clock))  # the twelfth
    assert gate.current == 8
    gate, clock = controller(start=8)
    clock.now = 1001.0
    end(gate, await begin(gate, 0, clock))  # the probe begins
    started = [await begin(gate, n, clock) for n in range(PROBE_LIMIT)]
    clock.now = 1001.5  # PROBE_TIME later
    for each, latency in zip(started[:-1], [0.5, 0.3], strict=True):
        end(gate, each, latency)
    assert gate.current == PROBE_LIMIT  # two answers: not a round
    end(gate, started[-1], 0.4)
    assert gate.settled() == Settled(8, 0, "start", baseline_ms=400.0)


async def verdicts(simulation: Simulation, latencies: list[float]) -> list[str]:
    """What each next window is judged at these latencies (a Quickening server; each
    latency another, so that each window's median is its own): ``cut``, ``ok``, or
    ``probe`` when the window started a probe instead (then run until it ends)."""
    gate, server = simulation.gate, simulation.server
    assert isinstance(server, Quickening)
    said = []
    for latency in latencies:
        server.latency = latency
        before, judged = (gate.current, gate.settled().latency_ms), None
        while judged is None:
            await simulation.run(1)
            if gate.current == PROBE_LIMIT < before[0]:
                judged = "probe"
            elif gate.settled().latency_ms != before[1]:
                judged = "cut" if gate.current < before[0] else "ok"
        said.append(judged)
        if judged == "probe":
            while gate.current == PROBE_LIMIT:
                await simulation.run(1)
    return said


async def test_three_latency_cuts_in_a_row_measure_the_baseline_again() -> None:
    """Latency that stays high whatever the limit says the host got slower, not busier:
    after STALE_AFTER latency cuts in a row (a good window between starts the count
    again), the next window is a probe; and the count starts again after it."""
    gate, clock = controller(start=40)
    simulation = Simulation(gate, clock, Quickening())
    await simulation.run(1 + PROBE_SAMPLES)
    said = await verdicts(simulation, [0.060, 0.040, 0.061, 0.062, 0.063, 0.064])
    assert said == ["cut", "ok", "cut", "cut", "cut", "probe"]
    assert gate.mark() == "cut"  # the last cut is still shown (MARK_FOR)
    said = await verdicts(simulation, [0.090, 0.091, 0.092, 0.093])
    assert said == ["cut", "cut", "cut", "probe"]


TARGET = TOLERANCE * 0.04 + SLACK
"""The latency a baseline of exactly 40 ms (no spread) tolerates."""


@pytest.mark.parametrize(
    ("latency", "at_once", "settled"),
    [
        # At the target: tolerated (slow start grows the limit), whatever the load;
        (TARGET, 8, Settled(12, 0, "open", baseline_ms=40.0, latency_ms=52.0)),
        (TARGET, PROBE_LIMIT, Settled(8, 0, "start", baseline_ms=40.0, latency_ms=52.0)),
        (TARGET, 4, Settled(12, 0, "open", baseline_ms=40.0, latency_ms=52.0)),  # half used
        # past it with no more in flight than the probe had: nothing queues at the
        # probe's level, the host is slower; the baseline is measured again, no cut.
        (0.06, PROBE_LIMIT, Settled(8, 0, "start", baseline_ms=60.0, latency_ms=60.0)),
        (0.06, PROBE_LIMIT + 1, Settled(6, 0, "latency", baseline_ms=40.0, latency_ms=60.0)),
    ],
)
async def test_latency_up_to_the_target_is_no_queue_nor_when_as_slow_at_the_probes_level(
    latency: float, at_once: int, settled: Settled
) -> None:
    """TOLERANCE x the baseline + SLACK is what a window may reach, not past; and a
    window no busier than the probe (an idle limit: PROBE_LIMIT in flight at most) that
    is past it says the host got slower: it is the new baseline. (A window that used
    no more than half the limit does not grow it either.)"""
    gate, clock = controller(start=8)
    await probed(gate, clock, [0.04] * PROBE_SAMPLES)
    await judge(gate, clock, [latency] * 8, at_once=at_once)
    assert gate.settled() == settled


async def test_slots_held_for_a_quotas_pace_prove_nothing_until_mark_for_after() -> None:
    """Requests waiting for a quota's pace fill the limit without loading the host: no
    window grows the limit until MARK_FOR after the last such wait."""
    gate, clock = controller(start=8)
    await probed(gate, clock, [0.04] * PROBE_SAMPLES)
    gate.quota.paced_until = paced = clock.now + 1.0  # a request waited for a quota
    await judge(gate, clock, [0.04] * 8, at=paced + MARK_FOR - 0.001)
    assert gate.settled() == Settled(8, 0, "start", baseline_ms=40.0, latency_ms=40.0)
    await judge(gate, clock, [0.04] * 8, at=paced + MARK_FOR)
    assert gate.settled().limit == 12


async def test_a_quotas_pace_is_the_reason_with_its_rate_when_it_held_a_start() -> None:
    """10 a second announced: the starts are paced at 10 x HEADROOM a second, and an
    answer within MARK_FOR of a start that waited for it names the quota, with that
    rate, until something else holds the limit. A quota with plenty left paces nothing
    and is no reason."""
    tenth = (Announced(10, 1, 9, 1),)
    gate, clock = controller(start=8)
    first = await begin(gate, 0, clock)
    clock.now += 0.04
    gate.release(*first, Lesson(0.04, announced=(Announced(5000, 3600, 4940, 3000),)))
    end(gate, await begin(gate, 1, clock))
    assert gate.settled() == Settled(PROBE_LIMIT, 0, "start")
    gate, clock = controller(start=8)
    first = await begin(gate, 0, clock)
    clock.now += 0.04
    gate.release(*first, Lesson(0.04, announced=tenth))
    await gate.acquire(1)
    ticket, number, wait = gate.pace(clock.now)  # 0.1 s after the first's start, at 9.3/s
    assert wait == pytest.approx(1 / (10 * HEADROOM) - 0.04)
    gate.started()
    clock.now += wait + MARK_FOR  # answered MARK_FOR after the start it waited for
    gate.release(ticket, number, Lesson(0.04, announced=tenth))
    assert gate.settled().reason == "start"
    second, third = await begin(gate, 2, clock), await begin(gate, 3, clock)  # paced
    clock.now += 1 / (10 * HEADROOM) + MARK_FOR - 0.001
    end(gate, second)
    settled = gate.settled()
    assert (settled.reason, settled.quota_rate) == ("quota", pytest.approx(10 * HEADROOM))
    assert settled.why() == "paced by a quota at 9.3/s"
    end(gate, third, None, Overload.REJECTED)  # something else holds it now
    assert gate.settled() == Settled(1, 1, "overload")


@pytest.mark.parametrize(
    ("overload", "waits"), [(None, [2.0] * 3 + [0.0] * 2), (Overload.REJECTED, [2.0] * 5)]
)
async def test_a_quota_not_kept_is_passed_over_only_on_answers_it_served(
    overload: Overload | None, waits: list[float]
) -> None:
    """Nothing left, reset in 30 years: each start waits the longest wait until three
    answers served after such a wait say nothing is left again (a quota the server does
    not keep, passed over from then on); rejections saying so prove nothing."""
    clock = Clock()
    gate = AdaptiveLimit(256, 8, longest_wait=2.0, clock=clock)
    spent = (Announced(None, None, 0, 1e9),)
    seen = []
    for order in range(len(waits) + 1):
        await gate.acquire(order)
        ticket, number, wait = gate.pace(clock.now)
        gate.started()
        seen.append(wait)
        assert gate.mark(clock.now + wait + MARK_FOR) != "quota"  # a wait cut short is shown so
        clock.now += wait + 0.04
        gate.release(ticket, number, Lesson(0.04, overload if order else None, announced=spent))
    assert seen[1:] == waits


async def test_above_one_at_a_time_a_retry_after_holds_the_limit_not_the_starts() -> None:
    """Told to wait with others still served, the host is full, not closed: fewer in
    flight answer it, and a freed slot's request starts at once."""
    gate, clock = controller(start=3)
    await probed(gate, clock, [0.04] * PROBE_SAMPLES)
    started = [await begin(gate, n, clock) for n in range(3)]
    clock.now += 0.04
    end(gate, started.pop(), None, Overload.REJECTED, retry_after=2.0)
    assert gate.current == 2  # the two others in flight
    end(gate, started.pop())
    await gate.acquire(3)
    assert gate.pace(clock.now)[2] == 0.0
    assert gate.mark() == "held"


async def test_a_freed_slot_goes_to_the_lowest_order_waiting() -> None:
    """Earlier input lines first (the output is written in input order): of the requests
    waiting for the host, the lowest order gets the freed slot, whenever it came."""
    clock = Clock()
    gate = AdaptiveLimit(256, 4, share=1 / 3, clock=clock)  # probes one at a time
    first = await begin(gate, 0, clock)
    late = asyncio.ensure_future(gate.acquire(7))
    early = asyncio.ensure_future(gate.acquire(3))
    await asyncio.sleep(0)  # (a turn of the loop: both now wait, the later one first)
    end(gate, first)
    done, _ = await asyncio.wait({late, early}, timeout=1.0, return_when="FIRST_COMPLETED")
    assert done == {early}
    gate.give_back()
    await asyncio.wait_for(late, 1.0)


async def test_a_retry_after_under_a_second_is_honoured_for_its_length() -> None:
    """Down to one at a time (the start limit, kept as given) and told to retry after
    half a second: the next start waits that half second, and the bar says so."""
    gate, clock = controller(start=1)
    await probed(gate, clock, [0.04] * PROBE_SAMPLES)
    assert gate.current == 1
    end(gate, await begin(gate, 0, clock), None, Overload.REJECTED, retry_after=0.5)
    assert gate.mark(clock.now + 0.499) == "held"
    await gate.acquire(1)
    assert gate.pace(clock.now)[2] == 0.5


async def test_a_retry_after_on_an_answer_that_cut_nothing_leaves_slow_start_growing() -> None:
    """A Retry-After on an answer that is no overload (a 202, a 429 not in --retry-on)
    starts the quiet time, which stops the search short of the last cut; with no cut yet
    there is no such level, and slow start grows as before, within the quiet time too."""
    gate, clock = controller(ceiling=40, start=10)
    end(gate, await begin(gate, 0, clock), 0.04123, None, retry_after=5.0)
    told = clock.now
    simulation = Simulation(gate, clock, Steady(latency=0.04123))
    assert await windows(simulation, 5) == [10, 15, 22, 33, 40]
    assert clock.now - told < QUIET * 5.0  # all of it within the quiet time
    assert gate.settled().overloads == 0


async def test_before_any_answer_gets_through_each_rejection_is_a_cut() -> None:
    """One cut per round trip, but with no round trip known (every answer so far was a
    rejection) each rejection is a cut, and the bar says "cut" for MARK_FOR after the
    latest, not after the first."""
    gate, clock = controller(start=4)
    end(gate, await begin(gate, 0, clock), 0.001, Overload.REJECTED)
    clock.now += 0.5
    end(gate, await begin(gate, 1, clock), 0.001, Overload.REJECTED)
    assert gate.settled().overloads == 2
    assert gate.mark(clock.now + MARK_FOR - 0.001) == "cut"
    assert gate.mark(clock.now + MARK_FOR) == "spaced"  # rejected alone: a gap between starts


async def test_only_a_rejection_with_nothing_else_in_flight_spaces_the_starts() -> None:
    """Eight in flight, all rejected a round trip apart (a server that fell over): each
    is a cut, down to one at a time while one other is still in flight, and that one
    may be what the server was busy with, so no gap yet. The last, rejected alone,
    says one at a time is too many: a gap between starts."""
    gate, clock = controller(start=8)
    await probed(gate, clock, [0.04] * PROBE_SAMPLES)
    assert gate.current == 8
    started = [await begin(gate, n, clock) for n in range(8)]
    gaps = []
    for ticket in started:
        clock.now += 0.05  # a round trip (0.04 s) after the last cut: a cut again
        end(gate, ticket, 0.001, Overload.REJECTED)
        gaps.append((gate.current, gate.settled().gap_ms))
    assert gaps[-3:] == [(1, None), (1, None), (1, 10.0)]


async def test_redirect_hops_to_the_host_are_spent_from_its_quota() -> None:
    """An attempt that followed redirects on its host sent a request per hop, each
    counted by the server's quota: two left, one start and one hop spend them, and the
    next start waits for the reset."""
    gate, clock = controller(start=4)
    first = await begin(gate, 0, clock)
    gate.release(*first, Lesson(0.04, announced=(Announced(None, None, 2, 5),)))
    told = clock.now
    second = await begin(gate, 1, clock)
    gate.release(*second, Lesson(0.04, hops=1))
    await gate.acquire(2)
    assert gate.pace(clock.now)[2] == pytest.approx(told + 5 - clock.now)


async def test_an_attempt_that_taught_no_latency_moves_nothing() -> None:
    """A slot released with no lesson (``Lesson(None)``: no answer to time) frees the
    slot and changes neither the limit nor what the summary says."""
    gate, clock = controller(start=8)
    await probed(gate, clock, [0.04] * PROBE_SAMPLES)
    before = gate.settled()
    end(gate, await begin(gate, 0, clock), None)
    assert (gate.settled(), gate.in_flight, gate.current) == (before, 0, 8)


async def test_a_rejection_a_full_round_trip_after_a_cut_cuts_again() -> None:
    """The answers of one round trip are one signal: another rejection cuts again once a
    whole round trip has passed since the last cut, not sooner. The round trip is the
    latency smoothed over answers (by a fifth of each change): 250 ms, then 350 ms
    after an answer in 750 ms."""
    gate, clock = controller(start=16)
    await probed(gate, clock, [0.25] * PROBE_SAMPLES, first=0.25)
    started = [await begin(gate, n, clock) for n in range(12)]
    clock.now = 1001.0
    end(gate, started.pop(), None, Overload.REJECTED)
    assert gate.current == 11  # 16 x 0.7, and no more than the 11 others in flight
    clock.now = 1001.25
    end(gate, started.pop(), None, Overload.REJECTED)
    assert gate.current == 7  # 11 x 0.7 = 7.7
    end(gate, started.pop(), 0.75)
    clock.now = 1001.25 + 0.3125
    end(gate, started.pop(), None, Overload.REJECTED)
    assert gate.current == 7
    clock.now = 1001.25 + 0.375
    end(gate, started.pop(), None, Overload.REJECTED)
    assert gate.current == 5  # 7.7 x 0.7 = 5.39
    assert gate.settled().overloads == 4


async def test_after_a_retry_after_the_search_stops_just_under_the_cut_for_quiet_times_it() -> None:
    """Retry-After: 2 at a limit of 27 (cut to 18): the search returns to 26, just under
    the level that drew it, and probes past it (every PLATEAU-th good window) only from
    QUIET x 2 = 6 s after, since each probe that finds the edge costs a wait that long."""
    gate, clock = controller(start=8)
    await probed(gate, clock, [0.04] * PROBE_SAMPLES)
    for _ in range(3):
        await judge(gate, clock, [0.04] * gate.current)  # slow start: 12, 18, 27
    started = [await begin(gate, n, clock) for n in range(27)]
    clock.now = 1001.0
    end(gate, started.pop(), None, Overload.REJECTED, retry_after=2.0)
    assert gate.current == 18
    for each in started:
        end(gate, each)
    limits = []
    for k in range(1, 49):  # a window every 1/8 s, the last at 6 s exactly
        await judge(gate, clock, [0.04] * max(MIN_WINDOW, gate.current // 2), at=1001 + k / 8)
        limits.append(gate.current)
    assert limits == [22, 24, 25, 26] + [26] * 43 + [27]


async def test_a_latency_cut_halves_at_most_and_never_below_one() -> None:
    """A worker of -P 3 (probing one at a time) at a limit of 2, answers four times as
    slow as alone: the cut is to half, and half of 2 is one request at a time."""
    clock = Clock()
    gate = AdaptiveLimit(256, 2, share=1 / 3, clock=clock)
    await probed(gate, clock, [0.04] * PROBE_SAMPLES)
    await judge(gate, clock, [0.16] * MIN_WINDOW, at_once=2)
    assert gate.settled() == Settled(1, 0, "latency", baseline_ms=40.0, latency_ms=160.0)


async def test_a_probe_rejected_alone_probes_one_at_a_time_from_then_on() -> None:
    """Rejected during the probe with nothing else in flight: even the probe's few at a
    time were too many, so this probe and every later one goes one at a time."""
    gate, clock = controller(start=8)
    end(gate, await begin(gate, 0, clock))
    end(gate, await begin(gate, 1, clock), None, Overload.REJECTED)
    assert gate.current == 1
    for _ in range(PROBE_SAMPLES):
        end(gate, await begin(gate, 0, clock))
    await judge(gate, clock, [0.04] * MIN_WINDOW, at_once=1)
    assert gate.current == 2  # grown again
    await judge(gate, clock, [0.04] * MIN_WINDOW, at=1020.0, at_once=1)  # the next grid point
    assert (gate.current, gate.mark(1020.0)) == (1, "probe")


# ---------------------------------------------------------------- the command


def run_auto(
    serve: Callable[..., LoopbackServer], shape: Shape, n: int, *args: str
) -> list[dict[str, object]]:
    url = serve(shape.app()).url("/item?id={}")
    ids = "".join(f"{i}\n" for i in range(n)).encode()
    result = run_cli("-t", url, "--limit", "auto", "--body", "none", *args, stdin=ids)
    records = jsonl(result.stdout)
    assert len(records) == n, result.stderr
    return records


def present_after(shape: Shape, seconds: float) -> list[int]:
    return [present for at, present in shape.presence if at >= seconds]


@pytest.mark.speed
def test_a_small_capacity_is_found_with_few_overload_answers(
    serve: Callable[..., LoopbackServer],
) -> None:
    shape = Shape("reject", capacity=12)
    records = run_auto(serve, shape, 800)
    assert all(r["ok"] for r in records)  # retries carry the few 503s
    assert shape.overloads <= 0.05 * 800  # a fixed --limit 30 draws ~1.5 per request
    assert shape.max_serving == 12  # it reached the capacity, not stayed below it


@pytest.mark.speed
def test_a_queueing_server_is_not_flooded(serve: Callable[..., LoopbackServer]) -> None:
    """At most 12 served at once, the rest wait: counted at the server, requests present
    (served and waiting) stay near 12 instead of the 70-91 the old controller kept."""
    shape = Shape("queue", capacity=12)
    run_auto(serve, shape, 1200)
    later = present_after(shape, 1.0)
    assert later
    assert statistics.median(later) <= 24


@pytest.mark.speed
def test_ample_capacity_is_used_not_left_at_the_start(
    serve: Callable[..., LoopbackServer],
) -> None:
    shape = Shape("queue", capacity=1000)
    run_auto(serve, shape, 1500)
    assert shape.overloads == 0
    # Far above the fixed default of 10 (a quiet machine reaches 100 and more). Not
    # higher: a client short of CPU sees its own queueing as latency, and rightly stops
    # growing (40 with the two cores shared five ways).
    assert shape.max_present >= 30


@pytest.mark.speed
def test_a_jittery_server_gets_more_than_the_default(
    serve: Callable[..., LoopbackServer],
) -> None:
    shape = Shape("jitter", jitter=(0.0, 0.05))
    run_auto(serve, shape, 1500)
    assert shape.max_present >= 30  # far above the default of 10, as above


@pytest.mark.speed
def test_the_ceiling_holds_at_the_server(serve: Callable[..., LoopbackServer]) -> None:
    shape = Shape("jitter", jitter=(0.0, 0.02))
    run_auto(serve, shape, 600, "--limit", "auto:25")
    assert shape.max_present <= 25


@pytest.mark.speed
@pytest.mark.parametrize(
    ("style", "processes"),
    [("ietf", "1"), ("draft", "1"), ("x", "1"), ("x-epoch", "1"), ("ietf", "2")],
)
def test_an_announced_quota_draws_no_429(
    serve: Callable[..., LoopbackServer], style: str, processes: str
) -> None:
    """A quota of 40 a second announced in headers, 429 beyond it: none is drawn (under
    -P, the quota is the workers' total), and the pace is not far below the quota
    either (some whole window got most of its quota)."""
    shape = Shape("quota", quota=40, window=1.0, style=style, service=0.01)
    url = serve(shape.app()).url("/item?id={}")
    ids = "".join(f"{i}\n" for i in range(100)).encode()
    result = run_process("-t", url, "--limit", "auto", "-P", processes, stdin=ids)
    records = jsonl(result.stdout)
    assert len(records) == 100, result.stderr
    assert all(r["ok"] for r in records)
    assert shape.overloads == 0
    per_window: dict[int, int] = {}
    for arrived, _, _ in shape.log:
        per_window[int(arrived)] = per_window.get(int(arrived), 0) + 1
    assert max(per_window.values()) >= 24


@pytest.mark.speed
def test_a_quota_kept_secret_draws_few_429(serve: Callable[..., LoopbackServer]) -> None:
    """A rate limit with no headers and no Retry-After, where even one request at a time
    is too many (61% of requests drew a 429 and a quarter of the items failed): the
    starts are spaced, and few are rejected."""
    shape = Shape("quota", quota=40, window=1.0, style="none", service=0.005)
    records = run_auto(serve, shape, 100, "--retries", "4")
    assert sum(not r["ok"] for r in records) <= 4
    assert shape.overloads <= 0.4 * len(shape.log)  # it was 61%


@pytest.mark.speed
def test_a_host_that_waits_does_not_hold_back_another(
    serve: Callable[..., LoopbackServer],
) -> None:
    """Items of a slow host wait for its --per-host slot holding a worker each; a pool
    of 256 workers filled with them left the other host idle. The pool now grows as far
    as the window's bytes allow, so the fast host finishes long before the slow one."""
    slow = Shape("queue", capacity=1, service=0.008)
    fast = Shape("jitter", jitter=(0.0, 0.002))
    slow_url = serve(slow.app()).url("/item?id=")
    fast_url = serve(fast.app()).url("/item?id=")
    lines = "".join(f"{slow_url}{i}\n{fast_url}{i}\n" for i in range(700)).encode()
    result = run_cli("--per-host", "1", "--body", "none", "-o", "/dev/null", stdin=lines)
    assert result.returncode == 0, result.stderr
    fast_done = max(done for _, done, _ in fast.log)
    slow_done = max(done for _, done, _ in slow.log)
    # Held back (a pool no larger than 256), the fast host kept the slow one's pace once
    # every worker waited on it: 0.65 of its time. Free: 0.23 here, and under 0.45 with
    # the two cores shared five ways (the slow host's 8 ms answers make the margin).
    assert fast_done < 0.45 * slow_done


@pytest.mark.speed
def test_answers_that_are_errors_but_not_overload_still_teach_latency(
    serve: Callable[..., LoopbackServer],
) -> None:
    """Every answer a broken gzip body (a protocol error): no latency was learnt from
    them, so the probe never ended and the run kept 3 in flight."""
    busy = 0
    most = 0

    async def handler(request: web.Request) -> web.Response:
        nonlocal busy, most
        busy += 1
        most = max(most, busy)
        try:
            await asyncio.sleep(0.02)
        finally:
            busy -= 1
        return web.Response(body=b"not gzip", headers={"Content-Encoding": "gzip"})

    app = web.Application()
    app.router.add_get("/{id}", handler)
    url = serve(app).url("/{}")
    ids = "".join(f"{i}\n" for i in range(400)).encode()
    result = run_cli("-t", url, "--limit", "auto", "--retries", "0", "-o", "/dev/null", stdin=ids)
    assert result.returncode == 1, result.stderr
    assert most > 10


@pytest.mark.speed
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
    assert "600 ok, 0 failed" in result.stderr
    settled = re.search(r"limit auto settled at: 127\.0\.0\.1:\d+ (\d+)", result.stderr)
    assert settled is not None, result.stderr
    # The 503 came to the first request, sent alone: held a day, the host would wait a
    # day (the planted bug hangs the run past the test's timeout). Held 0.2 s, the limit
    # grows again. How far depends on the machine (3 on a busy CI runner, 35 on another
    # run of it), so only that it moved is asserted.
    assert int(settled[1]) > 1, result.stderr


@pytest.mark.speed
def test_the_summary_says_where_each_host_settled_and_why(
    serve: Callable[..., LoopbackServer],
) -> None:
    shape = Shape("reject", capacity=6)
    url = serve(shape.app()).url("/item?id={}")
    ids = "".join(f"{i}\n" for i in range(300)).encode()
    result = run_cli("-t", url, "--limit", "auto", "-o", "/dev/null", stdin=ids)
    line = next(x for x in result.stderr.splitlines() if "limit auto settled at" in x)
    assert re.search(r"127\.0\.0\.1:\d+ \d+ \(overload answers\)", line), line
    assert f"; {shape.overloads} overload answers" in line


@pytest.mark.parametrize(("text", "ceiling"), [("auto", 256), ("auto:40", 40), ("AUTO:7", 7)])
def test_limit_auto_parses(text: str, ceiling: int) -> None:
    assert Adaptive.parse(text.lower()) == Adaptive(ceiling)


@pytest.mark.parametrize("value", ["auto:0", "auto:x", "auto:-3", "auto:", "0", "many"])
def test_a_bad_limit_is_a_usage_error(value: str) -> None:
    result = run_cli("--limit", value, stdin=b"")
    assert result.returncode == 2
    assert "--limit" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("cut_by", ["rejection", "latency"])
async def test_a_cut_during_the_plateau_starts_the_next_plateau_afresh(cut_by: str) -> None:
    """A cut while the search holds just under the last cut's level: the next search
    holds PLATEAU windows under the new level too, not what the cut one had left."""
    gate, clock = controller(start=10)
    server = Quickening()
    simulation = Simulation(gate, clock, server)
    await judged(simulation, 3)  # slow start to 33
    await simulation.run(1)
    server.rejecting = 1
    while not gate.overloads:
        await simulation.run(1)
    assert await judged(simulation, 7) == [27, 29, 30, 31, 32, 32, 32]  # two of the plateau
    if cut_by == "rejection":
        server.rejecting = 1
        while gate.overloads < 2:
            await simulation.run(1)  # cut at 32, mid-plateau
    else:
        server.slow = 32
        while gate.current == 32:
            await simulation.run(1)  # a window of slow answers: cut at 32, mid-plateau
        assert gate.current == 16  # a latency cut halves at most
    limits = await judged(simulation, 9)
    # From 22.4 (32 x DECREASE) or 16, halfway to 31 (32 - 1) each window, held there
    # PLATEAU windows, then past.
    search = {"rejection": [26, 28, 29, 30, 31], "latency": [23, 27, 29, 30, 31]}[cut_by]
    assert limits == search + [31] * (PLATEAU - 1) + [32], limits
