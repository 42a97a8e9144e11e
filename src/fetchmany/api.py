"""The library path: ``fetch_many`` and ``fetch_batches``, items in, records out.

No click, no rich: this is what ``from fetchmany import fetch_many`` runs. The
command line (``cli/run.py``) drives the same ``fetch_finished`` underneath.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Iterable, Mapping, Sequence
from contextlib import AsyncExitStack, aclosing
from typing import TYPE_CHECKING, Generic, TypeVar

from fetchmany.fetch.engine import Engine, FetchFunction
from fetchmany.fetch.limits import Limits
from fetchmany.fetch.policy import plan_request
from fetchmany.fetch.session import SessionSetup
from fetchmany.input.sources import Item, item_chunks_from
from fetchmany.options import FetchOptions
from fetchmany.records import Record

if TYPE_CHECKING:  # --refresh's: imported when a run refreshes
    from fetchmany.fetch.refresh import PreviousTable

T = TypeVar("T")


def record_cost(record: Record) -> int:
    """What a finished record holds, roughly, for the window's byte budget: its body
    as Python objects is a small multiple of the bytes that arrived."""
    return 3 * (record.size or 0)


def _same(record: Record) -> Record:
    return record


async def fetch_finished(
    chunks: AsyncIterable[Sequence[Item]],
    options: FetchOptions,
    finish: Callable[[Record], T],
    cost: Callable[[T], int],
    on_engine: Callable[[Engine[T]], None] | None = None,
    setup: SessionSetup | None = None,
    refresh: PreviousTable | None = None,
    kept_files: Iterable[str] = (),
) -> AsyncGenerator[list[T], None]:
    """``fetch_batches`` with each record turned by ``finish`` as soon as it completes;
    the reorder window holds those results and counts ``cost(result)`` bytes each.
    ``chunks``: the items, a chunk at a time (``read_item_chunks``, ``item_chunks_from``;
    ``one_by_one`` for a source of single items).
    ``refresh``: the previous records of items as they are dispatched (``--refresh``),
    which make each request conditional (``fetch/refresh.py``). ``kept_files``: the
    ``--save-dir`` files a resumed output's records name, which no item of this run
    may be saved over.

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
            if kept_files:
                from fetchmany.fetch.saving import KEPT

                for kept in kept_files:
                    client.reserve_saved(kept, KEPT)
            if refresh is not None:
                from fetchmany.fetch.refresh import Refresher

                return Refresher(client.fetch, refresh, options, client.reserve_saved)
            if options.dedupe:
                from fetchmany.fetch.dedupe import Deduplicator

                return Deduplicator(client.fetch)
            return client.fetch

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
        async with aclosing(engine.chunk_batches(chunks)) as batches:
            async for batch in batches:
                yield batch


Items = Iterable[str | Mapping[str, str]] | AsyncIterable[str | Mapping[str, str]]
"""What ``fetch_many`` and ``fetch_batches`` take: URLs, IDs for a template, or mappings
whose keys fill ``{name}`` placeholders."""


async def fetch_many(
    items: Items,
    options: FetchOptions | None = None,
    *,
    template: str | None = None,
    data: str | None = None,
    json: str | None = None,
) -> AsyncGenerator[Record, None]:
    """Fetch every item and yield one Record each, in input order (unless
    ``FetchOptions(ordered=False)``).

    ``items`` are URLs, IDs for ``template`` (``{}`` or ``{id}``), or mappings whose
    keys fill ``{name}`` placeholders. ``data`` or ``json`` is a request body
    template filled the same way (``json`` inserts values as JSON strings). Every
    item given yields a record, invalid ones included; items are consumed lazily,
    so a generator over a huge source keeps memory flat. Raises ``TemplateError``
    (a ``ValueError``) for a template that cannot work. Method and content type are
    settled as on the command line: a body makes the method POST unless
    ``FetchOptions(method=...)`` names one, ``json`` sends ``Content-Type`` and
    ``Accept: application/json``, and a ``Content-Type`` in ``headers`` wins.

    Leaving the loop early (``break``, an exception, a cancelled task) is safe: the run
    stops and its session is closed, at the latest when ``asyncio.run`` ends; wrap the
    call in ``contextlib.aclosing`` to have that done when the block ends.
    """
    run = _detached(items, options, template, data, json, None)
    try:
        while (batch := await run.next()) is not None:
            for record in batch:
                yield record
    finally:
        await run.close()


