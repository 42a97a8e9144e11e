"""--resume after an interrupted run: exactly one record per input, in order, in every format."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiohttp import web
from conftest import LoopbackServer, jsonl, run_cli
from test_interrupt import start, wait_hung

N = 60


def indices(path: Path, fmt: str) -> list[int]:
    text = path.read_text()
    if fmt == "jsonl":
        return [json.loads(line)["index"] for line in text.splitlines()]
    if fmt == "json":
        return [r["index"] for r in json.loads(text)]
    return [int(row["index"]) for row in csv.DictReader(io.StringIO(text, newline=""))]


def tear(path: Path, fmt: str) -> None:
    """Leave the file as a crash mid-write would: a partial record at the end."""
    data = path.read_bytes()
    if fmt == "json":
        data = data.removesuffix(b"\n]\n") + b',\n{"index": 99, "inp'
    elif fmt == "csv":
        data += b'99,"99",http://torn'
    else:
        data += b'{"index": 99, "inp'
    path.write_bytes(data)


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv"])
def test_resume_after_ctrl_c_and_a_torn_line(
    server: LoopbackServer, tmp_path: Path, fmt: str
) -> None:
    out = tmp_path / f"results.{fmt}"
    server.hang_from(20, signal_when_hung=4)
    proc = start(server, "-o", str(out), "--grace", "0.2")
    wait_hung(server)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert indices(out, fmt) == list(range(20))
    tear(out, fmt)

    server.stop_hanging()
    server.reset()
    ids = "".join(f"{i}\n" for i in range(N)).encode()
    template = server.url("/maybe-hang?id={}")
    result = run_cli("-t", template, "-o", str(out), "--resume", stdin=ids)
    assert result.returncode == 0, result.stderr
    assert "Resuming: 20 records" in result.stderr
    assert indices(out, fmt) == list(range(N))  # one record per input, in order
    fetched = sorted(int(path.split("id=")[1]) for _, path in server.state.arrivals)
    assert fetched == list(range(20, N))  # nothing fetched twice

    again = run_cli("-t", template, "-o", str(out), "--resume", stdin=ids)
    assert again.returncode == 0
    assert indices(out, fmt) == list(range(N))


def test_resume_refuses_changed_inputs(server: LoopbackServer, tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    template = server.url("/maybe-hang?id={}")
    first = run_cli("-t", template, "-o", str(out), stdin=b"1\n2\n3\n")
    assert first.returncode == 0
    before = out.read_bytes()

    changed = run_cli("-t", template, "-o", str(out), "--resume", stdin=b"1\n5\n3\n4\n")
    assert changed.returncode == 2
    assert "input changed" in changed.stderr
    assert "'5'" in changed.stderr
    fewer = run_cli("-t", template, "-o", str(out), "--resume", stdin=b"1\n2\n")
    assert fewer.returncode == 2
    assert "2 items" in fewer.stderr
    assert out.read_bytes() == before  # a refused resume leaves the file as it was

    more = run_cli("-t", template, "-o", str(out), "--resume", stdin=b"1\n2\n3\n4\n")
    assert more.returncode == 0  # inputs appended since: only the new one is fetched
    assert [json.loads(x)["input"] for x in out.read_text().splitlines()] == ["1", "2", "3", "4"]


@pytest.mark.parametrize("again", ["--resume", "--refresh"])
def test_a_changed_row_whose_fields_fill_credentials_is_refused_without_them(
    server: LoopbackServer, tmp_path: Path, again: str
) -> None:
    """Found by a hostile tester: a template that puts a row's fields into the URL's
    userinfo, and a changed password: the refusal printed both rows, passwords and all
    (the records mask the URL; an input that is no URL cannot be masked)."""
    rows = tmp_path / "creds.csv"
    rows.write_text("user,pass,id\nalice,s3cretA,1\nbob,hunter2,2\n")
    out = tmp_path / "out.jsonl"
    template = server.url("/item?id={id}").replace("http://", "http://{user}:{pass}@")
    assert run_cli("-t", template, "-o", str(out), "-q", str(rows)).returncode == 0
    rows.write_text("user,pass,id\nalice,NEWsecret,1\nbob,hunter2,2\n")
    target = ("--refresh", str(out)) if again == "--refresh" else ("-o", str(out), "--resume")
    result = run_cli("-t", template, *target, str(rows))
    assert result.returncode == 2, result.stderr
    assert "item 0 is not the one the file holds at that index" in result.stderr
    for secret in ("s3cretA", "NEWsecret", "hunter2"):
        assert secret not in result.stderr


@pytest.mark.parametrize(
    ("url", "given", "recorded", "said"),
    [
        # Two URLs: each is masked, so both can be shown, whatever the scheme's case.
        (
            "https://u:pw@h.test/2",
            "HTTPS://u:pw@h.test/2",
            "https://u:old@h.test/1",
            "item 3 is 'HTTPS://u:****@h.test/2' but the file has 'https://u:****@h.test/1'",
        ),
        ("http://u:pw@h.test/2", "http://u:pw@h.test/2", None, None),
        # A row's value that a template put into the credentials is no URL to mask.
        ("https://alice:pw@h.test/2", "https://alice:pw@h.test/2", "pw", "neither"),
        ("https://alice:pw@h.test/2", "alice", "bob", "neither"),
        # The input is no URL (it may be the user name or password itself), though the
        # file's value is: neither shown, or the input would be.
        ("https://alice:pw@h.test/2", "alice", None, "neither"),
        ("https://alice:pw@h.test/2", "alice", "https://alice:pw@h.test/1", "neither"),
        # Only the password differs: both masked alike, so said in words.
        (
            "http://u:new@h.test/2",
            "http://u:new@h.test/2",
            "http://u:old@h.test/2",
            "item 3 is 'http://u:****@h.test/2' but the file has that URL with other "
            "credentials (not shown)",
        ),
        # No credentials in the URL: the values are shown as they are.
        ("https://h.test/2", "7", None, "item 3 is '7' but the file has None"),
        ("https://h.test/2", None, "7", "item 3 is None but the file has '7'"),
    ],
)
def test_a_refusal_names_the_item_without_the_credentials_its_url_carries(
    url: str, given: str | None, recorded: str | None, said: str | None
) -> None:
    from yarl import URL

    from fetchmany.input.sources import Item
    from fetchmany.output.resume import changed_item
    from fetchmany.redaction import redact_url
    from fetchmany.urls import has_credentials

    target = URL(url, encoded=True)
    item = Item(3, given or "", redact_url(url), target=target, credentials=has_credentials(target))
    if said is None:
        assert given is not None
        said = f"item 3 is {redact_url(given)!r} but the file has None"
    elif said == "neither":
        said = (
            "item 3 is not the one the file holds at that index (its URL carries "
            "credentials, so neither is shown)"
        )
    assert changed_item(item, given, recorded) == said


def test_a_damaged_csv_row_is_named_by_the_byte_it_starts_at(tmp_path: Path) -> None:
    """``--resume`` and ``--merge`` say where: the offset just after the last good row."""
    from fetchmany.output.resume import DamagedRow, csv_rows

    good = b"index,input,status\r\n0,1,200\r\n"
    path = tmp_path / "out.csv"
    path.write_bytes(good + b'1,"2"x,200\r\n2,3,200\r\n')
    rows = csv_rows(str(path))
    assert [row for row, _ in (next(rows), next(rows))] == [
        ["index", "input", "status"],
        ["0", "1", "200"],
    ]
    with pytest.raises(DamagedRow) as damaged:
        next(rows)
    assert damaged.value.offset == len(good)


def test_resume_refuses_other_fields_and_bad_combinations(
    server: LoopbackServer, tmp_path: Path
) -> None:
    out = tmp_path / "results.jsonl"
    template = server.url("/maybe-hang?id={}")
    run_cli("-t", template, "-o", str(out), stdin=b"1\n")
    other = run_cli(
        "-t", template, "-o", str(out), "--resume", "--fields", "index,input", stdin=b"1\n"
    )
    assert other.returncode == 2
    assert "fields" in other.stderr
    assert run_cli("--resume", stdin=b"").returncode == 2
    assert run_cli("--resume", "--unordered", "-o", str(out), stdin=b"").returncode == 2


def test_resume_starts_fresh_when_the_file_does_not_exist(
    server: LoopbackServer, tmp_path: Path
) -> None:
    out = tmp_path / "new.csv"
    result = run_cli(
        "-t", server.url("/maybe-hang?id={}"), "-o", str(out), "--resume", stdin=b"1\n2\n"
    )
    assert result.returncode == 0
    assert indices(out, "csv") == [0, 1]


def test_resume_continues_after_a_crash_of_a_resumable_run(
    server: LoopbackServer, tmp_path: Path
) -> None:
    out = tmp_path / "results.jsonl"
    server.hang_from(25, signal_when_hung=4)
    proc = start(server, "-o", str(out), "--resume")
    wait_hung(server)
    proc.send_signal(signal.SIGKILL)  # no handler, no close: records so far are on disk
    proc.communicate(timeout=30)
    # Items 0..24 were answered, but the kill may come before the last of them is
    # written: whatever is there is a prefix in order, and resume completes the rest.
    kept = [json.loads(line)["index"] for line in out.read_bytes().splitlines(keepends=True)
            if line.endswith(b"\n")]  # fmt: skip
    assert kept == list(range(len(kept)))
    assert len(kept) <= 25

    server.stop_hanging()
    ids = "".join(f"{i}\n" for i in range(N)).encode()
    result = run_cli("-t", server.url("/maybe-hang?id={}"), "-o", str(out), "--resume", stdin=ids)
    assert result.returncode == 0, result.stderr
    assert indices(out, "jsonl") == list(range(N))


@pytest.mark.parametrize(
    ("written", "asked"),
    [("jsonl", "csv"), ("jsonl", "json"), ("json", "jsonl"), ("json", "csv"), ("csv", "jsonl")],
)
def test_resume_in_another_format_is_refused_and_its_advice_resumes(
    server: LoopbackServer, tmp_path: Path, written: str, asked: str
) -> None:
    """A file in another format than the run's: exit 2, nothing fetched, the file and
    its folder as they were, and the -f the refusal names resumes it (without the
    format check, the reader of the wrong format refused it too, with the same status,
    saying only that the file was not this run's: the user was left to guess)."""
    out = tmp_path / f"results.{written}"
    template = server.url("/item?id={}")
    assert run_cli("-t", template, "-o", str(out), stdin=b"1\n2\n").returncode == 0
    before = out.read_bytes()
    args = ("-t", template, "-o", str(out), "--resume")
    refused = run_cli(*args, "-f", asked, stdin=b"1\n2\n3\n")
    assert refused.returncode == 2
    assert out.read_bytes() == before
    assert os.listdir(tmp_path) == [out.name]
    assert server.state.requests == 2  # nothing fetched
    advice = re.search(r"resume with -f (\w+)", refused.stderr)
    assert advice is not None, refused.stderr
    resumed = run_cli(*args, "-f", advice[1], stdin=b"1\n2\n3\n")
    assert resumed.returncode == 0, resumed.stderr
    assert indices(out, written) == [0, 1, 2]
    assert server.state.requests == 3  # only the item not yet written


@pytest.mark.parametrize(
    "content",
    [
        b"null\n",
        b"[1,2]\n",
        b"1\n2\n3\n",
        b'"text"\n',
        b"garbage\n",
        b"{}\nnot json\n",
        b'{"index":0}\n' + b"[" * 100_000 + b"\n",  # was a RecursionError: exit 70
        b"[\n" + b"[" * 100_000 + b"\n]\n",
    ],
)
def test_resume_refuses_a_file_that_is_not_records(tmp_path: Path, content: bytes) -> None:
    out = tmp_path / "results.jsonl"
    out.write_bytes(content)
    result = run_cli("-o", str(out), "--resume", stdin=b"http://127.0.0.1:1/\n")
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert "Traceback" not in result.stderr
    assert out.read_bytes() == content


def test_resume_refuses_records_out_of_order(server: LoopbackServer, tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    template = server.url("/item?id={}")
    run_cli("-t", template, "-o", str(out), stdin=b"1\n1\n")
    records = out.read_bytes().splitlines(keepends=True)
    out.write_bytes(b"".join(reversed(records)))  # as --unordered may have written them
    result = run_cli("-t", template, "-o", str(out), "--resume", stdin=b"1\n1\n")
    assert result.returncode == 2
    assert "not the in-order output" in result.stderr


def test_resume_needs_a_field_to_check_the_inputs_by(
    server: LoopbackServer, tmp_path: Path
) -> None:
    out = tmp_path / "results.csv"
    template = server.url("/item?id={}")
    args = ("-t", template, "-o", str(out), "--fields", "status,ok")
    assert run_cli(*args, stdin=b"1\n2\n").returncode == 0
    before = out.read_bytes()
    result = run_cli(*args, "--resume", stdin=b"7\n8\n9\n")
    assert result.returncode == 2
    assert "neither input nor url" in result.stderr
    assert out.read_bytes() == before

    by_url = ("-t", template, "-o", str(out), "--fields", "url,status")
    out.unlink()
    assert run_cli(*by_url, stdin=b"1\n2\n").returncode == 0
    assert run_cli(*by_url, "--resume", stdin=b"7\n8\n9\n").returncode == 2  # other URLs
    assert run_cli(*by_url, "--resume", stdin=b"1\n2\n3\n").returncode == 0
    assert [row["url"].rsplit("=", 1)[1] for row in csv.DictReader(out.open())] == ["1", "2", "3"]


def test_resume_of_csv_safe_output_compares_what_it_wrote(
    server: LoopbackServer, tmp_path: Path
) -> None:
    out = tmp_path / "results.csv"
    args = ("-t", server.url("/item?id={}"), "-o", str(out), "--csv-safe")
    assert run_cli(*args, stdin=b"-1\n=2\n").returncode == 0
    again = run_cli(*args, "--resume", stdin=b"-1\n=2\n+3\n")
    assert again.returncode == 0, again.stderr
    assert [row["input"] for row in csv.DictReader(out.open())] == ["'-1", "'=2", "'+3"]


def test_a_broken_row_inside_a_csv_is_not_taken_for_a_torn_end(
    server: LoopbackServer, tmp_path: Path
) -> None:
    out = tmp_path / "results.csv"
    args = ("-t", server.url("/item?id={}"), "-o", str(out), "--fields", "index,input,status")
    assert run_cli(*args, stdin=b"1\n2\n3\n").returncode == 0
    lines = out.read_bytes().splitlines(keepends=True)
    lines[2] = b'1,"2"x,200\r\n'  # a quote closed too early: no crash writes that
    out.write_bytes(b"".join(lines))
    before = out.read_bytes()
    result = run_cli(*args, "--resume", stdin=b"1\n2\n3\n4\n")
    assert result.returncode == 2
    after = len(b"".join(lines[:2]))  # the header and the first row are whole
    assert f"{out}: a row after byte {after} is not CSV; use a new output file" in result.stderr
    assert out.read_bytes() == before


BODY_WITH_LINES = "line1\r\nid={}\r\n"


def lines_app() -> web.Application:
    """Bodies with CRLF line breaks, which CSV keeps inside a quoted cell."""

    async def lines(request: web.Request) -> web.Response:
        return web.Response(text=BODY_WITH_LINES.format(request.query["id"]))

    app = web.Application()
    app.router.add_get("/lines", lines)
    return app


def test_resume_drops_a_csv_row_cut_after_a_line_break_inside_its_body(
    serve: Callable[[web.Application], LoopbackServer], tmp_path: Path
) -> None:
    """A crash can cut a CSV row right after a CRLF inside a quoted cell: the file then
    ends in CRLF like a whole row, but its quote is open. That row is torn: dropped and
    fetched again, not a reason to fetch the whole file again."""
    base = serve(lines_app())
    out = tmp_path / "results.csv"
    args = ("-t", base.url("/lines?id={}"), "-o", str(out), "--fields", "index,input,ok,body")
    ids = "".join(f"{i}\n" for i in range(10)).encode()
    assert run_cli(*args, stdin=ids).returncode == 0
    whole = out.read_bytes()
    cut = whole.index(b'8,8,true,"line1\r\n') + len(b'8,8,true,"line1\r\n')
    out.write_bytes(whole[:cut])  # as a killed shard leaves it
    resumed = run_cli(*args, "--resume", stdin=ids)
    assert resumed.returncode == 0, resumed.stderr
    assert "Resuming: 8 records" in resumed.stderr
    assert out.read_bytes() == whole
    rows = list(csv.DictReader(io.StringIO(out.read_bytes().decode(), newline="")))
    assert [row["body"] for row in rows] == [BODY_WITH_LINES.format(i) for i in range(10)]


def test_the_resume_note_counts_in_words(server: LoopbackServer, tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    args = ("-t", server.url("/item?id={}"), "-o", str(out))
    run_cli(*args, stdin=b"1\n")
    assert "Resuming: 1 record already in" in run_cli(*args, "--resume", stdin=b"1\n2\n").stderr
    assert "Resuming: 2 records already in" in run_cli(*args, "--resume", stdin=b"1\n2\n").stderr


def test_a_resumed_runs_status_and_summary_are_the_whole_files(
    server: LoopbackServer, tmp_path: Path
) -> None:
    """The records a resumed file held count in its exit status, and the summary says so:
    all of this run's records ok, an earlier one not, is exit 1."""
    out = tmp_path / "results.jsonl"
    urls = f"{server.url('/status/404')}\n{server.url('/item?id=2')}\n"
    run_cli("-o", str(out), "--retries", "0", stdin=urls.split("\n")[0].encode())
    resumed = run_cli("-o", str(out), "--resume", "--retries", "0", stdin=urls.encode())
    assert resumed.returncode == 1
    assert "1 ok, 0 failed" in resumed.stderr  # this run's records
    assert f"  {out}: 2 records, 1 ok, 1 failed" in resumed.stderr  # and the file's


def test_scan_finds_the_records_and_where_to_continue(tmp_path: Path) -> None:
    from fetchmany.output.resume import scan
    from fetchmany.output.writers import OutputFormat

    fields = ("index", "input")
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"index":0,"input":"a"}\n{"index":1,"input":"b"}\n{"index":2,"in')
    point = scan(str(path), OutputFormat.JSONL, fields)
    assert (point.records, point.offset) == (2, 48)  # the torn third is dropped
    array = tmp_path / "out.json"
    array.write_bytes(b'[\n{"index":0,"input":"a"},\n{"index":1,"input":"b"}\n]\n')
    point = scan(str(array), OutputFormat.JSON, fields)
    assert (point.records, array.read_bytes()[: point.offset].endswith(b'"b"}')) == (2, True)
    table = tmp_path / "out.csv"
    table.write_bytes(b"index,input\r\n0,a\r\n1,b\r\n2,")
    point = scan(str(table), OutputFormat.CSV, fields)
    assert (point.records, point.offset) == (2, len(b"index,input\r\n0,a\r\n1,b\r\n"))


@pytest.mark.parametrize(
    ("content", "found"),
    [(b"", None), (b'{"a":1}\n', "jsonl"), (b"[\n", "json"), (b"index,url\r\n", "csv")],
)
def test_detect_format(tmp_path: Path, content: bytes, found: str | None) -> None:
    from fetchmany.output.resume import detect_format

    path = tmp_path / "out"
    path.write_bytes(content)
    detected = detect_format(str(path))
    assert (detected.value if detected else None) == found


@pytest.mark.parametrize(
    "content",
    [
        b"name,age\r\nbob,3\r\n",  # a CSV, but none of its columns is fetchmany's
        b"name,ag",  # cut short, and no start of a name of fetchmany's either
        b"hello world\n",
    ],
)
def test_a_file_fetchmany_did_not_write_is_no_format(tmp_path: Path, content: bytes) -> None:
    """Not taken for a CSV of fetchmany's (to be refused later, or worse, continued):
    refused as what it is, whole."""
    from fetchmany.output.resume import ResumeError, detect_format

    path = tmp_path / "out"
    path.write_bytes(content)
    with pytest.raises(ResumeError) as refused:
        detect_format(str(path))
    assert type(refused.value) is ResumeError
    assert str(refused.value) == (
        f"{path} is not records fetchmany wrote (JSON Lines, a JSON array or CSV); "
        "use a new output file"
    )


def test_resume_refuses_a_csv_from_before_the_message_column(
    server: LoopbackServer, tmp_path: Path
) -> None:
    """A CSV written before error had its message column cannot be continued in the new
    layout (its rows would change shape half-way): refused, saying why, file untouched."""
    out = tmp_path / "out.csv"
    old = (
        b"index,input,url,ok,status,final_url,content_type,size,elapsed_ms,attempts,error,body\r\n"
        b"0,x,,false,,,,,,0,invalid_url,\r\n"
    )
    out.write_bytes(old)
    result = run_cli(
        "-o", str(out), "--resume", "-q", stdin=b"x\n" + server.url("/item?id=1").encode()
    )
    assert result.returncode == 2
    assert result.stderr == (
        f"fetchmany: {out} was written by an earlier fetchmany, whose CSV has no "
        "error_message column after error: finish it with that version, or use a new "
        "output file\n"
    )
    assert out.read_bytes() == old
    assert server.state.requests == 0


@pytest.mark.parametrize(
    ("fmt", "content"),
    [("json", b"["), ("json", b"[]"), ("csv", b"index,in"), ("csv", b"index,input\r")],
)
def test_a_file_cut_before_its_first_record_is_started_again(
    tmp_path: Path, fmt: str, content: bytes
) -> None:
    from fetchmany.output.resume import scan
    from fetchmany.output.writers import OutputFormat

    path = tmp_path / f"out.{fmt}"
    path.write_bytes(content)
    point = scan(str(path), OutputFormat(fmt), ("index", "input"))
    assert (point.records, point.offset) == (0, 0)


def test_a_header_cut_short_must_be_this_runs(tmp_path: Path) -> None:
    """Only the start of this run's own header is taken for one cut short: a file of
    other words is not overwritten."""
    from fetchmany.output.resume import ResumeError, scan
    from fetchmany.output.writers import OutputFormat

    path = tmp_path / "out.csv"
    path.write_bytes(b"index,url")
    with pytest.raises(ResumeError, match="not the CSV header index,input"):
        scan(str(path), OutputFormat.CSV, ("index", "input"))


def test_a_resumed_runs_summary_speaks_of_the_whole_file(
    server: LoopbackServer, tmp_path: Path
) -> None:
    """The file already held a 404: this run fetched nothing, exit 1, and the summary says
    why rather than "0 failed"."""
    out = tmp_path / "results.jsonl"
    urls = "".join(f"{server.url(path)}\n" for path in ("/item?id=1", "/status/404", "/item?id=2"))
    assert run_cli("-o", str(out), stdin=urls.encode()).returncode == 1
    again = run_cli("-o", str(out), "--resume", stdin=urls.encode())
    assert again.returncode == 1
    lines = again.stderr.splitlines()
    assert lines[0] == f"Resuming: 3 records already in {out}"
    assert lines[1].startswith("Done. This run: 0 records in ")
    assert lines[1].endswith(": 0 ok, 0 failed")
    assert lines[2] == f"  {out}: 3 records, 2 ok, 1 failed"
    more = run_cli("-o", str(out), "--resume", stdin=(urls + server.url("/item?id=3")).encode())
    assert more.returncode == 1
    assert more.stderr.splitlines()[2] == f"  {out}: 4 records, 3 ok, 1 failed"


def test_resume_continues_a_file_written_before_etag_and_last_modified(
    server: LoopbackServer, tmp_path: Path
) -> None:
    """A run started by a fetchmany whose default fields had no etag and last_modified is
    finished by this one, with the file's own fields (a note says so), not refused."""
    out = tmp_path / "out.jsonl"
    urls = b"\n".join(server.url(f"/item?id={n}").encode() for n in range(3))
    old = (
        run_cli("--fields", "index,input,url,ok,status,final_url,content_type,size,"
                "elapsed_ms,attempts,error,body", "-q", stdin=urls.split(b"\n")[0]).stdout
    )  # fmt: skip
    out.write_bytes(old)
    result = run_cli("-o", str(out), "--resume", stdin=urls)
    assert result.returncode == 0, result.stderr
    assert "written without etag and last_modified" in result.stderr
    records = jsonl(out.read_bytes())
    assert [r["index"] for r in records] == [0, 1, 2]
    assert all("etag" not in r for r in records)
    assert records[0] == jsonl(old)[0]


@pytest.mark.parametrize("index", ['"1"', "1.0", "true", "null"])
def test_a_json_index_that_is_not_a_number_is_refused(
    server: LoopbackServer, tmp_path: Path, index: str
) -> None:
    """Found by a hostile tester: a record with ``"index": "3"`` was resumed, and left in
    the output for --merge and --refresh to refuse later."""
    out = tmp_path / "out.jsonl"
    template = server.url("/item?id={}")
    assert run_cli("-t", template, "-o", str(out), "-q", stdin=b"1\n2\n3\n").returncode == 0
    lines = out.read_text().splitlines(keepends=True)
    lines[1] = lines[1].replace('"index":1,', f'"index":{index},', 1)
    out.write_text("".join(lines))
    before = out.read_bytes()
    result = run_cli("-t", template, "-o", str(out), "--resume", stdin=b"1\n2\n3\n4\n")
    assert result.returncode == 2, result.stderr
    assert f"record 1 has index {index}, so it is not the in-order output" in result.stderr
    assert out.read_bytes() == before


# -- scan, in process: each file shape's resume point or refusal, asserted whole ----------

FIELDS = ("index", "input")
R0 = b'{"index":0,"input":"a"}'
R1 = b'{"index":1,"input":"b"}'


def scanned(tmp_path: Path, fmt: str, content: bytes, shard: str | None = None) -> object:
    """What ``scan`` makes of ``content``: its ResumePoint, or the refusal as
    (exception type, message with the file's path written {path})."""
    from fetchmany.input.sources import Shard
    from fetchmany.output.resume import ResumeError, scan
    from fetchmany.output.writers import OutputFormat

    path = tmp_path / f"out.{fmt}"
    path.write_bytes(content)
    by = None
    if shard is not None:  # "K/N", or "K/N by host"
        by = Shard.parse(shard.split()[0])
        by = Shard(by.number, by.count, by_host=shard.endswith("by host"))
    try:
        return scan(str(path), OutputFormat(fmt), FIELDS, by)
    except ResumeError as exc:
        assert path.read_bytes() == content  # only read
        return type(exc), str(exc).replace(str(path), "{path}")


@pytest.mark.parametrize(
    ("fmt", "content", "records", "offset", "failed"),
    [
        ("jsonl", b"", 0, 0, 0),
        ("jsonl", R0 + b"\n" + R1 + b"\n", 2, 48, 0),
        ("jsonl", R0 + b"\n" + R1, 1, 24, 0),  # a line without its newline is torn, parse or not
        # A run of no inputs writes an empty array; nothing in it is a record to keep.
        ("json", b"[]\n", 0, 0, 0),
        ("json", b"[\n]\n", 0, 0, 0),
        ("json", b"[\n" + R0 + b",\n" + R1 + b"\n]", 2, 2 + 25 + 23, 0),  # "]" torn off its \n
        ("json", b"[\n" + R0 + b",\n" + R1 + b"\n", 2, 2 + 25 + 23, 0),
        ("json", b"[\n" + R0 + b",\n" + R1[:-1], 1, 2 + 23, 0),
        ("csv", b"index,input\r\n0,a\r\n1,b\r\n", 2, 23, 0),
        # Cut right after a CRLF inside a quoted cell holding an escaped quote: three
        # quotes, odd, so torn (a damaged row is whole: it ends its quotes and its line).
        ("csv", b'index,input\r\n0,a\r\n1,"b""c\r\n', 1, 18, 0),
        ("csv", b'index,input\r\n0,a\r\n1,"b\r\nc""d""e\r\n', 1, 18, 0),
    ],
)
def test_scan_continues_after_exactly_the_whole_records(
    tmp_path: Path, fmt: str, content: bytes, records: int, offset: int, failed: int
) -> None:
    from fetchmany.output.resume import ResumePoint

    assert scanned(tmp_path, fmt, content) == ResumePoint(records, offset, failed)


def test_scan_of_a_file_that_is_not_there_starts_at_nothing(tmp_path: Path) -> None:
    from fetchmany.output.resume import ResumePoint, scan
    from fetchmany.output.writers import OutputFormat

    for fmt in OutputFormat:
        assert scan(str(tmp_path / "missing"), fmt, FIELDS) == ResumePoint(0, 0, 0)


@pytest.mark.parametrize(
    ("fmt", "content", "offset"),
    [
        (
            "jsonl",
            b'{"index":0,"input":"a","ok":false}\n{"index":1,"input":"b","ok":true}\n'
            b'{"index":2,"input":"c","ok":false}\n{"index":3,"input":"d","ok":true}\n',
            None,
        ),
        (
            "json",
            b'[\n{"index":0,"input":"a","ok":false},\n{"index":1,"input":"b","ok":true},\n'
            b'{"index":2,"input":"c","ok":false},\n{"index":3,"input":"d","ok":null}\n]\n',
            -len(b"\n]\n"),
        ),
        ("csv", b"index,input,ok\r\n0,a,false\r\n1,b,true\r\n2,c,false\r\n3,d,\r\n", None),
    ],
)
def test_scan_counts_the_records_already_failed(
    tmp_path: Path, fmt: str, content: bytes, offset: int | None
) -> None:
    """The resumed run's exit status and summary speak for the whole file: each record
    written not ok counts, in JSON as false and in CSV as the text false."""
    from fetchmany.output.resume import ResumePoint, scan
    from fetchmany.output.writers import OutputFormat

    path = tmp_path / f"out.{fmt}"
    path.write_bytes(content)
    point = scan(str(path), OutputFormat(fmt), ("index", "input", "ok"))
    assert point == ResumePoint(4, len(content) + (offset or 0), 2)


def not_ours(line: int) -> str:
    return (
        f"{{path}}: line {line} is not a record (a JSON object); "
        "this is not a file fetchmany wrote: use a new output file"
    )


def out_of_order(record: int, index: object, of: str = "a run") -> str:
    return (
        f"{{path}}: record {record} has index {index}, so it is not the in-order output "
        f"of {of}; use a new output file"
    )


def records_of(*indexes: int) -> bytes:
    return b"".join(b'{"index":%d,"input":"a"}\n' % index for index in indexes)


LONG_HEADER = b"index," + b"a," * 2100 + b"\xff"  # no line break: a header cut short
BY_HOST = "0/2 by host"


@pytest.mark.parametrize(
    ("fmt", "content", "shard", "said"),
    [
        ("jsonl", R0 + b'\n{"index":1,\n', None, "{path}: line 2 is not a JSON record"),
        ("jsonl", R0 + b"\n[1]\n", None, not_ours(2)),
        ("json", b"[1]\n", None, "{path}: not a JSON array written by fetchmany"),
        # A line that does not parse before the last is damage, not a torn end.
        (
            "json",
            b"[\n" + R0 + b',\n{"in\n' + R1 + b"\n]\n",
            None,
            "{path}: line 3 is not a JSON record",
        ),
        ("json", b"[\n" + R0 + b",\n[1],\n", None, not_ours(3)),
        (
            "jsonl",
            b'{"index":0,"url":"a"}\n',
            None,
            "{path} holds records with fields index,url; this run writes index,input",
        ),
        ("jsonl", records_of(1), None, out_of_order(0, 1)),
        ("jsonl", records_of(4), "1/3", out_of_order(0, 4, "shard 1/3")),
        ("csv", b"index,input\r\n0,a\r\n5,b\r\n", None, out_of_order(1, 5)),
        # By host, a shard's indexes are known only from the input: each past the last.
        ("jsonl", records_of(5, 3), BY_HOST, out_of_order(1, 3, "shard 0/2")),
        ("jsonl", records_of(5, 5), BY_HOST, out_of_order(1, 5, "shard 0/2")),  # written twice
        ("csv", b"index,input\r\nx,a\r\n", BY_HOST, out_of_order(0, "x", "shard 0/2")),
        (
            "csv",
            b"index,url\r\n0,a\r\n",
            None,
            "{path} has index,url; this run writes CSV with columns index,input",
        ),
        # The row named by where it starts, as a row that is not CSV is.
        (
            "csv",
            b"index,input\r\n0,a\r\n1,b,c\r\n2,c\r\n",
            None,
            "{path}: a row after byte 18 has 3 cells, not 2; use a new output file",
        ),
        # Four quotes, the line ended: a quote closed too early, not a row cut short.
        (
            "csv",
            b'index,input\r\n0,a\r\n1,"b"x,"c"\r\n',
            None,
            "{path}: a row after byte 18 is not CSV; use a new output file",
        ),
        (
            "csv",
            LONG_HEADER,
            None,
            f"{{path}} starts with {LONG_HEADER.decode('utf-8', 'replace')!r}"
            ", not the CSV header index,input; use a new output file",
        ),
    ],
)
def test_scan_refuses_what_it_cannot_continue_and_says_where(
    tmp_path: Path, fmt: str, content: bytes, shard: str | None, said: str
) -> None:
    from fetchmany.output.resume import ResumeError

    assert scanned(tmp_path, fmt, content, shard) == (ResumeError, said)


def test_scan_by_host_takes_increasing_indexes(tmp_path: Path) -> None:
    from fetchmany.output.resume import ResumePoint

    content = records_of(2, 5, 6)
    assert scanned(tmp_path, "jsonl", content, "1/3 by host") == ResumePoint(3, len(content))
    table = b"index,input\r\n2,a\r\n10,b\r\n"  # compared as numbers, not as text
    assert scanned(tmp_path, "csv", table, "1/3 by host") == ResumePoint(2, len(table))


def test_a_record_file_needs_a_field_to_check_the_inputs_by(tmp_path: Path) -> None:
    from fetchmany.output.resume import ResumeError, key_field, scan
    from fetchmany.output.writers import OutputFormat

    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"status":200,"ok":true}\n')
    said = (
        "cannot check that the records already written belong to these inputs: "
        "--fields has neither input nor url; add input to --fields, or use a new output file"
    )
    with pytest.raises(ResumeError) as refused:
        scan(str(path), OutputFormat.JSONL, ("status", "ok"))
    assert (type(refused.value), str(refused.value)) == (ResumeError, said)
    assert (key_field(("url", "status")), key_field(("url", "input"))) == ("url", "input")


def test_a_csv_not_in_utf8_is_read_not_a_crash(tmp_path: Path) -> None:
    """A file re-saved in Latin-1: its rows are read with the bytes that are not UTF-8
    replaced, so the inputs' check refuses it by name rather than a traceback."""
    from fetchmany.output.resume import ResumePoint, recorded_keys
    from fetchmany.output.writers import OutputFormat

    content = b"index,input\r\n0,caf\xe9\r\n1,b\r\n"
    assert scanned(tmp_path, "csv", content) == ResumePoint(2, len(content))
    keys = recorded_keys(str(tmp_path / "out.csv"), OutputFormat.CSV, FIELDS)
    assert list(keys) == ["caf\ufffd", "b"]


@pytest.mark.parametrize(
    ("fmt", "content"),
    [
        ("jsonl", b'{"index":0,"input":null}\n{"index":1,"input":""}\n{"index":2,"input":"0"}\n'),
        ("csv", b'index,input\r\n0,\r\n1,""\r\n2,0\r\n'),
    ],
)
def test_recorded_keys_are_the_inputs_with_none_for_empty(
    tmp_path: Path, fmt: str, content: bytes
) -> None:
    """null and an empty cell are both no input (CSV cannot tell them apart)."""
    from fetchmany.output.resume import recorded_keys
    from fetchmany.output.writers import OutputFormat

    path = tmp_path / f"out.{fmt}"
    path.write_bytes(content)
    assert list(recorded_keys(str(path), OutputFormat(fmt), FIELDS)) == [None, None, "0"]


@pytest.mark.parametrize(
    ("fmt", "content"),
    [
        (
            "jsonl",
            b'{"index":0,"input":"a","path":"a.html"}\n{"index":1,"input":"b","path":null}\n'
            b'{"index":2,"input":"c","path":""}\n{"index":3,"input":"d","path":5}\n'
            b'{"index":4,"input":"e","path":"e.html"}\n{"index":5,"input":"f","path":"f.ht',
        ),
        (
            "json",
            b'[\n{"index":0,"input":"a","path":"a.html"},\n{"index":1,"input":"b","path":null},\n'
            b'{"index":2,"input":"c","path":""},\n{"index":3,"input":"d","path":5},\n'
            b'{"index":4,"input":"e","path":"e.html"},\n{"index":5,"input":"f","path":"f.ht',
        ),
        (
            "csv",
            b'index,input,path\r\n0,a,a.html\r\n1,b,\r\n2,c,""\r\n4,e,e.html\r\n5,f,f.ht',
        ),
    ],
)
def test_recorded_paths_are_the_saved_files_the_whole_records_name(
    tmp_path: Path, fmt: str, content: bytes
) -> None:
    """--resume --save-dir reserves the files the kept records name, so that no new
    item is saved over one: each whole record's path, in order; not a record with none
    (null, empty, or not text, as in a file edited by hand), nor a torn last one, which
    the resume cuts away, nor the CSV header."""
    from fetchmany.output.resume import recorded_paths
    from fetchmany.output.writers import OutputFormat

    path = tmp_path / f"out.{fmt}"
    path.write_bytes(content)
    fields = (*FIELDS, "path")
    assert list(recorded_paths(str(path), OutputFormat(fmt), fields)) == ["a.html", "e.html"]
    # Without path among the fields, a "path" some record holds names no saved file.
    assert list(recorded_paths(str(path), OutputFormat(fmt), FIELDS)) == []


@pytest.mark.parametrize(
    ("fmt", "content"),
    [
        ("json", b""),  # made, nothing written yet
        ("json", b"["),  # cut before the newline after its bracket
        ("jsonl", b""),
        ("csv", b""),
        ("csv", b"index,input,path\r\n0,a"),  # the header whole, its first row torn
        ("csv", b"index,in"),  # the header itself torn: this run's, cut short
    ],
)
def test_a_file_with_no_whole_record_yet_holds_none(
    tmp_path: Path, fmt: str, content: bytes
) -> None:
    """What the inputs are checked against, and what --save-dir reserves, of a file a run
    was stopped in before its first whole record: nothing, and no refusal."""
    from fetchmany.output.resume import recorded_keys, recorded_paths
    from fetchmany.output.writers import OutputFormat

    path = tmp_path / f"out.{fmt}"
    path.write_bytes(content)
    fields = (*FIELDS, "path")
    assert list(recorded_keys(str(path), OutputFormat(fmt), fields)) == []
    assert list(recorded_paths(str(path), OutputFormat(fmt), fields)) == []


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (
            b"index,input\r\n0,a\r\n1\r\n",
            ": a row after byte 18 has 1 cells, not 2; use a new output file",
        ),
        (
            b"index,input\r\n1\r\n",
            ": a row after byte 13 has 1 cells, not 2; use a new output file",
        ),
        (b"\r\n0,a\r\n", " has no CSV header; this run writes CSV with columns index,input"),
        (b"index,url\r\n0,a\r\n", " has index,url; this run writes CSV with columns index,input"),
    ],
)
def test_a_csv_not_as_this_run_writes_it_is_refused_saying_where(
    tmp_path: Path, content: bytes, said: str
) -> None:
    from fetchmany.output.resume import ResumeError, recorded_keys
    from fetchmany.output.writers import OutputFormat

    path = tmp_path / "out.csv"
    path.write_bytes(content)
    with pytest.raises(ResumeError) as refused:
        list(recorded_keys(str(path), OutputFormat.CSV, FIELDS))
    assert str(refused.value) == f"{path}{said}"


