"""``--limit auto``: one host's concurrency limit, found from its answers.

Servers take too much load in one of two ways: they *reject* it (503, 429, a reset
connection, a timeout), or they *queue* it, answering everything, later and later.
A third shape must not be mistaken for either: latency that *jitters* whatever the
load. The controller reads each signal where it is reliable:

- **A baseline measured alone.** The first request to a host goes alone (its answer
  may announce a quota, ``quota.py``), then ``PROBE_LIMIT`` at a time until
  ``PROBE_SAMPLES`` answers are in (Envoy's adaptive concurrency filter pins
  concurrency to 3 the same way; TCP BBR probes its minimum RTT the same way). The
  baseline is the *median* of those answers, with its noise (from their spread), so
  it is neither the one lucky fast answer of a jittery server nor a level that
  already queues. It is measured again every ``REPROBE_EVERY`` seconds, on a grid of
  the machine's monotonic clock, so that ``-P`` workers probe together; nothing
  else moves it, so it cannot drift up into a queue.
- **Windows, not answers.** Answers are judged in windows: each window holds only
  answers to requests started since the limit last changed (older ones say nothing
  of the new limit), at least ``MIN_WINDOW`` and half the limit of them (about a
  round trip). A window whose median exceeds ``TOLERANCE`` times the baseline, by
  more than the two medians' noise (``Z`` standard errors) and ``SLACK``, means a
  queue: the limit is cut toward the level that would meet the tolerance (the
  gradient of Netflix's Gradient2 and of Envoy, at most halving). One slow answer of
  a jittery server moves a median by nothing.
- **Overload answers at once.** A 429, 503 (any ``--retry-on`` status), timeout or
  failed connection cuts the limit to ``DECREASE`` of itself, at most once per round
  trip, and the rejected request's slot is not reused (a server that rejects at
  once would reject its replacement as fast).
- **Growth.** Until the first cut, the limit grows by half each window (slow start). After
  it, it searches back toward the level of the last cut by halving the distance,
  and beyond it grows by one, then faster the longer nothing goes wrong (the BIC
  scheme of TCP congestion control): it returns quickly to what worked, probes
  slowly where trouble was, and finds room that appears. It grows only when the
  window used at least half the limit (an idle limit proves nothing), never past the
  level that drew a ``Retry-After`` of T seconds for QUIET x T after it (back to just
  under that level, no probing beyond), and never past the ceiling (``--limit auto:MAX``).
"""

from __future__ import annotations

import enum
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from fetchmany.fetch.gate import PriorityGate
from fetchmany.fetch.quota import Announced, QuotaPacer
from fetchmany.fetch.retry import DEFAULT_MAX_BACKOFF
from fetchmany.options import DEFAULT_START, Adaptive

__all__ = ["Adaptive", "AdaptiveLimit", "Settled"]

PROBE_LIMIT: Final = 3
PROBE_SAMPLES: Final = 12
PROBE_TIME: Final = 0.5
"""A probe of a slow server ends after this long, once it has a round of answers."""
REPROBE_EVERY: Final = 30.0
TOLERANCE: Final = 1.25
"""A window's median latency may reach this multiple of the baseline: a queue of up
to a quarter of a service time, which keeps a queueing server busy without flooding
it (Envoy's default buffer is the same 25%)."""
SLACK: Final = 0.002
"""Seconds of latency always tolerated: the client's own scheduling noise."""
Z: Final = 2.0
MIN_WINDOW: Final = 8
STALE_AFTER: Final = 3
"""Latency cuts in a row after which the baseline is measured again at once."""
NOISY: Final = 0.05
FAILURES_TOLERATED: Final = 0.1
"""Failed connections and timeouts cut the limit only once they are more than
FAILURES_TOLERATED of recent answers, and more than twice (plus NOISY) the share seen
alone: a flaky network's resets are not the host's overload (and aiohttp retries many
of them on kept-alive connections, so alone they may not show at all)."""
GAP_MIN: Final = 0.01
GAP_TRIED: Final = 4
GAP_CLOSE: Final = 0.7
"""The gap between starts (a host that rejects even one request at a time) starts at
GAP_MIN seconds, doubles at a rejection once GAP_TRIED starts have tried it, and shrinks
by GAP_CLOSE at each good window."""
SLOW_START: Final = 1.5
"""Growth per window until the first cut: a window is a round trip, so this finds a
large capacity in a dozen round trips, and overshoots a small one by half at most
(doubling, TCP's choice, would draw as many rejections as the capacity itself)."""
PLATEAU: Final = 4
"""Good windows just under the level of the last cut before probing past it."""
DECREASE: Final = 0.7
RECENT: Final = 9
"""Windows whose limits the settled level is the median of."""
QUIET: Final = 3.0
"""After a Retry-After of T seconds, no probing past the last good level for QUIET x T."""
MARK_FOR: Final = 1.0
"""Seconds a cut shows on the bar."""
_IQR_TO_ERROR: Final = 0.93
"""The standard error of a median is about 0.93 x IQR / sqrt(n) (for a normal spread:
1.2533 x sigma / sqrt(n), sigma = IQR / 1.349)."""
_SMOOTHING: Final = 0.2
_FAILURE_SMOOTHING: Final = 0.02
"""The share of failures is judged over some fifty answers: a few in a row of a flaky
network are not a rise."""

