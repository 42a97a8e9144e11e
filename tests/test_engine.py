"""The worker pool and reorder window, driven by fake fetches whose completion the test controls."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from fetchmany.fetch.engine import ITEM_COST, Engine
from fetchmany.fetch.limits import Limits
from fetchmany.input.sources import Item
from fetchmany.records import Record


def same(record: Record) -> Record:
    return record


def make_items(n: int) -> list[Item]:
    return [Item(i, str(i), f"http://127.0.0.1/{i}") for i in range(n)]


async def aiter_items(items: list[Item], pulled: list[int] | None = None) -> AsyncIterator[Item]:
    for item in items:
        if pulled is not None:
            pulled.append(item.index)
        yield item


class ControlledFetch:
    """A fetch that completes only when the test releases that item's event."""

    def __init__(self) -> None:
        self.started: list[int] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.release: dict[int, asyncio.Event] = {}
        self.any_started = asyncio.Event()

    def gate(self, index: int) -> asyncio.Event:
        return self.release.setdefault(index, asyncio.Event())

    async def __call__(self, item: Item) -> Record:
        self.started.append(item.index)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.any_started.set()
        try:
            await self.gate(item.index).wait()
        finally:
            self.in_flight -= 1
        return Record(item.index, item.input, item.url, ok=True, status=200)


async def collect(engine: Engine[Record], items: list[Item]) -> list[Record]:
    out: list[Record] = []
    async for batch in engine.batches(aiter_items(items)):
        out.extend(batch)
    return out


async def release_in_random_order(fetch: ControlledFetch, n: int, seed: int) -> None:
    """Release started items in a shuffled order until all n have been released."""
    rng = random.Random(seed)
    released: set[int] = set()
    while len(released) < n:
        waiting = [i for i in fetch.started if i not in released]
        if not waiting:
            fetch.any_started.clear()
            await fetch.any_started.wait()
            continue
        pick = rng.choice(waiting)
        released.add(pick)
        fetch.gate(pick).set()
        await asyncio.sleep(0)  # let the engine react before the next release


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_ordered_output_is_in_input_order_whatever_the_completion_order(seed: int) -> None:
    fetch = ControlledFetch()
    engine = Engine(fetch, same, workers=7, window=20, ordered=True)
    items = make_items(200)
    releaser = asyncio.create_task(release_in_random_order(fetch, 200, seed))
    records = await collect(engine, items)
    await releaser
    assert [r.index for r in records] == list(range(200))
    assert fetch.max_in_flight == 7


async def test_unordered_output_follows_completion_and_loses_nothing() -> None:
    fetch = ControlledFetch()
    engine = Engine(fetch, same, workers=4, window=8, ordered=False)
    out: list[int] = []
    progressed = asyncio.Event()

    async def consume() -> None:
        async for batch in engine.batches(aiter_items(make_items(4))):
            out.extend(r.index for r in batch)
            progressed.set()

    consumer = asyncio.create_task(consume())
    while len(fetch.started) < 4:
        fetch.any_started.clear()
        await fetch.any_started.wait()
    for index in (3, 1, 0, 2):
        fetch.gate(index).set()
        while index not in out:
            progressed.clear()
            await progressed.wait()
    await consumer
    assert out == [3, 1, 0, 2]


async def test_limit_is_never_exceeded_and_is_reached() -> None:
    fetch = ControlledFetch()
    engine = Engine(fetch, same, workers=5, window=50, ordered=True)
    releaser = asyncio.create_task(release_in_random_order(fetch, 60, seed=9))
    records = await collect(engine, make_items(60))
    await releaser
    assert len(records) == 60
    assert fetch.max_in_flight == 5


async def test_full_window_starts_nothing_new_while_the_head_is_slow() -> None:
    fetch = ControlledFetch()
    engine = Engine(fetch, same, workers=3, window=10, ordered=True)
    pulled: list[int] = []
    out: list[int] = []

    async def consume() -> None:
        async for batch in engine.batches(aiter_items(make_items(100), pulled)):
            out.extend(r.index for r in batch)

    consumer = asyncio.create_task(consume())
    # Everything but item 0 completes at once: the window fills behind the slow head.
    for i in range(1, 100):
        fetch.gate(i).set()
    while len(fetch.started) < 10:
        fetch.any_started.clear()
        await fetch.any_started.wait()
    for _ in range(50):  # give the engine every chance to (wrongly) start more
        await asyncio.sleep(0)
    assert sorted(fetch.started) == list(range(10))
    assert out == []
    # The input is read lazily: up to the window's ten items and no further (the
    # async generator has handed over the tenth; it is not asked for the eleventh).
    assert len(pulled) == 10
    fetch.gate(0).set()
    await consumer
    assert out == list(range(100))


