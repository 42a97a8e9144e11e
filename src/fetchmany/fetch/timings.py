"""``--timings``: where one attempt's time went, measured with aiohttp's tracing hooks.

The phases are those curl's ``-w`` reports: DNS, connect, first byte, total. A
phase that did not happen is null: a reused keep-alive connection has no DNS and
no connect, and a cached DNS answer has no DNS. aiohttp's tracing has no hook
around the TLS handshake (it happens inside connection creation), so for https
``connect_ms`` includes it and ``tls_ms`` is null; ``tls_ms`` is there so that
records keep one shape if aiohttp gains the hook.

The trace config is added to the session only when timings are asked for, so a
run without them pays nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import aiohttp


@dataclass(slots=True)
class Timings:
    """The clock readings of one attempt (``perf_counter`` seconds)."""

    start: float = 0.0
    dns_start: float | None = None
    dns_end: float | None = None
    connect_start: float | None = None
    connect_end: float | None = None
    headers: float | None = None
    end: float | None = None

    def to_dict(self) -> dict[str, float | None]:
        def span(a: float | None, b: float | None) -> float | None:
            return None if a is None or b is None else round((b - a) * 1000, 3)

        return {
            "dns_ms": span(self.dns_start, self.dns_end),
            "connect_ms": span(self.connect_start, self.connect_end),
            "tls_ms": None,
            "ttfb_ms": span(self.start, self.headers),
            "total_ms": span(self.start, self.end),
        }


def _timings(context: SimpleNamespace) -> Timings | None:
    found = context.trace_request_ctx
    return found if isinstance(found, Timings) else None


async def _request_start(session: Any, context: SimpleNamespace, params: Any) -> None:
    if (timings := _timings(context)) is not None:
        timings.start = time.perf_counter()


async def _dns_start(session: Any, context: SimpleNamespace, params: Any) -> None:
    if (timings := _timings(context)) is not None:
        timings.dns_start = time.perf_counter()


async def _dns_end(session: Any, context: SimpleNamespace, params: Any) -> None:
    if (timings := _timings(context)) is not None:
        timings.dns_end = time.perf_counter()


async def _connect_start(session: Any, context: SimpleNamespace, params: Any) -> None:
    if (timings := _timings(context)) is not None:
        timings.connect_start = time.perf_counter()


async def _connect_end(session: Any, context: SimpleNamespace, params: Any) -> None:
    if (timings := _timings(context)) is not None:
        timings.connect_end = time.perf_counter()


async def _headers(session: Any, context: SimpleNamespace, params: Any) -> None:
    """on_request_end fires once the response's status line and headers are in."""
    if (timings := _timings(context)) is not None:
        timings.headers = time.perf_counter()


async def _redirect(session: Any, context: SimpleNamespace, params: Any) -> None:
    """A redirect starts the next hop: its phases replace this one's (the final attempt's
    timings are of the final request; first byte counts from the first request)."""
    if (timings := _timings(context)) is not None:
        timings.dns_start = timings.dns_end = None
        timings.connect_start = timings.connect_end = None


def trace_config() -> aiohttp.TraceConfig:
    config = aiohttp.TraceConfig()
    config.on_request_start.append(_request_start)
    config.on_dns_resolvehost_start.append(_dns_start)
    config.on_dns_resolvehost_end.append(_dns_end)
    config.on_connection_create_start.append(_connect_start)
    config.on_connection_create_end.append(_connect_end)
    config.on_request_end.append(_headers)
    config.on_request_redirect.append(_redirect)
    return config
