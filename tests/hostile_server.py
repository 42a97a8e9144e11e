"""A loopback HTTP/1.1 server whose every response is scripted, down to the raw bytes.

aiohttp's own server refuses to send what a hostile or broken server sends (a
Content-Length that lies, broken chunked framing, a reset in the middle of a
body), so this is a plain asyncio TCP server that writes the bytes of a ``Reply``
as given. A test registers replies with ``script`` and gets one URL per reply,
``http://127.0.0.1:PORT/r/KEY/``; keys are never reused, so a connection left
over from an earlier example cannot be answered with a later example's reply.
It only ever listens on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import socket
import struct
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

HOST = "127.0.0.1"
_MAX_HEAD = 1 << 20  # request heads up to 1 MiB: very long URLs are part of the game
_KEY = re.compile(rb"^/r/(\d+)(?:[/?#]|$)")


class Framing(StrEnum):
    """How the end of the body is marked on the wire."""

    LENGTH = "length"  # a true Content-Length
    SHORT = "short"  # Content-Length smaller than the body, then the rest as trailing junk
    LONG = "long"  # Content-Length larger than the body, then the connection closes
    CLOSE = "close"  # no length at all: the body ends when the connection closes
    CHUNKED = "chunked"  # valid chunked encoding
    BAD_CHUNKED = "bad_chunked"  # chunked with a malformed size line
    TRUNCATED_CHUNKED = "truncated_chunked"  # chunked, connection closes before the last chunk
    BOTH = "both"  # Content-Length and Transfer-Encoding: chunked together (smuggling shape)
    DOUBLE_LENGTH = "double_length"  # two Content-Length headers that disagree


WELL_FRAMED = frozenset({Framing.LENGTH, Framing.CHUNKED})


@dataclass(frozen=True, kw_only=True)
class Reply:
    """One scripted response. ``headers`` are sent as given, in order, duplicates included,
    except that ``{PORT}`` becomes the server's port and ``{SELF}`` this reply's own path
    (for redirects); the framing headers (Content-Length, Transfer-Encoding) are added per
    ``framing``."""

    status: int = 200
    reason: bytes = b"OK"
    version: bytes = b"HTTP/1.1"
    interim: bytes = b""
    """Sent before the response itself: a 100 Continue, a 103 Early Hints, or junk."""
    headers: tuple[tuple[bytes, bytes], ...] = ()
    body: bytes = b""
    framing: Framing = Framing.LENGTH
    lie: int = 1
    """How far a SHORT or LONG Content-Length is off (at least 1)."""
    chunk_size: int = 7
    delay_ms: int = 0
    """Wait before sending anything."""
    cut_after: int | None = None
    """Reset the connection after this many bytes of the framed body."""
    keep_alive: bool = False
    """Serve another request on the connection afterwards (only if the reply is well framed)."""
    before: Callable[[], None] | None = field(default=None, compare=False, repr=False)
    """Called on the server thread when the request has arrived, before anything is sent:
    a test's hook to change the world at a known point of a run (no sleeping)."""

    def head(self) -> bytes:
        lines = [self.interim + b"%s %d %s" % (self.version, self.status, self.reason)]
        lines += [name + b": " + value for name, value in self.headers]
        size = len(self.body)
        framing = self.framing
        if framing is Framing.LENGTH:
            lines.append(b"Content-Length: %d" % size)
        elif framing is Framing.SHORT:
            lines.append(b"Content-Length: %d" % max(0, size - self.lie))
        elif framing is Framing.LONG:
            lines.append(b"Content-Length: %d" % (size + self.lie))
        elif framing in (Framing.CHUNKED, Framing.BAD_CHUNKED, Framing.TRUNCATED_CHUNKED):
            lines.append(b"Transfer-Encoding: chunked")
        elif framing is Framing.BOTH:
            lines.append(b"Content-Length: %d" % size)
            lines.append(b"Transfer-Encoding: chunked")
        elif framing is Framing.DOUBLE_LENGTH:
            lines.append(b"Content-Length: %d" % size)
            lines.append(b"Content-Length: %d" % (size + self.lie))
        if not self.reusable:
            lines.append(b"Connection: close")
        return b"\r\n".join(lines) + b"\r\n\r\n"

    def framed_body(self) -> bytes:
        body = self.body
        if self.framing in (Framing.CHUNKED, Framing.BOTH, Framing.TRUNCATED_CHUNKED):
            step = max(1, self.chunk_size)
            chunks = [body[i : i + step] for i in range(0, len(body), step)]
            out = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks)
            if self.framing is Framing.TRUNCATED_CHUNKED:
                return out  # no terminating zero-size chunk: the close cuts it
            return out + b"0\r\n\r\n"
        if self.framing is Framing.BAD_CHUNKED:
            # A size line that is not hex, after one good chunk.
            good = b"%x\r\n%s\r\n" % (len(body[:3]), body[:3]) if body[:3] else b""
            return good + b"zz\r\n" + body[3:] + b"\r\n0\r\n\r\n"
        return body

    @property
    def reusable(self) -> bool:
        return (
            self.keep_alive
            and self.version == b"HTTP/1.1"
            and not self.interim
            and self.framing in WELL_FRAMED
            and self.cut_after is None
            and not (100 <= self.status < 200 or self.status in (204, 304))
        )

    def wire(self) -> tuple[bytes, bytes]:
        """The head and the framed body, as they go on the wire."""
        return self.head(), self.framed_body()


