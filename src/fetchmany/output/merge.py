"""``--merge``: shard outputs back into one ordered output, in constant memory.

Each part is a record file fetchmany wrote (JSON Lines, a JSON array or CSV), in
index order, as ``--shard K/N`` writes it. Parts are read lazily and interleaved
by ``index`` (``heapq.merge``, the ``sort -m`` idea), so memory does not grow with
their size. The merged indexes must run 0, 1, 2... with nothing missing or twice,
or the merge stops and says which index (``--allow-gaps`` accepts missing ones).

CSV keeps no types, so a CSV part's known fields are read back as what fetchmany
wrote: numbers, booleans, and ``error`` from its two columns, kind and message (a
part written before the message had its column gives a null message); other cells
stay text.
"""

from __future__ import annotations

import csv
import heapq
import os
import re
import stat
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, Final

from fetchmany import jsontext
from fetchmany.output.resume import (
    READ_BUFFER,
    ByteOrderMark,
    DamagedRow,
    ResumeError,
    TornRow,
    csv_rows,
    detect_format,
    follows_the_end,
)
from fetchmany.output.writers import OutputFormat, fields_of_header, looks_neutralised
from fetchmany.records import ERROR_MESSAGE_COLUMN

csv.field_size_limit(sys.maxsize)  # a cell holds a whole body


class MergeError(Exception):
    """Parts that cannot make one ordered output; the message says which and why."""


@dataclass(frozen=True, slots=True)
class Part:
    path: str
    format: OutputFormat
    fields: tuple[str, ...]


_INTEGERS: Final = frozenset({"index", "status", "size", "attempts"})
_FLOATS: Final = frozenset({"elapsed_ms"})
_BOOLEANS: Final = frozenset({"ok", "unchanged"})


_INTEGER: Final = re.compile(r"0|-?[1-9][0-9]*")
_FLOAT: Final = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:e[-+]?[0-9]+)?")
"""The numbers ``writers.csv_cell`` writes: ``str`` of an int, ``repr`` of a finite float
(each checked whole below). Python reads more (``1_0``, ``\u0661``, `` 5``, ``nan``,
``01``, ``-0``, ``1e3``, ``1e400``), which would change a cell fetchmany did not write
into another number, or into null."""


def _integer(cell: str) -> int | str:
    if not _INTEGER.fullmatch(cell):
        return cell
    try:
        return int(cell)
    except ValueError:  # more digits than int() reads (4300): str() cannot write them
        return cell


def _float(cell: str) -> float | str:
    if not _FLOAT.fullmatch(cell):
        return cell
    value = float(cell)
    return value if repr(value) == cell else cell  # 1e3, 01.5, 1e400 (inf): not repr's


def _typed(name: str, cell: str) -> Any:
    """A CSV cell as the JSON value fetchmany wrote it from (see ``writers.csv_cell``);
    a cell it cannot have written stays as it is."""
    if cell == "":
        return None
    if name in _INTEGERS:
        return _integer(cell)
    if name in _FLOATS:
        return _float(cell)
    if name in _BOOLEANS:
        return {"true": True, "false": False}.get(cell, cell)
    return cell


class Torn(MergeError):
    """A part ends in a record cut short: its shard was interrupted, so records are
    missing after it (and maybe more, which the merge cannot know)."""

    def __init__(self, path: str) -> None:
        super().__init__(
            f"{path} ends in a torn record (its shard was interrupted): resume that shard "
            "(--resume) and merge again, or pass --allow-gaps to merge what is there"
        )


def _jsonl(path: str) -> Iterator[dict[str, Any]]:
    with open(path, "rb", buffering=READ_BUFFER) as stream:
        for number, line in enumerate(stream, 1):
            if not line.endswith(b"\n"):
                raise Torn(path)
            yield _record(line, path, number)


def _json_array(path: str) -> Iterator[dict[str, Any]]:
    with open(path, "rb", buffering=READ_BUFFER) as stream:
        first = stream.readline()
        if first in (b"[]\n", b"[]", b""):
            _nothing_after(stream, path, 1)
            return
        if first == b"[":
            raise Torn(path)  # cut before its first record
        if first != b"[\n":
            raise MergeError(f"{path}: not a JSON array written by fetchmany")
        for number, line in enumerate(stream, 2):
            if line in (b"]\n", b"]"):
                _nothing_after(stream, path, number)
                return
            if not line.endswith(b"\n"):
                raise Torn(path)
            yield _record(line.removesuffix(b"\n").removesuffix(b","), path, number)
        raise Torn(path)  # no closing bracket: the run that wrote it did not end


