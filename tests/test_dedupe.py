"""--dedupe: one fetch per distinct request, one record per item."""

from __future__ import annotations

import asyncio

import pytest

from fetchmany.fetch.dedupe import Deduplicator
from fetchmany.fetch.limits import Abandoned
from fetchmany.input.sources import Item, make_item
from fetchmany.input.templates import RequestTemplate
from fetchmany.records import Record


def item(index: int, url: str) -> Item:
    return make_item(index, url, RequestTemplate())


async def test_duplicates_share_one_fetch_and_keep_their_own_index() -> None:
    calls: list[str] = []
    gate = asyncio.Event()

    async def fetch(it: Item) -> Record:
        calls.append(it.input)
        await gate.wait()
        return Record(it.index, it.input, it.url, ok=True, status=200, picks={"a": 1})

    dedupe = Deduplicator(fetch)
    tasks = [asyncio.create_task(dedupe(item(i, u))) for i, u in enumerate(
        ["http://h.test/1", "http://h.test/1", "http://h.test/2", "http://h.test/1"]
    )]  # fmt: skip
    await asyncio.sleep(0)
    gate.set()
    records = await asyncio.gather(*tasks)
    assert calls == ["http://h.test/1", "http://h.test/2"]
    assert [r.index for r in records] == [0, 1, 2, 3]
    assert [r.status for r in records] == [200] * 4
    assert records[3].picks == {"a": 1}
    assert dedupe.saved == 2


async def test_urls_differing_only_in_credentials_are_not_the_same_request() -> None:
    async def fetch(it: Item) -> Record:
        return Record(it.index, it.input, it.url)

    dedupe = Deduplicator(fetch)
    await dedupe(item(0, "http://a:1@h.test/"))
    await dedupe(item(1, "http://a:2@h.test/"))
    assert dedupe.saved == 0


async def test_an_abandoned_first_fetch_abandons_its_duplicates() -> None:
    started = asyncio.Event()

    async def fetch(it: Item) -> Record:
        started.set()
        await asyncio.sleep(0)
        raise Abandoned

    dedupe = Deduplicator(fetch)
    first = asyncio.create_task(dedupe(item(0, "http://h.test/1")))
    await started.wait()
    second = asyncio.create_task(dedupe(item(1, "http://h.test/1")))
    with pytest.raises(Abandoned):
        await first
    with pytest.raises(Abandoned):
        await second


async def test_a_first_fetch_that_fails_unexpectedly_fails_its_duplicates_alike() -> None:
    """Found by mutation testing: every failure of the first fetch reaching its duplicates
    as ``Abandoned`` passed, which would cancel them quietly; a bug must surface in each
    (the engine hands it to the consumer), not vanish as a stopped run would."""
    started = asyncio.Event()
    release = asyncio.Event()

    async def fetch(it: Item) -> Record:
        started.set()
        await release.wait()
        raise ValueError("a bug in fetch")

    dedupe = Deduplicator(fetch)
    first = asyncio.create_task(dedupe(item(0, "http://h.test/1")))
    await started.wait()
    second = asyncio.create_task(dedupe(item(1, "http://h.test/1")))
    await asyncio.sleep(0)  # one turn of the loop: the duplicate runs to its wait
    assert dedupe.saved == 1  # it waits on the first's fetch rather than fetching itself
    release.set()
    with pytest.raises(ValueError, match="a bug in fetch"):
        await first
    with pytest.raises(ValueError, match="a bug in fetch"):
        await second


async def test_one_url_with_other_bodies_is_another_request_and_each_keeps_its_input() -> None:
    """Rows of a CSV input, ``-t 'http://h.test/{id}' -d 'v={v}'``: the same URL with
    another body is another request (its own answer); the same URL and body is one
    fetch, and each duplicate's record keeps its own row as input, which --resume and
    --refresh match records by."""
    from fetchmany.input.templates import body_template, url_template

    request = RequestTemplate(
        url_template("http://h.test/{id}"), body_template("v={v}", as_json=False, form=True)
    )
    rows = [{"id": "1", "v": "a"}, {"id": "1", "v": "b"}, {"id": "1", "v": "a"}]
    items = [make_item(i, f"1,{row['v']}{'' if i < 2 else ' '}", request, row)
             for i, row in enumerate(rows)]  # fmt: skip
    sent: list[bytes | None] = []

    async def fetch(it: Item) -> Record:
        sent.append(it.data)
        return Record(it.index, it.input, it.url, ok=True, status=200, body=it.data)

    dedupe = Deduplicator(fetch)
    records = [await dedupe(it) for it in items]
    assert sent == [b"v=a", b"v=b"]  # the third is the first's request again
    assert [r.body for r in records] == [b"v=a", b"v=b", b"v=a"]
    assert [r.input for r in records] == ["1,a", "1,b", "1,a "]
    assert [r.index for r in records] == [0, 1, 2]
