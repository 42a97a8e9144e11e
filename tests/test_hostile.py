"""The installed command in a hostile world: odd servers, closed streams, full disks, races.

Each test is a defect that was found by trying (issue 8); each ends as a record or as
one clean line with a meaningful exit status, and a previous output survives.
"""

from __future__ import annotations

import csv
import io
import json
import os
import resource
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import (
    LoopbackServer,
    RawServer,
    fetchmany_command,
    jsonl,
    raw_response,
    run_cli,
    run_process,
)

BAD_CHARSETS = (b"base64", b"rot13", b"zlib", b"hex", b"\xe9\xff", b"undefined", b"no-such")


def charset_server(raw_server: Callable[[dict[str, bytes]], RawServer]) -> RawServer:
    routes = {
        f"/{n}": raw_response(
            b'{"title": "caf\xc3\xa9"}',
            (b"Content-Type: application/json; charset=" + charset,),
        )
        for n, charset in enumerate(BAD_CHARSETS)
    }
    routes |= {
        f"/text{n}": raw_response(b"caf\xe9", (b"Content-Type: text/plain; charset=" + charset,))
        for n, charset in enumerate(BAD_CHARSETS)
    }
    return raw_server(routes)


@pytest.mark.parametrize(
    "args",
    [[], ["--body", "none"], ["--body", "text"], ["--pick", "title=title"], ["-f", "csv"]],
)
def test_any_charset_gives_a_record_for_every_item(
    raw_server: Callable[[dict[str, bytes]], RawServer], args: list[str]
) -> None:
    server = charset_server(raw_server)
    paths = [f"/{n}" for n in range(len(BAD_CHARSETS))]
    paths += [f"/text{n}" for n in range(len(BAD_CHARSETS))]
    urls = "".join(server.url(p) + "\n" for p in paths).encode()
    result = run_process("-q", *args, stdin=urls)
    assert "Traceback" not in result.stderr
    assert result.returncode in (0, 1), result.stderr
    if "csv" in args:
        rows = list(csv.DictReader(io.StringIO(result.text, newline="")))
    else:
        rows = jsonl(result.stdout)
    assert len(rows) == len(paths)
    assert all(str(row.get("status", "200")) == "200" for row in rows)
    if args == ["--body", "text"]:
        assert {r["error"]["kind"] for r in rows if r["error"]} == {"invalid_charset"}
        assert rows[len(BAD_CHARSETS)]["body"] == "caf\ufffd"
    if args == ["--pick", "title=title"]:
        assert [r["title"] for r in rows[: len(BAD_CHARSETS)]] == ["café"] * len(BAD_CHARSETS)
    if not args:
        assert "\\xe9\\xff" in rows[4]["content_type"]  # the bytes escaped, not dropped


def test_a_failed_run_leaves_the_previous_output_untouched(
    server: LoopbackServer, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    out.write_bytes(b'{"previous": "result"}\n')
    bad_ca = tmp_path / "empty.pem"
    bad_ca.write_bytes(b"")
    result = run_process("--ca-bundle", str(bad_ca), "-o", str(out), stdin=server.url("/").encode())
    assert result.returncode == 2
    assert result.stderr.startswith("fetchmany: cannot use --ca-bundle")
    assert len(result.stderr.splitlines()) == 1
    assert out.read_bytes() == b'{"previous": "result"}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.pem", "out.jsonl"]


def run_with_file_size_limit(
    limit: int, *args: str, stdin: bytes
) -> subprocess.CompletedProcess[bytes]:
    """Run with RLIMIT_FSIZE: writes past ``limit`` bytes fail (EFBIG) the way they do on
    a full disk (ENOSPC), without needing a small filesystem."""

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run(
        [*fetchmany_command(), *args],
        input=stdin,
        capture_output=True,
        preexec_fn=cap,
        check=False,
        timeout=60,
    )


@pytest.mark.parametrize("processes", ["1", "2"])
@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv"])
def test_a_full_disk_keeps_the_previous_file_and_says_why(
    server: LoopbackServer, tmp_path: Path, fmt: str, processes: str
) -> None:
    out = tmp_path / f"out.{fmt}"
    out.write_bytes(b"previous\n")
    ids = "".join(f"{i}\n" for i in range(300)).encode()
    args = ("-t", server.url("/item?id={}"), "-o", str(out), "-q", "-P", processes)
    proc = run_with_file_size_limit(8000, *args, stdin=ids)
    assert proc.returncode == 75  # incomplete: not 1, which says the output is whole
    assert proc.stderr.decode() == f"fetchmany: cannot write {out}: File too large\n"
    assert out.read_bytes() == b"previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # no temporary file left


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv"])
def test_a_full_disk_during_resume_leaves_a_valid_prefix_to_resume(
    server: LoopbackServer, tmp_path: Path, fmt: str
) -> None:
    out = tmp_path / f"out.{fmt}"
    ids = "".join(f"{i}\n" for i in range(300)).encode()
    args = ("-t", server.url("/item?id={}"), "-o", str(out), "-q", "--resume")
    proc = run_with_file_size_limit(8000, *args, stdin=ids)
    assert proc.returncode == 75  # incomplete: not 1, which says the output is whole
    assert b"File too large" in proc.stderr
    kept = read_records(out, fmt)  # parses: whole records only, a JSON array closed
    assert 0 < len(kept) < 300
    assert [int(r["index"]) for r in kept] == list(range(len(kept)))
    again = run_process(*args, stdin=ids)
    assert again.returncode == 0, again.stderr
    assert [int(r["index"]) for r in read_records(out, fmt)] == list(range(300))


def read_records(path: Path, fmt: str) -> list[dict[str, object]]:
    text = path.read_text()
    if fmt == "jsonl":
        return [json.loads(line) for line in text.splitlines()]
    if fmt == "json":
        return list(json.loads(text))
    return list(csv.DictReader(io.StringIO(text, newline="")))


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ("/dev/full", "fetchmany: cannot write /dev/full: No space left on device"),
        ("/proc/version", "fetchmany: cannot write /proc/version: Input/output error"),
    ],
)
def test_an_output_that_cannot_be_written_is_refused_before_any_request(
    server: LoopbackServer, output: str, message: str
) -> None:
    result = run_process("-o", output, stdin=server.url("/item?id=1").encode())
    assert (result.returncode, result.stderr.strip()) == (2, message)
    assert server.state.requests == 0


