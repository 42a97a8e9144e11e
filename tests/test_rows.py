"""CSV and JSON Lines rows: parsed one at a time, quotes and odd values handled."""

from __future__ import annotations

import csv
import datetime
import io

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from fetchmany.input import rows as rows_module
from fetchmany.input.rows import (
    CsvRows,
    InputError,
    InputFormat,
    Row,
    infer_input_format,
    json_field,
    jsonl_row,
)


def feed_all(lines: list[str]) -> list[Row]:
    rows = CsvRows()
    out = [row for line in lines if (row := rows.feed(line)) is not None]
    if (last := rows.finish()) is not None:
        out.append(last)
    return out


def test_header_then_rows_with_quoted_commas_and_newlines() -> None:
    rows = feed_all(["id,name", '1,"a, b"', '2,"line one', 'line two"', '3,"say ""hi"""'])
    assert [r.fields for r in rows] == [
        {"id": "1", "name": "a, b"},
        {"id": "2", "name": "line one\nline two"},
        {"id": "3", "name": 'say "hi"'},
    ]
    assert rows[1].text == '2,"line one\nline two"'


def test_short_rows_lack_fields_and_long_rows_are_flagged() -> None:
    short, long = feed_all(["a,b", "1", "1,2,3"])
    assert short.fields == {"a": "1"}
    assert short.problem is None
    assert long.problem == "3 cells but 2 columns"


def test_blank_lines_are_skipped_and_an_unclosed_quote_ends_with_the_file() -> None:
    rows = feed_all(["a", "", "x", '"never closed', "y"])
    assert [r.fields for r in rows] == [{"a": "x"}, None]
    # Found by a hostile tester: the rest of the file was fetched as one ok cell.
    assert rows[1].problem == "a quoted cell is never closed: the file ends in it"
    assert rows[1].text == '"never closed\ny'


def test_jsonl_values_become_placeholder_text() -> None:
    row = jsonl_row('{"s": "x", "n": 7, "f": 1.5, "b": false, "z": null, "l": [1, "a"]}')
    assert row.fields == {"s": "x", "n": "7", "f": "1.5", "b": "false", "l": '[1,"a"]'}
    assert jsonl_row("[1, 2]").problem == "not a JSON object"
    assert (jsonl_row("{oops").problem or "").startswith("not JSON")


def test_a_jsonl_row_with_a_problem_keeps_its_text() -> None:
    """The record of a row that cannot fill a template shows the row as given."""
    assert jsonl_row("[1, 2]") == Row("[1, 2]", None, "not a JSON object")
    assert jsonl_row("{oops").text == "{oops"


def test_a_row_too_deep_to_write_back_is_that_rows_problem(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Parsed, but too deep for the stack to write back as placeholder text: the row's
    problem, with its text, not a crash (the parser's own depth limit is lower than the
    writer's on a fresh stack, so the stack is made to run out here)."""

    def too_deep(value: object) -> str:
        raise RecursionError

    monkeypatch.setattr(rows_module, "json_field", too_deep)
    line = '{"v": [[1]]}'
    assert jsonl_row(line) == Row(line, None, "not JSON a placeholder can take: nested too deeply")


def test_a_nested_value_is_written_back_as_given_text() -> None:
    """Non-ASCII stays itself (a placeholder percent-encodes it as UTF-8, as a string's
    own is); a library caller's value that JSON has no type for is its text."""
    assert json_field({"name": "Zoë", "n": [1, "ü"]}) == '{"name":"Zoë","n":[1,"ü"]}'
    assert json_field([datetime.date(2026, 12, 5)]) == '["2026-12-05"]'
    assert json_field(None) is None
    assert json_field("as is") == "as is"


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("[" * 100_000, "not JSON: nested too deeply to parse"),  # was a RecursionError: exit 70
        ('{"id": NaN}', "not JSON: NaN is not a JSON value"),  # was sent as ?NaN
        ('{"id": -Infinity}', "not JSON: -Infinity is not a JSON value"),
        ('{"id": 1e999}', "not JSON: number 1e999 is beyond what a double holds"),
    ],
)
def test_a_jsonl_row_that_is_not_strict_json_is_that_rows_problem(line: str, problem: str) -> None:
    assert jsonl_row(line).problem == problem


def test_format_is_inferred_only_when_every_input_agrees() -> None:
    assert infer_input_format(["a.csv", "b.CSV"]) is InputFormat.CSV
    assert infer_input_format(["a.jsonl", "b.ndjson"]) is InputFormat.JSONL
    assert infer_input_format(["a.csv", "b.txt"]) is InputFormat.LINES
    assert infer_input_format(["a.csv", "-"]) is InputFormat.LINES
    assert infer_input_format([]) is InputFormat.LINES


def test_a_quote_inside_a_plain_cell_is_a_quote_not_an_opening() -> None:
    """Found by a hostile tester: ``5" screen`` opened a quoted cell, joined the next
    lines into one row, and the csv module's error ended the run (exit 70)."""
    rows = feed_all(["id,name", '1,5" screen', "2,b", "3,c"])
    assert [r.fields for r in rows] == [
        {"id": "1", "name": '5" screen'},
        {"id": "2", "name": "b"},
        {"id": "3", "name": "c"},
    ]


@given(st.text(alphabet='a,"\n', max_size=40))
@example('1,5" x\n2,b')
@example('"a""b",c\n"x\ny",z')
def test_rows_split_where_the_csv_module_splits_them(body: str) -> None:
    """Fed a line at a time after a header, the rows are the csv module's rows of the
    whole text: a row spans lines exactly when the csv module's does."""
    rows = feed_all(["h", *body.split("\n")])
    got = [next(csv.reader([row.text + "\n"])) for row in rows]
    expected = list(csv.reader(io.StringIO(body + "\n", newline="")))
    assert [cells for cells in got if any(cells)] == [c for c in expected if any(c)]


