"""The well-known asyncio recipe: one task per URL created up front, a semaphore as the
limit, asyncio.gather, results printed at the end. A peer for the benchmark.

    python gather_recipe.py LIMIT < urls.txt > out.jsonl
"""

import asyncio
import json
import sys

import aiohttp


async def fetch(session: aiohttp.ClientSession, semaphore: asyncio.Semaphore, url: str) -> dict:
    async with semaphore:
        try:
            async with session.get(url) as response:
                body = await response.read()
                return {"url": url, "status": response.status, "size": len(body)}
        except Exception as exc:
            return {"url": url, "error": str(exc)}


async def main(limit: int) -> None:
    urls = [line.strip() for line in sys.stdin if line.strip()]
    semaphore = asyncio.Semaphore(limit)
    connector = aiohttp.TCPConnector(limit=limit)
    async with aiohttp.ClientSession(connector=connector) as session:
        results = await asyncio.gather(*(fetch(session, semaphore, url) for url in urls))
    for result in results:
        sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
