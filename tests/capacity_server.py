"""A loopback endpoint of fixed capacity, for ``--limit auto``: it serves at most
``capacity`` requests at once (each taking ``delay`` seconds) and answers 503 at
once beyond that, counting what it saw. Used by the tests and by bench/adaptive.py.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class Capacity:
    capacity: int
    delay: float = 0.04
    in_flight: int = 0
    max_in_flight: int = 0
    served: int = 0
    rejected: int = 0
    change_after: int | None = None
    """After this many served requests, the capacity becomes ``changed_to``."""
    changed_to: int = 0
    log: list[tuple[int, int]] = field(default_factory=list)
    """(served, in flight) at each answer, for traces."""

    def app(self) -> web.Application:
        async def handle(request: web.Request) -> web.Response:
            if self.change_after is not None and self.served >= self.change_after:
                self.capacity = self.changed_to
            if self.in_flight >= self.capacity:
                self.rejected += 1
                return web.Response(status=503, text="over capacity")
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                await asyncio.sleep(self.delay)
            finally:
                self.in_flight -= 1
            self.served += 1
            return web.json_response({"id": request.query.get("id")})

        app = web.Application()
        app.router.add_get("/cap", handle)
        return app