def test_a_row_past_the_limit_is_one_row_whose_problem_says_so_and_is_not_kept() -> None:
    """Found by a hostile tester: a quote left open made the rest of a 300 MB file one
    row, held whole (3.6 GB). Past the limit its text is dropped, its quotes followed."""
    rows = CsvRows(max_row=100)
    fed = [rows.feed(line) for line in ["a,b", "1,2", '"open,3', *["x" * 40] * 50, 'end"', "4,5"]]
    done = [row for row in fed if row is not None]
    assert [r.fields for r in done] == [{"a": "1", "b": "2"}, None, {"a": "4", "b": "5"}]
    long = done[1]
    assert long.problem == "a row of 2,063 characters, longer than an item may be"
    assert long.text.startswith('"open,3\nxxx')
    assert len(long.text) < 300
    assert rows._pending == []  # nothing of it held


def test_a_line_too_long_to_keep_inside_a_quoted_cell_is_one_row() -> None:
    rows = CsvRows(max_row=100)
    assert rows.feed("id,name") is None
    assert rows.feed('3,"start') is None
    assert rows.feed_long("yyyy", 10_000, quotes=2) is None  # still inside the quoted cell
    row = rows.feed('end"')
    assert row is not None
    assert row.problem == "a row of 10,014 characters, longer than an item may be"
    assert rows.feed_long("zz", 5_000, quotes=0) is not None  # outside quotes: its own row
    # Found by a hostile tester: a long line that closes the cell ('xxx",tail') was taken
    # to leave it open, and the rows after it were swallowed.
    assert rows.feed('5,"start') is None
    closed = rows.feed_long("xxx", 20_000, quotes=1)
    assert closed is not None
    assert closed.problem is not None
    # And one that opens a cell ('6,xxx,"start') was taken to leave it closed.
    assert rows.feed_long("6,xxx", 20_000, quotes=1) is None
    assert rows.feed('end"') is not None
    last = rows.feed("4,d")
    assert last is not None
    assert last.fields == {"id": "4", "name": "d"}


def test_a_csv_with_lone_cr_line_ends_is_refused_with_the_way_out() -> None:
    rows = CsvRows()
    with pytest.raises(InputError, match="ends its lines with CR alone"):
        rows.feed("a,b\r1,2\r3,4\r")


def test_jsonl_numbers_fill_placeholders_as_they_were_written() -> None:
    """Found by a hostile tester: 1e2 filled ?id=100.0, -0 gave 0 and 1.50 gave 1.5;
    docs/reference.md says numbers fill placeholders as their JSON text."""
    row = jsonl_row(
        '{"a": 1e2, "b": -0, "c": 1.50, "d": [1e2, {"x": 7}], "g": 123456789012345678901}'
    )
    assert row.fields == {
        "a": "1e2",
        "b": "-0",
        "c": "1.50",
        "d": '[100.0,{"x":7}]',  # a list or an object: compact JSON of its values
        "g": "123456789012345678901",
    }


def test_a_field_nested_hundreds_deep_is_written_back_not_a_crash() -> None:
    """Found by a hostile tester: writing numbers back as written recursed once per level
    and a field 700 deep ended the run with exit 70."""
    row = jsonl_row('{"url": "http://h.test/", "v": ' + "[" * 700 + "]" * 700 + "}")
    assert row.problem is None
    assert row.fields is not None
    assert row.fields["v"] == "[" * 700 + "]" * 700


def test_a_row_the_csv_module_refuses_is_that_rows_problem_with_its_text() -> None:
    rows = CsvRows()
    assert rows.feed("a,b") is None
    row = rows.feed("1,2\r3,4")  # a CR alone inside a data row: the row, not the file
    assert row is not None
    assert row.text == "1,2\r3,4"
    assert row.fields is None
    assert (row.problem or "").startswith("not a CSV row: new-line character seen")


def test_a_csv_file_of_cr_line_ends_is_refused_with_how_to_convert_it() -> None:
    with pytest.raises(InputError) as raised:
        CsvRows().feed("a,b\r1,2\r3,4")
    assert str(raised.value) == (
        "the CSV file ends its lines with CR alone (old Mac files); convert them: "
        "tr '\\r' '\\n' < in.csv > out.csv"
    )


def test_a_row_is_too_long_only_past_max_row_and_says_its_whole_size() -> None:
    """max_row counts a row's characters with its line end; the problem row shows the
    first 200 characters and the size of all of it, across the lines that followed."""
    rows = CsvRows(max_row=10)
    assert rows.feed("a") is None
    assert rows.feed("123456789") == Row("123456789", {"a": "123456789"})  # 10: kept
    assert rows.feed("1234567890") == Row(
        "1234567890...", None, "a row of 11 characters, longer than an item may be"
    )
    assert rows.feed('"' + "x" * 300) is None  # a quote left open: the row goes on
    assert rows.feed_long("y", 50, 0) is None
    assert rows.feed_long("z", 70, 0) is None
    assert rows.finish() == Row(
        '"' + "x" * 199 + "...", None, "a row of 422 characters, longer than an item may be"
    )
    with pytest.raises(InputError) as raised:
        CsvRows(max_row=10).feed("a" * 10)
    assert (
        str(raised.value) == "the CSV header is a row of 11 characters, longer than an item may be"
    )


def test_a_row_with_more_cells_than_columns_keeps_the_cells_it_can_name() -> None:
    rows = CsvRows()
    assert rows.feed("a,,c") is None  # a column without a name fills no placeholder
    assert rows.feed("1,2,3,4") == Row("1,2,3,4", {"a": "1", "c": "3"}, "4 cells but 3 columns")