def sized(size: int) -> Callable[[Record], tuple[Record, bytes]]:
    """A finish that makes each result hold ``size`` bytes, as an encoded record would."""

    def finish(record: Record) -> tuple[Record, bytes]:
        return record, b"x" * size

    return finish


def held(result: tuple[Record, bytes]) -> int:
    return len(result[1])


async def test_the_byte_budget_starts_nothing_new_while_the_head_is_slow() -> None:
    fetch = ControlledFetch()
    budget = 20 * 1000 + ITEM_COST  # twenty results of 1000 bytes, and the slow head
    engine = Engine(fetch, sized(1000), workers=3, window_bytes=budget, cost=held, ordered=True)
    out: list[int] = []

    async def consume() -> None:
        async for batch in engine.batches(aiter_items(make_items(400))):
            out.extend(r.index for r, _ in batch)

    consumer = asyncio.create_task(consume())
    for i in range(1, 400):
        fetch.gate(i).set()
    for _ in range(200):  # the pool runs ahead of the slow head until the budget is spent
        await asyncio.sleep(0)
    started = len(fetch.started)
    # The head costs ITEM_COST until done, each finished item its 1000 bytes (the item
    # itself let go): 20 spend the budget; items queued for the pool (at most two
    # pools, 6) may already be past the check when it is spent.
    assert 15 <= started <= 21 + 2 * 3
    for _ in range(50):
        await asyncio.sleep(0)
    assert len(fetch.started) == started
    assert out == []
    fetch.gate(0).set()
    await consumer
    assert out == list(range(400))


async def test_results_that_cost_nothing_leave_the_budget_to_the_items_running() -> None:
    """With no cost given (an Engine of the library's own), a result costs the window
    nothing: behind a slow head, with room for one more item than the head, the items
    after it each start as the one before is done, the head still waiting."""
    fetch = ControlledFetch()
    engine = Engine(fetch, same, workers=3, window_bytes=ITEM_COST + 1, ordered=True)
    out: list[int] = []

    async def consume() -> None:
        async for batch in engine.batches(aiter_items(make_items(10))):
            out.extend(record.index for record in batch)

    consumer = asyncio.create_task(consume())
    for i in range(1, 10):
        fetch.gate(i).set()
    for _ in range(200):  # turns of the loop, not time: every item after the head is done
        await asyncio.sleep(0)
    assert fetch.started == list(range(10))
    assert fetch.max_in_flight == 2  # the head and one more: the budget held
    assert out == []
    fetch.gate(0).set()
    await consumer
    assert out == list(range(10))


@pytest.mark.parametrize(("budget", "running"), [(3 * ITEM_COST, 3), (3 * ITEM_COST + 1, 4)])
async def test_an_item_starts_only_while_the_byte_budget_has_room(
    budget: int, running: int
) -> None:
    """Before any result is in, each item running costs ITEM_COST: a budget of exactly
    three runs three (the third fills it), and one byte more lets a fourth start."""
    fetch = ControlledFetch()
    engine = Engine(fetch, same, workers=8, window_bytes=budget, ordered=True)

    async def consume() -> list[int]:
        return [
            r.index async for batch in engine.batches(aiter_items(make_items(10))) for r in batch
        ]

    consumer = asyncio.create_task(consume())
    for _ in range(50):  # turns of the loop: every chance to (wrongly) start one more
        await asyncio.sleep(0)
    assert fetch.started == list(range(running))
    for index in range(10):
        fetch.gate(index).set()
    assert await asyncio.wait_for(consumer, 5) == list(range(10))


async def test_items_in_flight_are_counted_at_the_results_average_cost() -> None:
    """Eight items in flight, one result of 10,000 bytes in: the seven still running are
    expected to bring as much each (70,000 with what is held, over a budget of 50,000),
    so no ninth starts, though the bytes held so far (17,168) leave room for it."""
    fetch = ControlledFetch()
    engine = Engine(fetch, sized(10_000), workers=8, window_bytes=50_000, cost=held, ordered=True)
    out: list[int] = []

    async def consume() -> None:
        async for batch in engine.batches(aiter_items(make_items(20))):
            out.extend(r.index for r, _ in batch)

    consumer = asyncio.create_task(consume())
    while len(fetch.started) < 8:
        fetch.any_started.clear()
        await asyncio.wait_for(fetch.any_started.wait(), 5)
    fetch.gate(1).set()
    for _ in range(50):  # turns of the loop: every chance to (wrongly) start a ninth
        await asyncio.sleep(0)
    assert fetch.started == list(range(8))
    for index in range(20):
        fetch.gate(index).set()
    await asyncio.wait_for(consumer, 5)
    assert out == list(range(20))


