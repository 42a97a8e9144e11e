"""The priority gate: slots served lowest order first, resizable, cancel-safe."""

from __future__ import annotations

import asyncio

import pytest

from fetchmany.fetch.gate import PriorityGate


async def _started(gate: PriorityGate, order: int, log: list[int]) -> None:
    await gate.acquire(order)
    log.append(order)


async def test_waiters_are_served_lowest_order_first() -> None:
    """A retried item (an old index) queued after later ones still goes first: ordered
    output waits on it, not on them."""
    gate = PriorityGate(1)
    await gate.acquire(0)
    log: list[int] = []
    waiters = [asyncio.create_task(_started(gate, order, log)) for order in (9, 7, 3, 8)]
    await asyncio.sleep(0)
    for _ in range(4):
        gate.release()
        await asyncio.sleep(0)
    await asyncio.gather(*waiters)
    assert log == [3, 7, 8, 9]


async def test_resize_lets_waiters_in_at_once_or_as_slots_free() -> None:
    gate = PriorityGate(1)
    await gate.acquire(0)
    log: list[int] = []
    waiters = [asyncio.create_task(_started(gate, order, log)) for order in (1, 2, 3)]
    await asyncio.sleep(0)
    gate.resize(3)
    await asyncio.sleep(0)
    assert log == [1, 2]  # two more slots: the two lowest in at once
    gate.resize(1)
    gate.release()
    gate.release()
    await asyncio.sleep(0)
    assert log == [1, 2]  # still 1 in use, of 1: nobody cut off, nobody let in
    gate.release()
    await asyncio.gather(*waiters)
    assert log == [1, 2, 3]


async def test_a_cancelled_waiter_gives_its_place_on() -> None:
    gate = PriorityGate(1)
    await gate.acquire(0)
    log: list[int] = []
    first = asyncio.create_task(_started(gate, 1, log))
    second = asyncio.create_task(_started(gate, 2, log))
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.sleep(0)
    gate.release()
    await asyncio.wait_for(second, 5)
    assert log == [2]
    assert gate.in_use == 1


async def test_a_waiter_cancelled_as_it_is_handed_a_slot_passes_it_on() -> None:
    gate = PriorityGate(1)
    await gate.acquire(0)
    log: list[int] = []
    first = asyncio.create_task(_started(gate, 1, log))
    second = asyncio.create_task(_started(gate, 2, log))
    await asyncio.sleep(0)
    gate.release()  # hands the slot to the first waiter...
    first.cancel()  # ...which is cancelled before it runs
    await asyncio.wait_for(second, 5)
    assert log == [2]
    assert gate.in_use == 1


async def test_room_left_behind_a_cancelled_waiter_is_not_lost() -> None:
    """A waiter cancelled while slots were full stays in the heap; when a slot is free
    and nobody else wakes the gate, a newcomer must still get in."""
    gate = PriorityGate(1)
    await gate.acquire(0)
    stale = asyncio.create_task(gate.acquire(5))
    await asyncio.sleep(0)
    stale.cancel()
    await asyncio.sleep(0)
    gate.release()
    await asyncio.wait_for(gate.acquire(6), 5)
    assert gate.in_use == 1


def test_try_acquire_takes_a_free_slot_only() -> None:
    gate = PriorityGate(1)
    assert gate.try_acquire()
    assert not gate.try_acquire()
    gate.release()
    assert gate.try_acquire()


async def test_a_free_slot_is_taken_without_waiting_a_turn() -> None:
    """The fast path, as ``asyncio.Semaphore``'s: with a slot free and nobody waiting,
    ``acquire`` returns without suspending (no future, no trip around the loop, which a
    request of every run would otherwise pay); with none free, it suspends."""
    gate = PriorityGate(1)
    with pytest.raises(StopIteration):
        gate.acquire(1).send(None)
    assert gate.in_use == 1
    waiting = gate.acquire(2)
    suspended = waiting.send(None)  # the future it waits on
    assert isinstance(suspended, asyncio.Future)
    assert gate.waiting == 1
    gate.release()
    assert suspended.done()
    with pytest.raises(StopIteration):
        waiting.send(None)
    assert (gate.in_use, gate.waiting) == (1, 0)
