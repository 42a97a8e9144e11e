"""Resuming a run into an output file that already holds its first records.

An ordered run writes records 0..k-1 before k, so whatever a stopped or crashed
run left in FILE is a prefix of the full result. Resuming scans FILE once to
find k and where the last complete record ends (a torn last line from a crash is
dropped), checks lazily that the inputs still match the recorded ones, skips
them, and appends the rest. Memory stays flat: nothing of FILE is held.

Whatever cannot be verified is refused, never guessed at: a file in another
format, records that are not objects or have other fields, indexes out of order,
a line that does not parse before the end, more after an array's closing bracket
(two runs appended to one file), or records with neither ``input`` nor ``url`` to
compare against the inputs. Refusing leaves FILE untouched.
"""

from __future__ import annotations

import csv
import json
import os
import re
import sys
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, Final

from fetchmany import jsontext
from fetchmany.input.sources import Item, Shard
from fetchmany.output.writers import OutputFormat, csv_header, fields_of_header
from fetchmany.records import ERROR_MESSAGE_COLUMN, FIELDS, OPTIONAL_FIELDS, SAVED_FIELDS
from fetchmany.redaction import redact_url

# A cell holds a whole record body (10 MB by default, more with --max-body-size);
# the csv module refuses cells over 128 KiB unless told otherwise.
csv.field_size_limit(sys.maxsize)


READ_BUFFER: Final = 1 << 20
"""Bytes read at a time from a record file: a record holds a whole body, and a line
longer than the default 8 KiB buffer is put together from many reads."""


class ResumeError(Exception):
    """FILE cannot be continued by this run; the message says why, for the user."""


class ByteOrderMark(ResumeError):
    """A record file that starts with a BOM: re-saved by an editor, to be told so."""


@dataclass(frozen=True, slots=True)
class ResumePoint:
    """Where a resumed run picks up."""

    records: int
    """Complete records already in the file."""
    offset: int
    """Byte offset at which the next record's bytes go (after truncating anything torn)."""
    failed: int = 0
    """Records already written that are not ``ok`` (known when ``ok`` is a field), so the
    exit status of a resumed run speaks for the whole file."""


def _jsonl_records(path: str) -> Iterator[tuple[dict[str, object], int]]:
    """(record, offset after it) for each complete line; a line without its newline is torn."""
    offset = 0
    with open(path, "rb", buffering=READ_BUFFER) as stream:
        for number, line in enumerate(stream, 1):
            if not line.endswith(b"\n"):
                return
            try:
                record = jsontext.loads_record(line)
            except ValueError:
                raise ResumeError(f"{path}: line {number} is not a JSON record") from None
            offset += len(line)
            yield _object(record, path, number), offset


def follows_the_end(stream: BinaryIO) -> bool:
    """Whether more than blank lines follows a JSON array's closing ``]`` (the stream is
    read to its end): two runs' arrays in one file (``>>``, ``cat``) are not one output,
    and continuing or merging the first would lose the second's records."""
    return any(rest.strip() for rest in stream)


def _nothing_after(stream: BinaryIO, path: str, number: int) -> None:
    if follows_the_end(stream):
        raise ResumeError(
            f"{path}: more follows the array's closing ] (line {number}); use a new output file"
        )


def _json_array_records(path: str) -> Iterator[tuple[dict[str, object], int]]:
    """(record, offset after its closing brace) for the one-element-per-line arrays we write."""
    with open(path, "rb", buffering=READ_BUFFER) as stream:
        first = stream.readline()
        if first in (b"[]", b"[]\n"):
            _nothing_after(stream, path, 1)
            return
        if first in (b"", b"["):  # empty, or cut before its first record
            return
        if first != b"[\n":
            raise ResumeError(f"{path}: not a JSON array written by fetchmany")
        offset = len(first)
        for number, line in enumerate(stream, 2):
            if line in (b"]\n", b"]"):
                _nothing_after(stream, path, number)
                return
            body = line.removesuffix(b"\n").removesuffix(b",")
            try:
                record = jsontext.loads_record(body)
            except ValueError:
                if not line.endswith(b"\n"):
                    return  # torn by a crash: dropped
                raise ResumeError(f"{path}: line {number} is not a JSON record") from None
            # One element per line: a line that parses is whole, newline or not.
            yield _object(record, path, number), offset + len(body)
            offset += len(line)