async def test_the_expected_cost_is_the_average_of_every_result_so_far() -> None:
    """Behind a slow head, results of 10,000 and then 30,000 bytes: the one item left
    running is expected to bring their average, 20,000, so with 41,024 bytes held (two
    results and the head) a budget of 58,000 has no room for a third."""
    fetch = ControlledFetch()
    sizes = {1: 10_000, 2: 30_000}

    def finish(record: Record) -> tuple[Record, bytes]:
        return record, b"x" * sizes.get(record.index, 0)

    engine = Engine(fetch, finish, workers=2, window_bytes=58_000, cost=held, ordered=True)

    async def consume() -> list[int]:
        items = aiter_items(make_items(6))
        return [r.index async for batch in engine.batches(items) for r, _ in batch]

    consumer = asyncio.create_task(consume())
    for index in (1, 2):
        while index not in fetch.started:
            fetch.any_started.clear()
            await asyncio.wait_for(fetch.any_started.wait(), 5)
        fetch.gate(index).set()
    for _ in range(50):  # turns of the loop: every chance to (wrongly) start item 3
        await asyncio.sleep(0)
    assert fetch.started == [0, 1, 2]
    for index in range(6):
        fetch.gate(index).set()
    assert await asyncio.wait_for(consumer, 5) == list(range(6))


@pytest.mark.parametrize("ordered", [True, False])
async def test_what_is_handed_out_leaves_the_window_to_the_byte(ordered: bool) -> None:
    """Each batch handed out gives back exactly what its records held: once every record
    is out, the window holds nothing, in both modes. A byte kept per batch adds up over
    a long run until the budget is spent and no new item starts: a stall, not an error.
    (White-box: the account itself, since the stall takes millions of batches.)"""
    rng = random.Random(7)

    async def fetch(item: Item) -> Record:
        for _ in range(rng.randrange(3)):  # completions interleave, batches vary in size
            await asyncio.sleep(0)
        return Record(item.index, item.input, item.url)

    def cost(result: tuple[Record, bytes]) -> int:
        return 100 + result[0].index  # each its own size: a batch's sum is not one's

    engine = Engine(fetch, sized(0), workers=4, window_bytes=1 << 20, cost=cost, ordered=ordered)
    batches = [batch async for batch in engine.batches(aiter_items(make_items(300)))]
    assert sorted(r.index for batch in batches for r, _ in batch) == list(range(300))
    assert any(len(batch) > 1 for batch in batches)
    assert engine._held == 0
    # And the count the budget's estimate reads: no item in the window, none finished
    # in it (results handed out leave it; a wrong count skews every later estimate).
    assert (engine._in_window, engine._finished) == (0, 0)


async def test_a_result_larger_than_the_budget_still_gets_through() -> None:
    async def fetch(item: Item) -> Record:
        await asyncio.sleep(0)
        return Record(item.index, item.input, item.url)

    engine = Engine(fetch, sized(10_000), workers=2, window_bytes=100, cost=held, ordered=True)
    out = [r.index async for batch in engine.batches(aiter_items(make_items(50))) for r, _ in batch]
    assert out == list(range(50))


async def test_no_count_cap_lets_a_tail_of_slow_items_overlap() -> None:
    """Without --window the count of items out is not what stops the pool: with one
    slow head, everything cheap behind it runs (here 2,000 items, far past 4 x limit)."""
    fetch = ControlledFetch()
    engine = Engine(fetch, same, workers=5, ordered=True)
    consumer = asyncio.create_task(collect(engine, make_items(2000)))
    for i in range(1, 2000):
        fetch.gate(i).set()
    while len(fetch.started) < 2000:
        fetch.any_started.clear()
        await fetch.any_started.wait()
    fetch.gate(0).set()
    assert [r.index for r in await consumer] == list(range(2000))


async def test_every_item_gets_exactly_one_record_with_many_workers() -> None:
    async def fetch(item: Item) -> Record:
        await asyncio.sleep(0)
        return Record(item.index, item.input, item.url)

    engine = Engine(fetch, same, workers=50, window=60, ordered=True)
    records = await collect(engine, make_items(3000))
    assert [r.index for r in records] == list(range(3000))


async def test_stop_finishes_in_flight_and_ends_output_in_order() -> None:
    fetch = ControlledFetch()
    engine = Engine(fetch, same, workers=3, window=10, ordered=True)
    out: list[int] = []

    async def consume() -> None:
        async for batch in engine.batches(aiter_items(make_items(1000))):
            out.extend(r.index for r in batch)

    consumer = asyncio.create_task(consume())
    fetch.gate(0).set()
    fetch.gate(1).set()
    while 0 not in out or 1 not in out or len(fetch.started) < 5:
        fetch.any_started.clear()
        await asyncio.wait_for(fetch.any_started.wait(), 5)
    engine.stop()
    in_flight = [i for i in fetch.started if not fetch.gate(i).is_set()]
    for index in in_flight:
        fetch.gate(index).set()
    await asyncio.wait_for(consumer, 5)
    assert out == list(range(len(out)))
    assert set(out) >= set(in_flight)
    assert len(fetch.started) < 20


