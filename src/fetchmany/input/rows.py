"""Rows of structured input (CSV with a header, JSON Lines objects) as field mappings.

Rows are parsed one at a time from lines, so a huge CSV streams like a line
list. A CSV row may span lines (a quoted newline); it is complete once its
quotes balance, which holds for RFC 4180 CSV since an escaped quote is doubled.
"""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from fetchmany import jsontext

# An input cell may be long (a JSON payload, a resumed output's body column); the
# csv module refuses cells over 128 KiB unless told otherwise.
csv.field_size_limit(sys.maxsize)


class InputError(ValueError):
    """Input that cannot be read as the format says (a CSV header naming a column twice);
    the run stops before fetching what it cannot read right. ``later``: it is not the
    first input, so the items of those before it may already have been fetched."""

    later: bool = False


class InputFormat(StrEnum):
    LINES = "lines"
    CSV = "csv"
    JSONL = "jsonl"


_EXTENSIONS = {".csv": InputFormat.CSV, ".jsonl": InputFormat.JSONL, ".ndjson": InputFormat.JSONL}


def infer_input_format(paths: list[str] | tuple[str, ...]) -> InputFormat:
    """CSV or JSON Lines when every named input says so by its extension; else lines."""
    import os

    kinds = {_EXTENSIONS.get(os.path.splitext(p)[1].lower()) for p in paths if p != "-"}
    if len(kinds) == 1 and None not in kinds and "-" not in paths:
        (kind,) = kinds
        assert kind is not None
        return kind
    return InputFormat.LINES


@dataclass(slots=True)
class Row:
    """One structured item: the text as given, and its fields (or why it has none).

    Never changed once made; not frozen, as ``Item`` is not: one is made per input line,
    and a frozen dataclass costs three times as much to make."""

    text: str
    fields: dict[str, str] | None
    problem: str | None = None


def json_field(value: object) -> str | None:
    """A JSON value as placeholder text: strings as they are (a row's numbers come as
    ``NumberText``: ``1e2`` stays ``1e2``), others as compact JSON, null as missing."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def jsonl_row(text: str) -> Row:
    try:
        value = jsontext.loads(text, numbers_as_text=True)
    except ValueError as exc:
        return Row(text, None, f"not JSON: {exc}")
    if not isinstance(value, dict):
        return Row(text, None, "not a JSON object")
    plain: dict[str, Any] | None = None  # the row with numbers as numbers, for nested values
    fields = {}
    try:
        for key, item in value.items():
            if isinstance(item, list | dict):
                plain = plain if plain is not None else jsontext.loads(text)
                item = plain[key]  # lists and objects are written back as compact JSON
            as_text = json_field(item)
            if as_text is not None:
                fields[str(key)] = as_text
    except RecursionError:  # nested too deep to write back, though not to parse
        return Row(text, None, "not JSON a placeholder can take: nested too deeply")
    return Row(text, fields)


def ends_quoted(line: str, quoted: bool) -> bool:
    """Whether a CSV row is inside a quoted cell at the end of ``line``, given whether it
    was at its start. As the csv module reads: a quote opens a quoted cell only at the
    start of a cell (``5" screen`` is a plain cell holding a quote), and a doubled quote
    inside one is a quote, not its end."""
    at_start = not quoted
    i, end = 0, len(line)
    while i < end:
        char = line[i]
        if quoted:
            if char == '"':
                if i + 1 < end and line[i + 1] == '"':
                    i += 1  # an escaped quote
                else:
                    quoted = False
        elif char == '"' and at_start:
            quoted = True
        at_start = char == "," and not quoted
        i += 1
    return quoted


class CsvRows:
    """Feed lines of one CSV file; get rows back once complete. The first row is the header.

    A row longer than ``max_row`` characters (a quote left open can make the rest of a
    file one row) is no longer kept once past it: its quotes are still followed to its
    end, and it comes back as one row whose problem says so, so memory stays bounded."""

    def __init__(self, max_row: int = sys.maxsize) -> None:
        self.header: list[str] | None = None
        self._pending: list[str] = []
        self._size = 0
        self._quoted = False
        self._max_row = max_row
        self._over: int | None = None  # the size so far of a row past max_row
        self._shown = ""  # the start of that row

    def feed(self, line: str) -> Row | None:
        """Add one line (without its newline); return a row when one is complete."""
        if self._over is not None:
            self._over += len(line) + 1
        else:
            self._pending.append(line)
            self._size += len(line) + 1
            if self._size > self._max_row:
                self._drop_text(self._size)
        if '"' in line or self._quoted:
            self._quoted = ends_quoted(line, self._quoted)
            if self._quoted:
                return None  # inside a quoted cell: the row goes on
        return self._take()

    def feed_long(self, start: str, size: int, quotes: int) -> Row | None:
        """A line the reader could not keep (longer than an item may be): the row it is
        in is too long. Of its text only its count of quotes is known: an odd count
        opens or closes a quoted cell (exact inside one, where every quote counts; a
        plain cell's stray quote is the one case it misreads)."""
        if self._over is None:
            self._pending.append(start)
            self._drop_text(self._size + size)
        else:
            self._over += size
        if quotes % 2:
            self._quoted = not self._quoted
        return None if self._quoted else self._take()

    def _drop_text(self, size: int) -> None:
        self._shown = "\n".join(self._pending)[:200]
        self._pending = []
        self._over = size

    def finish(self) -> Row | None:
        """End of file: a row still inside a quoted cell is a row, whose problem is that
        its quote is never closed (the csv module would fill the cell with the rest of
        the file, and the row would be fetched as if whole). Only such a row is left
        at the end (a whole row is handed out as its line ends), so a row returned
        here always has a problem."""
        if not self._pending and self._over is None:
            return None
        unclosed = self._quoted
        row = self._take()
        if unclosed and row is not None and row.problem is None:
            return Row(row.text, None, "a quoted cell is never closed: the file ends in it")
        return row

    def _take(self) -> Row | None:
        text = "\n".join(self._pending).removesuffix("\r")  # the row's own line end
        over, shown = self._over, self._shown
        self._pending, self._size, self._quoted, self._over, self._shown = [], 0, False, None, ""
        if over is not None:
            problem = f"a row of {over:,} characters, longer than an item may be"
            if self.header is None:
                raise InputError(f"the CSV header is {problem}")
            return Row(shown + "...", None, problem)
        if not text.strip("\r"):
            return None  # an empty line, which the csv module skips too; spaces are data
        try:
            cells = next(csv.reader([text + "\n"]), [])
        except csv.Error as exc:  # whatever the csv module refuses is that row's problem
            if self.header is None and "\r" in text:  # lines ended by CR alone: one line
                raise InputError(
                    "the CSV file ends its lines with CR alone (old Mac files); convert "
                    "them: tr '\\r' '\\n' < in.csv > out.csv"
                ) from None
            if self.header is None:
                raise InputError(f"the CSV header cannot be read: {exc}") from None
            return Row(text, None, f"not a CSV row: {exc}")
        if self.header is None:
            header = [cell.strip() for cell in cells]
            named = [name for name in header if name]
            if duplicated := sorted({name for name in named if named.count(name) > 1}):
                raise InputError(
                    f"the CSV header names column {duplicated[0]!r} twice; "
                    "rename one so every column has its own name"
                )
            self.header = header
            return None
        fields = {name: cell for name, cell in zip(self.header, cells, strict=False) if name}
        if len(cells) > len(self.header):
            return Row(text, fields, f"{len(cells)} cells but {len(self.header)} columns")
        return Row(text, fields)
