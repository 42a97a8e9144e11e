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
  so a single result larger than the budget still gets through. The budget is
  checked by the worker as it takes the item, so it is overshot by at most what
  the pool has in hand;
- the input is read a chunk at a time (a batch of lines, or one item from a
  per-item source), and the next chunk only when fewer items than the pool has
  workers wait in hand and the count cap (``window``) has room for more: so items
  read ahead are at most a chunk and a pool's worth, and none is read after ``stop``;
- in ordered mode records come out in item order, each as soon as it and all
  before it are complete; unordered mode hands them out as they complete;
- every started item yields exactly one record unless the run is stopped, in
  which case output ends at the first record that did not complete (ordered) or
  holds every record that did (unordered).

The hot path is one coroutine per worker, from the item to its finished result:
a worker takes the next item from the chunk in hand (a deque, no await), fetches
it, finishes the record and puts the result in the reorder window under its
sequence number (a dict, no future per item). Workers wake the consumer only when
the record it is waiting for completes, and the consumer then takes every record
that is ready in one batch. Only a worker that finds the chunk empty waits, for the
reader task, which reads the next chunk.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterable, Awaitable, Callable, Sequence
from contextlib import aclosing
from typing import TYPE_CHECKING, Final, Generic, TypeVar

from fetchmany.fetch.limits import Abandoned, Limits
from fetchmany.input.sources import Item, one_by_one
from fetchmany.records import Record

if TYPE_CHECKING:
    from fetchmany.fetch.adaptive import Settled

FetchFunction = Callable[[Item], Awaitable[Record]]
T = TypeVar("T")

ITEM_COST: Final = 1024
"""What an item costs the window before its result exists: the item and its parsed
URL (about 1 KB, measured with tracemalloc when a future and a queue slot came with
it; a little less without them, so the budget errs on the safe side)."""