_SCOUT, _PROBE, _RUN = range(3)


@dataclass(frozen=True, slots=True)
class Settled:
    """Where one host's limit is and why, for the summary and the library."""

    limit: int
    overloads: int
    """Overload answers so far."""
    reason: str
    """What set the limit last: ``overload``, ``latency``, ``quota``, ``ceiling``,
    ``open`` (it grew, and nothing has held it since), or ``start`` (nothing has yet)."""
    baseline_ms: float | None = None
    """The median latency measured alone."""
    latency_ms: float | None = None
    """The median latency of the last window."""
    quota_rate: float | None = None
    """Requests per second last paced at under an announced quota."""
    gap_ms: float | None = None
    """Milliseconds between starts, when even one request at a time drew rejections."""

    def plus(self, other: Settled) -> Settled:
        """One host's limits in two ``-P`` workers as one: limits, overload answers and
        quota rates add up; the reason is the more telling one."""
        reason = min(self.reason, other.reason, key=_REASONS.index)
        return Settled(
            limit=self.limit + other.limit,
            overloads=self.overloads + other.overloads,
            reason=reason,
            baseline_ms=_least(self.baseline_ms, other.baseline_ms),
            latency_ms=_least(self.latency_ms, other.latency_ms, most=True),
            quota_rate=_sum(self.quota_rate, other.quota_rate),
            gap_ms=_least(self.gap_ms, other.gap_ms, most=True),
        )

    def why(self) -> str:
        """The reason in a few words, for the summary."""
        if self.reason == "overload":
            spaced = f", {self.gap_ms:g} ms between starts" if self.gap_ms else ""
            return f"overload answers{spaced}"
        if self.reason == "latency" and self.latency_ms is not None:
            return f"latency {self.latency_ms:g} ms, {self.baseline_ms:g} ms alone"
        if self.reason == "quota":
            if self.quota_rate is not None:
                return f"paced by a quota at {self.quota_rate:.3g}/s"
            return "paced by a quota"
        if self.reason == "ceiling":
            return "the ceiling"
        if self.reason == "open":
            return "no overload or queue seen"
        return "no signal yet"


_REASONS: Final = ("overload", "quota", "latency", "ceiling", "open", "start")


def _least(one: float | None, other: float | None, most: bool = False) -> float | None:
    if one is None or other is None:
        return one if other is None else other
    return max(one, other) if most else min(one, other)


def _sum(one: float | None, other: float | None) -> float | None:
    if one is None or other is None:
        return one if other is None else other
    return one + other


def _median(ordered: list[float]) -> float:
    n = len(ordered)
    return ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2