# -- skip_recorded: the inputs checked against the file, then the rest passed on ----------


async def skipped(
    inputs: list[str],
    recorded: list[str | None],
    count: int,
    *,
    checked: bool = True,
    whole: int | None = None,
) -> list[str]:
    """What happens, in order: each item's check (``key i``), the call that says all
    ``count`` matched, each item passed on (``item i``)."""
    from fetchmany.input.sources import Item
    from fetchmany.output.resume import skip_recorded

    events: list[str] = []

    async def items() -> AsyncIterator[Item]:
        for index, text in enumerate(inputs):
            yield Item(index, text, None)

    def key(item: Item) -> str | None:
        events.append(f"key {item.index}")
        return item.input

    async for item in skip_recorded(
        items(),
        iter(recorded),
        count,
        "out.jsonl",
        key,
        on_checked=(lambda: events.append("checked")) if checked else None,
        whole=whole,
    ):
        events.append(f"item {item.index}")
    return events


async def test_the_recorded_items_are_checked_then_the_rest_passed_on() -> None:
    """A -P worker says its part is checked once, after the last recorded item and before
    anything is passed on to be fetched: a refused resume fetches nothing."""
    events = await skipped(["a", "b", "c", "d"], ["a", "b"], 2)
    assert events == ["key 0", "key 1", "checked", "item 2", "item 3"]
    assert await skipped(["a", "b"], [], 0) == ["checked", "item 0", "item 1"]
    assert await skipped(["a", "b"], ["a"], 1) == ["key 0", "checked", "item 1"]
    assert await skipped(["a", "b"], [], 0, checked=False) == ["item 0", "item 1"]