def _object(value: object, path: str, number: int) -> dict[str, object]:
    if not isinstance(value, dict):
        raise ResumeError(
            f"{path}: line {number} is not a record (a JSON object); "
            "this is not a file fetchmany wrote: use a new output file"
        )
    return value


class TornRow(Exception):
    """A CSV file ends in a row cut short (a crash mid-write); the rows before it are whole."""


class DamagedRow(Exception):
    """A CSV row that does not parse, and not at a torn end: damage no crash leaves."""

    def __init__(self, offset: int) -> None:
        super().__init__(offset)
        self.offset = offset
        """Where the row starts."""


def csv_rows(path: str) -> Iterator[tuple[list[str], int]]:
    """Each whole row of a CSV file fetchmany wrote, the header first, with the byte
    offset just after it; then ``TornRow`` if the file goes on with a row cut short.

    fetchmany ends every row with CRLF and quotes any cell holding a line break, so
    what follows the last whole row is a torn row when it does not end with CRLF, or
    leaves a quote open: a cut right after a line break inside a quoted cell (a body's
    CRLF) ends like a row but is not one. Anything else that does not parse is
    ``DamagedRow``. Lines are read as bytes; only whole lines reach the parser.
    """
    with open(path, "rb", buffering=READ_BUFFER) as stream:
        pending: list[bytes] = []

        def lines() -> Iterator[str]:
            for raw in stream:
                if not raw.endswith(b"\n"):
                    return  # torn: never hand a partial line to the parser
                pending.append(raw)
                yield raw.decode("utf-8", "replace")

        reader = csv.reader(lines(), strict=True)  # a row torn inside quotes is an error
        consumed = 0
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error:
                stream.seek(consumed)
                rest = stream.read()
                if rest.count(b'"') % 2 == 1 or not rest.endswith(b"\r\n"):
                    raise TornRow from None
                raise DamagedRow(consumed) from None
            consumed += sum(len(p) for p in pending)
            pending.clear()
            yield row, consumed
        if stream.seek(0, os.SEEK_END) > consumed:
            raise TornRow


def _csv_records(path: str, header: list[str]) -> Iterator[tuple[dict[str, object], int]]:
    """(row, offset after it); the header must match this run's fields. A torn last row
    is dropped; a header cut short (the file holds nothing else) counts as no file."""
    rows = csv_rows(path)
    number = -1
    begins = 0  # where the row at hand starts: the end of the one before
    try:
        for number, (row, end) in enumerate(rows):
            if number == 0:
                if row != header and row == list(fields_of_header(header)):
                    raise ResumeError(
                        f"{path} was written by an earlier fetchmany, whose CSV has no "
                        f"{ERROR_MESSAGE_COLUMN} column after error: finish it with that "
                        "version, or use a new output file"
                    )
                if row != header:
                    shown = ",".join(row) if row else "no CSV header"
                    raise ResumeError(
                        f"{path} has {shown}; this run writes CSV with columns {','.join(header)}"
                    )
                yield {}, -end  # the header: negative marks "not a record"
                begins = end
                continue
            if len(row) != len(header):
                raise ResumeError(
                    f"{path}: a row after byte {begins} has {len(row)} cells, "
                    f"not {len(header)}; use a new output file"
                )
            yield dict(zip(header, row, strict=True)), end
            begins = end
    except TornRow:
        if number < 0:  # the header itself is cut short: this run's, or refused
            with open(path, "rb") as stream:
                start = stream.read()
            if not (",".join(header) + "\r\n").encode().startswith(start):
                raise ResumeError(
                    f"{path} starts with {start.decode('utf-8', 'replace')!r}, not the CSV "
                    f"header {','.join(header)}; use a new output file"
                ) from None
        return
    except DamagedRow as exc:
        raise ResumeError(
            f"{path}: a row after byte {exc.offset} is not CSV; use a new output file"
        ) from None