async def aborted_after_a_batch(ordered: bool, released: list[int]) -> list[int]:
    """The indexes handed out when the engine is aborted right after its first batch,
    with only the fetches of ``released`` ever finishing."""
    fetch = ControlledFetch()
    engine = Engine(fetch, same, workers=4, window=10, ordered=ordered)
    out: list[int] = []
    progressed = asyncio.Event()

    async def consume() -> None:
        async for batch in engine.batches(aiter_items(make_items(100))):
            out.extend(r.index for r in batch)
            progressed.set()

    consumer = asyncio.create_task(consume())
    for index in released:
        fetch.gate(index).set()
    await progressed.wait()
    engine.abort()
    await asyncio.wait_for(consumer, 5)
    return out


async def test_abort_ends_at_the_first_unfinished_record() -> None:
    out = await aborted_after_a_batch(True, [0, 2])
    assert out == [0]  # 1 never finished, so 2 cannot be written in order


@pytest.mark.parametrize("ordered", [True, False])
async def test_a_bug_in_fetch_surfaces_instead_of_hanging(ordered: bool) -> None:
    async def fetch(item: Item) -> Record:
        raise RuntimeError("boom")

    engine = Engine(fetch, same, workers=2, window=4, ordered=ordered)
    with pytest.raises(RuntimeError, match="boom"):
        await asyncio.wait_for(collect(engine, make_items(3)), 5)


async def test_unordered_a_bug_in_the_last_fetch_wakes_the_consumer_to_raise_it() -> None:
    """Unordered: the others are out already, and the one that fails is the last thing
    to happen; the consumer waiting for it learns of it."""
    first_out = asyncio.Event()

    async def fetch(item: Item) -> Record:
        if item.index == 1:
            await first_out.wait()
            raise RuntimeError("boom")
        return Record(item.index, item.input, item.url)

    engine = Engine(fetch, same, workers=2, window=4, ordered=False)
    out: list[int] = []

    async def consume() -> None:
        async for batch in engine.batches(aiter_items(make_items(2))):
            out.extend(r.index for r in batch)
            first_out.set()

    with pytest.raises(RuntimeError, match="boom"):
        await asyncio.wait_for(consume(), 5)
    assert out == [0]


async def test_an_input_error_surfaces_after_the_records_before_it() -> None:
    async def fetch(item: Item) -> Record:
        return Record(item.index, item.input, item.url)

    async def broken() -> AsyncIterator[Item]:
        yield Item(0, "0", "http://127.0.0.1/0")
        raise OSError("disk gone")

    engine = Engine(fetch, same, workers=2, window=4, ordered=True)
    seen: list[int] = []

    async def consume() -> None:
        async for batch in engine.batches(broken()):
            seen.extend(r.index for r in batch)

    with pytest.raises(OSError, match="disk gone"):
        await consume()
    assert seen == [0]


def test_an_engine_that_cannot_run_is_refused_saying_why() -> None:
    async def fetch(item: Item) -> Record:
        raise AssertionError

    for workers, window in ((5, 4), (0, None)):
        with pytest.raises(ValueError, match=r"^need workers >= 1 and window >= workers$"):
            Engine(fetch, same, workers=workers, window=window, ordered=True)
    with pytest.raises(ValueError, match=r"^need fetch or make_fetch$"):
        Engine(None, same, workers=1, ordered=True)
    Engine(fetch, same, workers=4, window=4, ordered=True)  # a window of the pool's size


async def test_the_fetch_is_made_when_the_first_item_comes_and_not_for_no_input() -> None:
    """``make_fetch`` (the CLI's session) is called once, for the first item; an empty
    input never calls it, so it never opens a session."""
    made: list[int] = []

    async def make_fetch() -> Callable[[Item], Awaitable[Record]]:
        made.append(1)

        async def fetch(item: Item) -> Record:
            return Record(item.index, item.input, item.url, ok=True, status=200)

        return fetch

    empty = Engine(None, same, workers=2, ordered=True, make_fetch=make_fetch)
    assert await collect(empty, []) == []
    assert made == []
    engine = Engine(None, same, workers=2, ordered=True, make_fetch=make_fetch)
    records = await collect(engine, make_items(5))
    assert [(r.index, r.status) for r in records] == [(i, 200) for i in range(5)]
    assert made == [1]


