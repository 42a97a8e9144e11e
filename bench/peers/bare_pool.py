"""A bare aiohttp worker pool doing the same work as fetchmany's default run, with no
features beyond it: the floor of what that work costs in Python, a peer for the benchmark.

    python bare_pool.py LIMIT [--asyncio] [--window N] < urls.txt > out.jsonl

- input is read lazily from stdin (blank and ``#`` lines skipped), one item a line;
- LIMIT workers pull items and read each body;
- each item becomes a record dict: index, url, status, error, body (parsed with orjson
  when the response says JSON, else text);
- records are written in input order as JSON Lines with orjson, through a small reorder
  buffer keyed by index; at most ``--window`` items (default max(4 x LIMIT, 256), as
  fetchmany's count window was before it was bounded in bytes by --window-bytes) are
  started but not yet written, so memory stays bounded;
- runs on uvloop, like fetchmany; ``--asyncio`` uses asyncio's own loop instead.

No retries, timeouts of its own, progress, summary or options: what is left is the
aiohttp request, the record, the encoding and the ordering.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Iterator
from typing import Any, BinaryIO

import aiohttp
import orjson

_NEWLINE = orjson.OPT_APPEND_NEWLINE


class Ordered:
    """Writes records in index order; holds back those that finish early."""

    def __init__(self, out: BinaryIO, window: int) -> None:
        self.out = out
        self.window = window
        self.next = 0
        self.pending: dict[int, dict[str, Any]] = {}
        self.room: asyncio.Future[None] | None = None

    async def wait_room(self, index: int) -> None:
        """Wait until ``index`` is inside the window (the head has moved far enough)."""
        while index >= self.next + self.window:
            if self.room is None:
                self.room = asyncio.get_running_loop().create_future()
            await self.room

    def put(self, index: int, record: dict[str, Any]) -> None:
        if index != self.next:
            self.pending[index] = record
            return
        write = self.out.write
        write(orjson.dumps(record, option=_NEWLINE))
        following = index + 1
        pending = self.pending
        while following in pending:
            write(orjson.dumps(pending.pop(following), option=_NEWLINE))
            following += 1
        self.next = following
        if self.room is not None:
            self.room.set_result(None)
            self.room = None


def read_items() -> Iterator[tuple[int, str]]:
    index = 0
    for raw in sys.stdin.buffer:
        line = raw.strip()
        if line and not line.startswith(b"#"):
            yield index, line.decode("utf-8", "surrogateescape")
            index += 1


async def worker(
    session: aiohttp.ClientSession, items: Iterator[tuple[int, str]], sink: Ordered
) -> None:
    for index, url in items:
        await sink.wait_room(index)
        record: dict[str, Any] = {
            "index": index,
            "url": url,
            "status": None,
            "error": None,
            "body": None,
        }
        try:
            async with session.get(url) as response:
                data = await response.read()
                record["status"] = response.status
                if "json" in response.content_type:
                    try:
                        record["body"] = orjson.loads(data)
                    except orjson.JSONDecodeError:
                        record["body"] = data.decode("utf-8", "replace")
                else:
                    record["body"] = data.decode("utf-8", "replace")
        except Exception as exc:
            record["error"] = f"{type(exc).__name__}: {exc}"
        sink.put(index, record)


async def main(limit: int, window: int, out: BinaryIO) -> None:
    sink = Ordered(out, window)
    items = read_items()
    connector = aiohttp.TCPConnector(limit=limit)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session, items, sink) for _ in range(limit)))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="A bare aiohttp pool (bench peer).")
    parser.add_argument("limit", type=int)
    parser.add_argument("--asyncio", action="store_true", help="asyncio's loop, not uvloop")
    parser.add_argument("--window", type=int, default=None)
    args = parser.parse_args()
    window = max(args.window or max(4 * args.limit, 256), args.limit)
    # Our own 8 KB buffer, whatever PYTHONUNBUFFERED says: a write per record would
    # measure the environment, not the pool.
    with open(sys.stdout.fileno(), "wb", closefd=False) as out:
        if args.asyncio:
            asyncio.run(main(args.limit, window, out))
        else:
            import uvloop

            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                runner.run(main(args.limit, window, out))
