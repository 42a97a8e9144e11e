"""A semaphore whose waiters are served oldest item first, and whose size may change.

``asyncio.Semaphore`` serves waiters first come, first served. Under a cap that
items queue for (a busy host, a limit cut by overload answers) that order is wrong
for ordered output: an item retried after a backoff joins the back of the line
behind hundreds of later items, and the ordered output waits for it all that time
(a 503 under ``--limit auto`` froze the bar for seconds). Here the waiter with the
lowest *order* (the item's index) goes first, so a retry, which is always older
than what queued meanwhile, waits for the next free slot only.

Not thread-safe; one event loop. The fast path (a free slot, nobody waiting) is a
comparison and an increment, as in ``asyncio.Semaphore``.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from typing import Final

_NO_ORDER: Final = 1 << 62


class PriorityGate:
    """``size`` slots; ``acquire(order)`` waits for one, lowest order served first."""

    __slots__ = ("_count", "_size", "_waiters", "in_use")

    def __init__(self, size: int) -> None:
        self._size = size
        self.in_use = 0
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._count = itertools.count()

    @property
    def size(self) -> int:
        return self._size

    def resize(self, size: int) -> None:
        """Change the number of slots; a larger size lets waiters in at once, a smaller
        one takes effect as slots are released (nobody is cut off mid-request)."""
        self._size = max(1, size)
        self._wake()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def locked(self) -> bool:
        return self.in_use >= self._size or bool(self._waiters)

    def try_acquire(self) -> bool:
        """Take a free slot if there is one and nobody waits; False otherwise."""
        if self.in_use < self._size and not self._waiters:
            self.in_use += 1
            return True
        return False

    async def acquire(self, order: int = _NO_ORDER) -> None:
        if self.in_use < self._size and not self._waiters:
            self.in_use += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (order, next(self._count), waiter))
        self._wake()  # room left by a cancelled waiter still in the heap
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release()  # it was handed a slot as it was cancelled: pass it on
            # A cancelled waiter stays in the heap and is skipped when it comes up.
            raise

    def release(self) -> None:
        self.in_use -= 1
        if self._waiters:  # most releases: nobody waits, and nothing more to do
            self._wake()

    def _wake(self) -> None:
        waiters = self._waiters
        while waiters and self.in_use < self._size:
            _, _, waiter = heapq.heappop(waiters)
            if not waiter.done():
                self.in_use += 1
                waiter.set_result(None)