@pytest.mark.parametrize(
    ("inputs", "recorded", "count", "whole", "said"),
    [
        (["a", "x", "c"], ["a", "b"], 2, None, "item 1 is 'x' but the file has 'b'"),
        # Fewer keys than records (the file changed since it was scanned): None, no crash.
        (["a", "b", "c"], ["a"], 2, None, "item 1 is 'b' but the file has None"),
        (
            ["a", "b"],
            ["a", "b", "c"],
            3,
            None,
            "it has 2 items but the file already holds 3 records",
        ),
        (["a"], ["a", "b"], 2, 5, "it has fewer items than the 5 records the file already holds"),
    ],
)
async def test_changed_inputs_are_refused_by_name(
    inputs: list[str], recorded: list[str | None], count: int, whole: int | None, said: str
) -> None:
    from fetchmany.output.resume import ResumeError

    with pytest.raises(ResumeError) as refused:
        await skipped(inputs, recorded, count, whole=whole)
    assert type(refused.value) is ResumeError
    assert str(refused.value) == (
        f"input changed since out.jsonl was written: {said}; use a new output file"
    )


@pytest.mark.parametrize(
    "after",
    [b"[\n" + R1 + b"\n]\n", b"garbage", b"\n\n{}\n"],
)
def test_an_array_followed_by_more_is_refused_not_cut(tmp_path: Path, after: bytes) -> None:
    """Found by mutation testing: what follows an array's closing bracket (a second run
    appended with >>) was never read, and the resumed run cut it off the file."""
    from fetchmany.output.resume import ResumeError

    content = b"[\n" + R0 + b"\n]\n" + after
    said = "{path}: more follows the array's closing ] (line 3); use a new output file"
    assert scanned(tmp_path, "json", content) == (ResumeError, said)


