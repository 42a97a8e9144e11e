"""The bounded worker pool and the reorder window.

Guarantees:
- the pool starts with ``workers`` tasks (never a task per input) and grows by one
  only when a fetch *parks* (waits out a retry backoff or a busy host), up to
  ``max_workers``; so a parked item never costs the pool its concurrency, and the
  common path has exactly as many workers as request slots. The hard cap on
  requests in flight is the fetch's business (``limits.py``);
- at most ``window`` items are started but not yet handed to the consumer; when
  the window is full no new item is started, so memory stays bounded even while
  one slow request holds up ordered output;
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

from fetchmany.fetch.limits import Abandoned, Limits
from fetchmany.input.sources import Item
from fetchmany.records import Record

FetchFunction = Callable[[Item], Awaitable[Record]]
_Job = tuple[Item, "asyncio.Future[Record]"]


class Engine:
    """Runs ``fetch`` over items with a pool of workers; see the module docstring."""

    def __init__(
        self,
        fetch: FetchFunction,
        *,
        workers: int,
        window: int,
        ordered: bool,
        max_workers: int | None = None,
        limits: Limits | None = None,
    ) -> None:
        if workers < 1 or window < workers:
            raise ValueError("need workers >= 1 and window >= workers")
        self._fetch = fetch
        self._max_workers = max(workers, max_workers or workers)
        self._initial_workers = workers
        self._ordered = ordered
        self._window = window
        self._limits = limits
        if limits is not None:
            limits.attach(self)
        self._in_window = 0
        self._room: asyncio.Future[None] | None = None
        self._jobs: asyncio.Queue[_Job | None] = asyncio.Queue()
        self._pending: deque[asyncio.Future[Record]] = deque()
        self._completed: deque[asyncio.Future[Record]] = deque()
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
                while self._in_window >= self._window:
                    self._room = loop.create_future()
                    await self._room
                self._in_window += 1
                future: asyncio.Future[Record] = loop.create_future()
                if self._ordered:
                    self._pending.append(future)
                    if len(self._pending) == 1:
                        future.add_done_callback(self._head_done)
                self._dispatched += 1
                self._queued += 1
                self._jobs.put_nowait((item, future))
        except asyncio.CancelledError:
            pass  # stop(): the jobs already queued are resolved by the workers
        except Exception as exc:
            self._dispatch_error = exc
        finally:
            self._dispatch_done = True
            for _ in range(self._max_workers):
                self._jobs.put_nowait(None)
            self._signal()

    def _head_done(self, future: asyncio.Future[Record]) -> None:
        self._signal()

    async def _work(self) -> None:
        fetch = self._fetch
        ordered = self._ordered
        while (job := await self._jobs.get()) is not None:
            self._queued -= 1
            item, future = job
            if self._stopping:
                future.cancel()
            else:
                try:
                    future.set_result(await fetch(item))
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

    async def batches(self, items: AsyncIterable[Item]) -> AsyncGenerator[list[Record], None]:
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

    def _release(self, count: int) -> None:
        self._in_window -= count
        self._handed_out += count
        room = self._room
        if room is not None and not room.done():
            room.set_result(None)

    async def _ordered_ready(self) -> list[Record] | None:
        pending = self._pending
        while not pending or not pending[0].done():
            if not pending and self._dispatch_done:
                return None
            await self._sleep()
        batch: list[Record] = []
        taken = 0
        stopped = False
        while pending and pending[0].done():
            future = pending.popleft()
            taken += 1
            if future.cancelled():
                # A record that never completed: nothing after it may be written in order.
                stopped = True
                break
            batch.append(future.result())
        self._release(taken)
        if stopped:
            self._pending.clear()
            self._dispatch_done = True
            return batch or None
        if pending:
            pending[0].add_done_callback(self._head_done)
        return batch

    async def _unordered_ready(self) -> list[Record] | None:
        completed = self._completed
        while not completed:
            if self._aborted or (self._dispatch_done and self._handed_out == self._dispatched):
                return None
            await self._sleep()
        batch: list[Record] = []
        taken = len(completed)
        while completed:
            future = completed.popleft()
            if not future.cancelled():
                batch.append(future.result())
        self._release(taken)
        return batch
