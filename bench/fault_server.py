"""A loopback HTTP/1.1 server whose answers are chosen by the request path, for the
latency-tail (f) and big-body (g) scenarios. Raw asyncio, on uvloop when installed, in a
process of its own so its CPU is not the client's.

    python bench/fault_server.py [--port 0] [--max-seconds 3600]

Prints ``ready PORT`` on stdout once it listens on 127.0.0.1. Paths:

    /ok?id=N                 200, a ~250-byte JSON document, at once
    /tail?id=N&d=SECONDS     the same after SECONDS (the slow tail)
    /reset?id=N              the connection is reset (RST) instead of an answer
    /flaky?id=N              503 the first time an id is asked for, then 200
    /missing?id=N            404 with a small JSON body
    /big?id=N&size=BYTES[&type=json|text][&d=SECONDS]
                             a body of BYTES: a JSON string (default) or plain text
    /__reset                 forget which /flaky ids were answered, zero the counters
    /__stats                 the counters, as JSON

Keep-alive throughout; requests on one connection are answered in turn. The server ends
by itself after --max-seconds, or when the process that started it is gone.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import socket
import struct
from typing import Final, cast

_REASONS: Final = {200: b"OK", 404: b"Not Found", 503: b"Service Unavailable"}
_FILLER: Final = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod " * 3


def small_body(ident: str) -> bytes:
    """About 250 bytes of JSON, like one REST API object."""
    doc = {"id": ident, "userId": 7, "title": "a small document", "body": _FILLER[:190]}
    return json.dumps(doc, separators=(",", ":")).encode()


def response(status: int, body: bytes, content_type: bytes = b"application/json") -> bytes:
    return b"".join(
        (
            b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Other")),
            b"Content-Type: " + content_type + b"\r\n",
            b"Content-Length: %d\r\n" % len(body),
            b"Connection: keep-alive\r\n\r\n",
            body,
        )
    )


class State:
    def __init__(self) -> None:
        self.flaky_seen: set[str] = set()
        self.counts: collections.Counter[str] = collections.Counter()
        self.big: dict[tuple[int, str], bytes] = {}

    def big_response(self, size: int, kind: str) -> bytes:
        key = (size, kind)
        if key not in self.big:
            if kind == "text":
                line = b"x" * 63 + b"\n"
                body = (line * (size // 64 + 1))[:size]
                self.big[key] = response(200, body, b"text/plain; charset=utf-8")
            else:
                body = b'"' + b"x" * max(size - 2, 0) + b'"'
                self.big[key] = response(200, body)
        return self.big[key]


def parse_target(target: str) -> tuple[str, dict[str, str]]:
    path, _, query = target.partition("?")
    params: dict[str, str] = {}
    if query:
        for pair in query.split("&"):
            name, _, value = pair.partition("=")
            params[name] = value
    return path, params


class Http(asyncio.Protocol):
    def __init__(self, state: State) -> None:
        self.state = state
        self.buffer = b""
        self.busy = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self.process()

    def process(self) -> None:
        """Answer every complete request in the buffer, one at a time."""
        while not self.busy and self.transport is not None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end]
            self.buffer = self.buffer[end + 4 :]
            self.answer(head)

    def send(self, payload: bytes) -> None:
        if self.transport is not None:
            self.transport.write(payload)

    def send_later(self, delay: float, payload: bytes) -> None:
        self.busy = True

        def done() -> None:
            self.busy = False
            self.send(payload)
            self.process()

        asyncio.get_running_loop().call_later(delay, done)

    def reset(self) -> None:
        transport = self.transport
        if transport is None:
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
        self.transport = None

    def answer(self, head: bytes) -> None:
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = request_line.split(" ")
        if len(parts) != 3:
            self.send(response(400, b'{"error":"bad request"}'))
            return
        path, params = parse_target(parts[1])
        state = self.state
        ident = params.get("id", "")
        state.counts[path] += 1
        if path == "/ok":
            self.send(response(200, small_body(ident)))
        elif path == "/tail":
            self.send_later(float(params.get("d", "1")), response(200, small_body(ident)))
        elif path == "/reset":
            self.reset()
        elif path == "/flaky":
            if ident in state.flaky_seen:
                self.send(response(200, small_body(ident)))
            else:
                state.flaky_seen.add(ident)
                state.counts["/flaky 503"] += 1
                self.send(response(503, b'{"error":"try again"}'))
        elif path == "/missing":
            self.send(response(404, b'{"error":"not found"}'))
        elif path == "/big":
            payload = state.big_response(int(params.get("size", "1048576")), params.get("type", ""))
            delay = float(params.get("d", "0"))
            if delay > 0:
                self.send_later(delay, payload)
            else:
                self.send(payload)
        elif path == "/__reset":
            state.flaky_seen.clear()
            state.counts.clear()
            self.send(response(200, b"{}"))
        elif path == "/__stats":
            self.send(response(200, json.dumps(dict(state.counts)).encode()))
        else:
            self.send(response(404, b'{"error":"no such path"}'))


async def serve(port: int, max_seconds: float) -> None:
    loop = asyncio.get_running_loop()
    state = State()
    server = await loop.create_server(
        lambda: Http(state), "127.0.0.1", port, backlog=4096, reuse_address=True
    )
    bound = server.sockets[0].getsockname()[1]
    print(f"ready {bound}", flush=True)
    parent = os.getppid()
    deadline = loop.time() + max_seconds
    stop: asyncio.Future[None] = loop.create_future()

    def watch() -> None:
        if loop.time() >= deadline or os.getppid() != parent:
            stop.set_result(None)
        else:
            loop.call_later(0.5, watch)

    watch()
    async with server:
        await stop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--max-seconds", type=float, default=3600.0)
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        factory = None
    else:
        factory = uvloop.new_event_loop
    with contextlib.suppress(KeyboardInterrupt), asyncio.Runner(loop_factory=factory) as runner:
        runner.run(serve(args.port, args.max_seconds))


if __name__ == "__main__":
    main()