def _records(
    path: str, fmt: OutputFormat, fields: tuple[str, ...]
) -> Iterator[tuple[dict[str, object], int]]:
    if fmt is OutputFormat.JSONL:
        return _jsonl_records(path)
    if fmt is OutputFormat.JSON:
        return _json_array_records(path)
    return _csv_records(path, csv_header(fields))


FORMAT_NAMES: Final = {
    OutputFormat.JSONL: "JSON Lines",
    OutputFormat.JSON: "a JSON array",
    OutputFormat.CSV: "CSV",
}


_CSV_HEADER: Final = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*(,[A-Za-z_][A-Za-z0-9_]*)*\r?(\n|$)")


_TORN_CSV_HEADER: Final = re.compile(rb"[A-Za-z_][A-Za-z0-9_,]*\r?")

_KNOWN_NAMES: Final = frozenset(
    name.encode() for name in (*FIELDS, *OPTIONAL_FIELDS, *SAVED_FIELDS)
)


def detect_format(path: str) -> OutputFormat | None:
    """The format of a file fetchmany wrote, from its start (None: empty).

    Raises ``ResumeError`` for a file that starts like none of them.
    """
    with open(path, "rb") as stream:
        start = stream.read(4096)
    if not start:
        return None
    if start.startswith(b"\xef\xbb\xbf"):  # an editor re-saved it: say so, not "not records"
        raise ByteOrderMark(
            f"{path} starts with a byte-order mark, which fetchmany never writes (was it "
            f"saved by an editor?); remove it: sed -i '1s/^\\xEF\\xBB\\xBF//' {path}"
        )
    if start.startswith(b"{"):
        return OutputFormat.JSONL
    if start.startswith(b"["):
        return OutputFormat.JSON
    header = _CSV_HEADER.match(start)
    if header is not None and _KNOWN_NAMES & set(header.group().strip().split(b",")):
        return OutputFormat.CSV
    if _TORN_CSV_HEADER.fullmatch(start) and any(
        known.startswith(name)
        for name in start.strip().split(b",")
        if name
        for known in _KNOWN_NAMES
    ):
        return OutputFormat.CSV  # a header cut short: its shard stopped at once
    raise ResumeError(
        f"{path} is not records fetchmany wrote (JSON Lines, a JSON array or CSV); "
        "use a new output file"
    )


def key_field(fields: tuple[str, ...]) -> str:
    """The field that ties a record to its input: ``input``, else ``url``."""
    for name in ("input", "url"):
        if name in fields:
            return name
    raise ResumeError(
        "cannot check that the records already written belong to these inputs: "
        "--fields has neither input nor url; add input to --fields, or use a new output file"
    )


def scan(
    path: str, fmt: OutputFormat, fields: tuple[str, ...], shard: Shard | None = None
) -> ResumePoint:
    """Count the complete records in ``path`` and find where appending continues.

    Raises ``ResumeError`` for anything that does not look like the start of this
    very run's output; ``path`` is only read.
    """
    if not os.path.exists(path):
        return ResumePoint(0, 0)
    found = detect_format(path)
    if found is None:
        return ResumePoint(0, 0)
    if found is not fmt:
        raise ResumeError(
            f"{path} holds {FORMAT_NAMES[found]}, but this run writes {FORMAT_NAMES[fmt]}; "
            f"resume with -f {found.value}, or use a new output file"
        )
    key_field(fields)
    count = failed = 0
    offset = 0
    previous: object = None
    for record, end in _records(path, fmt, fields):
        if end < 0:  # CSV header
            offset = -end
            continue
        if fmt is not OutputFormat.CSV and list(record) != list(fields):
            raise ResumeError(
                f"{path} holds records with fields {','.join(record)}; "
                f"this run writes {','.join(fields)}"
            )
        if "index" in record and not _in_order(
            record["index"], count, previous, shard, typed=fmt is not OutputFormat.CSV
        ):
            what = "a run" if shard is None else f"shard {shard.number}/{shard.count}"
            index = record["index"]
            shown = index if fmt is OutputFormat.CSV else json.dumps(index, default=str)
            raise ResumeError(
                f"{path}: record {count} has index {shown}, so it is not the "
                f"in-order output of {what}; use a new output file"
            )
        previous = record.get("index", previous)
        count += 1
        offset = end
        if record.get("ok") in (False, "false"):
            failed += 1
    return ResumePoint(count, offset, failed)