_TEXT = ((b"Content-Type", b"text/plain"),)
NOT_SCRIPTED = Reply(status=404, reason=b"Not Scripted", headers=_TEXT, body=b"no such reply")
BAD_REQUEST = Reply(status=400, reason=b"Bad Request", headers=_TEXT, body=b"bad request")


@dataclass(frozen=True)
class Received:
    """One request as it arrived: method, target (path and query, still encoded), body."""

    method: bytes
    target: bytes
    body: bytes


@dataclass
class Hits:
    """What the server saw: requests per key, and every request (for assertions)."""

    by_key: dict[int, int] = field(default_factory=dict)
    requests: list[Received] = field(default_factory=list)


class HostileServer:
    """Serves scripted replies from a background thread on 127.0.0.1 and a free port."""

    def __init__(self) -> None:
        self.port = 0
        self.hits = Hits()
        self._replies: dict[int, Reply] = {}
        self._keys = itertools.count(7_000_001)  # far from digits a random line holds
        self._lock = threading.Lock()
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._thread = threading.Thread(target=self._serve, name="hostile-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("hostile server did not start")

    # -- scripting, from the test thread -------------------------------------------------

    def script(self, replies: Sequence[Reply]) -> list[str]:
        """Register replies; return one URL (ending in ``/``) per reply, in order."""
        urls = []
        with self._lock:
            for reply in replies:
                key = next(self._keys)
                self._replies[key] = reply
                urls.append(self.url(key))
        return urls

    def url(self, key: int | str) -> str:
        return f"http://{HOST}:{self.port}/r/{key}/"

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"

    def _reply_for(self, target: bytes) -> tuple[int, Reply]:
        match = _KEY.match(target)
        if match is None:
            return 0, NOT_SCRIPTED
        key = int(match.group(1))
        with self._lock:
            self.hits.by_key[key] = self.hits.by_key.get(key, 0) + 1
            return key, self._replies.get(key, NOT_SCRIPTED)

    # -- serving, on the server thread ---------------------------------------------------

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._main())

    async def _main(self) -> None:
        server = await asyncio.start_server(self._on_connection, HOST, 0, limit=_MAX_HEAD)
        self.port = server.sockets[0].getsockname()[1]
        self._stop = asyncio.Event()
        self._ready.set()
        async with server:
            await self._stop.wait()
            server.close()
            for task in list(self._connections):
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            while await self._one_exchange(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self._connections.discard(task)
            with contextlib.suppress(Exception):
                writer.close()

    async def _one_exchange(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Read one request, send its scripted reply; True if the connection stays open."""
        try:
            first = await reader.readexactly(1)
        except asyncio.IncompleteReadError:
            return False  # the client closed an idle keep-alive connection
        if first == b"\x16":
            return False  # a TLS ClientHello (an https:// URL): hang up at once
        head = first + await reader.readuntil(b"\r\n\r\n")
        request_line, _, header_block = head.partition(b"\r\n")
        parts = request_line.split(b" ")
        if len(parts) != 3:
            await self._send(writer, BAD_REQUEST)
            return False
        length = 0
        for line in header_block.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length" and value.strip().isdigit():
                length = int(value.strip())
        body = await reader.readexactly(length) if length else b""
        with self._lock:
            self.hits.requests.append(Received(parts[0], parts[1], body))
        key, reply = self._reply_for(parts[1])
        return await self._send(writer, reply, key)

    async def _send(self, writer: asyncio.StreamWriter, reply: Reply, key: int = 0) -> bool:
        if reply.before is not None:
            reply.before()
        if reply.delay_ms:
            await asyncio.sleep(reply.delay_ms / 1000)  # part of the script, not a sync
        head, body = reply.wire()
        head = head.replace(b"{PORT}", b"%d" % self.port).replace(b"{SELF}", b"/r/%d/" % key)
        if reply.cut_after is not None:
            writer.write(head + body[: reply.cut_after])
            await writer.drain()
            _reset(writer)
            return False
        writer.write(head + body)
        await writer.drain()
        if not reply.reusable:
            with contextlib.suppress(Exception):
                writer.close()
                await writer.wait_closed()
            return False
        return True

    def close(self) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST instead of a FIN: the client sees a connection reset."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
