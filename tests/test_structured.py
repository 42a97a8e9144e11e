"""Rows as input, request bodies, --dedupe, --pick and --save-dir, through the installed command."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from pathlib import Path

from conftest import LoopbackServer, jsonl, run_cli


def test_csv_rows_fill_named_placeholders(server: LoopbackServer, tmp_path: Path) -> None:
    rows = tmp_path / "repos.csv"
    rows.write_text(
        'owner,name\nalice,"tools"\nbob,"multi\nline"\ncarol,\n"dave, jr",x\n',
        encoding="utf-8",
    )
    result = run_cli("-t", server.url("/echo?o={owner}&n={name}"), str(rows), "-q")
    records = jsonl(result.stdout)
    assert [r["index"] for r in records] == [0, 1, 2, 3]
    assert records[0]["body"]["query"] == {"o": "alice", "n": "tools"}
    assert records[1]["body"]["query"] == {"o": "bob", "n": "multi\nline"}
    assert records[1]["input"] == 'bob,"multi\nline"'  # the row as given
    assert records[2]["body"]["query"] == {"o": "carol", "n": ""}
    assert records[3]["body"]["query"]["o"] == "dave, jr"


def test_missing_field_is_an_invalid_record_naming_it(server: LoopbackServer) -> None:
    rows = b'{"owner": "a", "name": "b"}\n{"owner": "c"}\n{"owner": 7, "name": true}\nnot json\n'
    result = run_cli(
        "--input-format", "jsonl", "-t", server.url("/echo?o={owner}&n={name}"), "-q", stdin=rows
    )
    assert result.returncode == 1
    first, missing, typed, broken = jsonl(result.stdout)
    assert first["ok"] is True
    assert missing["error"] == {
        "kind": "invalid_url",
        "message": "row has no field 'name' for the template",
    }
    assert typed["body"]["query"] == {"o": "7", "n": "true"}
    assert broken["error"]["kind"] == "invalid_url"
    assert broken["input"] == "not json"


def test_input_format_is_inferred_and_rows_may_carry_a_url(
    server: LoopbackServer, tmp_path: Path
) -> None:
    rows = tmp_path / "links.jsonl"
    rows.write_text(json.dumps({"url": server.url("/item?id=9")}) + "\n")
    (record,) = jsonl(run_cli(str(rows), "-q").stdout)
    assert record["ok"] is True
    assert record["body"]["id"] == "9"


def test_named_placeholder_with_line_input_is_a_usage_error(server: LoopbackServer) -> None:
    result = run_cli("-t", server.url("/x/{owner}"), stdin=b"a\n")
    assert result.returncode == 2
    assert "--input-format" in result.stderr


def test_dedupe_fetches_each_url_once_but_records_every_input(server: LoopbackServer) -> None:
    ids = b"1\n2\n1\n3\n2\n1\n"
    result = run_cli("--dedupe", "-t", server.url("/echo?id={}"), "-q", stdin=ids)
    records = jsonl(result.stdout)
    assert [r["index"] for r in records] == [0, 1, 2, 3, 4, 5]
    assert [r["input"] for r in records] == ["1", "2", "1", "3", "2", "1"]
    assert [r["body"]["query"]["id"] for r in records] == ["1", "2", "1", "3", "2", "1"]
    assert server.state.requests == 3
    without = run_cli("-t", server.url("/echo?id={}"), "-q", stdin=ids)
    assert len(jsonl(without.stdout)) == 6
    assert server.state.requests == 3 + 6


def test_data_template_posts_form_bodies(server: LoopbackServer) -> None:
    result = run_cli("-t", server.url("/echo"), "-d", "id={}&kind=x", "-q", stdin=b"1\n2\n")
    first, second = jsonl(result.stdout)
    assert first["body"]["method"] == "POST"
    assert first["body"]["body"] == "id=1&kind=x"
    assert second["body"]["body"] == "id=2&kind=x"
    assert first["body"]["headers"]["Content-Type"] == "application/x-www-form-urlencoded"


def test_json_template_escapes_values(server: LoopbackServer, tmp_path: Path) -> None:
    template = tmp_path / "body.json"
    template.write_text('{"name": {name}, "tags": [{owner}]}')
    rows = tmp_path / "rows.csv"
    rows.write_text('owner,name\nx,"say ""hi"" \\ bye"\n')
    result = run_cli(
        "-t", server.url("/echo"), "--json", f"@{template}", "-X", "PUT", str(rows), "-q"
    )
    (record,) = jsonl(result.stdout)
    echoed = record["body"]
    assert echoed["method"] == "PUT"
    assert json.loads(echoed["body"]) == {"name": 'say "hi" \\ bye', "tags": ["x"]}
    assert echoed["headers"]["Content-Type"] == "application/json"


def test_json_placeholders_fill_by_where_they_stand(server: LoopbackServer) -> None:
    template = '{"id": {id}, "name": "item {}!", "opts": {}, "lit": "{{}}", "n": [{}]}'
    result = run_cli("-t", server.url("/echo"), "--json", template, "-q", stdin=b'7 "x"\n')
    assert result.returncode == 0, result.stderr
    (record,) = jsonl(result.stdout)
    sent = json.loads(record["body"]["body"])
    assert sent == {"id": '7 "x"', "name": 'item 7 "x"!', "opts": {}, "lit": "{}", "n": [{}]}


def test_a_json_template_that_stays_invalid_is_refused() -> None:
    result = run_cli("-t", "http://127.0.0.1:1/{}", "--json", '{"id": {id}', stdin=b"1\n")
    assert result.returncode == 2
    assert "--json must be JSON" in result.stderr


def test_pick_gives_a_tidy_table(server: LoopbackServer) -> None:
    result = run_cli(
        "-t", server.url("/echo?id={}"), "--pick", "id=query.id",
        "--pick", "agent=headers.User-Agent", "--pick", "missing=query.nope.0",
        "-f", "csv", stdin=b"7\n8\n",
    )  # fmt: skip
    rows = list(csv.reader(io.StringIO(result.text, newline="")))
    assert rows[0] == [
        "input", "id", "agent", "missing", "ok", "status", "error", "error_message", "etag",
        "last_modified",
    ]  # fmt: skip
    assert rows[1][:2] == ["7", "7"]
    assert rows[1][2].startswith("fetchmany/")
    assert rows[1][3:] == ["", "true", "200", "", "", "", ""]
    assert rows[2][:2] == ["8", "8"]


def test_pick_with_explicit_body_and_fields(server: LoopbackServer) -> None:
    url = server.url("/item?id=5").encode()
    with_body = jsonl(run_cli("--pick", "id=id", "--body", "json", "-q", stdin=url).stdout)
    assert list(with_body[0]) == [
        "input", "id", "ok", "status", "error", "etag", "last_modified", "body",
    ]  # fmt: skip
    chosen = run_cli("--pick", "id=id", "--fields", "index,id,status", "-q", stdin=url)
    assert jsonl(chosen.stdout) == [{"index": 0, "id": "5", "status": 200}]
    assert run_cli("--pick", "bad", stdin=url).returncode == 2


def test_save_dir_streams_bodies_to_safe_names(server: LoopbackServer, tmp_path: Path) -> None:
    out = tmp_path / "bodies"
    result = run_cli(
        "--save-dir", str(out), "-t", server.url("/big?bytes={}"), "-q", stdin=b"5\n300000\n"
    )
    assert result.returncode == 0, result.stderr
    records = jsonl(result.stdout)
    assert "body" not in records[0]
    for record, size in zip(records, (5, 300_000), strict=True):
        path = Path(str(record["path"]))
        assert path.parent == out.resolve()
        assert path.name == f"{record['index']:08d}.txt"
        data = path.read_bytes()
        assert len(data) == size == record["size"]
        assert hashlib.sha256(data).hexdigest() == record["sha256"]
    assert sorted(os.listdir(out)) == ["00000000.txt", "00000001.txt"]  # no temporary files


def test_save_names_cannot_leave_the_directory(server: LoopbackServer, tmp_path: Path) -> None:
    out = tmp_path / "bodies"
    hostile = b"../../escape\n/etc/passwd\n..\n.hidden\n"
    result = run_cli(
        "--save-dir", str(out), "--save-name", "{}", "-t", server.url("/echo?x={}"), "-q",
        stdin=hostile,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    saved = sorted(os.listdir(out))
    assert len(saved) == 4
    assert all(not name.startswith(".") and "/" not in name for name in saved)
    assert not (tmp_path / "escape").exists()
    for record in jsonl(result.stdout):
        assert Path(str(record["path"])).parent == out.resolve()


def test_save_dir_keeps_the_size_cap(server: LoopbackServer, tmp_path: Path) -> None:
    result = run_cli(
        "--save-dir", str(tmp_path), "--max-body-size", "1KB", "-q",
        stdin=server.url("/big?bytes=50000").encode(),
    )  # fmt: skip
    (record,) = jsonl(result.stdout)
    assert record["error"]["kind"] == "body_too_large"
    assert Path(str(record["path"])).stat().st_size == 1000


def test_picked_records_still_say_whether_they_failed(server: LoopbackServer) -> None:
    urls = f"{server.url('/status/404')}\nhttp://127.0.0.1:1/\n{server.url('/item?id=3')}\n"
    result = run_cli("--pick", "id=id", "--retries", "0", "-q", stdin=urls.encode())
    missing, refused, found = jsonl(result.stdout)
    assert (missing["ok"], missing["status"]) == (False, 404)
    assert missing["error"] == {"kind": "http", "message": "404 Not Found"}
    assert (refused["ok"], refused["status"], refused["error"]["kind"]) == (False, None, "connect")
    assert (found["ok"], found["id"]) == (True, "3")
    assert result.returncode == 1


def test_options_that_would_drop_a_value_are_usage_errors(tmp_path: Path) -> None:
    left_out = run_cli("--pick", "id=id", "--fields", "input,status", stdin=b"")
    assert left_out.returncode == 2
    assert "--pick id is not in --fields" in left_out.stderr
    no_body = run_cli("--save-dir", str(tmp_path), "--fields", "input,body", stdin=b"")
    assert no_body.returncode == 2
    assert "records have no body" in no_body.stderr


def test_a_csv_header_naming_a_column_twice_is_a_usage_error(tmp_path: Path) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_bytes(b"id,id\n1,2\n")
    result = run_cli(str(rows), "-t", "http://127.0.0.1:1/{id}")
    assert result.returncode == 2
    assert result.stderr == (
        "fetchmany: the CSV header names column 'id' twice; "
        "rename one so every column has its own name\n"
    )
    assert result.stdout == b""


def test_spreadsheet_csv_with_a_byte_order_mark(server: LoopbackServer, tmp_path: Path) -> None:
    rows = tmp_path / "export.csv"
    rows.write_bytes(b"\xef\xbb\xbfid,name\r\n1,a\r\n2,b\r\n")
    result = run_cli(str(rows), "-t", server.url("/item?id={id}"), "-q")
    assert result.returncode == 0, result.stdout
    assert [r["body"]["id"] for r in jsonl(result.stdout)] == ["1", "2"]


def test_the_url_field_is_what_the_server_was_sent(server: LoopbackServer) -> None:
    urls = server.url("/echo?q=a b&x=é") + "\n" + server.url("/echo?t=a\tb") + "\n"
    result = run_cli("-q", stdin=urls.encode())
    sent, with_tab = jsonl(result.stdout)
    assert sent["url"].endswith(sent["body"]["raw_path"])  # the path and query as received
    assert sent["url"].endswith("/echo?q=a%20b&x=%C3%A9")  # a space is %20 wherever it is
    assert with_tab["error"]["kind"] == "invalid_url"


def test_form_bodies_cannot_gain_parameters_from_an_input(server: LoopbackServer) -> None:
    result = run_cli(
        "-t", server.url("/echo"), "-d", "user={}&role=guest", "-q", stdin=b"a&role=admin\n"
    )
    (record,) = jsonl(result.stdout)
    assert record["body"]["body"] == "user=a%26role%3Dadmin&role=guest"
    raw = run_cli(
        "-t", server.url("/echo"), "-d", "<u>{}</u>", "-H", "Content-Type: text/xml", "-q",
        stdin=b"a&b\n",
    )  # fmt: skip
    assert jsonl(raw.stdout)[0]["body"]["body"] == "<u>a&b</u>"