def _in_order(
    index: object, count: int, previous: object, shard: Shard | None, *, typed: bool
) -> bool:
    """Whether the ``count``-th record's ``index`` is where this run's in-order output
    puts it: ``count`` itself, the ``count``-th of an index shard, or (by host, where
    which indexes a shard holds is known only from the input) past the one before.
    ``typed``: JSON, where an index is a number ("3" is not; CSV cells are all text)."""
    if typed and (type(index) is not int):
        return False
    if shard is None or not shard.by_host:
        expected = count if shard is None else shard.number + count * shard.count
        return str(index) == str(expected)
    try:
        now = int(str(index))
        return previous is None or now > int(str(previous))
    except ValueError:
        return False


def recorded_keys(path: str, fmt: OutputFormat, fields: tuple[str, ...]) -> Iterator[str | None]:
    """Each recorded record's ``key_field`` value (None for null), in order."""
    name = key_field(fields)
    for record, end in _records(path, fmt, fields):
        if end >= 0:
            value = record.get(name)
            yield None if value is None or value == "" else str(value)


def recorded_paths(path: str, fmt: OutputFormat, fields: tuple[str, ...]) -> Iterator[str]:
    """Each ``--save-dir`` file the recorded records name (``path``), in order."""
    if "path" not in fields:
        return
    for record, end in _records(path, fmt, fields):
        if end >= 0 and isinstance(saved := record.get("path"), str) and saved:
            yield saved


def same_key(recorded: str | None, given: str | None) -> bool:
    """Whether a record's key (``recorded_keys``: None for null or empty) is the item's:
    "" and None are one, as CSV writes both as an empty cell (a CSV input's row with an
    empty url cell has the URL "")."""
    return recorded == (given or None)


def changed_item(item: Item, given: str | None, recorded: str | None) -> str:
    """How a refusal names an item that is not the one a file holds at its index: both
    values, credentials masked; neither when the item's URL carries credentials and a
    value is not that URL, since a template may have put it there (a row's password is
    no URL to mask)."""
    if item.credentials and not (_url_or_none(given) and _url_or_none(recorded)):
        return (
            f"item {item.index} is not the one the file holds at that index (its URL "
            "carries credentials, so neither is shown)"
        )
    shown = repr(redact_url(given)) if given is not None else "None"
    kept = repr(redact_url(recorded)) if recorded is not None else "None"
    if shown == kept:  # they differ in what the mask hides
        return (
            f"item {item.index} is {shown} but the file has that URL with other "
            "credentials (not shown)"
        )
    return f"item {item.index} is {shown} but the file has {kept}"


def _url_or_none(text: str | None) -> bool:
    return text is None or text[:8].lower().startswith(("http://", "https://"))


async def skip_recorded(
    items: AsyncIterable[Item],
    expected: Iterator[str | None],
    count: int,
    path: str,
    key: Callable[[Item], str | None],
    on_checked: Callable[[], None] | None = None,
    whole: int | None = None,
) -> AsyncGenerator[Item, None]:
    """Drop the first ``count`` items after checking each against FILE; pass the rest on.

    ``key`` gives an item's value as the file would hold it (its input, or its url).
    ``on_checked`` is called once all ``count`` matched (a ``-P`` worker tells its
    parent, which writes nothing until every worker's part of the file is checked).
    ``whole``: the records of the whole file, when ``count`` is a shard's share of them
    (what a refusal should name: the user's file, not a worker's part of it).
    """
    seen = 0
    if count == 0 and on_checked is not None:
        on_checked()
    async for item in items:
        if seen < count:
            recorded = next(expected, None)
            if not same_key(recorded, given := key(item)):
                raise ResumeError(
                    f"input changed since {path} was written: "
                    f"{changed_item(item, given, recorded)}; use a new output file"
                )
            seen += 1
            if seen == count and on_checked is not None:
                on_checked()
            continue
        yield item
    if seen < count:
        has = (
            f"it has {seen} items but the file already holds {count} records"
            if whole is None
            else f"it has fewer items than the {whole} records the file already holds"
        )
        raise ResumeError(f"input changed since {path} was written: {has}; use a new output file")
