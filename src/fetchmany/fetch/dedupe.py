"""``--dedupe``: each distinct URL (with the same request body) is fetched once.

Every item still gets its own record: a duplicate waits for the first fetch of
its URL and receives a copy with its own index and input. The map of URLs seen
grows with the number of distinct URLs (their records are kept to serve later
duplicates), which is the price of exact deduplication over any input order.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable

from yarl import URL

from fetchmany.fetch.limits import Abandoned
from fetchmany.input.sources import Item
from fetchmany.records import Record


class Deduplicator:
    """Wraps a fetch function so identical requests share one fetch."""

    def __init__(self, fetch: Callable[[Item], Awaitable[Record]]) -> None:
        self._fetch = fetch
        self._seen: dict[tuple[URL, bytes | None], asyncio.Future[Record]] = {}
        self.saved = 0

    async def __call__(self, item: Item) -> Record:
        if item.target is None or item.error is not None:
            return await self._fetch(item)
        key = (item.target, item.data)
        first = self._seen.get(key)
        if first is None:
            future: asyncio.Future[Record] = asyncio.get_running_loop().create_future()
            self._seen[key] = future
            try:
                record = await self._fetch(item)
            except BaseException as exc:
                del self._seen[key]
                if isinstance(exc, asyncio.CancelledError):
                    future.cancel()
                else:
                    future.set_exception(Abandoned() if isinstance(exc, Abandoned) else exc)
                    future.exception()  # retrieved here; waiters raise their own copy
                raise
            future.set_result(record)
            return copy.copy(record)  # the kept one stays whole whatever the caller does
        self.saved += 1
        shared = await asyncio.shield(first)
        duplicate = copy.copy(shared)
        duplicate.index = item.index
        duplicate.input = item.input
        return duplicate
