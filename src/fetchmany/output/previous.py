"""``--refresh PREVIOUS``: an earlier output of the same inputs, read beside them.

PREVIOUS is any record file fetchmany wrote (JSON Lines, a JSON array or CSV, read
as ``--merge`` reads parts). It is streamed in index order alongside the items,
which come in index order too, so memory holds only the records of the items in
flight, never the file. It is checked by the rules of ``--resume``, and refused
(``RefreshError``, one line) where it cannot serve:

- each record must be of the input at its index (``input``, else ``url``, as written);
  an input with fewer items than PREVIOUS has records is another input;
- indexes rise (``index`` when written, else the position: a shard's own part under
  ``--shard``); a record twice, or out of order, is not a run's output;
- a torn last record (a run that crashed) is dropped, and its item fetched whole; a
  damaged one before the end is refused;
- it must have what a refresh needs: ``input`` or ``url``, ``ok`` or ``status``,
  ``etag`` or ``last_modified`` (an output written before they existed has nothing
  to ask with), and every field this run writes that a 304 carries over
  (``fetch/refresh.CARRIED`` and the picks);
- a CSV PREVIOUS refreshes into CSV only when it carries a body, headers or picks,
  whose JSON types CSV does not keep.

Checking is done twice: ``check`` reads the whole input against PREVIOUS before
anything is fetched (so a refusal fetches nothing, as ``--resume``'s does), and
``join`` checks again as it hands each item's previous record to the fetch.
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, AsyncIterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from fetchmany.fetch.refresh import CARRIED, Previous, PreviousTable
from fetchmany.input.sources import Item, Shard
from fetchmany.output.merge import MergeError, Part, open_part, records_of
from fetchmany.output.resume import changed_item, same_key
from fetchmany.output.writers import OutputFormat, neutralise_formula

VALIDATORS = ("etag", "last_modified")


class RefreshError(Exception):
    """PREVIOUS cannot serve this run; the message says why, for the user."""


@dataclass(frozen=True, slots=True)
class PreviousOutput:
    """An earlier output to refresh from, checked as far as its start tells."""

    path: str
    part: Part
    key: str
    """The field that ties a record to its input: ``input``, else ``url``."""
    in_place: bool = False
    """PREVIOUS is this run's ``--output``: the new file replaces it when whole."""
    positions: Shard | None = None
    """Without ``index``: the shard whose items PREVIOUS holds by position (``--shard``)."""

    @classmethod
    def open(
        cls,
        path: str,
        fields: Sequence[str],
        picks: Sequence[str],
        output_format: OutputFormat,
        *,
        in_place: bool = False,
        shard: Shard | None = None,
    ) -> PreviousOutput:
        """PREVIOUS for a run writing ``fields`` in ``output_format``; RefreshError if
        it cannot serve (see the module docstring)."""
        try:
            part = open_part(path, indexed=False)
        except MergeError as exc:
            raise RefreshError(f"--refresh: {exc}") from None
        have = set(part.fields)
        key = "input" if "input" in have else "url"
        if part.fields:
            if key not in have:
                raise RefreshError(
                    f"--refresh: {path} has neither input nor url, so it cannot be checked "
                    "against the inputs; refresh from an output written with one of them"
                )
            if "ok" not in have and "status" not in have:
                raise RefreshError(
                    f"--refresh: {path} has neither ok nor status, so its failures cannot "
                    "be told from its answers; refresh from an output written with ok"
                )
            if not have & set(VALIDATORS):
                raise RefreshError(
                    f"--refresh: {path} has no etag or last_modified field (written by an "
                    "earlier fetchmany, or --fields left them out): no request could be "
                    "conditional; run once without --refresh to record them"
                )
            needed = [name for name in fields if name in CARRIED or name in picks]
            if missing := [name for name in needed if name not in have]:
                raise RefreshError(
                    f"--refresh: {path} has no {missing[0]} field, which this run writes and "
                    "a 304 would have to carry over; refresh from an output written with the "
                    "same --fields, --pick and --save-dir"
                )
            typed = [name for name in needed if name in ("body", "headers", *picks)]
            if part.format is OutputFormat.CSV and output_format is not OutputFormat.CSV and typed:
                raise RefreshError(
                    f"--refresh: {path} is CSV, which does not keep the JSON type of "
                    f"{typed[0]}; refresh it into CSV (-f csv), or from JSON Lines or JSON"
                )
        return cls(path, part, key, in_place, None if "index" in have else shard)

    def records(self, share: Shard | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
        """(index, record) in file order, those of ``share`` only (a ``-P`` worker's, or
        the ``--shard``); RefreshError at the first that is out of order."""
        part = self.part
        named = part.format is not OutputFormat.CSV
        indexed = "index" in part.fields
        base = self.positions or Shard(0, 1)
        last = -1
        try:
            for position, values in enumerate(records_of(part, neutralised=True)):
                if named and tuple(values) != part.fields:
                    raise RefreshError(
                        f"--refresh: {self.path}: record {position} has fields "
                        f"{','.join(values)}, but its first has {','.join(part.fields)}"
                    )
                index = values.get("index") if indexed else base.number + position * base.count
                if not isinstance(index, int) or isinstance(index, bool) or index < 0:
                    raise RefreshError(
                        f"--refresh: {self.path}: record {position} has no index of 0 or more"
                    )
                if index <= last:
                    raise RefreshError(
                        f"--refresh: {self.path}: index {index} comes after {last}, so it is "
                        "not the in-order output of a run (a record twice?)"
                    )
                last = index
                if share is None or share.holds(index):
                    yield index, values
        except MergeError as exc:
            raise RefreshError(f"--refresh: {exc}") from None

    async def join(
        self,
        items: AsyncIterable[Item],
        share: Shard | None,
        table: PreviousTable | None,
    ) -> AsyncGenerator[Item, None]:
        """The items, each with its previous record put in ``table`` as it passes (None
        when PREVIOUS has none at its index); RefreshError where they do not match.

        With ``--shard-by host`` a shard's items are known only as they are read (by
        their hosts), so PREVIOUS is read whole and the records between them, the other
        shards', are passed over; each record met at an item's index is still checked."""
        by_host = share is not None and share.by_host
        records = self.records(None if by_host else share)
        pending = next(records, None)
        async for item in items:
            previous = None
            while by_host and pending is not None and pending[0] < item.index:
                pending = next(records, None)
            if pending is not None and pending[0] < item.index:
                raise RefreshError(
                    f"--refresh: {self.path} has a record at index {pending[0]}, which is not "
                    "an item of these inputs; refresh from an output of these inputs"
                )
            if pending is not None and pending[0] == item.index:
                self._check(item, pending[1])
                previous = Previous(pending[1])
                pending = next(records, None)
            if table is not None:
                table.put(item.index, previous)
            yield item
        if pending is not None and not by_host:
            raise RefreshError(
                f"input changed since {self.path} was written: it has a record at index "
                f"{pending[0]}, beyond the inputs' last item; refresh from an output of "
                "these inputs"
            )

    def _check(self, item: Item, values: dict[str, Any]) -> None:
        given = item.input if self.key == "input" else item.url
        recorded = values.get(self.key)
        recorded = None if recorded is None or recorded == "" else str(recorded)
        if same_key(recorded, given):
            return
        csv = self.part.format is OutputFormat.CSV
        if csv and given is not None and recorded == neutralise_formula(given):
            return  # written with --csv-safe
        raise RefreshError(
            f"input changed since {self.path} was written: "
            f"{changed_item(item, given, recorded)}; refresh from an output of these inputs"
        )

    async def check(self, items: AsyncIterable[Item], share: Shard | None = None) -> int:
        """Read every item against PREVIOUS, fetching nothing: RefreshError if they do
        not match. The number of items read."""
        count = 0
        async for _ in self.join(items, share, None):
            count += 1
        return count


def same_file(previous: str, output: str | None) -> bool:
    """Whether PREVIOUS is the ``--output`` file itself (a refresh in place)."""
    if output is None or not os.path.exists(output):
        return False
    try:
        return os.path.samefile(previous, output)
    except OSError:
        return False
