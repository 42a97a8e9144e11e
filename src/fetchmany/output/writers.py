"""Streaming writers for JSON Lines, a JSON array and CSV, and the output they go to.

Each writer emits records as they arrive, and ``close()`` always leaves a
complete document: a JSON array is closed, CSV rows are whole. Files are written
beside their destination and renamed into place on close, so a crash never
destroys a previous complete result.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Sequence
from enum import StrEnum
from typing import Any, Final, Protocol

import orjson

from fetchmany.output.destination import Output
from fetchmany.records import ERROR_MESSAGE_COLUMN, FIELDS


class OutputFormat(StrEnum):
    JSONL = "jsonl"
    JSON = "json"
    CSV = "csv"


_EXTENSIONS = {
    ".jsonl": OutputFormat.JSONL,
    ".ndjson": OutputFormat.JSONL,
    ".json": OutputFormat.JSON,
    ".csv": OutputFormat.CSV,
}


def format_for_path(path: str | None) -> OutputFormat | None:
    """The format an output file's extension implies, if it implies one."""
    if path is None:
        return None
    return _EXTENSIONS.get(os.path.splitext(path)[1].lower())


_NEWLINE: Final = orjson.OPT_APPEND_NEWLINE


def encode_json(value: Any, *, line: bool = False) -> bytes:
    """Compact JSON, one line (``line``: ended with a newline). Falls back to the stdlib
    for what orjson refuses: integers beyond 64 bits, and lone surrogates (a JSON body's
    ``"\\ud800"``), which only an ASCII escape can carry in valid UTF-8."""
    try:
        return orjson.dumps(value, option=_NEWLINE if line else 0)
    except TypeError:
        pass
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
    except UnicodeEncodeError:
        text = json.dumps(value, separators=(",", ":")).encode()
    return text + b"\n" if line else text


class Encodable(Protocol):
    """What a writer writes: a Record, or a record read back from a file (--merge)."""

    def to_dict(self, fields: tuple[str, ...]) -> dict[str, Any]: ...


class RecordWriter:
    """Base of the format writers: holds the output and the fields to emit."""

    def __init__(
        self, output: Output, fields: Sequence[str] = FIELDS, *, csv_safe: bool = False
    ) -> None:
        self.output = output
        self.fields = FIELDS if tuple(fields) == FIELDS else tuple(fields)  # the fast path
        self.written = 0
        self.csv_safe = csv_safe

    def write(self, records: Sequence[Encodable]) -> None:
        """Write a batch and flush it, so a downstream reader sees it now. Raises
        ``OutputError`` (or ``OutputClosed``) when the output cannot take it."""
        self.write_encoded([self.encode_one(record) for record in records])

    def write_encoded(self, encoded: Sequence[bytes]) -> None:
        """Write a batch of ``encode_one`` results, framed for their place in the document."""
        self.output.write_pieces(self.frame(encoded))
        self.written += len(encoded)
        self.output.mark()

    def encode_one(self, record: Encodable) -> bytes:
        """One record's bytes, wherever it lands: done as soon as the record completes
        (in the engine's worker), so a record waiting its turn holds only these."""
        raise NotImplementedError

    def frame(self, encoded: Sequence[bytes]) -> Sequence[bytes]:
        """The bytes that put a batch of encoded records in the document, in pieces
        (written as they are, not joined: a batch can be tens of MiB)."""
        return encoded

    def finish(self) -> bytes:
        """What closes the document (a JSON array's bracket); written by ``close``."""
        return b""

    def close(self) -> None:
        """Close the document and commit the output: done, or interrupted with every
        record so far. Raises ``OutputError`` if the output cannot take it."""
        self.output.write(self.finish())
        self.output.commit()

    def abandon(self) -> None:
        """The run failed: the previous output stays as it was (see ``Output.abandon``)."""
        self.output.abandon(closing=self.finish() if self.written else b"")


class JsonLinesWriter(RecordWriter):
    def encode_one(self, record: Encodable) -> bytes:
        value = record.to_dict(self.fields)
        try:  # encode_json's first step, without its call: once per record of most runs
            return orjson.dumps(value, option=_NEWLINE)
        except TypeError:
            return encode_json(value, line=True)


class JsonArrayWriter(RecordWriter):
    """A JSON array streamed one element per line; ``close`` writes the closing bracket."""

    def encode_one(self, record: Encodable) -> bytes:
        return encode_json(record.to_dict(self.fields))

    def frame(self, encoded: Sequence[bytes]) -> Sequence[bytes]:
        if not encoded:
            return ()
        first = self.output.at_start and self.written == 0
        pieces = [b",\n"] * (2 * len(encoded))
        pieces[1::2] = encoded
        if first:
            pieces[0] = b"[\n"
        return pieces

    def finish(self) -> bytes:
        empty = self.output.at_start and self.written == 0
        return b"[]\n" if empty else b"\n]\n"


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_header(fields: Sequence[str]) -> list[str]:
    """The columns of ``fields``: ``error`` is two, its kind and then its message."""
    header: list[str] = []
    for name in fields:
        header.append(name)
        if name == "error":
            header.append(ERROR_MESSAGE_COLUMN)
    return header


