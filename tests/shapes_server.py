"""Loopback servers of the shapes real servers have, for ``--limit auto``.

Each ``Shape`` is one endpoint (``/item?id=N``) that counts what it sees from the
server's side: requests *present* (being served or waiting in its queue) over time,
the most present at once, overload answers, and each request's time from arrival to
answer. The shapes:

- ``reject``: serves at most ``capacity`` at once and answers ``overload_status``
  (503, or 429 with ``Retry-After``) at once beyond that;
- ``queue``: serves at most ``capacity`` at once; the rest wait in line (no errors);
- ``jitter``: no capacity limit, each answer after a delay drawn evenly from
  ``jitter`` (seconds);
- ``step``: ``reject`` whose capacity follows ``schedule`` (seconds from the first
  request, capacity from then on);
- ``quota``: serves everything, but counts requests per fixed window of ``window``
  seconds (aligned to the Unix clock, as real APIs do) and answers 429 beyond
  ``quota``; every answer announces the quota in the headers of ``style``.

Used in-process by the tests (``Shape.app()`` under the loopback fixture) and as a
separate process by ``bench/adaptive.py`` (``python tests/shapes_server.py SPEC...``:
one port per JSON spec, printed as a JSON list; ``GET /__stats`` on a port returns
its counts), so that the server's CPU is not the client's. Only ever 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from aiohttp import web

QUOTA_STYLES = ("ietf", "draft", "x", "x-epoch", "none")
"""Quota headers: the IETF draft's structured ``RateLimit``/``RateLimit-Policy`` (2026
revision), the earlier drafts' ``RateLimit-Limit/Remaining/Reset``, and the common
``X-RateLimit-*`` with ``Reset`` in seconds from now or as a Unix time (GitHub); or
none at all, and no Retry-After either."""


@dataclass
class Shape:
    kind: str
    capacity: int = 0
    service: float = 0.04
    jitter: tuple[float, float] = (0.0, 0.05)
    schedule: list[tuple[float, int]] = field(default_factory=list)
    overload_status: int = 503
    retry_after: int | None = None
    quota: int = 100
    window: float = 1.0
    style: str = "ietf"
    sample_every: float = 0.02

    # What it saw:
    present: int = 0
    serving: int = 0
    max_serving: int = 0
    max_present: int = 0
    served: int = 0
    overloads: int = 0
    log: list[tuple[float, float, int]] = field(default_factory=list)
    """(arrival, answer, status) in seconds from the first request."""
    presence: list[tuple[float, int]] = field(default_factory=list)
    """(seconds from the first request, requests present) every ``sample_every``."""
    _started: float | None = None
    started_wall: float | None = None
    _queue: asyncio.Semaphore | None = None
    _windows: dict[int, int] = field(default_factory=dict)
    _sampler: asyncio.Task[None] | None = None

    def now(self) -> float:
        if self._started is None:
            self._started = time.monotonic()
            self.started_wall = time.time()
            self._sampler = asyncio.get_running_loop().create_task(self._sample())
        return time.monotonic() - self._started

    async def _sample(self) -> None:
        while True:
            self.presence.append((round(self.now(), 3), self.present))
            await asyncio.sleep(self.sample_every)

    def capacity_at(self, at: float) -> int:
        capacity = self.capacity
        for since, value in self.schedule:
            if at >= since:
                capacity = value
        return capacity

    async def handle(self, request: web.Request) -> web.Response:
        arrived = self.now()
        self.present += 1
        self.max_present = max(self.max_present, self.present)
        try:
            response = await self._answer(arrived)
        finally:
            self.present -= 1
        self.log.append((arrived, self.now(), response.status))
        if response.status in (429, 503):
            self.overloads += 1
        else:
            self.served += 1
        return response

    async def _answer(self, arrived: float) -> web.Response:
        body = {"ok": True}
        if self.kind in ("reject", "step"):
            if self.serving >= self.capacity_at(arrived):
                headers = {}
                if self.retry_after is not None:
                    headers["Retry-After"] = str(self.retry_after)
                return web.json_response(
                    {"ok": False}, status=self.overload_status, headers=headers
                )
            await self._serve(self.service)
        elif self.kind == "queue":
            if self._queue is None:
                self._queue = asyncio.Semaphore(self.capacity)
            async with self._queue:
                await self._serve(self.service)
        elif self.kind == "jitter":
            await self._serve(random.uniform(*self.jitter))
        elif self.kind == "quota":
            return await self._quota()
        else:
            raise ValueError(f"no such shape: {self.kind}")
        return web.json_response(body)

    async def _serve(self, seconds: float) -> None:
        self.serving += 1
        self.max_serving = max(self.max_serving, self.serving)
        try:
            await asyncio.sleep(seconds)
        finally:
            self.serving -= 1

    async def _quota(self) -> web.Response:
        wall = time.time()
        number = math.floor(wall / self.window)
        reset_at = (number + 1) * self.window
        used = self._windows.get(number, 0) + 1
        self._windows = {number: used}
        remaining = max(0, self.quota - used)
        headers = self.quota_headers(remaining, reset_at, wall)
        if used > self.quota:
            if self.style != "none":
                headers["Retry-After"] = str(max(1, math.ceil(reset_at - wall)))
            return web.json_response({"ok": False}, status=429, headers=headers)
        await self._serve(self.service)
        return web.json_response({"ok": True}, headers=headers)

    def quota_headers(self, remaining: int, reset_at: float, wall: float) -> dict[str, str]:
        if self.style == "none":  # a quota it keeps to itself
            return {}
        left = max(0, math.ceil(reset_at - wall))  # delta-seconds are whole numbers
        window = f"{self.window:g}"
        if self.style == "ietf":
            return {
                "RateLimit-Policy": f'"default";q={self.quota};w={window}',
                "RateLimit": f'"default";r={remaining};t={left}',
            }
        if self.style == "draft":
            return {
                "RateLimit-Limit": str(self.quota),
                "RateLimit-Remaining": str(remaining),
                "RateLimit-Reset": str(left),
            }
        reset = str(math.ceil(reset_at)) if self.style == "x-epoch" else str(left)
        return {
            "X-RateLimit-Limit": str(self.quota),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": reset,
        }

    def stats(self) -> dict[str, Any]:
        return {
            "started_wall": self.started_wall,
            "max_present": self.max_present,
            "max_serving": self.max_serving,
            "served": self.served,
            "overloads": self.overloads,
            "log": self.log,
            "presence": self.presence,
        }

    def app(self) -> web.Application:
        async def stats(request: web.Request) -> web.Response:
            return web.json_response(self.stats())

        app = web.Application()
        app.router.add_get("/item", self.handle)
        app.router.add_get("/__stats", stats)

        async def stop_sampler(app: web.Application) -> None:
            if self._sampler is not None:
                self._sampler.cancel()

        app.on_cleanup.append(stop_sampler)
        return app


def shape_from(spec: dict[str, Any]) -> Shape:
    spec = dict(spec)
    if "jitter" in spec:
        spec["jitter"] = tuple(spec["jitter"])
    if "schedule" in spec:
        spec["schedule"] = [tuple(step) for step in spec["schedule"]]
    return Shape(**spec)


def spec_of(shape: Shape) -> dict[str, Any]:
    """The settings of ``shape`` as JSON, for ``python tests/shapes_server.py``."""
    keep = ("kind", "capacity", "service", "jitter", "schedule", "overload_status")
    keep += ("retry_after", "quota", "window", "style")
    return {name: value for name, value in asdict(shape).items() if name in keep}


async def _serve_specs(specs: list[dict[str, Any]]) -> None:
    runners = []
    ports = []
    for spec in specs:
        runner = web.AppRunner(shape_from(spec).app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        ports.append(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]
        runners.append(runner)
    print(json.dumps(ports), flush=True)
    # Serve until stdin closes (the bench ends us by closing it, or by SIGTERM).
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    for runner in runners:
        await runner.cleanup()


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(_serve_specs([json.loads(arg) for arg in sys.argv[1:]]))