async def test_limits_given_to_the_engine_tell_it_of_parks() -> None:
    """The engine attaches itself to the run's limits: an item waiting out a backoff
    (holding no request slot) has the pool add a worker, so the next item goes on
    meanwhile. Without it, one worker would wait for the backoff with the item after
    it not started."""
    limits = Limits(10)
    second_started = asyncio.Event()

    async def fetch(item: Item) -> Record:
        if item.index == 0:
            await limits.backoff(0.001)  # parks: tells the engine, then waits briefly
            await asyncio.wait_for(second_started.wait(), 10)
        else:
            second_started.set()
        return Record(item.index, item.input, item.url, ok=True, status=200)

    engine = Engine(fetch, same, workers=1, max_workers=2, ordered=True, limits=limits)
    records = await collect(engine, make_items(2))
    assert [r.index for r in records] == [0, 1]
    assert engine.workers == 2


async def test_the_pool_grows_while_fetches_park_and_only_then() -> None:
    parked = asyncio.Event()
    engine: Engine | None = None

    async def fetch(item: Item) -> Record:
        if item.index == 0:  # waits like a retry backoff, holding no request slot
            assert engine is not None
            engine.grow()
            await parked.wait()
        elif item.index == 4:
            parked.set()
        return Record(item.index, item.input, item.url)

    engine = Engine(fetch, same, workers=1, max_workers=3, window=10, ordered=True)
    records = await collect(engine, make_items(8))
    assert [r.index for r in records] == list(range(8))  # item 0 parked; the rest went on
    assert engine.workers == 2


async def test_the_pool_never_grows_past_max_workers() -> None:
    """Every fetch parks: the pool grows to ``max_workers`` and no further (a parked
    fetch's worker is still a task, and the cap is what keeps tasks bounded)."""
    engine: Engine | None = None
    parked = 0
    all_parked = asyncio.Event()

    async def fetch(item: Item) -> Record:
        nonlocal parked
        assert engine is not None
        engine.grow()
        parked += 1
        if parked == 3:  # the most that can park at once with max_workers=3
            all_parked.set()
        await all_parked.wait()
        return Record(item.index, item.input, item.url)

    engine = Engine(fetch, same, workers=1, max_workers=3, window=10, ordered=True)
    records = await asyncio.wait_for(collect(engine, make_items(10)), 5)
    assert [r.index for r in records] == list(range(10))
    assert engine.workers == 3


async def test_a_park_with_no_input_left_adds_no_worker() -> None:
    """The input has ended and nothing waits in the queue: a new worker would have
    nothing to take."""
    engine: Engine | None = None

    async def fetch(item: Item) -> Record:
        assert engine is not None
        engine.grow()
        return Record(item.index, item.input, item.url)

    engine = Engine(fetch, same, workers=1, max_workers=3, window=10, ordered=True)
    assert [r.index for r in await collect(engine, make_items(1))] == [0]
    assert engine.workers == 1


async def test_a_park_while_the_input_is_still_coming_adds_a_worker_for_it() -> None:
    """Nothing is queued yet, but the input has not ended: the next item, when it comes,
    is served while the first waits out its backoff (it is what frees the first here)."""
    engine: Engine | None = None
    first_parked = asyncio.Event()
    second_done = asyncio.Event()

    async def slow_input() -> AsyncIterator[Item]:
        first, second = make_items(2)
        yield first
        await first_parked.wait()  # the next line of a slow pipe
        yield second

    async def fetch(item: Item) -> Record:
        assert engine is not None
        if item.index == 0:
            engine.grow()
            first_parked.set()
            await second_done.wait()
        else:
            second_done.set()
        return Record(item.index, item.input, item.url)

    engine = Engine(fetch, same, workers=1, max_workers=3, window=10, ordered=True)

    async def consume() -> list[int]:
        return [r.index async for batch in engine.batches(slow_input()) for r in batch]

    assert await asyncio.wait_for(consume(), 5) == [0, 1]
    assert engine.workers == 2


async def test_stop_reads_no_more_input() -> None:
    """After stop (Ctrl-C), finishing the fetches in flight pulls no further item from the
    input: a slow producer upstream is not read on for nothing."""
    fetch = ControlledFetch()
    engine = Engine(fetch, same, workers=3, window=50, ordered=True)
    pulled: list[int] = []
    out: list[int] = []

    async def consume() -> None:
        async for batch in engine.batches(aiter_items(make_items(1000), pulled)):
            out.extend(r.index for r in batch)

    consumer = asyncio.create_task(consume())
    while len(fetch.started) < 3:
        fetch.any_started.clear()
        await asyncio.wait_for(fetch.any_started.wait(), 5)
    engine.stop()
    read_at_stop = len(pulled)
    for index in list(fetch.started):
        fetch.gate(index).set()
    await asyncio.wait_for(consumer, 5)
    assert out == [0, 1, 2]
    assert len(pulled) == read_at_stop


