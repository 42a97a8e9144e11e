"""The bounded worker pool and the reorder window.

Guarantees:
- at most ``workers`` fetches run at once, and ``workers`` are running whenever
  enough work is ready (the pool is a fixed set of workers, never a task per
  input). A fetch may wait inside (for a request slot, a backoff): the cap on
  requests in flight is the fetch's business (see ``limits.py``);
- at most ``window`` items are started but not yet handed to the consumer; when
  the window is full no new item is started, so memory stays bounded even while
  one slow request holds up ordered output;
- in ordered mode records come out in item order, each as soon as it and all
  before it are complete; unordered mode hands them out as they complete;
- every dispatched item yields exactly one record unless the run is stopped, in
  which case output ends at the first record that did not complete (ordered) or
  holds every record that did (unordered).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterable, Awaitable, Callable

from fetchmany.records import Record
from fetchmany.sources import Item

FetchFunction = Callable[[Item], Awaitable[Record]]


class Abandoned(Exception):
    """Raised by a fetch that gives up because the run is stopping: the item gets no record."""


_Job = tuple[Item, "asyncio.Future[Record]"]


class Engine:
    """Runs ``fetch`` over items with a fixed pool of workers; see the module docstring."""

    def __init__(
        self,
        fetch: FetchFunction,
        *,
        workers: int,
        window: int,
        ordered: bool,
        on_stop: Callable[[], None] | None = None,
    ) -> None:
        if workers < 1 or window < workers:
            raise ValueError("need workers >= 1 and window >= workers")
        self._fetch = fetch
        self._workers = workers
        self._on_stop = on_stop
        self._ordered = ordered
        self._window = asyncio.Semaphore(window)
        self._jobs: asyncio.Queue[_Job | None] = asyncio.Queue()
        self._pending: deque[asyncio.Future[Record]] = deque()
        self._completed: deque[asyncio.Future[Record]] = deque()
        self._wake = asyncio.Event()
        self._dispatched = 0
        self._handed_out = 0
        self._dispatch_done = False
        self._dispatch_error: BaseException | None = None
        self._stopping = False
        self._aborted = False
        self._tasks: list[asyncio.Task[None]] = []
        self._dispatcher: asyncio.Task[None] | None = None

    @property
    def dispatched(self) -> int:
        """Items started so far (including those still in flight)."""
        return self._dispatched

    def stop(self) -> None:
        """Start no new item; fetches already running finish and are handed out."""
        self._stopping = True
        if self._on_stop is not None:
            self._on_stop()
        if self._dispatcher is not None:
            self._dispatcher.cancel()

    def abort(self) -> None:
        """Stop and cancel fetches in flight: output ends with what has completed."""
        self.stop()
        self._aborted = True
        for task in self._tasks:
            task.cancel()
        for future in self._pending:
            future.cancel()  # wakes an ordered consumer waiting on an unfinished head
        self._wake.set()

    async def _dispatch(self, items: AsyncIterable[Item]) -> None:
        try:
            async for item in items:
                await self._window.acquire()
                future: asyncio.Future[Record] = asyncio.get_running_loop().create_future()
                if self._ordered:
                    self._pending.append(future)
                    self._wake.set()
                self._dispatched += 1
                self._jobs.put_nowait((item, future))
        except asyncio.CancelledError:
            pass  # stop(): the jobs already queued are resolved by the workers
        except Exception as exc:
            self._dispatch_error = exc
        finally:
            for _ in range(self._workers):
                self._jobs.put_nowait(None)
            self._dispatch_done = True
            self._wake.set()

    async def _work(self) -> None:
        while (job := await self._jobs.get()) is not None:
            item, future = job
            if self._stopping:
                future.cancel()
            else:
                try:
                    future.set_result(await self._fetch(item))
                except Abandoned:
                    future.cancel()
                except asyncio.CancelledError:
                    future.cancel()
                    raise
                except Exception as exc:  # a bug in fetch: surfaced to the consumer
                    future.set_exception(exc)
            if not self._ordered:
                self._completed.append(future)
                self._wake.set()

    async def batches(self, items: AsyncIterable[Item]) -> AsyncGenerator[list[Record], None]:
        """Records in batches of those ready together, so a writer can flush per batch."""
        self._dispatcher = asyncio.create_task(self._dispatch(items))
        self._tasks = [asyncio.create_task(self._work()) for _ in range(self._workers)]
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

    def _take(self, future: asyncio.Future[Record], batch: list[Record]) -> bool:
        """Move one finished future into ``batch``; False when it was cancelled."""
        self._window.release()
        self._handed_out += 1
        if future.cancelled():
            return False
        batch.append(future.result())
        return True

    async def _ordered_ready(self) -> list[Record] | None:
        pending = self._pending
        while not pending:
            if self._dispatch_done:
                return None
            self._wake.clear()
            await self._wake.wait()
        head = pending[0]
        if not head.done():
            await asyncio.wait((head,))
        batch: list[Record] = []
        while pending and pending[0].done():
            if not self._take(pending.popleft(), batch):
                # A record that never completed: nothing after it may be written in order.
                self._abandon_pending()
                return batch or None
        return batch

    def _abandon_pending(self) -> None:
        self._pending.clear()
        self._dispatch_done = True

    async def _unordered_ready(self) -> list[Record] | None:
        completed = self._completed
        while not completed:
            if self._aborted or not self._unfinished():
                return None
            self._wake.clear()
            await self._wake.wait()
        batch: list[Record] = []
        while completed:
            self._take(completed.popleft(), batch)
        return batch

    def _unfinished(self) -> bool:
        return not (self._dispatch_done and self._handed_out == self._dispatched)
