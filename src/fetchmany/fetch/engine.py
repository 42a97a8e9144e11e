"""The bounded worker pool and the reorder window.

Guarantees:
- the pool starts with ``workers`` tasks (never a task per input) and grows by one
  only when a fetch *parks* (waits out a retry backoff or a busy host), up to
  ``max_workers``; so a parked item never costs the pool its concurrency, and the
  common path has exactly as many workers as request slots. The hard cap on
  requests in flight is the fetch's business (``limits.py``);
- the items started but not yet handed to the consumer (the window) are bounded in
  bytes: each costs ``ITEM_COST`` from its start until its result exists, then
  what that result costs (``cost``, e.g. the encoded record a writer will write):
  the item itself is let go once fetched.
  When the budget (``window_bytes``) is spent, or ``window`` items are out (an
  optional count cap), no new item starts; so memory stays bounded while one slow
  request holds up ordered output, and a fast run is never held back by a count
  that a tail of slow requests exhausts. The head of the order is always started,
  so a single result larger than the budget still gets through. Items are queued
  at most two pools' worth ahead of the workers, so the budget is checked close to
  when an item starts, and overshoots it by at most what the pool has in hand;
- in ordered mode records come out in item order, each as soon as it and all
  before it are complete; unordered mode hands them out as they complete;
- every dispatched item yields exactly one record unless the run is stopped, in
  which case output ends at the first record that did not complete (ordered) or
  holds every record that did (unordered).

The hot path avoids per-record waiting machinery: workers wake the consumer only
when the record it is waiting for completes, and the consumer then takes every
record that is ready in one batch.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterable, Awaitable, Callable
from typing import TYPE_CHECKING, Final, Generic, TypeVar

from fetchmany.fetch.limits import Abandoned, Limits
from fetchmany.input.sources import Item
from fetchmany.records import Record

if TYPE_CHECKING:
    from fetchmany.fetch.adaptive import Settled

FetchFunction = Callable[[Item], Awaitable[Record]]
T = TypeVar("T")

ITEM_COST: Final = 1024
"""What an item costs the window before its result exists: the item, its parsed URL,
its future and queue slot (about 1 KB, measured with tracemalloc)."""


def _no_cost(result: object) -> int:
    return 0


Job = tuple[Item, "asyncio.Future[T]"]


class _Jobs(Generic[T]):
    """The jobs queued for the workers, first in first out: what the pool needs of
    ``asyncio.Queue`` (a put that never waits, a get that does), with a job handed
    straight to a worker that waits for one, and none of its other bookkeeping."""

    __slots__ = ("_idle", "queued")

    def __init__(self) -> None:
        self.queued: deque[Job[T] | None] = deque()
        """Jobs no worker has taken yet, oldest first: a worker may pop one itself."""
        self._idle: deque[asyncio.Future[Job[T] | None]] = deque()

    def put(self, job: Job[T] | None) -> None:
        idle = self._idle
        while idle:
            waiter = idle.popleft()
            if not waiter.done():  # a worker cancelled while it waited is passed over
                waiter.set_result(job)
                return
        self.queued.append(job)

    async def get(self) -> Job[T] | None:
        if self.queued:
            return self.queued.popleft()
        waiter: asyncio.Future[Job[T] | None] = asyncio.get_running_loop().create_future()
        self._idle.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.queued.appendleft(waiter.result())  # handed over as it was cancelled
            raise


class Engine(Generic[T]):
    """Runs ``fetch`` over items with a pool of workers; see the module docstring.

    ``finish`` turns each record into what the consumer takes (and the window holds)
    as soon as it completes, in the worker: the CLI encodes it there, so a record
    waiting its turn holds its output bytes once instead of its body's objects.
    """

    def __init__(
        self,
        fetch: FetchFunction | None,
        finish: Callable[[Record], T],
        *,
        workers: int,
        ordered: bool,
        window: int | None = None,
        window_bytes: int | None = None,
        cost: Callable[[T], int] = _no_cost,
        max_workers: int | None = None,
        limits: Limits | None = None,
        make_fetch: Callable[[], Awaitable[FetchFunction]] | None = None,
    ) -> None:
        """``fetch`` may be None with ``make_fetch`` given: that makes the fetch function
        when the first item arrives, so an empty input never builds a session."""
        if workers < 1 or (window is not None and window < workers):
            raise ValueError("need workers >= 1 and window >= workers")
        if fetch is None and make_fetch is None:
            raise ValueError("need fetch or make_fetch")
        self._fetch = fetch
        self._make_fetch = make_fetch
        self._finish = finish
        self._cost = cost
        self._max_workers = max(workers, max_workers or workers)
        self._initial_workers = workers
        self._ordered = ordered
        self._window = window if window is not None else 1 << 62
        self._window_bytes = window_bytes if window_bytes is not None else 1 << 62
        self._held = 0  # bytes the window holds now
        self._finished = 0  # items in the window whose result exists
        self._cost_sum = 0  # what results have cost, to expect as much of those to come
        self._cost_count = 0
        self._limits = limits
        if limits is not None:
            limits.attach(self)
        self._in_window = 0
        self._room: asyncio.Future[None] | None = None
        self._jobs: _Jobs[T] = _Jobs()
        self._pending: deque[asyncio.Future[T]] = deque()
        self._completed: deque[asyncio.Future[T]] = deque()
        self._wake: asyncio.Future[None] | None = None
        self._dispatched = 0
        self._queued = 0
        self._handed_out = 0
        self._dispatch_done = False
        self._dispatch_error: BaseException | None = None
        self._stopping = False
        self._aborted = False
        self._tasks: list[asyncio.Task[None]] = []
        self._dispatcher: asyncio.Task[None] | None = None

    @property
    def limits(self) -> Limits | None:
        return self._limits

    def settled(self) -> dict[str, Settled]:
        """With ``--limit auto`` (``FetchOptions(adaptive=...)``): where each host's limit
        is now and why; empty for a fixed limit. Read it during the run or after it."""
        return self._limits.settled() if self._limits is not None else {}

    @property
    def workers(self) -> int:
        return len(self._tasks)

    def grow(self) -> None:
        """A fetch is about to park: add a worker so the pool keeps its concurrency."""
        if len(self._tasks) < self._max_workers and (self._queued or not self._dispatch_done):
            self._tasks.append(asyncio.create_task(self._work()))

    def stop(self) -> None:
        """Start no new item; fetches already running finish and are handed out."""
        self._stopping = True
        if self._limits is not None:
            self._limits.stop()
        if self._dispatcher is not None:
            self._dispatcher.cancel()

    def abort(self) -> None:
        """Stop and cancel fetches in flight: output ends with what has completed."""
        self.stop()
        self._aborted = True
        for task in self._tasks:
            task.cancel()
        for future in self._pending:
            future.cancel()  # an ordered consumer waiting on an unfinished head wakes
        self._signal()

    def _signal(self) -> None:
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def _sleep(self) -> None:
        self._wake = asyncio.get_running_loop().create_future()
        try:
            await self._wake
        finally:
            self._wake = None

    async def _dispatch(self, items: AsyncIterable[Item]) -> None:
        loop = asyncio.get_running_loop()
        try:
            async for item in items:
                if self._fetch is None:
                    assert self._make_fetch is not None
                    self._fetch = await self._make_fetch()
                # Queue at most a pool's worth ahead of the workers: the budget is
                # checked when an item can start, not long before its result exists.
                while self._in_window and (
                    self._in_window >= self._window
                    or self._held + self._expected() >= self._window_bytes
                    or self._queued >= 2 * self._initial_workers
                ):
                    self._room = loop.create_future()
                    await self._room
                self._in_window += 1
                self._held += ITEM_COST
                future: asyncio.Future[T] = loop.create_future()
                if self._ordered:
                    self._pending.append(future)
                    if len(self._pending) == 1:
                        future.add_done_callback(self._head_done)
                self._dispatched += 1
                self._queued += 1
                self._jobs.put((item, future))
        except asyncio.CancelledError:
            pass  # stop(): the jobs already queued are resolved by the workers
        except Exception as exc:
            self._dispatch_error = exc
        finally:
            self._dispatch_done = True
            for _ in range(self._max_workers):
                self._jobs.put(None)
            self._signal()

    def _head_done(self, future: asyncio.Future[T]) -> None:
        self._signal()

    async def _work(self) -> None:
        finish = self._finish
        cost = self._cost
        ordered = self._ordered
        jobs = self._jobs
        queued = jobs.queued
        # A job already queued (the common case: the dispatcher keeps them ahead) is
        # taken without making a coroutine for ``get``.
        while (job := queued.popleft() if queued else await jobs.get()) is not None:
            self._queued -= 1
            if self._queued <= self._initial_workers and self._room is not None:
                self._make_room()  # wakes the dispatcher once per pool's worth, not per item
            item, future = job
            if self._stopping:
                future.cancel()
            else:
                fetch = self._fetch
                assert fetch is not None  # set before the first job is queued
                try:
                    result = finish(await fetch(item))
                    size = cost(result)
                    self._held += size - ITEM_COST  # the item is let go; its result held
                    self._finished += 1
                    self._cost_sum += size
                    self._cost_count += 1
                    future.set_result(result)
                except Abandoned:
                    future.cancel()
                except asyncio.CancelledError:
                    future.cancel()
                    raise
                except Exception as exc:  # a bug in fetch: surfaced to the consumer
                    future.set_exception(exc)
            if not ordered:
                self._completed.append(future)
                self._signal()

    async def batches(self, items: AsyncIterable[Item]) -> AsyncGenerator[list[T], None]:
        """Records in batches of those ready together, so a writer can flush per batch."""
        self._dispatcher = asyncio.create_task(self._dispatch(items))
        self._tasks = [asyncio.create_task(self._work()) for _ in range(self._initial_workers)]
        ready = self._ordered_ready if self._ordered else self._unordered_ready
        try:
            while (batch := await ready()) is not None:
                if batch:
                    yield batch
            if self._dispatch_error is not None:
                raise self._dispatch_error
        finally:
            self._dispatcher.cancel()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(self._dispatcher, *self._tasks, return_exceptions=True)
            for future in (*self._pending, *self._completed):
                if future.done() and not future.cancelled():
                    future.exception()  # retrieved: the first error was already raised

    def _expected(self) -> int:
        """What the items still running will add once done: as much as results so far,
        on average, so a budget is not spent many times over by work in hand."""
        if not self._cost_count:
            return 0
        return (self._in_window - self._finished) * self._cost_sum // self._cost_count

    def _release(self, count: int, held: int, results: int) -> None:
        self._in_window -= count
        self._finished -= results
        self._held -= held + (count - results) * ITEM_COST  # results' items already left
        self._handed_out += count
        self._make_room()

    def _make_room(self) -> None:
        room = self._room
        if room is not None and not room.done():
            room.set_result(None)

    async def _ordered_ready(self) -> list[T] | None:
        pending = self._pending
        while not pending or not pending[0].done():
            if not pending and self._dispatch_done:
                return None
            await self._sleep()
        batch: list[T] = []
        taken = held = 0
        stopped = False
        cost = self._cost
        while pending and pending[0].done():
            future = pending.popleft()
            taken += 1
            if future.cancelled():
                # A record that never completed: nothing after it may be written in order.
                stopped = True
                break
            result = future.result()
            held += cost(result)
            batch.append(result)
        self._release(taken, held, len(batch))
        if stopped:
            self._pending.clear()
            self._dispatch_done = True
            return batch or None
        if pending:
            pending[0].add_done_callback(self._head_done)
        return batch

    async def _unordered_ready(self) -> list[T] | None:
        completed = self._completed
        while not completed:
            if self._aborted or (self._dispatch_done and self._handed_out == self._dispatched):
                return None
            await self._sleep()
        batch: list[T] = []
        taken = len(completed)
        held = 0
        cost = self._cost
        while completed:
            future = completed.popleft()
            if not future.cancelled():
                result = future.result()
                held += cost(result)
                batch.append(result)
        self._release(taken, held, len(batch))
        return batch