class MoreAfterEnd(MergeError):
    """A JSON array part with records after its closing ``]``: ``cat a.json b.json`` is
    not one output, and b's records would be lost (even after an empty shard's ``[]``)."""

    def __init__(self, path: str, number: int) -> None:
        super().__init__(f"{path}: more follows the array's closing ] (line {number})")


def _nothing_after(stream: BinaryIO, path: str, number: int) -> None:
    """MoreAfterEnd unless only blank lines follow the ``]`` on line ``number``."""
    if follows_the_end(stream):
        raise MoreAfterEnd(path, number)


def _csv(path: str, neutralised: bool = False) -> Iterator[dict[str, Any]]:
    rows = csv_rows(path)
    try:
        header: list[str] | None = None
        for number, (row, _) in enumerate(rows):
            if header is None:
                header = row
                continue
            yield _row(row, header, path, number, neutralised)
    except TornRow:
        raise Torn(path) from None
    except DamagedRow as exc:
        raise MergeError(f"{path}: the row after byte {exc.offset} is not CSV") from None


def _row(
    row: list[str], header: list[str], path: str, number: int, neutralised: bool = False
) -> dict[str, Any]:
    """``neutralised``: cells --csv-safe may have written are taken as they stand (what
    --refresh compares and carries), not refused (what a merge would write on)."""
    if len(row) != len(header):
        raise MergeError(f"{path}: row {number} has {len(row)} cells, not {len(header)}")
    for name, cell in zip(header, row, strict=True):
        if not neutralised and looks_neutralised(cell):
            raise MergeError(
                f"{path}: row {number} has {name} {cell[:20]!r}, as --csv-safe writes a "
                "formula, and its ' cannot be told from data; write the shards without "
                "--csv-safe (and give it to the merge), or as JSON Lines if their data "
                "starts so"
            )
    values = {name: _typed(name, cell) for name, cell in zip(header, row, strict=True)}
    if "error" in values:
        kind = values["error"]
        message = values.pop(ERROR_MESSAGE_COLUMN, None)
        values["error"] = None if kind is None else {"kind": kind, "message": message}
    return values


def _record(line: bytes, path: str, number: int) -> dict[str, Any]:
    try:
        value = jsontext.loads_record(line)
    except ValueError:
        raise MergeError(f"{path}: line {number} is not a JSON record") from None
    if not isinstance(value, dict):
        raise MergeError(f"{path}: line {number} is not a record (a JSON object)")
    return value


_READERS = {OutputFormat.JSONL: _jsonl, OutputFormat.JSON: _json_array, OutputFormat.CSV: _csv}


def open_part(path: str, *, indexed: bool = True) -> Part:
    """What a part holds (format and fields), read from its start; MergeError if unusable
    (without an ``index`` field too, unless not ``indexed``: --refresh matches by position).

    Only a regular file: a part is read more than once (its start tells its format),
    and a pipe would give its start to the first read and nothing to the next, so its
    records would be lost without a word (a FIFO with no writer would hang instead)."""
    try:
        regular = stat.S_ISREG(os.stat(path).st_mode)
    except OSError as exc:
        raise MergeError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not regular:
        raise MergeError(
            f"{path} is not a regular file: records are read from it more than once, "
            "which a pipe cannot do; save them to a file first"
        )
    try:
        found = detect_format(path)
    except ByteOrderMark as exc:
        raise MergeError(str(exc)) from None
    except ResumeError:
        raise MergeError(
            f"{path} is not records fetchmany wrote (JSON Lines, a JSON array or CSV)"
        ) from None
    except OSError as exc:
        raise MergeError(f"cannot read {path}: {exc.strerror or exc}") from None
    if found is None:
        return Part(path, OutputFormat.JSONL, ())  # empty: a shard with no items
    if found is OutputFormat.CSV:
        try:
            fields = fields_of_header(next(csv_rows(path), ([], 0))[0])
        except (TornRow, DamagedRow):
            fields = ()  # a header cut short: the merge says the part is torn
    else:
        try:
            first = next(_until_torn(_READERS[found](path)), None)
        except MoreAfterEnd:
            first = None  # "[]" and more: a damaged part, which the merge says (exit 75)
        fields = tuple(first) if first is not None else ()
    if indexed and fields and "index" not in fields:
        raise MergeError(f"{path} has no index field; shards must be written with index")
    return Part(path, found, fields)


def check_parts(parts: Sequence[Part]) -> tuple[str, ...]:
    """The fields every part shares, or MergeError naming the first that differs."""
    written = [part for part in parts if part.fields]
    if not written:
        return ()
    fields = written[0].fields
    for part in written[1:]:
        if part.fields != fields:
            raise MergeError(
                f"{part.path} has fields {','.join(part.fields)} but {written[0].path} has "
                f"{','.join(fields)}; merge parts written with the same --fields"
            )
    return fields