async def test_abort_ends_unordered_output_though_fetches_never_finish() -> None:
    out = await aborted_after_a_batch(False, [2])
    assert out == [2]


async def test_settled_is_where_each_hosts_auto_limit_is_and_empty_for_a_fixed_one() -> None:
    from fetchmany.fetch.adaptive import Lesson
    from fetchmany.options import Adaptive

    fixed = Engine(ControlledFetch(), same, workers=2, ordered=True, limits=Limits(2))
    assert fixed.settled() == {}
    assert Engine(ControlledFetch(), same, workers=2, ordered=True).settled() == {}
    limits = Limits(8, adaptive=Adaptive(ceiling=8))
    engine = Engine(ControlledFetch(), same, workers=2, ordered=True, limits=limits)
    ticket = await limits.acquire("a.test:80", 0, 1)
    limits.release("a.test:80", ticket, Lesson(0.01))
    assert list(engine.settled()) == ["a.test:80"]
    assert engine.settled()["a.test:80"].limit == limits.settled()["a.test:80"].limit == 3


# -- chunks: the command line's input, a batch of lines at a time ----------------------------


async def chunked(
    items: list[Item], size: int, read: list[int] | None = None
) -> AsyncIterator[list[Item]]:
    for start in range(0, len(items), size):
        if read is not None:
            read.append(start)
        yield items[start : start + size]


async def test_chunks_come_out_in_order_and_whole() -> None:
    fetch = ControlledFetch()
    engine = Engine(fetch, same, workers=7, window=40, ordered=True)
    releaser = asyncio.create_task(release_in_random_order(fetch, 500, seed=4))
    out = [
        r.index async for batch in engine.chunk_batches(chunked(make_items(500), 64)) for r in batch
    ]
    await releaser
    assert out == list(range(500))
    assert fetch.max_in_flight == 7


async def test_the_next_chunk_is_read_only_when_the_pool_runs_short() -> None:
    """A chunk in hand is taken item by item; the next is read only when fewer items
    than workers are left of it, so the input is not read far ahead of the window."""
    fetch = ControlledFetch()
    engine = Engine(fetch, same, workers=3, window=10, ordered=True)
    read: list[int] = []
    consumer = asyncio.create_task(collect_chunks(engine, chunked(make_items(100), 8, read)))
    for i in range(1, 100):
        fetch.gate(i).set()
    while len(fetch.started) < 10:
        fetch.any_started.clear()
        await fetch.any_started.wait()
    for _ in range(50):
        await asyncio.sleep(0)
    assert sorted(fetch.started) == list(range(10))  # the count cap, behind the slow head
    assert read == [0, 8]  # wanted when 2 were left of the first; the cap holds the third
    fetch.gate(0).set()
    assert [r.index for r in await consumer] == list(range(100))


async def collect_chunks(engine: Engine[Record], chunks: AsyncIterator[list[Item]]) -> list[Record]:
    return [r async for batch in engine.chunk_batches(chunks) for r in batch]


async def test_stop_ends_a_run_whose_input_has_stalled() -> None:
    """stdin that stops sending (a paging script hung): Ctrl-C ends the run with every
    record completed, though the reader is waiting for a line that never comes."""
    stalled = asyncio.Event()

    async def stalling() -> AsyncIterator[list[Item]]:
        yield make_items(2)
        await stalled.wait()  # never set
        yield make_items(3)[2:]

    async def fetch(item: Item) -> Record:
        return Record(item.index, item.input, item.url)

    engine = Engine(fetch, same, workers=4, ordered=True)
    out: list[int] = []
    progressed = asyncio.Event()

    async def consume() -> None:
        async for batch in engine.chunk_batches(stalling()):
            out.extend(r.index for r in batch)
            progressed.set()

    consumer = asyncio.create_task(consume())
    while len(out) < 2:
        progressed.clear()
        await asyncio.wait_for(progressed.wait(), 5)
    engine.stop()
    await asyncio.wait_for(consumer, 5)
    assert out == [0, 1]


async def test_an_input_error_after_chunks_surfaces_after_their_records() -> None:
    async def fetch(item: Item) -> Record:
        await asyncio.sleep(0)
        return Record(item.index, item.input, item.url)

    async def broken() -> AsyncIterator[list[Item]]:
        yield make_items(300)[:250]
        raise OSError("disk gone")

    engine = Engine(fetch, same, workers=5, ordered=True)
    seen: list[int] = []

    async def consume() -> None:
        async for batch in engine.chunk_batches(broken()):
            seen.extend(r.index for r in batch)

    with pytest.raises(OSError, match="disk gone"):
        await consume()
    assert seen == list(range(250))