def run_with_closed(fd: int, *args: str, stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    """Run with standard descriptor ``fd`` closed, as ``>&-`` or ``2>&-`` leave it."""
    return subprocess.run(
        [*fetchmany_command(), *args],
        input=stdin,
        stdout=subprocess.PIPE if fd != 1 else None,
        stderr=subprocess.PIPE if fd != 2 else None,
        preexec_fn=lambda: os.close(fd),
        check=False,
        timeout=60,
    )


def test_a_closed_stdout_is_a_usage_error(server: LoopbackServer) -> None:
    proc = run_with_closed(1, stdin=server.url("/item?id=1").encode())
    assert proc.returncode == 2
    assert proc.stderr.decode() == "fetchmany: stdout is closed; give --output FILE\n"
    assert server.state.requests == 0


def test_a_closed_stdout_does_not_stop_a_run_to_a_file(
    server: LoopbackServer, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    proc = run_with_closed(1, "-o", str(out), stdin=server.url("/item?id=1").encode())
    assert proc.returncode == 0
    assert jsonl(out.read_bytes())[0]["ok"] is True


def test_a_closed_stderr_still_writes_every_record(server: LoopbackServer) -> None:
    urls = "".join(server.url(f"/item?id={i}") + "\n" for i in range(20)).encode()
    proc = run_with_closed(2, "--progress", stdin=urls + b"not a url\n")
    assert proc.returncode == 1  # the invalid line
    assert [r["index"] for r in jsonl(proc.stdout)] == list(range(21))


def test_two_runs_on_one_output_do_not_interleave(server: LoopbackServer, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    server.hang_from(5, signal_when_hung=1)
    first = subprocess.Popen(
        [*fetchmany_command(), "-t", server.url("/maybe-hang?id={}"), "-o", str(out)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert first.stdin is not None
    first.stdin.write(b"".join(b"%d\n" % i for i in range(7)))
    first.stdin.close()
    assert server.state.hung_signal.wait(20)
    for extra in ([], ["--resume"]):
        second = run_process("-t", server.url("/item?id={}"), "-o", str(out), *extra, stdin=b"9\n")
        assert second.returncode == 2
        assert "being written by another fetchmany run" in second.stderr
    server.stop_hanging()
    assert first.wait(30) == 0
    assert [r["input"] for r in jsonl(out.read_bytes())] == [str(i) for i in range(7)]
    first.stdout.close()  # type: ignore[union-attr]
    first.stderr.close()  # type: ignore[union-attr]


def test_a_second_run_after_the_first_ends_may_write_the_file(
    server: LoopbackServer, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    assert (
        run_process("-t", server.url("/item?id={}"), "-o", str(out), stdin=b"1\n").returncode == 0
    )
    assert (
        run_process("-t", server.url("/item?id={}"), "-o", str(out), stdin=b"2\n").returncode == 0
    )
    assert [r["input"] for r in jsonl(out.read_bytes())] == ["2"]


def test_an_input_file_is_never_the_output(server: LoopbackServer, tmp_path: Path) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_bytes(b"1\n2\n")
    link = tmp_path / "link.txt"
    link.symlink_to(ids)
    for output in (ids, link):
        result = run_process(str(ids), "-t", server.url("/item?id={}"), "-o", str(output))
        assert result.returncode == 2
        assert "is also an input" in result.stderr
    assert ids.read_bytes() == b"1\n2\n"


def test_dash_as_output_means_stdout(server: LoopbackServer, tmp_path: Path) -> None:
    result = run_process("-o", "-", "-q", stdin=server.url("/item?id=1").encode())
    assert result.returncode == 0
    assert jsonl(result.stdout)[0]["ok"] is True
    assert not Path("-").exists()


def test_a_url_password_is_never_printed_and_redacted_in_records(
    server: LoopbackServer,
) -> None:
    secret = server.url("/status/500").replace("http://", "http://alice:s3cret@")
    token = server.url("/redirect-to?url=").replace("http://", "http://TOKEN123@")
    target = server.url("/item?id=1").replace("http://", "http://bob:hunter2@")
    result = run_process("--retries", "0", stdin=f"{secret}\n{token}{target}\n".encode())
    assert "s3cret" not in result.stderr
    assert "TOKEN123" not in result.stderr
    assert "alice:****@" in result.stderr  # the failure is still shown
    first, second = jsonl(result.stdout)
    assert first["input"] == secret  # what the user gave, on the user's stdout
    assert first["url"] == secret.replace("s3cret", "****")
    assert "TOKEN123" not in second["url"]
    assert "****@" in second["url"]
    assert "hunter2" not in second["url"]
    assert "hunter2" not in second["final_url"]
    assert second["ok"] is True


def test_an_invalid_url_with_a_password_is_redacted_too() -> None:
    result = run_process(stdin=b"http://user:pa55@exa mple.test:99999/\n")
    (record,) = jsonl(result.stdout)
    assert "pa55" not in record["url"]
    assert "pa55" not in result.stderr
    assert "pa55" in record["input"]


def test_a_limit_above_the_open_file_limit_is_capped_with_a_note(
    server: LoopbackServer,
) -> None:
    def low_files() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (200, 200))

    urls = "".join(server.url(f"/item?id={i}&max_ms=50") + "\n" for i in range(400)).encode()
    proc = subprocess.run(
        [*fetchmany_command(), "--limit", "1000"],
        input=urls,
        capture_output=True,
        preexec_fn=low_files,
        check=False,
        timeout=60,
    )
    stderr = proc.stderr.decode()
    assert proc.returncode == 0, stderr
    assert "--limit 1000 needs more open files than this process may have; using --limit 168" in (
        stderr
    )
    records = jsonl(proc.stdout)
    assert len(records) == 400
    assert all(r["ok"] for r in records)  # no 'Too many open files' connect errors


@pytest.mark.parametrize("loop", ["--uvloop", "--no-uvloop"])
@pytest.mark.parametrize("files", [8, 12, 24])
def test_an_open_file_limit_too_low_for_one_request_is_one_line(loop: str, files: int) -> None:
    """Found by a hostile tester: under ulimit -n 12, uvloop's set-up failed inside the
    running loop and fetchmany printed an internal error and pending-task noise, exit 70."""

    def tiny() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (files, files))

    proc = subprocess.run(
        [*fetchmany_command(), loop],
        input=b"http://127.0.0.1:9/\n",
        capture_output=True,
        preexec_fn=tiny,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stdout == b""
    assert proc.stderr.decode() == (
        f"fetchmany: the open-file limit (ulimit -n) is {files}; fetchmany needs at least 33 "
        "here: raise it (ulimit -n 1024)\n"
    )


def test_the_soft_open_file_limit_is_raised_for_a_high_limit(server: LoopbackServer) -> None:
    def low_soft() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (100, 4096))

    urls = "".join(server.url(f"/item?id={i}&max_ms=100") + "\n" for i in range(600)).encode()
    proc = subprocess.run(
        [*fetchmany_command(), "--limit", "500", "-q"],
        input=urls,
        capture_output=True,
        preexec_fn=low_soft,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stderr == b""  # no cap was needed: the soft limit went up instead
    assert all(r["ok"] for r in jsonl(proc.stdout))
    assert server.state.max_in_flight > 100  # beyond the soft limit it started with


# ---- found by the second hostile pass (after issue 8's list) ----


@pytest.mark.parametrize(
    ("proxy", "shown"),
    [
        ("http://u:pa ss@127.0.0.1:1", "contains a control character or space"),
        ("http://u:secret@xn--zz:1/", "is not a valid URL"),
        ("http://u:secret@/x", "is not a valid URL"),
    ],
)
def test_an_unusable_proxy_is_refused_at_set_up_without_its_password(
    proxy: str, shown: str
) -> None:
    result = run_cli("--proxy", proxy, stdin=b"http://127.0.0.1:9/\n")
    assert result.returncode == 2
    assert shown in result.stderr
    assert "secret" not in result.stderr
    assert "pa ss" not in result.stderr
    assert result.stdout == b""


def test_a_resumed_csv_reads_back_cells_longer_than_the_csv_module_allows(
    server: LoopbackServer, tmp_path: Path
) -> None:
    out = tmp_path / "out.csv"
    big = "x" * 200_000
    row = f'0,{server.url("/big")},true,200,"{big}"\r\n'
    out.write_text("index,input,ok,status,body\r\n" + row)
    urls = f"{server.url('/big')}\n{server.url('/item?id=2')}\n"
    result = run_cli(
        "-o",
        str(out),
        "--resume",
        "-f",
        "csv",
        "--fields",
        "index,input,ok,status,body",
        stdin=urls.encode(),
    )
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text(), newline="")))
    assert [r["index"] for r in rows] == ["0", "1"]
    assert rows[0]["body"] == big


def test_a_replaced_output_keeps_its_mode(server: LoopbackServer, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_bytes(b"old\n")
    out.chmod(0o640)
    result = run_cli("-q", "-o", str(out), stdin=f"{server.url('/item?id=1')}\n".encode())
    assert result.returncode == 0
    assert jsonl(out.read_bytes())[0]["ok"] is True
    assert out.stat().st_mode & 0o777 == 0o640


def test_a_closed_stdin_is_a_usage_error() -> None:
    command = " ".join(fetchmany_command())
    result = subprocess.run(["bash", "-c", f"{command} -q <&-"], capture_output=True, timeout=60)
    assert result.returncode == 2
    assert (
        result.stderr
        == b"fetchmany: stdin is closed; name an input file, or - with something on stdin\n"
    )


def test_the_output_is_never_the_file_on_stdin(server: LoopbackServer, tmp_path: Path) -> None:
    urls = tmp_path / "urls.txt"
    urls.write_text(server.url("/item?id=1") + "\n")
    with urls.open("rb") as stdin:
        result = subprocess.run(
            [*fetchmany_command(), "-q", "-o", str(urls)],
            stdin=stdin,
            capture_output=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert b"is also the input on stdin" in result.stderr
    assert urls.read_text() == server.url("/item?id=1") + "\n"


@pytest.mark.parametrize(
    "args",
    [
        ["--max-body-size", "inf"],
        ["--max-body-size", "nan"],
        ["--max-body-size", "1e999"],
        ["--timeout", "inf"],
        ["--connect-timeout", "nan"],
        ["--grace", "nan"],
        ["--backoff", "nan"],
        ["--max-backoff", "inf"],
    ],
)
def test_non_finite_numbers_are_usage_errors(args: list[str]) -> None:
    result = run_cli(*args, stdin=b"http://127.0.0.1:9/\n")
    assert result.returncode == 2
    assert result.stderr.startswith(f"fetchmany: Invalid value for '{args[0]}'")


@pytest.mark.parametrize(
    "args",
    [
        ["-H", "X-A: b\x01c"],
        ["-H", "X-A: b\x1b[31m"],
        ["-H", "Bad Name: v"],
        ["-H", "Bad(name): v"],
        ["-A", "agent\x7f"],
        ["--fields", "input,ok,input"],
    ],
)
def test_what_cannot_be_sent_or_written_is_a_usage_error(args: list[str]) -> None:
    result = run_cli(*args, stdin=b"http://127.0.0.1:9/\n")
    assert result.returncode == 2
    assert "\x1b" not in result.stderr
    assert "\x01" not in result.stderr
    assert result.stdout == b""


def test_a_header_value_may_hold_a_tab_and_an_env_list_may_end_in_a_newline(
    server: LoopbackServer,
) -> None:
    env = {"FETCHMANY_HEADER": "X-One: 1\nX-Two: a\tb\n"}
    result = run_process("-q", stdin=f"{server.url('/echo')}\n".encode(), env=env)
    assert result.returncode == 0, result.stderr
    headers = jsonl(result.stdout)[0]["body"]["headers"]
    assert (headers["X-One"], headers["X-Two"]) == ("1", "a\tb")


def test_a_fetchmany_version_variable_is_not_the_version_option(server: LoopbackServer) -> None:
    result = run_process(
        "-q", stdin=f"{server.url('/item?id=1')}\n".encode(), env={"FETCHMANY_VERSION": "1"}
    )
    assert result.returncode == 0
    assert jsonl(result.stdout)[0]["ok"] is True


@pytest.mark.parametrize("body", ["none", "base64", "text"])
def test_picks_read_the_json_whatever_the_body_shows(server: LoopbackServer, body: str) -> None:
    result = run_cli(
        "-q", "--body", body, "--pick", "id=id", stdin=f"{server.url('/item?id=7')}\n".encode()
    )
    assert jsonl(result.stdout)[0]["id"] == "7"


def test_a_status_outside_200_to_399_is_not_ok(
    raw_server: Callable[[dict[str, bytes]], RawServer],
) -> None:
    server = raw_server({"/zero": raw_response(b"x", status=b"000 Nothing")})
    result = run_cli("-q", "--retries", "0", stdin=f"{server.url('/zero')}\n".encode())
    (record,) = jsonl(result.stdout)
    assert record["ok"] is False
    assert result.returncode == 1


def test_resume_to_a_stream_is_refused(server: LoopbackServer) -> None:
    result = run_cli(
        "--resume", "-o", "/dev/stdout", stdin=f"{server.url('/item?id=1')}\n".encode()
    )
    assert result.returncode == 2
    assert "--resume continues a regular file" in result.stderr


def test_a_resumed_run_exits_1_when_the_file_already_holds_a_failure(
    server: LoopbackServer, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    urls = f"{server.url('/status/500')}\n{server.url('/item?id=2')}\n".encode()
    first = run_process(
        "-q", "--retries", "0", "-o", str(out), stdin=urls.splitlines(keepends=True)[0]
    )
    assert first.returncode == 1
    resumed = run_cli("-q", "--retries", "0", "-o", str(out), "--resume", stdin=urls)
    assert [r["ok"] for r in jsonl(out.read_bytes())] == [False, True]
    assert resumed.returncode == 1


def test_escape_sequences_read_from_a_file_are_not_replayed_on_the_terminal(
    server: LoopbackServer, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    out.write_bytes(b'{"\\u001b[2Jinput": 1}\n')
    result = run_cli("--resume", "-o", str(out), stdin=f"{server.url('/item?id=1')}\n".encode())
    assert result.returncode == 2
    assert "\x1b" not in result.stderr
    assert "\\x1b[2J" in result.stderr


def test_a_body_template_file_may_start_with_a_byte_order_mark(
    server: LoopbackServer, tmp_path: Path
) -> None:
    template = tmp_path / "body.json"
    template.write_bytes(b'\xef\xbb\xbf{"id": "{}"}')
    result = run_cli("-q", "-t", server.url("/echo"), "--json", f"@{template}", stdin=b"7\n")
    assert jsonl(result.stdout)[0]["body"]["body"] == '{"id": "7"}'


def test_csv_on_a_terminal_shows_a_servers_control_characters_escaped(
    raw_server: Callable[[dict[str, bytes]], RawServer],
) -> None:
    """Found by a hostile tester: JSON escapes ESC itself, CSV wrote it as it came, so a
    server's content type or body could recolour or rewrite the terminal. Piped, the
    data stays as sent."""
    body = b"hello \x1b[31mRED\x1b[0m"
    server = raw_server({"/x": raw_response(body, (b"Content-Type: text/\x1b[31mplain",))})
    args = [*fetchmany_command(), "-f", "csv", "-q", "--fields", "content_type,body"]
    url = f"{server.url('/x')}\n".encode()
    leader, follower = os.openpty()
    with subprocess.Popen(args, stdin=subprocess.PIPE, stdout=follower, stderr=follower) as proc:
        os.close(follower)
        assert proc.stdin is not None
        proc.stdin.write(url)
        proc.stdin.close()
        shown = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the terminal's other end closed
                break
            if not chunk:
                break
            shown += chunk
    os.close(leader)
    assert proc.returncode == 0
    assert b"\x1b" not in shown
    assert b"text/\\x1b[31mplain,hello \\x1b[31mRED\\x1b[0m" in shown
    piped = subprocess.run(args, input=url, capture_output=True, check=False)
    assert b"text/\x1b[31mplain,hello \x1b[31mRED\x1b[0m\r\n" in piped.stdout
