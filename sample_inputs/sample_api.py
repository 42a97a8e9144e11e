"""A tiny local stand-in for jsonplaceholder's ``/posts?id=N``, for the README's quick start.

Run it alone with ``python sample_inputs/sample_api.py --port 8080``; it listens
on 127.0.0.1 only. ``/posts?id=N`` answers a JSON list holding post N (empty for
an unknown id, as the real API does), after a small random delay so concurrency
and ordering are visible; ``/redirect/N`` redirects N times before it answers.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys

from aiohttp import web

WORDS = (
    *("sunt", "aut", "facere", "repellat", "provident", "occaecati", "excepturi", "optio"),
    *("reprehenderit", "qui", "est", "esse", "ea", "molestias", "quasi", "exercitationem"),
    *("eum", "et", "iusto", "sed", "quo", "iure", "dolorem", "dolor", "magnam"),
)
POSTS = 100


def post(post_id: int) -> dict[str, object]:
    rng = random.Random(post_id)
    return {
        "userId": (post_id - 1) // 10 + 1,
        "id": post_id,
        "title": " ".join(rng.choices(WORDS, k=rng.randint(3, 7))),
        "body": " ".join(rng.choices(WORDS, k=20)),
    }


async def posts(request: web.Request) -> web.Response:
    await asyncio.sleep(random.uniform(0, 0.05))
    raw = request.query.get("id")
    if raw is None:
        return web.json_response([post(i) for i in range(1, POSTS + 1)])
    try:
        post_id = int(raw)
    except ValueError:
        return web.json_response({"error": f"id must be a number, got {raw!r}"}, status=400)
    return web.json_response([post(post_id)] if 1 <= post_id <= POSTS else [])


async def redirect(request: web.Request) -> web.Response:
    """``/redirect/N``: N redirects before the answer, for the README's link check."""
    hops = int(request.match_info["hops"])
    if hops <= 0:
        return web.json_response({"arrived": True})
    raise web.HTTPFound(f"/redirect/{hops - 1}")


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/posts", posts)
    app.router.add_get(r"/redirect/{hops:\d+}", redirect)
    return app


async def serve(port: int) -> None:
    runner = web.AppRunner(make_app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    bound = runner.addresses[0][1]
    print(f"http://127.0.0.1:{bound}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    args = parser.parse_args()
    try:
        asyncio.run(serve(args.port))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