@pytest.mark.parametrize("ordered", [True, False])
async def test_an_item_abandoned_by_a_stop_ends_ordered_output_there(ordered: bool) -> None:
    """A fetch waiting for a slot when the run stops gives up (``Abandoned``): in order,
    nothing after it is written; unordered, every record that completed is."""
    from fetchmany.fetch.limits import Abandoned

    engine: Engine | None = None
    done = asyncio.Event()
    started: list[int] = []

    async def fetch(item: Item) -> Record:
        assert engine is not None
        started.append(item.index)
        if item.index == 1:
            await done.wait()
            raise Abandoned
        if item.index == 3:
            engine.stop()
            done.set()
        await asyncio.sleep(0)
        return Record(item.index, item.input, item.url)

    engine = Engine(fetch, same, workers=4, ordered=ordered)
    chunks = chunked(make_items(50), 10)
    out = [r.index async for batch in engine.chunk_batches(chunks) for r in batch]
    assert started == [0, 1, 2, 3]  # nothing starts after the stop
    if ordered:
        assert out == [0]
    else:
        assert sorted(out) == [0, 2, 3]


async def test_abort_while_workers_wait_for_room_ends_the_run() -> None:
    """Ctrl-C twice with the byte budget spent behind a slow head that never finishes:
    the run ends at once, with nothing out of order."""
    fetch = ControlledFetch()
    engine = Engine(fetch, sized(1000), workers=3, window_bytes=5000, cost=held, ordered=True)
    out: list[int] = []

    async def consume() -> None:
        async for batch in engine.chunk_batches(chunked(make_items(100), 16)):
            out.extend(r.index for r, _ in batch)

    consumer = asyncio.create_task(consume())
    for i in range(1, 100):
        fetch.gate(i).set()
    for _ in range(100):
        await asyncio.sleep(0)
    assert 3 <= len(fetch.started) < 12  # the budget is spent: workers wait for room
    engine.abort()
    await asyncio.wait_for(consumer, 5)
    assert out == []


async def test_the_input_is_read_one_pool_ahead_of_the_fetches_and_no_further() -> None:
    """With every fetch waiting, the pool holds its workers' items and as many more in
    hand, and reads no further: a slow or endless input is not drained ahead of need."""
    fetch = ControlledFetch()
    engine = Engine(fetch, same, workers=3, window=50, ordered=True)
    pulled: list[int] = []

    async def consume() -> list[int]:
        items = aiter_items(make_items(100), pulled)
        return [r.index async for batch in engine.batches(items) for r in batch]

    consumer = asyncio.create_task(consume())
    while len(fetch.started) < 3:
        fetch.any_started.clear()
        await asyncio.wait_for(fetch.any_started.wait(), 5)
    for _ in range(50):  # turns of the loop: every chance to (wrongly) read more
        await asyncio.sleep(0)
    assert fetch.started == [0, 1, 2]
    assert pulled == list(range(6))
    for index in range(100):
        fetch.gate(index).set()
    assert await asyncio.wait_for(consumer, 5) == list(range(100))


async def test_an_empty_chunk_of_input_is_no_end_of_it() -> None:
    """A chunk with no items (a batch of lines that were all blank or comments, a
    library source with nothing to give yet) is skipped: the items after it are
    fetched, each with its record, in order."""
    fetch = ControlledFetch()
    for index in range(6):
        fetch.gate(index).set()
    engine = Engine(fetch, same, workers=2, ordered=True)
    items = make_items(6)

    async def chunks() -> AsyncIterator[list[Item]]:
        for chunk in ([], items[:2], [], [], items[2:5], [], items[5:], []):
            yield chunk

    out = [r.index async for batch in engine.chunk_batches(chunks()) for r in batch]
    assert out == list(range(6))


class SlowToCancel(ControlledFetch):
    """A fetch whose cancellation takes some turns of the loop to finish."""

    def __init__(self, turns: int) -> None:
        super().__init__()
        self.turns = turns
        self.tearing_down = 0

    async def __call__(self, item: Item) -> Record:
        try:
            return await super().__call__(item)
        except asyncio.CancelledError:
            self.tearing_down += 1
            for _ in range(self.turns):
                await asyncio.sleep(0)
            self.tearing_down -= 1
            raise