@pytest.mark.parametrize("empty", [b"[]\n", b"[\n]\n"])
def test_an_empty_array_followed_by_more_is_refused_not_started_again(
    tmp_path: Path, empty: bytes
) -> None:
    """An empty run's ``[]`` with a run's array appended after it: taken for an empty
    file, the resumed run started it again from byte 0 and wrote over the second."""
    from fetchmany.output.resume import ResumeError

    line = empty.count(b"\n")
    said = f"{{path}}: more follows the array's closing ] (line {line}); use a new output file"
    content = empty + b"[\n" + R0 + b"\n]\n"
    assert scanned(tmp_path, "json", content) == (ResumeError, said)


def test_an_array_followed_by_blank_lines_resumes(tmp_path: Path) -> None:
    from fetchmany.output.resume import ResumePoint

    content = b"[\n" + R0 + b"\n]\n\n \n"
    assert scanned(tmp_path, "json", content) == ResumePoint(1, 2 + len(R0))


def test_resume_of_two_arrays_in_one_file_leaves_it_as_it_was(
    server: LoopbackServer, tmp_path: Path
) -> None:
    """Two runs appended to one file (fetchmany -f json >> out.json): --resume used to
    continue the first array and cut the second one off, records and all."""
    out = tmp_path / "out.json"
    template = server.url("/item?id={}")
    first = run_cli("-t", template, "-f", "json", "-q", stdin=b"1\n")
    second = run_cli("-t", template, "-f", "json", "-q", stdin=b"2\n")
    out.write_bytes(first.stdout + second.stdout)
    before = out.read_bytes()
    result = run_cli("-t", template, "-o", str(out), "--resume", stdin=b"1\n3\n")
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        f"fetchmany: {out}: more follows the array's closing ] (line 3); use a new output file\n"
    )
    assert out.read_bytes() == before
    assert server.state.requests == 2  # the two runs' own, nothing for the resume


