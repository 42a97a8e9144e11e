"""``--refresh`` against a full run: body bytes transferred and wall time.

    python bench/refresh.py                 # 10,000 URLs, 1% changed, --limit 50, 3 rounds
    python bench/refresh.py --urls 2000 --rounds 1

A loopback server (this file with --serve, in its own process so it does not share
the client's core) serves /r/N: an HTML page of --body-kib KiB, an ETag and a
Last-Modified per version of N, and 304 Not Modified to a request whose
If-None-Match (or If-Modified-Since) matches. It counts the body bytes it sends.
A body crosses a real link at some rate, and loopback at memory speed: --pace MB/s
sends each body at that rate per connection (8 Mbit/s by default: what a refresh
saves is the transfer; 0 sends as fast as loopback goes, where only the requests'
CPU is left to compare).

Rounds are interleaved: a full run writes A; 1% of the resources change; a refresh
run reads A and writes B; the next round's full run (after no change) is the
reference B must equal, except elapsed_ms, attempts and unchanged (checked every
round). Targets: a refresh transfers at most 3% of a full run's body bytes and takes
at most 0.3x its wall, at the same --limit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def serve(port_file: str, body_kib: int, pace: float) -> None:
    from aiohttp import web

    versions: dict[int, int] = {}
    stats = {"200": 0, "304": 0, "body_bytes": 0}

    def validators(n: int) -> tuple[str, str]:
        version = versions.get(n, 0)
        day = 1 + version % 28
        return f'"{n}-{version}"', f"Wed, {day:02d} Oct 2026 07:28:00 GMT"

    async def resource(request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        etag, modified = validators(n)
        headers = {"ETag": etag, "Last-Modified": modified}
        asked = request.headers.get("If-None-Match")
        since = request.headers.get("If-Modified-Since")
        if asked == etag or (asked is None and since == modified):
            stats["304"] += 1
            return web.Response(status=304, headers=headers)
        head = f"<html><body><h1>item {n} version {versions.get(n, 0)}</h1><p>".encode()
        body = head + b"lorem ipsum " * (body_kib * 1024 // 12) + b"</p></body></html>"
        stats["200"] += 1
        stats["body_bytes"] += len(body)
        if not pace:
            return web.Response(body=body, content_type="text/html", headers=headers)
        response = web.StreamResponse(headers=headers)
        response.content_type = "text/html"
        response.content_length = len(body)
        await response.prepare(request)
        chunk = 16 * 1024
        for start in range(0, len(body), chunk):
            await response.write(body[start : start + chunk])
            await asyncio.sleep(chunk / (pace * 1e6))
        await response.write_eof()
        return response

    async def control(request: web.Request) -> web.Response:
        """``change`` bumps the versions of the items posted; ``reset`` says what was
        served since the last reset, and starts counting again."""
        action = request.match_info["action"]
        served = dict(stats)
        if action == "change":
            for n in json.loads(await request.read()):
                versions[n] = versions.get(n, 0) + 1
        elif action == "reset":
            stats.update({"200": 0, "304": 0, "body_bytes": 0})
        return web.json_response(served)

    app = web.Application()
    app.router.add_get("/r/{n}", resource)
    app.router.add_post("/_/{action}", control)

    runner = web.AppRunner(app, access_log=None)

    async def main() -> None:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        await asyncio.to_thread(Path(port_file).write_text, str(port))
        await asyncio.Event().wait()

    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())


def _control(port: int, action: str, payload: Any = None) -> dict[str, int]:
    data = json.dumps(payload).encode() if payload is not None else b""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/_/{action}", data=data)
    with urllib.request.urlopen(request) as answer:
        result: dict[str, int] = json.loads(answer.read())
        return result


def _measure(command: list[str], stdout: str = "/dev/null") -> dict[str, Any]:
    output = subprocess.run(
        [sys.executable, str(HERE / "measure.py"), "--stdout", stdout, "--", *command],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(output.stdout)
    if result["rc"] not in (0, 1):
        raise SystemExit(f"{command} exited {result['rc']}: {output.stderr}")
    return result


def _comparable(path: Path) -> list[dict[str, Any]]:
    skip = {"elapsed_ms", "attempts", "unchanged"}
    with path.open("rb") as stream:
        return [{k: v for k, v in json.loads(line).items() if k not in skip} for line in stream]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", metavar="PORT_FILE", help=argparse.SUPPRESS)
    parser.add_argument("--urls", type=int, default=10_000)
    parser.add_argument("--changed", type=float, default=0.01)
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--body-kib", type=int, default=64)
    parser.add_argument("--pace", type=float, default=1.0, metavar="MB/S")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.body_kib, args.pace)
        return 0
    fetchmany = os.path.join(os.path.dirname(sys.executable), "fetchmany")
    work = Path(tempfile.mkdtemp(prefix="fetchmany-refresh-"))
    port_file = work / "port"
    server = subprocess.Popen(
        [
            *(sys.executable, __file__, "--serve", str(port_file)),
            *("--body-kib", str(args.body_kib), "--pace", str(args.pace)),
        ]
    )
    try:
        while not port_file.exists() or not port_file.read_text():
            time.sleep(0.05)
        port = int(port_file.read_text())
        urls = work / "urls.txt"
        urls.write_text("".join(f"http://127.0.0.1:{port}/r/{n}\n" for n in range(args.urls)))
        common = [fetchmany, str(urls), "--limit", str(args.limit), "-q"]
        rows: list[dict[str, Any]] = []
        rng = random.Random(21)
        previous_refresh: Path | None = None
        for round_number in range(args.rounds + 1):
            full_out = work / f"full-{round_number}.jsonl"
            _control(port, "reset")
            full = _measure([*common, "-o", str(full_out)])
            full_bytes = _control(port, "reset")["body_bytes"]
            if previous_refresh is not None:  # the reference for the last refresh
                same = _comparable(previous_refresh) == _comparable(full_out)
                rows[-1]["equal"] = same
                if not same:
                    raise SystemExit(f"{previous_refresh} differs from a full run {full_out}")
            if round_number == args.rounds:
                break
            changed = rng.sample(range(args.urls), int(args.urls * args.changed))
            _control(port, "change", changed)
            refresh_out = work / f"refresh-{round_number}.jsonl"
            _control(port, "reset")
            refreshed = _measure([*common, "--refresh", str(full_out), "-o", str(refresh_out)])
            counts = _control(port, "reset")
            rows.append(
                {
                    "round": round_number + 1,
                    "full_wall": full["wall_s"],
                    "full_bytes": full_bytes,
                    "refresh_wall": refreshed["wall_s"],
                    "refresh_bytes": counts["body_bytes"],
                    "answers": f"{counts['200']} × 200, {counts['304']} × 304",
                    "full_rss": full["peak_rss_mib"],
                    "refresh_rss": refreshed["peak_rss_mib"],
                }
            )
            previous_refresh = refresh_out
    finally:
        server.terminate()
        server.wait()
    paced = f"bodies sent at {args.pace:g} MB/s" if args.pace else "bodies at loopback speed"
    print(
        f"#### --refresh: {args.urls:,} URLs, {args.changed:.0%} changed between runs, "
        f"--limit {args.limit}, {args.body_kib} KiB pages, {paced}\n"
    )
    print(
        "| round | full: body bytes | full: wall | refresh: body bytes | refresh: wall | "
        "bytes ratio | wall ratio | refresh answers | peak RSS full / refresh | "
        "equals a full run |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- |")
    for row in rows:
        print(
            f"| {row['round']} | {row['full_bytes']:,} | {row['full_wall']:.2f} s | "
            f"{row['refresh_bytes']:,} | {row['refresh_wall']:.2f} s | "
            f"{row['refresh_bytes'] / row['full_bytes']:.2%} | "
            f"{row['refresh_wall'] / row['full_wall']:.2f}x | {row['answers']} | "
            f"{row['full_rss']} / {row['refresh_rss']} MiB | {'yes' if row['equal'] else 'NO'} |"
        )
    byte_ratio = statistics.median(r["refresh_bytes"] / r["full_bytes"] for r in rows)
    wall_ratio = statistics.median(r["refresh_wall"] / r["full_wall"] for r in rows)
    print(
        f"\nmedian: refresh transfers {byte_ratio:.2%} of a full run's body bytes (target "
        f"<= 3%) in {wall_ratio:.2f}x its wall (target <= 0.3x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