@pytest.mark.parametrize(("closing", "cancelling"), [(20, 0), (0, 20)])
async def test_a_consumer_that_stops_early_has_the_input_closed_when_it_returns(
    closing: int, cancelling: int
) -> None:
    """A consumer that stops taking batches (| head, the library's loop left early)
    closes them: by the time that returns, the input source has been closed too (its
    reader thread stopped), not left for the garbage collector."""
    fetch = SlowToCancel(cancelling)
    for index in range(100):
        fetch.gate(index).set()
    engine = Engine(fetch, same, workers=2, ordered=True)
    closed: list[bool] = []

    async def chunks() -> AsyncIterator[list[Item]]:
        try:
            for item in make_items(100):
                yield [item]
        finally:
            for _ in range(closing):  # a close taking turns of the loop (a thread's end)
                await asyncio.sleep(0)
            closed.append(True)

    batches = engine.chunk_batches(chunks())
    first = await batches.__anext__()
    assert first[0].index == 0
    fetch.release.clear()  # from here on, fetches wait: some are in flight at the close
    while fetch.in_flight < 2:
        fetch.any_started.clear()
        await asyncio.wait_for(fetch.any_started.wait(), 5)
    await batches.aclose()
    assert closed == [True]
    # No fetch goes on after the consumer has gone, even one whose cancellation takes
    # turns of the loop (a request being torn down), whichever of the two ends last.
    assert (fetch.in_flight, fetch.tearing_down) == (0, 0)


async def test_a_stop_before_the_pool_starts_fetches_nothing() -> None:
    """Ctrl-C between the engine's making and its first batch (the run's start-up):
    stop and abort are taken at once, and the pool then starts nothing."""
    fetch = ControlledFetch()
    engine = Engine(fetch, same, workers=2, ordered=True)
    engine.stop()
    engine.abort()
    out = [r.index async for batch in engine.batches(aiter_items(make_items(5))) for r in batch]
    assert out == []
    assert fetch.started == []


async def test_stop_leaves_an_input_that_is_waited_on_unread() -> None:
    """Stopped while the input is slow to give its next item and fetches are still in
    flight: the item that comes after the stop is never taken from the input."""
    fetch = ControlledFetch()
    engine = Engine(fetch, same, workers=3, window=50, ordered=True)
    more = asyncio.Event()
    pulled: list[int] = []

    async def slow_input() -> AsyncIterator[Item]:
        items = make_items(6)
        for item in items[:3]:
            pulled.append(item.index)
            yield item
        await more.wait()  # the next line of a slow pipe
        for item in items[3:]:
            pulled.append(item.index)
            yield item

    async def consume() -> list[int]:
        return [r.index async for batch in engine.batches(slow_input()) for r in batch]

    consumer = asyncio.create_task(consume())
    while len(fetch.started) < 3:
        fetch.any_started.clear()
        await asyncio.wait_for(fetch.any_started.wait(), 5)
    engine.stop()
    more.set()  # the input has its next item now: nobody must take it
    for index in range(3):
        fetch.gate(index).set()
    assert await asyncio.wait_for(consumer, 5) == [0, 1, 2]
    assert pulled == [0, 1, 2]


async def test_parks_while_no_input_is_in_hand_add_their_workers_when_it_comes() -> None:
    """Each fetch that parks while the next item has not been read yet is owed a worker
    when it comes, up to ``max_workers`` counting the workers there are."""
    engine: Engine | None = None
    more = asyncio.Event()
    done = asyncio.Event()

    async def slow_input() -> AsyncIterator[Item]:
        items = make_items(6)
        yield items[0]
        await more.wait()
        for item in items[1:]:
            yield item

    async def fetch(item: Item) -> Record:
        assert engine is not None
        if item.index == 0:
            for _ in range(5):  # five parks, one after another (retries backing off)
                engine.grow()
            more.set()
            await done.wait()
        elif item.index == 5:
            done.set()
        return Record(item.index, item.input, item.url)

    engine = Engine(fetch, same, workers=1, max_workers=3, window=10, ordered=True)

    async def consume() -> list[int]:
        return [r.index async for batch in engine.batches(slow_input()) for r in batch]

    assert await asyncio.wait_for(consume(), 5) == list(range(6))
    assert engine.workers == 3


async def test_a_park_after_the_input_ended_adds_a_worker_for_the_items_in_hand() -> None:
    """The input has ended but items are still in hand (its last chunk held several):
    a fetch that parks then is owed a worker at once, up to ``max_workers``, as before
    the end. Here the last item is what frees the others, so without it the run hangs."""
    engine: Engine[Record] | None = None
    ended = asyncio.Event()
    released = asyncio.Event()

    async def chunks() -> AsyncIterator[list[Item]]:
        yield make_items(4)
        ended.set()  # the reader came back for more: there is none

    async def fetch(item: Item) -> Record:
        assert engine is not None
        if item.index == 0:
            await ended.wait()
            engine.grow()  # parks, holding no slot: a backoff
            await released.wait()
        elif item.index == 2:
            await released.wait()  # the other worker, busy
        elif item.index == 3:
            released.set()
        return Record(item.index, item.input, item.url)

    engine = Engine(fetch, same, workers=2, max_workers=3, window=10, ordered=True)
    records = await asyncio.wait_for(collect_chunks(engine, chunks()), 5)
    assert [r.index for r in records] == [0, 1, 2, 3]
    assert engine.workers == 3