@pytest.mark.parametrize(
    ("fmt", "content"),
    [
        ("jsonl", R0 + b"\n\xef\xbb\xbf" + R1 + b"\n"),
        ("json", b"[\n" + R0 + b",\n\xef\xbb\xbf" + R1 + b"\n]\n"),
        ("json", b"[\n" + R0 + b",\n\xef\xbb\xbf" + R1 + b",\n"),  # unclosed: resumable
    ],
)
def test_a_record_line_with_a_byte_order_mark_is_refused(
    tmp_path: Path, fmt: str, content: bytes
) -> None:
    """A line starting with a byte-order mark (a file an editor saved, appended with
    cat) passed as a record: the resumed file went on with it, and no JSON reader took
    the result (``json.load``: "Expecting value")."""
    from fetchmany.output.resume import ResumeError

    said = (
        "{path}: line 2 is not a JSON record"
        if fmt == "jsonl"
        else "{path}: line 3 is not a JSON record"
    )
    assert scanned(tmp_path, fmt, content) == (ResumeError, said)


def test_resume_of_a_file_with_a_byte_order_mark_inside_leaves_it_as_it_was(
    server: LoopbackServer, tmp_path: Path
) -> None:
    out = tmp_path / "out.json"
    template = server.url("/item?id={}")
    run = run_cli("-t", template, "-f", "json", "-q", "-o", str(out), stdin=b"1\n2\n")
    assert run.returncode == 0, run.stderr
    lines = out.read_bytes().splitlines(keepends=True)
    out.write_bytes(b"".join([*lines[:2], b"\xef\xbb\xbf" + lines[2]]))  # and no ]
    before = out.read_bytes()
    result = run_cli("-t", template, "-o", str(out), "--resume", stdin=b"1\n2\n3\n")
    assert (result.returncode, result.stderr) == (
        2,
        f"fetchmany: {out}: line 3 is not a JSON record\n",
    )
    assert out.read_bytes() == before


