"""What bounds the requests of a run: the global in-flight cap, a per-host cap, and a rate.

These are taken per *attempt*, not per item: an item waiting out a retry backoff
or queued behind a busy host holds no slot, so the rest of the pool keeps
working. Waits end early when the run is stopping (``Abandoned``), so Ctrl-C
never has to wait for a long backoff.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Final, Protocol, TypeVar

from fetchmany.fetch.gate import PriorityGate
from fetchmany.fetch.retry import DEFAULT_MAX_BACKOFF

if TYPE_CHECKING:  # --limit auto's, imported by a run that asks for it
    from fetchmany.fetch.adaptive import AdaptiveLimit, Lesson, Settled
    from fetchmany.options import Adaptive

# Descriptors a run needs besides its requests: the standard streams, input and
# output files (and the output's lock and temporary file), the event loop's own
# (epoll, its wake-up pipe, uvloop's signal socket pair), and some room.
_SPARE_FILES = 32


class TooFewFiles(Exception):
    """The open-file limit leaves no room for even one request: the run cannot start."""


def fit_open_file_limit(limit: int, per_request: int = 1, extra: int = 0) -> int:
    """The concurrency this process can serve, raising its open-file limit for it.

    Each request in flight holds a socket (and with --save-dir a body file); ``extra``
    are descriptors the run holds besides (a -P parent's pipes to its workers). The
    soft ``RLIMIT_NOFILE`` is often 1024 while the hard limit is far higher, so it
    is raised toward what ``limit`` needs; if even the hard limit is too low, the
    returned concurrency is capped to fit, rather than failing requests with
    "Too many open files". Raises ``TooFewFiles`` when not even one request fits
    (``ulimit -n 10``), rather than failing somewhere in the event loop's set-up.
    """
    try:
        import resource
    except ImportError:  # not on this platform: nothing to fit
        return limit
    spare = _SPARE_FILES + extra
    needed = limit * per_request + spare
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        wanted = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return limit
    if soft < spare + per_request:
        raise TooFewFiles(
            f"the open-file limit (ulimit -n) is {soft}; fetchmany needs at least "
            f"{spare + per_request} here: raise it (ulimit -n 1024)"
        )
    return max(1, (soft - spare) // per_request)


class Abandoned(Exception):
    """Raised by a wait (for a slot, a rate, a backoff) once the run is stopping: the item
    gets no record, so a stopped run never writes a half-made one."""


class Pool(Protocol):
    """What the limits tell about waits that hold no request slot: the worker pool."""

    def grow(self) -> None: ...


class RateLimiter:
    """Spaces request starts evenly, ``1/rate`` apart, shared by every worker.

    Each caller reserves the next free start time and sleeps until it, so starts
    are smooth rather than bursty, and idle time is not saved up as a burst.
    ``clock`` is the monotonic clock the starts are reserved on (a test's own).
    """

    def __init__(self, per_second: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = 1.0 / per_second
        self._clock = clock
        self._next = 0.0

    def reserve(self) -> float:
        """Reserve a start; return how long to wait for it."""
        now = self._clock()
        start = max(now, self._next)
        self._next = start + self.interval
        return start - now


T = TypeVar("T")
_KEPT_HOSTS: Final = 4096
_LAST: Final = 1 << 62
"""The order of an acquire that gives none: after every item that does."""

Ticket = tuple[int, int]
"""What ``acquire`` hands out for ``release`` to take back under --limit auto: the
controller's number for the attempt's start and its quota start number."""
_NO_TICKET: Final = (0, 0)


class _HostSlots:
    __slots__ = ("gate", "users")

    def __init__(self, size: int) -> None:
        self.gate = PriorityGate(size)
        self.users = 0


class Limits:
    """The caps of one run, made once where the run is assembled and shared by the client
    (which takes them) and the engine (which stops them and is told about parking).

    ``acquire(host, order)`` is paired with ``release(host, ticket)`` around exactly one
    attempt; waiters for a slot are served lowest ``order`` (item index) first, so a
    retried item, older than anything queued since, does not hold up ordered output
    behind them. The attached pool is told before a wait that holds no request slot
    (a backoff, a busy host, a quota's pacing), so it can keep its concurrency with
    another worker.
    """

    def __init__(
        self,
        limit: int,
        per_host: int | None = None,
        rate: float | None = None,
        adaptive: Adaptive | None = None,
        longest_wait: float = DEFAULT_MAX_BACKOFF,
    ) -> None:
        self._global = PriorityGate(limit)
        self._global_size = limit
        self._per_host = per_host
        self._hosts: dict[str, _HostSlots] = {}
        self._adaptive = adaptive
        self._longest_wait = longest_wait
        self.hosts: OrderedDict[str, AdaptiveLimit] = OrderedDict()
        """With --limit auto: each host's controller, the most recently used last."""
        self._rate = RateLimiter(rate) if rate else None
        self.plain = adaptive is None and per_host is None and self._rate is None
        """Only the global cap: ``take_free`` and ``release_free`` are all an attempt needs
        when a slot is free (the client chooses its path by this once)."""
        self.release_free: Callable[[], None] = self._global.release
        """For ``plain`` limits: an attempt's slot given back (``release`` without a host).
        The global gate's own ``release``, with no call of ours around it: every request
        of most runs makes it."""
        self._stopping = asyncio.Event()
        self._stopped = False  # the event's state, read without a call on the hot path
        self._pool: Pool | None = None
        self.retries_waiting = 0
        """Retries waiting for a slot now (their backoff is over): for the display."""

    def attach(self, pool: Pool) -> None:
        """The pool to tell when an item parks (the engine attaches itself)."""
        self._pool = pool

    def stop(self) -> None:
        """No attempt starts from now on; waiting items are abandoned."""
        self._stopped = True
        self._stopping.set()

    def _park(self) -> None:
        if self._pool is not None:
            self._pool.grow()

    async def backoff(self, seconds: float) -> None:
        """Wait before a retry, holding no slot; the engine is told so it can keep busy."""
        if seconds > 0:
            self._park()
        await self.pause(seconds)

    async def pause(self, seconds: float) -> None:
        """Sleep ``seconds``, or raise ``Abandoned`` as soon as the run stops."""
        if self._stopping.is_set():
            raise Abandoned
        if seconds <= 0:
            return
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            return
        raise Abandoned

    async def _queued(self, waiting: Awaitable[T], attempt: int) -> T:
        """Wait for a slot that is not free: parked (the pool keeps its concurrency with
        another worker), and counted as a retry waiting for a slot, for the display."""
        self._park()
        if attempt == 1:
            return await waiting
        self.retries_waiting += 1
        try:
            return await waiting
        finally:
            self.retries_waiting -= 1

    def take_free(self) -> bool:
        """For ``plain`` limits: a global slot taken at once (no coroutine, no wait) when one
        is free, nobody waits for one and the run is not stopping; then ``release_free``
        gives it back. False: ``acquire`` it instead, which waits (or raises ``Abandoned``)."""
        return not self._stopped and self._global.try_acquire()

    async def acquire(self, host: str, order: int = _LAST, attempt: int = 1) -> Ticket:
        """Take a slot of ``host`` (if capped), then a global one, then wait for the rate."""
        if self._stopping.is_set():
            raise Abandoned
        ticket = _NO_TICKET
        if self._adaptive is not None:
            ticket = await self._acquire_adaptive(host, order, attempt)
        elif self._per_host is not None:
            slots = self._hosts.get(host)
            if slots is None:
                slots = self._hosts[host] = _HostSlots(self._per_host)
            slots.users += 1
            try:
                if not slots.gate.try_acquire():
                    await self._queued(slots.gate.acquire(order), attempt)
            except BaseException:
                self._leave_host(host, slots)
                raise
        try:
            if not self._global.try_acquire():  # the common case takes no coroutine
                await self._queued(self._global.acquire(order), attempt)
            try:
                if self._stopping.is_set():
                    raise Abandoned
                if self._rate is not None:
                    await self.pause(self._rate.reserve())
            except BaseException:
                self._global.release()
                raise
        except BaseException:
            if self._adaptive is not None:
                self.hosts[host].give_back()
            elif self._per_host is not None:
                self._release_host(host)
            raise
        if self._adaptive is not None:
            self.hosts[host].started()
        return ticket

    def _host_limit(self, host: str) -> AdaptiveLimit:
        assert self._adaptive is not None
        limit = self.hosts.get(host)
        if limit is None:
            from fetchmany.fetch.adaptive import AdaptiveLimit

            adaptive = self._adaptive
            ceiling = adaptive.ceiling
            if self._per_host is not None:
                ceiling = min(ceiling, self._per_host)
            limit = self.hosts[host] = AdaptiveLimit(
                ceiling, adaptive.start, adaptive.share, self._longest_wait
            )
            while len(self.hosts) > _KEPT_HOSTS:  # memory stays flat over millions of hosts
                oldest, kept = next(iter(self.hosts.items()))
                if kept.in_flight or kept.locked():
                    break
                del self.hosts[oldest]
        self.hosts.move_to_end(host)
        return limit

    async def _acquire_adaptive(self, host: str, order: int, attempt: int) -> Ticket:
        limit = self._host_limit(host)
        if limit.locked():
            await self._queued(limit.acquire(order), attempt)
        else:
            await limit.acquire(order)
        # Paced once the slot is held (an announced quota, a Retry-After, a gap between
        # starts), so that requests queued for the slot cannot all have been paced "now".
        start, number, wait = limit.pace(time.monotonic())
        if wait > 0:
            self._park()
            try:
                await self.pause(wait)
            except BaseException:
                limit.give_back()
                raise
        return start, number

    def release(self, host: str, ticket: Ticket = _NO_TICKET, lesson: Lesson | None = None) -> None:
        """One attempt ended. With --limit auto, its ``lesson`` (how it went) moves the
        host's limit."""
        self._global.release()
        if self._adaptive is not None:
            start, number = ticket
            if lesson is None:
                from fetchmany.fetch.adaptive import Lesson

                lesson = Lesson(None)
            self.hosts[host].release(start, number, lesson)
        elif self._per_host is not None:
            self._release_host(host)

    def settled(self) -> dict[str, Settled]:
        """With --limit auto: where each host's limit is, and why."""
        return {host: limit.settled() for host, limit in self.hosts.items()}

    def current_limit(self) -> int:
        """The limit in force now: with --limit auto, summed over hosts (at most the
        ceiling); otherwise --limit."""
        if self._adaptive is None:
            return self._global_size
        return min(sum(limit.current for limit in self.hosts.values()), self._global_size)

    def mark(self) -> str:
        """With --limit auto, what holds the hosts' limits just now
        (``AdaptiveLimit.mark``), each said once; otherwise nothing."""
        if self._adaptive is None:
            return ""
        now = time.monotonic()
        return join_marks(limit.mark(now) for limit in self.hosts.values())

    def _release_host(self, host: str) -> None:
        slots = self._hosts[host]
        slots.gate.release()
        self._leave_host(host, slots)

    def _leave_host(self, host: str, slots: _HostSlots) -> None:
        slots.users -= 1
        if slots.users == 0:  # keep memory flat over lists of millions of hosts
            del self._hosts[host]


MARKS: Final = ("held", "quota", "cut", "spaced", "probe")
"""What may hold a limit, the most telling first (``AdaptiveLimit.mark``)."""


def join_marks(marks: Iterable[str]) -> str:
    """Marks of several hosts (or ``-P`` workers, whose marks are joined already) as one:
    each once, the most telling first."""
    seen = {part for mark in marks for part in mark.split(", ") if part}
    return ", ".join(mark for mark in MARKS if mark in seen)