def fields_of_header(header: Sequence[str]) -> tuple[str, ...]:
    """The fields a CSV header holds (``csv_header`` undone); a header written before
    the message had its column is the same fields."""
    fields = list(header)
    for at in range(len(fields) - 1, 0, -1):
        if fields[at] == ERROR_MESSAGE_COLUMN and fields[at - 1] == "error":
            del fields[at]
    return tuple(fields)


def neutralise_formula(cell: str) -> str:
    """Make a spreadsheet show a cell as text rather than run it (OWASP CSV injection)."""
    return "'" + cell if cell.startswith(_FORMULA_STARTS) else cell


def looks_neutralised(cell: str) -> bool:
    """A cell as ``neutralise_formula`` leaves a formula: which data may hold as well, so
    the added ``'`` cannot be told from the data's own (``=x`` and ``'=x`` both give
    ``'=x``)."""
    return cell.startswith("'") and cell[1:].startswith(_FORMULA_STARTS)


_TERMINAL_UNSAFE: Final = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def terminal_text(cell: str) -> str:
    """A cell fit for a terminal: control characters (ESC, CR, NUL...) as ``\\xNN``;
    tabs and line breaks, which CSV quoting holds, as they are."""
    return _TERMINAL_UNSAFE.sub(lambda match: f"\\x{ord(match.group()):02x}", cell)


def csv_cells(name: str, value: Any) -> list[str]:
    """The cells of one field: ``error`` is its kind and its message (both empty when
    there is none); any other field is one ``csv_cell``. A record read back for
    ``--merge`` may hold an ``error`` of another shape (a part edited by hand): each part
    goes where it fits, and what is not an object goes whole into the kind's cell."""
    if name != "error":
        return [csv_cell(value)]
    if isinstance(value, dict):
        return [csv_cell(value.get("kind")), csv_cell(value.get("message"))]
    return [csv_cell(value), ""]


def csv_cell(value: Any) -> str:
    """One CSV cell: null empty, booleans as in JSON, nested values as JSON."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return repr(value) if isinstance(value, float) else str(value)
    return encode_json(value).decode()


class CsvWriter(RecordWriter):
    """CSV with a header row; every record is one whole row."""

    def __init__(
        self, output: Output, fields: Sequence[str] = FIELDS, *, csv_safe: bool = False
    ) -> None:
        super().__init__(output, fields, csv_safe=csv_safe)
        # JSON escapes control characters itself; CSV carries them as they are, which on
        # a terminal would let a server's ESC sequences recolour or rewrite the screen.
        self._terminal = output.is_terminal
        self._buffer = io.StringIO()
        self._csv = csv.writer(self._buffer, lineterminator="\r\n")
        self._header_due = True

    def _header(self) -> bytes:
        """The header row, once, ahead of the first batch (or at close, for no records),
        so that creating a writer writes nothing and cannot fail."""
        if not self._header_due:
            return b""
        self._header_due = False
        if not self.output.at_start:
            return b""
        self._csv.writerow(csv_header(self.fields))
        return self._take()

    def finish(self) -> bytes:
        return self._header()

    def _take(self) -> bytes:
        # A lone surrogate (from a JSON body's "\\ud800") cannot be UTF-8: escape it.
        data = self._buffer.getvalue().encode("utf-8", "backslashreplace")
        self._buffer.seek(0)
        self._buffer.truncate()
        return data

    def encode_one(self, record: Encodable) -> bytes:
        row = record.to_dict(self.fields)
        cells: list[str] = []
        for name, value in row.items():
            if self.csv_safe and not isinstance(value, int | float):
                cells.extend(neutralise_formula(cell) for cell in csv_cells(name, value))
            else:
                cells.extend(csv_cells(name, value))
        if self._terminal:
            cells = [terminal_text(cell) for cell in cells]
        self._csv.writerow(cells)
        return self._take()

    def frame(self, encoded: Sequence[bytes]) -> Sequence[bytes]:
        return [self._header(), *encoded]


WRITERS: dict[OutputFormat, type[RecordWriter]] = {
    OutputFormat.JSONL: JsonLinesWriter,
    OutputFormat.JSON: JsonArrayWriter,
    OutputFormat.CSV: CsvWriter,
}


def make_writer(
    fmt: OutputFormat, output: Output, fields: Sequence[str] = FIELDS, *, csv_safe: bool = False
) -> RecordWriter:
    return WRITERS[fmt](output, fields, csv_safe=csv_safe)
