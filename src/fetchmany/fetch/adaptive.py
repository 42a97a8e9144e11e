"""``--limit auto``: a concurrency limit that finds what a server can take.

The controller is AIMD with a slow start and a latency guard, the scheme TCP
congestion control uses for bandwidth and Netflix's concurrency-limits and
Envoy's adaptive concurrency filter use for requests:

- **slow start**: every answer that is fast and not an overload raises the limit
  by one, so it doubles each round trip, until the first sign of overload;
- **additive increase**: after that, each such answer raises it by 1/limit, one
  request per round trip, probing for room that appears;
- **multiplicative decrease**: an overload answer (429, 503 and the other
  ``--retry-on`` statuses, a timeout, a connection reset) cuts the limit to
  ``DECREASE`` of itself, at most once per round trip, so one burst of
  rejections from one window of requests counts once; and the rejected request's
  slot is not reused (the limit falls to the others in flight), since a server
  that rejects at once would otherwise reject its replacement as fast;
- **latency guard**: answers slower than ``QUEUEING`` times the host's baseline
  latency (its fastest answers, drifting slowly) mean requests are queueing at
  the server, and count as a gentle decrease (``GENTLE``) rather than an
  increase; a ``Retry-After`` holds the limit where it is for that long.

One controller per host (the ``--per-host`` machinery), each within the run's
ceiling (``--limit auto:MAX``), which the global cap enforces.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Final

from fetchmany.options import DEFAULT_START, Adaptive

__all__ = ["Adaptive", "AdaptiveLimit"]

DECREASE: Final = 0.7
GENTLE: Final = 0.9
QUEUEING: Final = 2.0
_SMOOTHING: Final = 0.2  # weight of the newest latency in the running average
_DRIFT: Final = 0.02  # how fast the baseline follows latencies above it
_TRACE_EVERY: Final = 0.1  # seconds between trace points


class AdaptiveLimit:
    """One host's adaptive limit: a semaphore whose size the answers move."""

    def __init__(self, ceiling: int, start: int = DEFAULT_START) -> None:
        self.ceiling = ceiling
        self.limit = float(min(start, ceiling))
        self.in_flight = 0
        self.overloads = 0
        self.answers = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._slow_start = True
        self._baseline: float | None = None
        self._latency: float | None = None
        self._last_cut = 0.0
        self._hold_until = 0.0
        self.trace: list[tuple[float, int]] = []
        self._started = time.monotonic()
        self._traced = 0.0

    @property
    def current(self) -> int:
        return max(1, int(self.limit))

    def locked(self) -> bool:
        return self.in_flight >= self.current

    async def acquire(self) -> None:
        if self.in_flight < self.current and not self._waiters:
            self.in_flight += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._release_slot()  # it was handed a slot as it was cancelled
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise

    def release(self, latency: float | None, overloaded: bool, retry_after: float | None) -> None:
        """One attempt ended; ``latency`` is None when it got no answer at all."""
        self._learn(latency, overloaded, retry_after)
        self._release_slot()

    def give_back(self) -> None:
        """A slot taken for an attempt that never started (the run stopped): no lesson."""
        self._release_slot()

    def _release_slot(self) -> None:
        self.in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.in_flight < self.current:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.in_flight += 1
                waiter.set_result(None)

    def _learn(self, latency: float | None, overloaded: bool, retry_after: float | None) -> None:
        now = time.monotonic()
        self.answers += 1
        if retry_after is not None and retry_after > 0:
            self._hold_until = max(self._hold_until, now + retry_after)
        if overloaded:
            self.overloads += 1
            self._cut(now, DECREASE)
            # The server is full with the others in flight: this slot is not reused,
            # or a fast rejection frees it for the next request, rejected as fast.
            self.limit = max(1.0, min(self.limit, float(self.in_flight - 1)))
        elif latency is not None:
            self._observe(latency)
            assert self._baseline is not None
            if latency > QUEUEING * self._baseline and not self._slow_start:
                self._cut(now, GENTLE)
            elif latency > QUEUEING * self._baseline:
                self._slow_start = False  # queueing begins: probe gently from here
            elif now >= self._hold_until:
                self.limit += 1.0 if self._slow_start else 1.0 / self.limit
                self.limit = min(self.limit, float(self.ceiling))
        if now - self._traced >= _TRACE_EVERY:
            self._traced = now
            self.trace.append((round(now - self._started, 3), self.current))

    def _observe(self, latency: float) -> None:
        if self._baseline is None or latency < self._baseline:
            self._baseline = latency
        else:
            self._baseline += (latency - self._baseline) * _DRIFT
        previous = self._latency
        self._latency = (
            latency if previous is None else previous + (latency - previous) * _SMOOTHING
        )

    def _cut(self, now: float, factor: float) -> None:
        """At most one cut per round trip: the answers of one window are one signal."""
        self._slow_start = False
        round_trip = self._latency if self._latency is not None else 0.0
        if now - self._last_cut < round_trip:
            return
        self._last_cut = now
        self.limit = max(1.0, self.limit * factor)
