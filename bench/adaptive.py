"""--limit auto against endpoints of fixed capacity: traces and figures for RESULTS.md.

    python bench/adaptive.py            # the three cases of issue 12, with fixed-limit peers
    python bench/adaptive.py --quick    # fewer requests

Each case runs fetchmany in this process through the library API (so the limit's
trace can be read) against tests/capacity_server.py on 127.0.0.1, which answers 503
beyond its capacity and counts what it saw. Prints one table per case: wall,
served, rejected (overload answers), and the limit over time.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from capacity_server import Capacity

from fetchmany import FetchOptions
from fetchmany.api import fetch_batches
from fetchmany.fetch.engine import Engine
from fetchmany.input.sources import items_from
from fetchmany.input.templates import RequestTemplate, url_template
from fetchmany.options import Adaptive


async def run(capacity: Capacity, n: int, limit: int | None) -> dict[str, Any]:
    runner = web.AppRunner(capacity.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    template = RequestTemplate(url=url_template(f"http://127.0.0.1:{port}/cap?id={{}}"))
    options = FetchOptions(limit=limit or 256, adaptive=None if limit else Adaptive())
    engines: list[Engine[Any]] = []
    started = time.monotonic()
    ok = 0
    async for batch in fetch_batches(
        items_from(map(str, range(n)), template), options, engines.append
    ):
        ok += sum(1 for record in batch if record.ok)
    wall = time.monotonic() - started
    await runner.cleanup()
    trace: list[tuple[float, int]] = []
    limits = engines[0].limits if engines else None
    if limits is not None and limits.hosts:
        trace = next(iter(limits.hosts.values())).trace
    return {"wall": wall, "ok": ok, "served": capacity.served, "rejected": capacity.rejected,
            "max_in_flight": capacity.max_in_flight, "trace": trace}  # fmt: skip


def show_trace(trace: list[tuple[float, int]], every: float = 0.25) -> str:
    points = []
    next_at = 0.0
    for at, limit in trace:
        if at >= next_at:
            points.append(f"{at:.2f}s:{limit}")
            next_at = at + every
    return " ".join(points)


def dropping(after: int) -> Capacity:
    """Capacity 40 until ``after`` requests are served, then 10."""
    return Capacity(40, 0.04, change_after=after, changed_to=10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    scale = 0.5 if args.quick else 1.0
    cases = [
        ("capacity 12, 40 ms", lambda: Capacity(12, 0.04), int(800 * scale), [12, 10, 30]),
        ("capacity 1000, 40 ms", lambda: Capacity(1000, 0.04), int(2000 * scale), [10]),
        ("capacity 40 then 10, 40 ms", lambda: dropping(int(800 * scale)), int(1600 * scale), [10]),
    ]
    for name, make, n, fixed in cases:
        print(f"\n### {name}: {n} requests\n")
        print("| run | wall | served | overload answers | per request | max in flight |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        auto = asyncio.run(run(make(), n, None))
        rows = [("--limit auto", auto)] + [
            (f"--limit {f}", asyncio.run(run(make(), n, f))) for f in fixed
        ]
        for label, r in rows:
            print(f"| {label} | {r['wall']:.2f} s | {r['served']} | {r['rejected']} | "
                  f"{r['rejected'] / n:.1%} | {r['max_in_flight']} |")  # fmt: skip
        print(f"\nlimit over time (auto): {show_trace(auto['trace'])}")


if __name__ == "__main__":
    main()
