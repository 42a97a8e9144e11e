"""A bare aiohttp worker pool: N workers pull URLs from stdin and read each body, with no
features at all (no ordering, retries, parsing or records). The floor of what aiohttp
costs in Python, a peer for the benchmark.

    python bare_pool.py LIMIT < urls.txt > out.txt
"""

import asyncio
import sys

import aiohttp


async def worker(session: aiohttp.ClientSession, urls, out) -> None:
    for url in urls:
        try:
            async with session.get(url) as response:
                body = await response.read()
                out.write(b"%d %d\n" % (response.status, len(body)))
        except Exception:
            out.write(b"error\n")


async def main(limit: int) -> None:
    urls = (line.strip() for line in sys.stdin if line.strip())
    out = sys.stdout.buffer
    connector = aiohttp.TCPConnector(limit=limit)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session, urls, out) for _ in range(limit)))


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
