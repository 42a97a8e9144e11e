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
import sys
import tempfile
from collections.abc import Sequence
from enum import StrEnum
from typing import Any, BinaryIO

import orjson

from fetchmany.records import FIELDS, Record


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


def encode_json(value: Any) -> bytes:
    """Compact JSON, one line; falls back to the stdlib for integers beyond 64 bits."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


class Output:
    """Where records go: stdout, or a file.

    A new file is written as a temporary sibling renamed into place on close, so
    a crash never destroys a previous complete result. Resuming (``append_at``)
    instead continues the file itself from that byte offset, cutting off anything
    after it (a torn record, a closing bracket): every record already there stays.
    """

    def __init__(self, path: str | None, append_at: int | None = None) -> None:
        self.path = path
        self._temp: str | None = None
        self.at_start = not append_at
        if path is None:
            self.stream: BinaryIO = sys.stdout.buffer
        elif append_at is not None:
            self.stream = open(path, "r+b" if os.path.exists(path) else "wb")  # noqa: SIM115
            self.stream.truncate(append_at)
            self.stream.seek(append_at)
        elif (target := replaceable_path(path)) is None:
            # /dev/stdout, a FIFO, /dev/null: not a file to replace, a stream to write.
            self.stream = open(path, "wb")  # noqa: SIM115
        else:
            self.path = target
            directory = os.path.dirname(target)
            fd, self._temp = tempfile.mkstemp(
                prefix=f".{os.path.basename(target)}.", suffix=".part", dir=directory
            )
            self.stream = os.fdopen(fd, "wb")

    def flush(self) -> None:
        self.stream.flush()

    def close(self) -> None:
        """Finish the output: a file is moved into place only once fully written."""
        if self._temp is None:
            if self.path is None:
                self.stream.flush()
            else:
                self.stream.close()
            return
        assert self.path is not None
        self.stream.close()
        os.chmod(self._temp, 0o666 & ~_umask())
        os.replace(self._temp, self.path)
        self._temp = None


def replaceable_path(path: str) -> str | None:
    """The regular file to replace for ``path``, or None when it must be written in place.

    A symlink's target is replaced, never the link itself; devices, FIFOs and
    anything under /dev or /proc (``-o /dev/stdout``) are written directly.
    """
    real = os.path.realpath(path)
    for special in ("/dev/", "/proc/"):
        if os.path.abspath(path).startswith(special) or real.startswith(special):
            return None
    if os.path.exists(real) and not os.path.isfile(real):
        return None
    return real


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class RecordWriter:
    """Base of the format writers: holds the output and the fields to emit."""

    def __init__(
        self, output: Output, fields: Sequence[str] = FIELDS, *, csv_safe: bool = False
    ) -> None:
        self.output = output
        self.fields = tuple(fields)
        self.written = 0
        self.csv_safe = csv_safe

    def write(self, records: Sequence[Record]) -> None:
        """Write a batch and flush it, so a downstream reader sees it now."""
        stream = self.output.stream
        stream.write(self.encode(records))
        self.written += len(records)
        self.output.flush()

    def encode(self, records: Sequence[Record]) -> bytes:
        raise NotImplementedError

    def close(self) -> None:
        self.output.close()


class JsonLinesWriter(RecordWriter):
    def encode(self, records: Sequence[Record]) -> bytes:
        fields = self.fields
        return b"".join(encode_json(r.to_dict(fields)) + b"\n" for r in records)


class JsonArrayWriter(RecordWriter):
    """A JSON array streamed one element per line; ``close`` writes the closing bracket."""

    def encode(self, records: Sequence[Record]) -> bytes:
        fields = self.fields
        parts: list[bytes] = []
        for record in records:
            first = self.output.at_start and self.written + len(parts) == 0
            parts.append(b"[\n" if first else b",\n")
            parts.append(encode_json(record.to_dict(fields)))
        return b"".join(parts)

    def close(self) -> None:
        empty = self.output.at_start and self.written == 0
        self.output.stream.write(b"[]\n" if empty else b"\n]\n")
        super().close()


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_header(fields: Sequence[str]) -> list[str]:
    return list(fields)


def neutralise_formula(cell: str) -> str:
    """Make a spreadsheet show a cell as text rather than run it (OWASP CSV injection)."""
    return "'" + cell if cell.startswith(_FORMULA_STARTS) else cell


def csv_cell(name: str, value: Any) -> str:
    """One CSV cell: null empty, booleans as in JSON, nested values as JSON, error as its kind."""
    if value is None:
        return ""
    if name == "error":
        return str(value["kind"])
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
        self._buffer = io.StringIO()
        self._csv = csv.writer(self._buffer, lineterminator="\r\n")
        if output.at_start:
            self._csv.writerow(csv_header(self.fields))
            output.stream.write(self._take())

    def _take(self) -> bytes:
        data = self._buffer.getvalue().encode()
        self._buffer.seek(0)
        self._buffer.truncate()
        return data

    def encode(self, records: Sequence[Record]) -> bytes:
        fields = self.fields
        for record in records:
            row = record.to_dict(fields)
            cells = [csv_cell(name, row[name]) for name in fields]
            if self.csv_safe:
                cells = [
                    cell if isinstance(row[name], int | float) else neutralise_formula(cell)
                    for name, cell in zip(fields, cells, strict=True)
                ]
            self._csv.writerow(cells)
        return self._take()


WRITERS: dict[OutputFormat, type[RecordWriter]] = {
    OutputFormat.JSONL: JsonLinesWriter,
    OutputFormat.JSON: JsonArrayWriter,
    OutputFormat.CSV: CsvWriter,
}


def make_writer(
    fmt: OutputFormat, output: Output, fields: Sequence[str] = FIELDS, *, csv_safe: bool = False
) -> RecordWriter:
    return WRITERS[fmt](output, fields, csv_safe=csv_safe)