def _no_cost(result: object) -> int:
    return 0


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
        self._in_window = 0  # items started and not yet handed out
        self._finished = 0  # items in the window whose result exists
        self._cost_sum = 0  # what results have cost, to expect as much of those to come
        self._cost_count = 0
        self._limits = limits
        if limits is not None:
            limits.attach(self)
        self._room = asyncio.Event()  # set when the window gives room back
        # The input: the chunk in hand, the reader that refills it, and how it ended.
        self._chunk: deque[Item] = deque()
        self._more = asyncio.Event()  # set when the reader has put a chunk in hand
        self._wanted = asyncio.Event()  # set when the reader may read the next chunk
        self._owed = 0  # workers to add when the next chunk comes (grow() found none)
        self._input_done = False
        self._input_error: BaseException | None = None
        # Items started (their sequence numbers are 0, 1, ...) and what became of them.
        self._started = 0
        self._head = 0  # ordered: the sequence number the consumer waits for
        self._ready: dict[int, tuple[T, int]] = {}  # ordered: results and their costs
        self._lost: dict[int, BaseException | None] = {}
        """Items that will have no result: abandoned by a stop (None), or the bug their
        fetch raised. Ordered output ends at the first; its bug is raised there."""
        self._completed: list[T] = []  # unordered: results not yet handed out
        self._completed_cost = 0  # what they cost the window
        self._handed_out = 0
        self._wake: asyncio.Future[None] | None = None
        self._stopping = False
        self._aborted = False
        self._tasks: list[asyncio.Task[None]] = []
        self._reader: asyncio.Task[None] | None = None

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
        """A fetch is about to park: add a worker so the pool keeps its concurrency
        (when the next chunk comes, if no item waits in hand now)."""
        if len(self._tasks) + self._owed >= self._max_workers or self._stopping:
            return
        if self._chunk:
            self._tasks.append(asyncio.create_task(self._work()))
        elif not self._input_done:
            self._owed += 1

    def _add_owed(self) -> None:
        while self._owed:
            self._owed -= 1
            self._tasks.append(asyncio.create_task(self._work()))

    def stop(self) -> None:
        """Start no new item; fetches already running finish and are handed out."""
        self._stopping = True
        if self._limits is not None:
            self._limits.stop()
        if self._reader is not None:
            self._reader.cancel()
        self._room.set()  # workers waiting for room or input see the stop and leave
        self._more.set()
        self._signal()

    def abort(self) -> None:
        """Stop and cancel fetches in flight: output ends with what has completed."""
        self.stop()
        self._aborted = True
        for task in self._tasks:
            task.cancel()
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

    async def _read(self, chunks: AsyncIterable[Sequence[Item]]) -> None:
        """Put the input's chunks in hand: the next is read only when fewer items than
        the pool has workers are left and the count cap has room (``_low``)."""
        chunk = self._chunk
        try:
            async for items in chunks:
                if not items:
                    continue
                if self._fetch is None:
                    assert self._make_fetch is not None
                    self._fetch = await self._make_fetch()
                chunk.extend(items)
                self._more.set()
                self._add_owed()
                while not self._low():
                    self._wanted.clear()
                    await self._wanted.wait()
        except asyncio.CancelledError:
            pass  # stop(): the items in hand are not started
        except Exception as exc:
            self._input_error = exc
        finally:
            self._input_done = True
            self._owed = 0
            self._more.set()
            self._signal()
            if isinstance(chunks, AsyncGenerator):
                await chunks.aclose()  # its reader thread stops now, not when collected

    def _low(self) -> bool:
        """Whether the reader may read the next chunk: fewer items in hand than workers,
        and room under the count cap for what is in hand and more."""
        waiting = len(self._chunk)
        return waiting < self._initial_workers and self._in_window + waiting < self._window

    async def _next_chunk(self) -> bool:
        """Wait until the reader has put items in hand; False when none will come (the
        input has ended, or the run stopped)."""
        while not self._chunk:
            if self._input_done or self._stopping:
                return False
            self._more.clear()
            await self._more.wait()
        return True

    async def _wait_room(self) -> None:
        self._room.clear()
        await self._room.wait()

    async def _work(self) -> None:
        finish = self._finish
        cost = self._cost
        ordered = self._ordered
        chunk = self._chunk
        ready = self._ready
        window = self._window
        window_bytes = self._window_bytes
        low = self._initial_workers
        while True:
            # The head of the order always starts; any other item only while the
            # window has room for it and for what the items running are expected to add.
            while (
                (in_window := self._in_window)
                and not self._stopping
                and (
                    in_window >= window
                    or self._held
                    + (
                        (in_window - self._finished) * self._cost_sum // self._cost_count
                        if self._cost_count
                        else 0
                    )
                    >= window_bytes
                )
            ):
                await self._wait_room()
            if self._stopping:
                return
            if not chunk:
                if not await self._next_chunk():
                    return
                continue  # the window may have filled while this worker waited
            item = chunk.popleft()
            if len(chunk) < low:
                self._wanted.set()  # the reader reads the next chunk
            sequence = self._started
            self._started = sequence + 1
            self._in_window += 1
            self._held += ITEM_COST
            fetch = self._fetch
            assert fetch is not None  # made before the first chunk is in hand
            try:
                result = finish(await fetch(item))
                size = cost(result)
            except Abandoned:
                self._lose(sequence, None)
                continue
            except asyncio.CancelledError:
                self._lose(sequence, None)  # ordered output ends here, as after abort()
                raise
            except Exception as exc:  # a bug in fetch: surfaced to the consumer
                self._lose(sequence, exc)
                continue
            self._held += size - ITEM_COST  # the item is let go; its result held
            self._finished += 1
            self._cost_sum += size
            self._cost_count += 1
            if ordered:
                ready[sequence] = (result, size)
                if sequence == self._head:
                    self._signal()
            else:
                self._completed.append(result)
                self._completed_cost += size
                self._signal()

    def _lose(self, sequence: int, error: BaseException | None) -> None:
        """An item that will have no result (see ``_lost``)."""
        self._lost[sequence] = error
        if not self._ordered or sequence == self._head:
            self._signal()

    async def batches(self, items: AsyncIterable[Item]) -> AsyncGenerator[list[T], None]:
        """Records in batches of those ready together, so a writer can flush per batch."""
        async with aclosing(self.chunk_batches(one_by_one(items))) as batches:
            async for batch in batches:
                yield batch

    async def chunk_batches(
        self, chunks: AsyncIterable[Sequence[Item]]
    ) -> AsyncGenerator[list[T], None]:
        """``batches`` of an input read in chunks (a batch of lines at a time): items
        taken from a chunk in hand cost no await each."""
        self._reader = asyncio.create_task(self._read(chunks))
        self._tasks = [asyncio.create_task(self._work()) for _ in range(self._initial_workers)]
        ready = self._ordered_ready if self._ordered else self._unordered_ready
        try:
            while (batch := await ready()) is not None:
                if batch:
                    yield batch
            if self._input_error is not None:
                raise self._input_error
        finally:
            self._reader.cancel()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(self._reader, *self._tasks, return_exceptions=True)

    def _over(self) -> bool:
        """Whether every item that will start has been handed out."""
        return self._handed_out == self._started and (
            self._stopping or (self._input_done and not self._chunk)
        )

    def _release(self, count: int, held: int, results: int) -> None:
        self._in_window -= count
        self._finished -= results
        self._held -= held + (count - results) * ITEM_COST  # results' items already left
        self._handed_out += count
        self._room.set()
        self._wanted.set()  # the count cap may have room for the next chunk

    async def _ordered_ready(self) -> list[T] | None:
        """The next batch in order; None (or the bug an item's fetch raised) once, at
        the end, after which ``chunk_batches``, its one caller, asks no more."""
        ready = self._ready
        while self._head not in ready:
            if self._aborted or self._head in self._lost or self._over():
                break
            await self._sleep()
        batch: list[T] = []
        held = 0
        head = self._head
        while head in ready:
            result, size = ready.pop(head)
            held += size
            batch.append(result)
            head += 1
        self._head = head
        self._release(len(batch), held, len(batch))
        if batch:
            return batch
        if head in self._lost:
            # An item that never completed: nothing after it may be written in order.
            error = self._lost.pop(head)
            if error is not None:
                raise error
        return None

    async def _unordered_ready(self) -> list[T] | None:
        while not self._completed and not self._lost:
            if self._aborted or self._over():
                return None
            await self._sleep()
        batch, held = self._completed, self._completed_cost
        self._completed, self._completed_cost = [], 0
        lost = self._lost
        taken = len(batch) + len(lost)
        errors = [error for error in lost.values() if error is not None]
        lost.clear()
        self._release(taken, held, len(batch))
        if errors:
            raise errors[0]
        return batch
