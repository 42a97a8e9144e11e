"""``--refresh``: each request made conditional on what the previous output recorded.

The previous record of an item (read by ``output/previous.py``, streamed in index
order beside the input) waits in a ``PreviousTable`` from the moment the item is
dispatched until its fetch takes it, so the table holds only the items in flight.
``Refresher`` wraps the client's fetch as ``Deduplicator`` does:

- a previous record that is ok and has an ``etag`` or a ``last_modified`` makes the
  request conditional (``If-None-Match``, ``If-Modified-Since``); a 304 answer
  becomes the previous record carried over (status, body, picks, headers, saved file)
  with this run's ``elapsed_ms``, ``attempts``, ``final_url``, ``timings``,
  ``redirects`` and ``tls``, its ``etag`` and ``last_modified`` refreshed from the 304
  when it sent them (RFC 9111 4.3.4), and ``unchanged: true``;
- any other answer is the record as fetched (``unchanged: false``);
- an item without a usable previous record is asked unconditionally; a 304 to that
  (a server that cannot mean it) is asked once more, unconditionally, and a second
  304 is a ``protocol`` error saying so, never a record with a body it does not have.

Validators go back as the server sent them: an ETag weak or strong, quoted or not
(curl's ``--etag-compare`` sends the saved value as is, and a server compares with
what it sent), a Last-Modified in whichever of the three HTTP date formats (RFC 9110
5.6.7) it came in. One that cannot be sent (a control character) or a date that is
no HTTP date is left out: the request is conditional on the other, or on nothing.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Final

from fetchmany.checks import header_value_problem
from fetchmany.input.sources import Item
from fetchmany.options import FetchOptions
from fetchmany.records import BodyMode, ErrorKind, FetchError, Record, Refresh

CARRIED: Final = ("status", "content_type", "size", "body", "headers", "path", "sha256")
"""What a 304 takes from the previous record (with the picks): a run that writes one of
these needs it in PREVIOUS."""
_NOT_UPDATED: Final = frozenset({"content-length", "content-encoding", "transfer-encoding"})
"""Headers of a 304 that describe it, not the stored answer (RFC 9111 3.2)."""
NOT_MODIFIED: Final = 304

ConditionalFetch = Callable[[Item, dict[str, str] | None, float], Awaitable[Record]]
"""The client's fetch: an item, the headers that make it conditional, and the seconds of
its --max-time already spent."""


@dataclass(frozen=True, slots=True)
class Previous:
    """What the previous output holds of one item: its fields as written, read back."""

    values: Mapping[str, Any]

    @property
    def ok(self) -> bool:
        """An ok record whose carried fields are what a record of this run would hold,
        so it can stand for this run's answer on a 304. One edited by hand or by a tool
        (a status of "200" or "abc", a size of "big") is not: its item is fetched whole,
        and its record written afresh."""
        values = self.values
        status = values.get("status")
        if status is not None and not _whole(status, 200, 399):
            return False
        size = values.get("size")
        if size is not None and not _whole(size, 0, None):
            return False
        content_type = values.get("content_type")
        if content_type is not None and not isinstance(content_type, str):
            return False
        if "ok" in values:
            return values["ok"] is True
        return status is not None and values.get("error") is None

    def conditional(self) -> dict[str, str] | None:
        """The headers that ask for the resource only if it changed; None: none can."""
        headers: dict[str, str] = {}
        etag = self.values.get("etag")
        if isinstance(etag, str) and etag.strip() and header_value_problem(etag) is None:
            headers["If-None-Match"] = etag
        modified = self.values.get("last_modified")
        if isinstance(modified, str) and _http_date(modified):
            headers["If-Modified-Since"] = modified
        return headers or None


def _text(value: object) -> str | None:
    """A validator carried over: text as it was, anything else (an edited file) none."""
    return value if isinstance(value, str) else None


def _whole(value: object, least: int, most: int | None) -> bool:
    """A JSON integer (not a boolean) from ``least`` to ``most``."""
    return type(value) is int and value >= least and (most is None or value <= most)


def _http_date(text: str) -> bool:
    """Whether ``text`` is a date a server can read (IMF-fixdate, RFC 850, asctime)."""
    if header_value_problem(text) is not None:
        return False
    try:
        parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return False
    return True


class PreviousTable:
    """The previous records of items dispatched and not yet fetched, by index (None:
    the previous output has no record of that item)."""

    def __init__(self) -> None:
        self._by_index: dict[int, Previous | None] = {}

    def put(self, index: int, previous: Previous | None) -> None:
        self._by_index[index] = previous

    def take(self, index: int) -> Previous | None:
        return self._by_index.pop(index, None)


class Refresher:
    """Wraps a fetch so each request is conditional on its item's previous record."""

    def __init__(
        self,
        fetch: ConditionalFetch,
        table: PreviousTable,
        options: FetchOptions,
        reserve: Callable[[str, int], None] | None = None,
    ):
        """``reserve``: with --save-dir, claims an item's previous file for it, taken as
        the item starts (items start in index order), so that no other item's new body
        is saved over a file a 304 keeps."""
        self._fetch = fetch
        self._table = table
        self._options = options
        self._reserve = reserve

    async def __call__(self, item: Item) -> Record:
        previous = self._table.take(item.index)
        if previous is not None and self._reserve is not None:
            path = previous.values.get("path")
            if isinstance(path, str):
                self._reserve(path, item.index)
        if previous is not None and not self._usable(previous):
            previous = None
        headers = previous.conditional() if previous is not None else None
        record = await self._fetch(item, headers, 0.0)
        if record.status == NOT_MODIFIED:
            if headers is not None:
                assert previous is not None
                return carried(record, previous, self._options)
            record = await self._again(item, record)
        if headers is not None:
            record.refresh = Refresh.CHANGED
        else:
            record.refresh = Refresh.UNTAGGED if previous is not None else Refresh.NEW
        return record

    def _usable(self, previous: Previous) -> bool:
        """Ok, written as this run would write it, and its saved file still there to be
        kept (else it is fetched whole). A record of a HEAD run has no size, and one
        written with --body none a size but no body: neither can stand for the answer a
        GET of this run records (a body of JSON null is fetched again too: the cost of
        telling them apart by what the file holds)."""
        if not previous.ok:
            return False
        options = self._options
        size = previous.values.get("size")
        if options.http_method != "HEAD":
            if "size" in previous.values and size is None:
                return False
            keeps_body = options.body is not BodyMode.NONE and options.save_dir is None
            if (
                keeps_body
                and "body" in previous.values
                and previous.values["body"] is None
                and size
            ):
                return False
        if options.save_dir is not None:
            path = previous.values.get("path")
            return isinstance(path, str) and os.path.isfile(path)
        return True

    async def _again(self, item: Item, first: Record) -> Record:
        """A 304 to a request that asked for no condition: it cannot mean "keep what you
        have". Asked again, unconditionally, once."""
        spent = (first.elapsed_ms or 0.0) / 1000  # of the item's --max-time, if any
        record = await self._fetch(item, None, spent)
        record.attempts += first.attempts
        if first.elapsed_ms is not None and record.elapsed_ms is not None:
            record.elapsed_ms = round(first.elapsed_ms + record.elapsed_ms, 3)
        if record.status == NOT_MODIFIED:
            record.ok = False
            record.error = FetchError(
                ErrorKind.PROTOCOL,
                "answered 304 Not Modified twice to a request that was not conditional "
                "(no earlier record to keep)",
            )
        return record


def carried(record: Record, previous: Previous, options: FetchOptions) -> Record:
    """The 304's record made whole from the previous one (see the module docstring). A
    HEAD run's record has neither size nor body, whatever the previous one had."""
    values = previous.values
    record.status = values.get("status")
    record.content_type = values.get("content_type")
    head = options.http_method == "HEAD"
    record.size = None if head else values.get("size")
    record.body = None if head else values.get("body")
    if options.picks:
        record.picks = {pick.name: values.get(pick.name) for pick in options.picks}
    record.path, record.sha256 = values.get("path"), values.get("sha256")
    if record.etag is None:  # the 304 did not send one: the previous one stands, if text
        record.etag = _text(values.get("etag"))
    if record.last_modified is None:
        record.last_modified = _text(values.get("last_modified"))
    kept = values.get("headers")
    if isinstance(kept, dict) and record.headers is not None:
        fresh = {k: v for k, v in record.headers.items() if k not in _NOT_UPDATED}
        record.headers = {**kept, **fresh}
    elif options.response_headers is not None:
        record.headers = kept  # as written (CSV keeps it as its JSON text)
    record.ok = True
    record.error = None
    record.refresh = Refresh.UNCHANGED
    return record
