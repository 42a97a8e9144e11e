"""Resuming a run into an output file that already holds its first records.

An ordered run writes records 0..k-1 before k, so whatever a stopped or crashed
run left in FILE is a prefix of the full result. Resuming scans FILE once to
find k and where the last complete record ends (a torn last line from a crash is
dropped), checks lazily that the inputs still match the recorded ones, skips
them, and appends the rest. Memory stays flat: nothing of FILE is held.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import AsyncGenerator, AsyncIterable, Iterator
from dataclasses import dataclass

from fetchmany.sources import Item
from fetchmany.writers import OutputFormat, csv_header


class ResumeError(Exception):
    """FILE cannot be continued by this run; the message says why, for the user."""


@dataclass(frozen=True, slots=True)
class ResumePoint:
    """Where a resumed run picks up."""

    records: int
    """Complete records already in the file."""
    offset: int
    """Byte offset at which the next record's bytes go (after truncating anything torn)."""


def _jsonl_records(path: str) -> Iterator[tuple[dict[str, object], int]]:
    """(record, offset after it) for each complete line; a line without its newline is torn."""
    offset = 0
    with open(path, "rb") as stream:
        for number, line in enumerate(stream, 1):
            if not line.endswith(b"\n"):
                return
            try:
                record = json.loads(line)
            except ValueError:
                raise ResumeError(f"{path}: line {number} is not a JSON record") from None
            offset += len(line)
            yield record, offset


def _json_array_records(path: str) -> Iterator[tuple[dict[str, object], int]]:
    """(record, offset after its closing brace) for the one-element-per-line arrays we write."""
    with open(path, "rb") as stream:
        first = stream.readline()
        if first == b"[]\n" or not first:
            return
        if first != b"[\n":
            raise ResumeError(f"{path}: not a JSON array written by fetchmany")
        offset = len(first)
        for number, line in enumerate(stream, 2):
            if line in (b"]\n", b"]"):
                return
            body = line.removesuffix(b"\n").removesuffix(b",")
            try:
                record = json.loads(body)
            except ValueError:
                if not line.endswith(b"\n"):
                    return  # torn by a crash: dropped
                raise ResumeError(f"{path}: line {number} is not a JSON record") from None
            # One element per line: a line that parses is whole, newline or not.
            yield record, offset + len(body)
            offset += len(line)


def _csv_records(path: str, header: list[str]) -> Iterator[tuple[dict[str, object], int]]:
    """(row, offset after it); the header must match this run's fields."""
    with open(path, "rb") as stream:
        raw_lines = iter(stream)
        consumed = 0
        pending: list[bytes] = []

        def lines() -> Iterator[str]:
            for raw in raw_lines:
                if not raw.endswith(b"\n"):
                    return  # torn: never hand a partial line to the parser
                pending.append(raw)
                yield raw.decode("utf-8", "replace")

        reader = csv.reader(lines(), strict=True)  # a row torn inside quotes is an error
        try:
            first = next(reader, None)
        except csv.Error:
            return
        if first is None:
            return
        if first != header:
            raise ResumeError(
                f"{path} has columns {','.join(first)}; this run writes {','.join(header)}"
            )
        consumed += sum(len(p) for p in pending)
        pending.clear()
        yield {}, -consumed  # the header: negative marks "not a record"
        while True:
            try:
                row = next(reader)
            except (StopIteration, csv.Error):
                return
            consumed += sum(len(p) for p in pending)
            pending.clear()
            yield dict(zip(header, row, strict=False)), consumed


def _records(
    path: str, fmt: OutputFormat, fields: tuple[str, ...]
) -> Iterator[tuple[dict[str, object], int]]:
    if fmt is OutputFormat.JSONL:
        return _jsonl_records(path)
    if fmt is OutputFormat.JSON:
        return _json_array_records(path)
    return _csv_records(path, csv_header(fields))


def scan(path: str, fmt: OutputFormat, fields: tuple[str, ...]) -> ResumePoint:
    """Count the complete records in ``path`` and find where appending continues."""
    if not os.path.exists(path):
        return ResumePoint(0, 0)
    count = 0
    offset = 0
    for record, end in _records(path, fmt, fields):
        if end < 0:  # CSV header
            offset = -end
            continue
        if fmt is not OutputFormat.CSV and list(record) != list(fields):
            raise ResumeError(
                f"{path} holds records with fields {','.join(record)}; "
                f"this run writes {','.join(fields)}"
            )
        count += 1
        offset = end
    return ResumePoint(count, offset)


def recorded_inputs(path: str, fmt: OutputFormat, fields: tuple[str, ...]) -> Iterator[str | None]:
    """Each recorded record's ``input`` (None when the field is not written), in order."""
    for record, end in _records(path, fmt, fields):
        if end >= 0:
            value = record.get("input")
            yield None if value is None else str(value)


async def skip_recorded(
    items: AsyncIterable[Item], expected: Iterator[str | None], count: int, path: str
) -> AsyncGenerator[Item, None]:
    """Drop the first ``count`` items after checking each against FILE; pass the rest on."""
    seen = 0
    async for item in items:
        if seen < count:
            recorded = next(expected, None)
            if recorded is not None and recorded != item.input:
                raise ResumeError(
                    f"input changed since {path} was written: item {item.index} is "
                    f"{item.input!r} but the file has {recorded!r}; use a new output file"
                )
            seen += 1
            continue
        yield item
    if seen < count:
        raise ResumeError(
            f"input changed since {path} was written: it has {seen} items but the file "
            f"already holds {count} records; use a new output file"
        )