async def fetch_batches(
    items: Items,
    options: FetchOptions | None = None,
    *,
    template: str | None = None,
    data: str | None = None,
    json: str | None = None,
    on_engine: Callable[[Engine[Record]], None] | None = None,
) -> AsyncGenerator[list[Record], None]:
    """``fetch_many``'s records in batches: those that became ready together (in input
    order unless unordered), for a caller that writes or counts them a batch at a time.

    ``on_engine`` receives the run's ``Engine`` as the run starts: ``engine.stop()``
    ends the run cleanly (records completed so far still come), and
    ``engine.settled()`` says, per host, where ``--limit auto``
    (``FetchOptions(adaptive=Adaptive())``) has settled and why (a ``Settled`` each).
    Leaving the loop early is safe as for ``fetch_many``.
    """
    run = _detached(items, options, template, data, json, on_engine)
    try:
        while (batch := await run.next()) is not None:
            yield batch
    finally:
        await run.close()


def _detached(
    items: Items,
    options: FetchOptions | None,
    template: str | None,
    data: str | None,
    json: str | None,
    on_engine: Callable[[Engine[Record]], None] | None,
) -> Detached[Record]:
    """The library's run: the request settled as on the command line, its batches made
    in a task of their own (``Detached``: the caller's generator is the only one in
    the caller's task)."""
    options = options or FetchOptions()
    plan = plan_request(
        template=template, data=data, json=json, method=options.method, headers=options.headers
    )
    options = dataclasses.replace(
        options, method=plan.method, content_type=plan.content_type, accept=plan.accept
    )
    chunks = item_chunks_from(items, plan.templates)
    return Detached(fetch_finished(chunks, options, _same, record_cost, on_engine))


class Detached(Generic[T]):
    """A run's batches made in a task of their own, each when the consumer asks for it.

    Why: the user's ``async for`` over ``fetch_many`` may be left early (``break``, an
    exception in its body, its task cancelled). Python does not close an async
    generator left that way; the loop closes it later, from its finalizer or at the end
    of ``asyncio.run``, where it closes every unfinished async generator at once, the
    nested ones (engine, session) alongside the outer one, which fails loudly
    ("aclose(): asynchronous generator is already running", "async generator ignored
    GeneratorExit") and may leave the session open. Here the nested generators run
    in this task, so the user holds the only generator: closing it cancels the task,
    which unwinds them in order and closes the session; if nothing closes it, the
    end of ``asyncio.run`` cancels the task and the same happens. A batch is taken
    from the engine only when asked for, so the window bounds what is read ahead
    exactly as when the consumer iterates the engine itself.
    """

    def __init__(self, source: AsyncGenerator[list[T], None]) -> None:
        self._asked = asyncio.Event()
        self._answer: asyncio.Future[list[T] | None] | None = None
        self._task = asyncio.get_running_loop().create_task(self._make(source))

    async def _make(self, source: AsyncGenerator[list[T], None]) -> None:
        try:
            async with aclosing(source) as batches:
                while True:
                    await self._asked.wait()
                    self._asked.clear()
                    answer = self._answer
                    assert answer is not None
                    try:
                        batch = await anext(batches)
                    except StopAsyncIteration:
                        answer.set_result(None)
                        return
                    except Exception as exc:  # raised to the consumer, where it belongs
                        if not answer.done():
                            answer.set_exception(exc)
                        return
                    if not answer.done():  # done: cancelled with the consumer
                        answer.set_result(batch)
        finally:
            if self._answer is not None and not self._answer.done():
                self._answer.cancel()

    async def next(self) -> list[T] | None:
        """The next batch; None at the end. Raises what the run raised."""
        self._answer = asyncio.get_running_loop().create_future()
        self._asked.set()
        return await self._answer

    async def close(self) -> None:
        """Stop the run, if it is still going, and wait until it has closed everything."""
        if not self._task.done():
            self._task.cancel()
            await asyncio.wait([self._task])