@dataclass
class _Reach:
    """How far a part's records went: to name the part that stops short at a gap."""

    part: Part
    last: int | None = None
    step: int | None = None
    """The distance between its last two indexes: N for the shard of a --shard K/N run."""
    done: bool = False


def merged(
    parts: Sequence[Part], *, allow_gaps: bool = False, expect: int | None = None
) -> Iterator[dict[str, Any]]:
    """Records of all parts in index order; MergeError at the first missing or repeated
    index (missing ones, and torn parts, are allowed with ``allow_gaps``). Records missing
    after the last index of every part are invisible to the merge: ``expect``, the
    number of records the whole run has, catches them. A missing index that a part
    would hold next, had it not stopped, names that part (a shard to resume)."""
    reach = [_Reach(part) for part in parts]
    streams = [_indexed(r, number, allow_gaps) for number, r in enumerate(reach)]
    expected = 0
    for index, _, record in heapq.merge(*streams):
        if index < expected:
            raise MergeError(f"index {index} appears twice (again in one of the parts)")
        if index > expected and not allow_gaps:
            missing = f"{expected}" if index == expected + 1 else f"{expected} to {index - 1}"
            raise MergeError(
                f"index {missing} is in no part"
                + _stopped_short(reach, expected, "merge every shard, or pass --allow-gaps")
            )
        expected = index + 1
        yield record
    if expect is not None and expected < expect and not allow_gaps:
        missing = f"{expected}" if expected + 1 == expect else f"{expected} to {expect - 1}"
        raise MergeError(
            f"index {missing} is in no part (--expect {expect})"
            + _stopped_short(reach, expected, "merge every shard, or pass --allow-gaps")
        )
    if expect is not None and expected > expect:
        raise MergeError(f"the parts hold index {expected - 1}, beyond --expect {expect}")


def _stopped_short(reach: Sequence[_Reach], missing: int, otherwise: str) -> str:
    """What to say about a missing index: the part whose records stop right before it
    (ended, and its next index would be this one), or else ``otherwise``."""
    for each in reach:
        if not each.done:
            continue
        if each.last is None:
            short = missing < len(reach)  # an empty part: its shard's first index is below N
        else:
            short = each.last < missing == each.last + (each.step or len(reach))
        if short:
            at = "holds no record" if each.last is None else f"stops at index {each.last}"
            return (
                f": {each.part.path} {at}, so its shard stopped early; resume that shard "
                "(--resume) and merge again, or pass --allow-gaps to merge what is there"
            )
    return f"; {otherwise}"


def _indexed(
    reach: _Reach, number: int, allow_torn: bool = False
) -> Iterator[tuple[int, int, dict[str, Any]]]:
    """(index, part number, record) of one part, checking that its indexes rise (so two
    tuples never tie on both and the records themselves are never compared)."""
    part = reach.part
    previous = -1
    records = _READERS[part.format](part.path)
    if allow_torn:
        records = _until_torn(records)
    named = part.format is not OutputFormat.CSV  # a CSV row has its header's fields
    for position, record in enumerate(records):
        index = record.get("index")
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise MergeError(f"{part.path}: record {position} has no index of 0 or more")
        if named and tuple(record) != part.fields:  # a field missing would merge as null
            raise MergeError(
                f"{part.path}: record {position} has fields {','.join(record)}, but the "
                f"part's first has {','.join(part.fields)}"
            )
        if index <= previous:
            raise MergeError(
                f"{part.path}: index {index} after {previous}; a part must be in index order"
            )
        if previous >= 0:
            reach.step = index - previous
        previous = reach.last = index
        yield index, number, record
    reach.done = True


def records_of(part: Part, *, neutralised: bool = False) -> Iterator[dict[str, Any]]:
    """A part's records in file order, read back as ``merged`` reads them, a torn last
    record dropped (the rule of --resume); a damaged record before it is a MergeError.
    ``neutralised``: a CSV written with --csv-safe is read as it stands (see ``_row``)."""
    if part.format is OutputFormat.CSV:
        return _until_torn(_csv(part.path, neutralised))
    return _until_torn(_READERS[part.format](part.path))


def _until_torn(records: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    try:
        yield from records
    except Torn:
        return


class MergedRecord:
    """A record read from a part, as the writers take it."""

    __slots__ = ("_values",)

    def __init__(self, values: dict[str, Any]) -> None:
        self._values = values

    def to_dict(self, fields: tuple[str, ...]) -> dict[str, Any]:
        values = self._values
        return {name: values.get(name) for name in fields}
