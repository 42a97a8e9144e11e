"""The library path: ``fetch_many`` and ``fetch_batches``, items in, records out.

No click, no rich: this is what ``from fetchmany import fetch_many`` runs. The
command line (``cli/run.py``) drives the same ``fetch_batches``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Iterable, Mapping
from contextlib import AsyncExitStack, aclosing
from typing import TypeVar

from fetchmany.fetch.dedupe import Deduplicator
from fetchmany.fetch.engine import Engine, FetchFunction
from fetchmany.fetch.limits import Limits
from fetchmany.fetch.policy import plan_request
from fetchmany.fetch.session import SessionSetup
from fetchmany.input.sources import Item, items_from
from fetchmany.options import FetchOptions
from fetchmany.records import Record

T = TypeVar("T")


def record_cost(record: Record) -> int:
    """What a finished record holds, roughly, for the window's byte budget: its body
    as Python objects is a small multiple of the bytes that arrived."""
    return 3 * (record.size or 0)


def _same(record: Record) -> Record:
    return record


async def fetch_batches(
    items: AsyncIterable[Item],
    options: FetchOptions,
    on_engine: Callable[[Engine[Record]], None] | None = None,
    setup: SessionSetup | None = None,
) -> AsyncGenerator[list[Record], None]:
    """Records for ``items`` in batches of those ready together (in order unless unordered).

    ``on_engine`` receives the engine once it exists, so a caller can stop it.
    """
    async with aclosing(
        fetch_finished(items, options, _same, record_cost, on_engine, setup)
    ) as batches:
        async for batch in batches:
            yield batch


async def fetch_finished(
    items: AsyncIterable[Item],
    options: FetchOptions,
    finish: Callable[[Record], T],
    cost: Callable[[T], int],
    on_engine: Callable[[Engine[T]], None] | None = None,
    setup: SessionSetup | None = None,
) -> AsyncGenerator[list[T], None]:
    """``fetch_batches`` with each record turned by ``finish`` as soon as it completes;
    the reorder window holds those results and counts ``cost(result)`` bytes each.

    The run is assembled here, each part made once: the session's setup (unless the
    caller prepared it already, as the CLI does to check it early), the limits, the
    session, the client and the engine.
    """
    setup = setup or SessionSetup.prepare(options)
    limits = Limits(
        options.limit,
        options.per_host,
        options.rate,
        options.adaptive,
        longest_wait=options.retry.max_backoff,
    )
    async with AsyncExitStack() as stack:

        async def make_fetch() -> FetchFunction:
            """The session and client, made when the first item arrives (aiohttp is
            imported here: an empty input never pays for it)."""
            from fetchmany.fetch.client import Client
            from fetchmany.fetch.session import open_session

            sessions = await stack.enter_async_context(open_session(options, setup))
            client = Client(sessions, options, limits, setup)
            return Deduplicator(client.fetch) if options.dedupe else client.fetch

        engine = Engine(
            None,
            finish,
            workers=options.limit,
            max_workers=options.pool_size,
            window=options.effective_window,
            window_bytes=options.window_bytes,
            cost=cost,
            ordered=options.ordered,
            limits=limits,
            make_fetch=make_fetch,
        )
        if on_engine is not None:
            on_engine(engine)
        async with aclosing(engine.batches(items)) as batches:
            async for batch in batches:
                yield batch


async def fetch_many(
    items: Iterable[str | Mapping[str, str]] | AsyncIterable[str | Mapping[str, str]],
    options: FetchOptions | None = None,
    *,
    template: str | None = None,
    data: str | None = None,
    json: str | None = None,
) -> AsyncGenerator[Record, None]:
    """Fetch every item and yield one Record each, in input order (unless unordered).

    ``items`` are URLs, IDs for ``template`` (``{}`` or ``{id}``), or mappings whose
    keys fill ``{name}`` placeholders. ``data`` or ``json`` is a request body
    template filled the same way (``json`` inserts values as JSON strings). Every
    item given yields a record, invalid ones included; items are consumed lazily,
    so a generator over a huge source keeps memory flat. Raises ``TemplateError``
    (a ``ValueError``) for a template that cannot work. Method and content type are
    settled by ``policy.plan_request``, as on the command line: a body makes it POST.
    """
    options = options or FetchOptions()
    plan = plan_request(
        template=template, data=data, json=json, method=options.method, headers=options.headers
    )
    options = dataclasses.replace(
        options, method=plan.method, content_type=plan.content_type, accept=plan.accept
    )
    async with aclosing(fetch_batches(items_from(items, plan.templates), options)) as batches:
        async for batch in batches:
            for record in batch:
                yield record