def test_a_csv_row_of_other_cells_is_named_by_the_byte_it_starts_at(
    server: LoopbackServer, tmp_path: Path
) -> None:
    """The refusal used to name the last byte of the row (its line feed): the user looking
    after that byte found the next row, whole."""
    out = tmp_path / "results.csv"
    args = ("-t", server.url("/item?id={}"), "-o", str(out), "--fields", "index,input,status")
    assert run_cli(*args, stdin=b"1\n2\n3\n").returncode == 0
    lines = out.read_bytes().splitlines(keepends=True)
    lines[2] = b"1,2,200,extra\r\n"
    out.write_bytes(b"".join(lines))
    before = out.read_bytes()
    result = run_cli(*args, "--resume", stdin=b"1\n2\n3\n4\n")
    assert result.returncode == 2
    at = len(b"".join(lines[:2]))
    assert result.stderr == (
        f"fetchmany: {out}: a row after byte {at} has 4 cells, not 3; use a new output file\n"
    )
    assert before[at:].startswith(b"1,2,200,extra\r\n")
    assert out.read_bytes() == before


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_a_resume_keeps_a_row_without_a_url_from_an_output_without_input(
    server: LoopbackServer, tmp_path: Path, fmt: str
) -> None:
    """Found with --refresh's twin: a CSV input's row with an empty url cell has the URL
    "", which an output written without ``input`` records as "" (null in CSV): --resume
    refused the unchanged input ("item 0 is '' but the file has None")."""
    rows = tmp_path / "rows.csv"
    rows.write_text(f"url,name\n,a\n{server.url('/item?id=1')},b\n{server.url('/item?id=2')},c\n")
    out = tmp_path / f"out.{fmt}"
    args = (str(rows), "-q", "-o", str(out), "--fields", "index,url,ok,status")
    assert run_cli(*args).returncode == 1  # the row without a URL is not ok
    whole = out.read_bytes()
    out.write_bytes(whole[: whole.index(b"\n", whole.index(b"\n") + 1) + 1])  # 1 record kept
    again = run_cli(*args, "--resume")
    assert again.returncode == 1, again.stderr
    assert out.read_bytes() == whole