def _spread(ordered: list[float]) -> float:
    """The interquartile range (under four samples, this is the whole range: the upper
    quartile's index is the last one, the lower's 0)."""
    n = len(ordered)
    return ordered[(3 * n) // 4] - ordered[n // 4]


class Overload(enum.Enum):
    """How an attempt said the host is full."""

    REJECTED = "rejected"
    """A ``--retry-on`` status (429, 503...): the server says so."""
    FAILED = "failed"
    """A timeout or a connection that failed: perhaps the server, perhaps the network."""


@dataclass(slots=True)
class Lesson:
    """What one attempt tells its host's controller."""

    latency: float | None
    """Seconds from the start to the end of the attempt (None: it never started)."""
    overload: Overload | None = None
    retry_after: float | None = None
    """What the server asked to wait, in seconds, already capped by --max-backoff."""
    announced: tuple[Announced, ...] = ()
    hops: int = 0
    """Redirects followed to this host in the attempt (each spent its quota too)."""


class AdaptiveLimit:
    """One host's adaptive limit: a priority gate whose size the answers move, and the
    pacing of its starts (an announced quota, a ``Retry-After``, and a gap between
    starts once one at a time is still too many).

    ``acquire`` takes a slot; ``pace`` says how long the request must then wait before
    it starts and numbers it; ``release`` takes the number back with the lesson.
    """

    def __init__(
        self,
        ceiling: int,
        start: int = DEFAULT_START,
        share: float = 1.0,
        longest_wait: float = DEFAULT_MAX_BACKOFF,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ceiling = ceiling
        self._clock = clock
        self._longest_wait = longest_wait
        self._limit = float(max(1, min(start, ceiling)))
        self._probe_level = max(1, min(ceiling, round(PROBE_LIMIT * share)))
        self._gate = PriorityGate(1)  # the first request goes alone
        self._phase = _SCOUT
        self._starts = 0
        self._running = 0
        """Requests started and not yet answered (not those waiting for a pace)."""
        self._window_from = 0
        """The first start number whose answer belongs in the window being filled."""
        self._samples: list[float] = []
        self._peak = 0
        self._probe_started = 0.0
        self._next_probe = math.inf
        self._baseline: float | None = None
        self._spread = 0.0
        """The baseline's interquartile range: the server's jitter at rest."""
        self._baseline_count = 1
        self._slow_start = True
        self._hint: float | None = None
        self._steady = 0
        self._latency_cuts = 0
        self._recent: deque[int] = deque(maxlen=RECENT)
        self._last_cut = -math.inf
        self._hold_until = 0.0
        self._no_probe_until = 0.0
        self._gap = 0.0
        """Seconds between starts, once even one request at a time draws rejections."""
        self._spaced = GAP_TRIED
        """Starts since the gap last grew."""
        self._next_start = 0.0
        self._probe_answers = 0
        self._probe_failures = 0
        self._failure_rate = 0.0
        """Recent share of answers that failed (timeouts, connections), smoothed."""
        self._rtt: float | None = None
        self.overloads = 0
        self.reason = "start"
        self.latency: float | None = None
        self.quota = QuotaPacer(share, longest_wait)

    # -- the gate
    @property
    def current(self) -> int:
        """The limit in force now (during a probe, the probe's)."""
        return self._gate.size

    @property
    def in_flight(self) -> int:
        return self._gate.in_use

    def locked(self) -> bool:
        return self._gate.locked()

    async def acquire(self, order: int) -> None:
        """Take a slot, lowest ``order`` first."""
        await self._gate.acquire(order)

    def pace(self, now: float) -> tuple[int, int, float]:
        """For a request holding a slot: its start number here, its quota number, and
        how long it must wait before it starts (a quota's pace, a ``Retry-After``, the
        gap between starts)."""
        number, wait = self.quota.reserve(now)
        start = max(now + wait, self._next_start)
        if self._limit <= 1:
            # Down to one at a time and still told to wait: the host's Retry-After holds
            # its new starts too. (Above that, it holds the limit: rejections of a host
            # that is full are answered by fewer in flight, not by a pause of all.)
            start = max(start, self._hold_until)
        start = min(start, now + self._longest_wait)
        self._next_start = start + self._gap
        self._starts += 1
        self._spaced += 1
        return self._starts, number, start - now

    def started(self) -> None:
        """The request is on its way: it counts as in flight for the window's use."""
        self._running += 1
        if self._running > self._peak:
            self._peak = self._running

    def give_back(self) -> None:
        """A slot taken for an attempt that never went out (the run stopped, or the
        global cap was not had): no lesson, and never counted as started."""
        self._gate.release()

    def release(self, ticket: int, number: int, lesson: Lesson) -> None:
        """One attempt ended: ``ticket`` and ``number`` as ``pace`` gave them."""
        now = self._clock()
        self._running -= 1
        if lesson.hops:
            self.quota.charge(lesson.hops)
        for announced in lesson.announced:
            self.quota.learn(number, announced, now, served=lesson.overload is None)
        if self.quota.active and now < self.quota.paced_until + MARK_FOR:
            self.reason = "quota"
        retry_after = lesson.retry_after
        if retry_after is not None and retry_after > 0:
            self._hold_until = max(self._hold_until, now + retry_after)
            self._no_probe_until = max(self._no_probe_until, now + QUIET * retry_after)
        failed = lesson.overload is Overload.FAILED
        if self._phase == _RUN:
            self._failure_rate += _FAILURE_SMOOTHING * (failed - self._failure_rate)
        else:
            self._probe_answers += 1
            self._probe_failures += failed
        if lesson.overload is not None and not self._noise(lesson.overload):
            self._overload(now)
        elif lesson.latency is not None and lesson.overload is None:
            latency = lesson.latency
            self._rtt = (
                latency if self._rtt is None else self._rtt + _SMOOTHING * (latency - self._rtt)
            )
            if ticket >= self._window_from:
                self._samples.append(latency)
                self._judge(now)
        if self._phase == _SCOUT:
            self._start_probe(now)
        self._gate.release()

    def _noise(self, overload: Overload) -> bool:
        """A failed connection or a timeout at a low rate, or no higher than alone
        (counted, not acted on, in the probes), says the network is flaky, not that the
        host is full: no cut for it. A rejection by status is always taken at its word."""
        if overload is not Overload.FAILED:
            return False
        if self._phase != _RUN:
            return True  # measuring what alone looks like
        background = self._probe_failures / max(1, self._probe_answers)
        return self._failure_rate <= max(FAILURES_TOLERATED, 2 * background + NOISY)

    # -- the controller
    def _new_window(self, size: int, burst: bool = True) -> None:
        """A new limit: judge it by answers to requests it started, leaving out the
        ``burst`` a raise lets in at once (they meet the old load's queue, not the new
        one's)."""
        skipped = max(0, size - self._gate.in_use) if burst else 0
        self._window_from = self._starts + 1 + skipped
        self._samples = []
        self._peak = self._running
        self._gate.resize(size)

    def _start_probe(self, now: float) -> None:
        self._phase = _PROBE
        self._probe_started = now
        self._latency_cuts = 0
        self._new_window(min(self._probe_level, max(1, int(self._limit))), burst=False)

    def _judge(self, now: float) -> None:
        count = len(self._samples)
        if self._phase == _PROBE:
            if count >= PROBE_SAMPLES or (
                count >= self._gate.size and now - self._probe_started >= PROBE_TIME
            ):
                self._set_baseline(self._samples)
                self._phase = _RUN
                self._next_probe = (math.floor(now / REPROBE_EVERY) + 1) * REPROBE_EVERY
                if self._next_probe - now < REPROBE_EVERY / 2:
                    self._next_probe += REPROBE_EVERY
                self._new_window(int(self._limit))
            return
        # A window is half the limit's answers, or in slow start all of them: growing
        # on half a round trip would grow again before the queue of the first showed.
        needed = int(self._limit) if self._slow_start else int(self._limit) // 2
        if self._phase != _RUN or count < max(MIN_WINDOW, needed):
            return
        if now >= self._next_probe or self._latency_cuts >= STALE_AFTER:
            # On the clock grid; or sooner when latency stays high whatever the limit,
            # which says the host got slower, not busier: the baseline is stale.
            self._start_probe(now)
            return
        self._window(now)

    def _set_baseline(self, samples: list[float]) -> None:
        ordered = sorted(samples)
        self._baseline, self._spread = _median(ordered), _spread(ordered)
        self._baseline_count = len(ordered)

    def _window(self, now: float) -> None:
        assert self._baseline is not None
        median = _median(sorted(self._samples))
        self.latency = median
        target = TOLERANCE * self._baseline + SLACK
        # Noise is the spread measured alone, not the window's own: queueing spreads a
        # window's latencies too, and must not widen the test that looks for it.
        error = (
            _IQR_TO_ERROR
            * self._spread
            * math.hypot(
                TOLERANCE / math.sqrt(self._baseline_count), 1 / math.sqrt(len(self._samples))
            )
        )
        threshold = target + Z * error
        old = self._limit
        if median > threshold and self._peak <= self._probe_level:
            # As slow at the probe's concurrency as under load: nothing queues here; the
            # host is slower than when the baseline was measured. Measured again, now.
            self._set_baseline(self._samples)
        elif median > threshold:
            self._limit = max(1.0, old * max(0.5, target / median))
            self._hint = old
            self._steady = 0  # a new level to hold under: its plateau is whole
            self._slow_start = False
            self._last_cut = now
            self._latency_cuts += 1
            self.reason = "latency"
        else:
            self._latency_cuts = 0
            if self._gap:  # one at a time without rejections: close the gap again
                self._gap = self._gap * GAP_CLOSE if self._gap * GAP_CLOSE >= GAP_MIN else 0.0
            elif 2 * self._peak >= old and now >= self.quota.paced_until + MARK_FOR:
                # (Slots held waiting for a quota's pace prove nothing, nor an idle limit.)
                grown = self._grown(old)
                if now < self._no_probe_until and self._hint is not None:
                    # After a Retry-After: back to what worked before, but no probing
                    # past it for a while, since each probe that finds the edge costs a
                    # retry that long.
                    grown = min(grown, max(old, self._hint - 1))
                self._limit = min(float(self.ceiling), grown)
                if self._limit >= self.ceiling:
                    self.reason = "ceiling"
                elif self._limit > old and self.reason == "start":
                    self.reason = "open"  # grown, and nothing has held it: a signal too
        self._recent.append(int(self._limit))
        self._new_window(int(self._limit))

    def _grown(self, old: float) -> float:
        """The next limit after a good window (BIC's search, CUBIC's plateau): grow by half in
        slow start; below the level of the last cut, halve the distance to just under
        it; stay just under it for ``PLATEAU`` windows; past it, grow by one, then by
        half the distance travelled beyond it."""
        if self._slow_start or self._hint is None:
            return old * SLOW_START
        safe = self._hint - 1
        if old < safe:
            return min(safe, old + max(1.0, (safe - old) / 2))
        if old < self._hint:
            self._steady += 1
            if self._steady < PLATEAU:
                return old
        self._steady = 0
        return old + max(1.0, (old - self._hint) / 2)

    def _overload(self, now: float) -> None:
        self.overloads += 1
        self.reason = "overload"
        self._slow_start = False
        cut = now - self._last_cut >= (self._rtt or 0.0)
        if cut:
            # One cut per round trip: the answers of one window are one signal.
            self._hint = self._limit
            self._steady = 0  # a new level to hold under: its plateau is whole
            self._limit = max(1.0, self._limit * DECREASE)
            self._last_cut = now
        # The server is full with the others in flight: this slot is not reused, and
        # what it took is the level the search comes back to (not the level before a
        # drop in capacity, which a burst of rejections shows at once).
        others = self._running  # (this one is no longer counted)
        if others < 1 and self._limit <= 1 and self._spaced >= GAP_TRIED:
            # Rejected with nothing else in flight: one at a time is too many. Space the
            # starts (a rate limit the host does not say), doubling the gap once the
            # last one has been tried on a few starts: a window of rejections from a
            # spent quota is one signal, not one per rejection.
            self._gap = min(self._longest_wait, max(GAP_MIN, 2 * self._gap))
            self._spaced = 0
        self._limit = max(1.0, min(self._limit, float(others)))
        if self._hint is not None:
            self._hint = max(self._limit, min(self._hint, float(others) + 1))
        if self._phase == _PROBE:
            self._probe_level = max(1, min(self._probe_level, others))
            self._new_window(min(self._probe_level, int(self._limit)), burst=False)
        elif self._phase == _RUN:
            self._new_window(int(self._limit))

    # -- what it says
    def mark(self, now: float | None = None) -> str:
        """What holds the limit just now, for the bar: ``held`` (a Retry-After),
        ``quota`` (paced), ``cut``, ``spaced`` (a gap between starts), ``probe``, or
        nothing."""
        now = self._clock() if now is None else now
        if now < self._hold_until:
            return "held"
        if now < self.quota.paced_until + MARK_FOR:
            return "quota"
        if now - self._last_cut < MARK_FOR:
            return "cut"
        if self._gap:
            return "spaced"
        if self._phase != _RUN:
            return "probe"
        return ""

    def settled(self) -> Settled:
        if self._phase != _RUN:
            limit = self.current
        elif self._recent:  # a search moves around a level: the level, not a moment of it
            limit = sorted(self._recent)[len(self._recent) // 2]
        else:
            limit = max(1, int(self._limit))
        reason = self.reason
        if reason == "ceiling" and limit < self.ceiling:
            reason = "open"  # it reached the ceiling once; what holds it now is not said
        baseline = self._baseline
        rate = self.quota.rate if reason == "quota" else None
        return Settled(
            limit=limit,
            overloads=self.overloads,
            reason=reason,
            baseline_ms=None if baseline is None else round(baseline * 1000, 1),
            latency_ms=None if self.latency is None else round(self.latency * 1000, 1),
            quota_rate=rate,
            gap_ms=round(self._gap * 1000, 1) if self._gap else None,
        )
