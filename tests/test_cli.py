"""The installed ``fetchmany`` command run as a user runs it: a process with real pipes."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import click
import pytest
from aiohttp import web
from click.testing import CliRunner
from conftest import (
    CliResult,
    LoopbackServer,
    TlsServer,
    fetchmany_command,
    jsonl,
    run_cli,
    run_process,
)
from test_writers import FORMULA_STARTS

from fetchmany.cli.command import cli


def test_stdin_ids_with_template_stream_in_order(server: LoopbackServer) -> None:
    ids = "".join(f"{i}\n" for i in range(1, 101)).encode()
    result = run_process("-t", server.url("/item?id={}"), "--limit", "7", stdin=ids)
    assert result.returncode == 0, result.stderr
    records = jsonl(result.stdout)
    assert [r["index"] for r in records] == list(range(100))
    assert [r["body"]["id"] for r in records] == [str(i) for i in range(1, 101)]
    assert list(records[0]) == [
        "index", "input", "url", "ok", "status", "final_url", "content_type", "etag",
        "last_modified", "size", "elapsed_ms", "attempts", "error", "body",
    ]  # fmt: skip


def test_files_with_blanks_comments_and_bad_lines(server: LoopbackServer, tmp_path: Path) -> None:
    a = tmp_path / "a.txt"
    b = tmp_path / "b.txt"
    a.write_bytes(f"# list\n{server.url('/item?id=1')}\n\nnot a url\n".encode())
    b.write_bytes(b"\xff\xfe\n" + server.url("/status/404").encode() + b"\r\n")
    result = run_cli(str(a), str(b))
    assert result.returncode == 1  # some record is not ok
    records = jsonl(result.stdout)
    assert [r["input"] for r in records] == [
        server.url("/item?id=1"),
        "not a url",
        "\\xff\\xfe",
        server.url("/status/404"),
    ]
    assert [r["ok"] for r in records] == [True, False, False, False]
    assert records[1]["error"]["kind"] == "invalid_url"
    assert records[3]["status"] == 404
    assert "Traceback" not in result.stderr


def test_all_ok_exits_zero_and_summary_counts_outcomes(server: LoopbackServer) -> None:
    urls = "".join(server.url(f"/item?id={i}") + "\n" for i in range(5)).encode()
    result = run_process(stdin=urls)
    assert result.returncode == 0
    assert "Done. 5 records" in result.stderr
    assert "2xx 5" in result.stderr
    assert "latency p50" in result.stderr
    quiet = run_process("-q", stdin=urls)
    assert quiet.stderr == ""
    assert len(jsonl(quiet.stdout)) == 5


def test_json_array_output_parses(server: LoopbackServer) -> None:
    result = run_cli("-f", "json", "-t", server.url("/item?id={}"), stdin=b"1\n2\n3\n")
    assert [r["index"] for r in json.loads(result.stdout)] == [0, 1, 2]
    empty = run_cli("-f", "json", stdin=b"")
    assert json.loads(empty.stdout) == []
    assert empty.returncode == 0


def test_csv_output_to_a_file_from_its_extension(server: LoopbackServer, tmp_path: Path) -> None:
    out = tmp_path / "results.csv"
    result = run_cli(
        "-t", server.url("/item?id={}"), "-o", str(out), "--fields", "index,status,error,body",
        stdin=b"a b&c\n\nxyz\n",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == b""
    rows = list(csv.DictReader(io.StringIO(out.read_text(), newline="")))
    assert [row["index"] for row in rows] == ["0", "1"]
    assert json.loads(rows[0]["body"])["id"] == "a b&c"  # percent-encoded in, decoded by server
    # error is two columns: its kind, then its message
    assert list(rows[0]) == ["index", "status", "error", "error_message", "body"]


def test_format_flag_overrides_the_extension(server: LoopbackServer, tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    run_cli("-f", "jsonl", "-o", str(out), stdin=server.url("/item?id=1").encode())
    assert jsonl(out.read_bytes())[0]["ok"] is True


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing-file.txt"], "Invalid value for '[INPUTS]...': File 'missing-file.txt' does not exist."),
        (["--limit", "0"], "Invalid value for '-l' / '-j' / '--limit' / '--concurrency': must be from 1 to 100,000, got 0"),
        (["-t", "http://127.0.0.1/fixed"], "template has no placeholder ({} or {id}): 'http://127.0.0.1/fixed'"),
        (["-t", "http://127.0.0.1/{id"], "--template: the { at character 18 is never closed; a placeholder is {} or {name}, a literal brace {{ or }}: 'http://127.0.0.1/{id'"),
        (["-t", "http://127.0.0.1/{id}}"], "--template: the } at character 22 closes nothing; a placeholder is {} or {name}, a literal brace {{ or }}: 'http://127.0.0.1/{id}}'"),
        (["-t", "ftp://127.0.0.1/{}"], "--template must start with http:// or https://: 'ftp://127.0.0.1/{}'"),
        (["-f", "xml"], "Invalid value for '-f' / '--format': 'xml' is not one of 'jsonl', 'json', 'csv'."),
        (["--fields", "index,nope"], "unknown field 'nope' for --fields; choose from index, input, url, ok, status, final_url, content_type, etag, last_modified, size, elapsed_ms, attempts, error, body, timings, headers, redirects, tls"),
        (["-H", "no colon"], "Invalid value for '-H' / '--header': expected 'Name: value', got 'no ****'"),
        (["-H", "Authorization Bearer s3cret"], "Invalid value for '-H' / '--header': expected 'Name: value', got 'Authorization ****'"),
        (["-H", "nocolon"], "Invalid value for '-H' / '--header': expected 'Name: value', got 'nocolon'"),
        (["--max-body-size", "lots"], "Invalid value for '--max-body-size': not a size: 'lots' (try 500KB, 10MB, 1GB)"),
        (["--rate", "fast"], "Invalid value for '-r' / '--rate': not a rate: 'fast' (try 20, 20/s, 600/m)"),
        (["--rate", "0"], "Invalid value for '-r' / '--rate': not a rate: '0' (try 20, 20/s, 600/m)"),
        (["--retry-on", "5xx"], "Invalid value for '--retry-on': not an HTTP status: '5xx'"),
        (["--per-host", "0"], "Invalid value for '--per-host': must be at least 1, got 0"),
        (["--resume"], "--resume needs --output FILE to continue"),
        (["-d", "a", "--json", "{}"], "give a body as --data or --json, not both"),
        (["--pick", "title"], "Invalid value for '--pick': expected NAME=PATH with NAME a plain word, got 'title'"),
        (["--pick", "path=a"], "Invalid value for '--pick': 'path' is a field of every record; give the pick another name"),
        (["--pick", "t=a", "--pick", "t=b"], "Invalid value for '--pick': field name used twice: 't'"),
        (["--save-dir", "d", "--save-name", "{nope}"], "--save-name: line input only fills {}, {id}, {index} or {ext}, not {nope}; for named columns use --input-format csv or jsonl"),
        (["-X", "head", "--save-dir", "d"], "HEAD answers have no body to save; drop --save-dir or -X HEAD"),
        (["-I", "-X", "POST"], "-I/--head sends HEAD and -X asks for POST; drop one"),
        (["-I", "-d", "x"], "-I/--head sends HEAD, which carries no body; drop --data"),
        (["--head", "--json", "{}"], "-I/--head sends HEAD, which carries no body; drop --json"),
        (["-I", "--save-dir", "d"], "-I/--head asks for no body, so --save-dir would have nothing to save; drop one"),
        (["-L", "--max-redirects", "0"], "-L/--location follows redirects and --max-redirects 0 follows none; drop one"),
        (["--no-location", "--max-redirects", "5"], "--no-location follows no redirect and --max-redirects 5 follows some; drop one"),
        (["-m", "0"], "Invalid value for '-m' / '--max-time': must be a finite number of seconds above 0, got 0"),
        (["-m", "-1"], "Invalid value for '-m' / '--max-time': must be a finite number of seconds above 0, got -1"),
        (["-m", "inf"], "Invalid value for '-m' / '--max-time': must be a finite number of seconds above 0, got inf"),
        (["-m", "nan"], "Invalid value for '-m' / '--max-time': must be a finite number of seconds above 0, got nan"),
        (["--max-time", "abc"], "Invalid value for '-m' / '--max-time': not a number of seconds: 'abc'"),
        (["--retry", "-1"], "Invalid value for '--retries' / '--retry': must be at least 0, got -1"),
        (["--merge", "-m", "1", os.devnull], "--max-time does nothing with --merge, which fetches nothing"),
        (["--merge", "-I", os.devnull], "--head does nothing with --merge, which fetches nothing"),
        (["--merge", "-L", os.devnull], "--location does nothing with --merge, which fetches nothing"),
        (["--compressed"], "No such option '--compressed'; fetchmany asks for gzip, deflate, br and zstd, and decodes them, always"),
        (["--tries=3"], "No such option '--tries'; use --retries N (wget's --tries counts the first try: --tries 3 is --retries 2)"),
        (["-u", "me:pw"], "No such option '-u'; put user:password@ in the URL, or use --netrc, or -H 'Authorization: ...'"),
        (["--retry-max-time", "9"], "No such option '--retry-max-time'; use -m/--max-time SECONDS: a deadline per item, all attempts together"),
    ],
)  # fmt: skip
def test_usage_errors_are_one_line_and_exit_2(args: list[str], message: str) -> None:
    result = run_cli(*args, stdin=b"")
    assert (result.returncode, result.stdout, result.stderr) == (2, b"", f"fetchmany: {message}\n")


def test_a_template_without_a_scheme_is_refused_before_any_request(
    server: LoopbackServer,
) -> None:
    """Not a run of invalid_url records: one line saying what to write, exit 2."""
    template = server.url("/item?id={}").removeprefix("http://")
    result = run_process("-t", template, stdin=b"1\n2\n3\n")
    assert (result.returncode, result.stdout) == (2, b"")
    assert result.stderr == (
        f"fetchmany: --template must start with http:// or https://: {template!r} "
        f"(did you mean {'http://' + template!r}?)\n"
    )
    assert server.state.requests == 0


def test_progress_and_summary_never_reach_stdout(server: LoopbackServer) -> None:
    urls = "".join(server.url(f"/item?id={i}") + "\n" for i in range(30)).encode()
    result = run_process("--progress", stdin=urls)
    assert len(jsonl(result.stdout)) == 30  # every stdout line is a record
    assert "Done." in result.stderr
    assert "fetching" in result.stderr


def test_outside_text_is_escaped_on_the_terminal() -> None:
    # A URL line holding ESC is an invalid_url record whose url the summary shows.
    hostile = b"http://127.0.0.1:9/\x1b[31mred\x1b[0m[bold]loud[/bold]\n"
    result = run_cli(stdin=hostile)
    assert result.returncode == 1
    assert "\x1b" not in result.stderr
    assert "[bold]loud[/bold]" in result.stderr
    assert "\\x1b[31mred" in result.stderr


def test_head_closing_the_pipe_exits_quietly(server: LoopbackServer) -> None:
    urls = "".join(server.url(f"/item?id={i}&max_ms=1") + "\n" for i in range(3000)).encode()
    proc = subprocess.Popen(
        [*fetchmany_command(), "-q", "--limit", "20"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    assert proc.stderr is not None
    proc.stdin.write(urls)
    proc.stdin.close()
    first = proc.stdout.readline()
    proc.stdout.close()  # what `| head -1` does
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=30) == 128 + signal.SIGPIPE
    assert json.loads(first)["index"] == 0
    assert stderr == ""


def test_version_via_module_and_script() -> None:
    from fetchmany import __version__

    module = subprocess.run(
        [sys.executable, "-m", "fetchmany", "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert module.returncode == 0
    assert __version__ in module.stdout
    assert __version__ in run_process("--version").text


def test_help_lists_options_and_examples() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for needle in ("--template", "--limit", "--concurrency", "-j", "--unordered", "Examples"):
        assert needle in result.output


def test_cli_runner_reads_stdin_and_writes_records(server: LoopbackServer) -> None:
    result = CliRunner().invoke(
        cli, ["-q", "-t", server.url("/item?id={}")], input="x\ny\n", catch_exceptions=False
    )
    assert result.exit_code == 0
    assert [json.loads(line)["body"]["id"] for line in result.stdout.splitlines()] == ["x", "y"]


def test_an_unwritable_output_is_a_usage_error(tmp_path: Path) -> None:
    result = run_cli("-o", str(tmp_path / "no-such-dir" / "out.jsonl"), stdin=b"")
    assert result.returncode == 2
    assert "cannot write" in result.stderr


@pytest.mark.parametrize("suffix", ["/", "/.", "/.."])
def test_an_output_path_naming_a_directory_is_refused(tmp_path: Path, suffix: str) -> None:
    """Found by a hostile tester: -o y.jsonl/ wrote (or replaced) the file y.jsonl."""
    out = tmp_path / "y.jsonl"
    out.write_text("previous\n")
    result = run_cli("-o", f"{out}{suffix}", stdin=b"http://127.0.0.1:9/\n")
    assert result.returncode == 2
    assert "it names a directory, not a file" in result.stderr
    assert out.read_text() == "previous\n"


def test_a_usage_error_exits_2_even_when_stderr_cannot_take_its_line() -> None:
    with open("/dev/full", "w") as full:
        proc = subprocess.run(
            [*fetchmany_command(), "--limit", "0"], stdin=subprocess.DEVNULL, stderr=full
        )
    assert proc.returncode == 2


def test_a_stdout_that_refuses_every_write_is_named_stdout() -> None:
    """> /dev/full: refused before any request (a zero-byte probe write), exit 2, and the
    message names the output as the user knows it."""
    with open("/dev/full", "wb") as full:
        proc = subprocess.run(
            [*fetchmany_command(), "-q"],
            input=b"http://127.0.0.1:9/\n",
            stdout=full,
            stderr=subprocess.PIPE,
            check=False,
        )
    assert proc.returncode == 2
    assert proc.stderr == b"fetchmany: cannot write stdout: No space left on device\n"


def test_a_stdout_file_that_fills_mid_run_is_named_stdout(tmp_path: Path) -> None:
    """Stdout redirected to a file that stops taking writes part-way (a file size limit
    here, as a full disk would): the run stops with exit 75 (incomplete), and the one
    line on stderr names the output as the user knows it, stdout."""

    def small_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))

    with open(tmp_path / "records.jsonl", "wb") as stream:
        proc = subprocess.run(
            [*fetchmany_command(), "-q", "--retries", "0"],
            input=b"http://127.0.0.1:9/x\n" * 50,
            stdout=stream,
            stderr=subprocess.PIPE,
            preexec_fn=small_files,
            check=False,
        )
    assert proc.returncode == 75
    assert proc.stderr == b"fetchmany: cannot write stdout: File too large\n"


def test_an_unreadable_later_input_after_records_went_out_is_exit_75(
    server: LoopbackServer, tmp_path: Path
) -> None:
    """Exit 2 says nothing was fetched; once records have gone out, an input found to be
    UTF-16 further on stops a run that had begun: exit 75 (incomplete), as for a full
    disk, not 1, which says the output is whole."""
    first, utf16 = tmp_path / "first.txt", tmp_path / "utf16.txt"
    first.write_text(server.url("/item?id=1") + "\n")
    utf16.write_bytes("2\n".encode("utf-16"))
    later = run_cli(str(first), str(utf16), "-q")
    assert later.returncode == 75
    assert "utf16.txt is UTF-16 text" in later.stderr
    assert len(jsonl(later.stdout)) == 1
    at_once = run_cli(str(utf16), str(first), "-q")
    assert at_once.returncode == 2
    assert at_once.stdout == b""


@pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="/proc/self/mem is Linux's")
def test_an_input_that_breaks_while_read_is_exit_75_saying_why(
    server: LoopbackServer, tmp_path: Path
) -> None:
    """An input the system fails to read part way (EIO: a disk, a network file system;
    /proc/self/mem at offset 0 fails so) ends the run as incomplete, exit 75, with the
    reason in one line, after the records of the inputs before it; never exit 70."""
    first = tmp_path / "first.txt"
    first.write_text(server.url("/item?id=1") + "\n")
    result = run_cli(str(first), "/proc/self/mem", "-q")
    assert result.returncode == 75
    assert result.stderr == "fetchmany: cannot read /proc/self/mem: Input/output error\n"
    assert [record["ok"] for record in jsonl(result.stdout)] == [True]


def test_env_does_not_leak_into_stdout_encoding(server: LoopbackServer) -> None:
    env_result = subprocess.run(
        [*fetchmany_command(), "-q"],
        input=server.url("/latin1").encode(),
        capture_output=True,
        env={**os.environ, "PYTHONIOENCODING": "latin-1", "LC_ALL": "C"},
        check=False,
    )
    assert jsonl(env_result.stdout)[0]["body"] == "café déjà vu"  # always UTF-8 JSON


@pytest.mark.parametrize("flag", ["-j", "--concurrency", "-l"])
def test_limit_aliases_reach_and_cap_concurrency(server: LoopbackServer, flag: str) -> None:
    server.reset(gate_size=4)
    ids = "".join(f"{i}\n" for i in range(12)).encode()
    result = run_process(flag, "4", "-t", server.url("/gated?id={}"), "--timeout", "20", stdin=ids)
    assert result.returncode == 0, result.stderr
    assert server.state.max_in_flight == 4


def test_progress_total_is_known_for_files_not_stdin(
    server: LoopbackServer, tmp_path: Path
) -> None:
    urls = "".join(server.url(f"/item?id={i}") + "\n" for i in range(25))
    path = tmp_path / "urls.txt"
    path.write_text("# comment\n\n" + urls)
    from_file = run_process("--progress", str(path))
    assert "25/25" in from_file.stderr
    from_stdin = run_process("--progress", stdin=urls.encode())
    assert "25/25" not in from_stdin.stderr
    assert " 25 " in from_stdin.stderr


def test_csv_safe_neutralises_formulas(server: LoopbackServer) -> None:
    hostile = server.url("/echo?x=1").encode() + b"\n=HYPERLINK(1)\n+1\n@cmd\n-2\n"
    plain = run_cli("-f", "csv", "--fields", "input,index,status", "--body", "none", stdin=hostile)
    safe = run_cli(
        "-f", "csv", "--csv-safe", "--fields", "input,index,status", "--body", "none", stdin=hostile
    )  # fmt: skip
    plain_rows = list(csv.reader(io.StringIO(plain.text, newline="")))[1:]
    safe_rows = list(csv.reader(io.StringIO(safe.text, newline="")))[1:]
    assert [r[0] for r in plain_rows][1:] == ["=HYPERLINK(1)", "+1", "@cmd", "-2"]
    assert [r[0] for r in safe_rows][1:] == ["'=HYPERLINK(1)", "'+1", "'@cmd", "'-2"]
    assert safe_rows[0][0] == plain_rows[0][0]  # an ordinary URL is untouched
    assert [r[1] for r in safe_rows] == ["0", "1", "2", "3", "4"]  # numbers stay numbers


def test_csv_safe_neutralises_what_a_server_sends(
    serve: Callable[[web.Application], LoopbackServer],
) -> None:
    """A server's text starting with each character OWASP lists (a tab or CR before
    =HYPERLINK too) reaches the CSV's body column with the ' a spreadsheet needs."""
    cells = [f'{start}HYPERLINK("http://evil.test/")' for start in FORMULA_STARTS]

    async def cell(request: web.Request) -> web.Response:
        return web.Response(text=cells[int(request.query["i"])])

    app = web.Application()
    app.router.add_get("/cell", cell)
    url = serve(app).url("/cell?i={}")
    ids = "".join(f"{i}\n" for i in range(len(cells))).encode()
    result = run_process("-t", url, "-q", "-f", "csv", "--csv-safe", "--fields", "body", stdin=ids)
    assert result.returncode == 0, result.stderr
    rows = list(csv.reader(io.StringIO(result.text, newline="")))
    assert rows == [["body"], *(["'" + text] for text in cells)]


def test_tls_flags(tls_server: TlsServer) -> None:
    url = tls_server.server.url("/item?id=1").encode()
    verified = run_cli("--retries", "0", stdin=url)
    assert jsonl(verified.stdout)[0]["error"]["kind"] == "tls"
    assert verified.returncode == 1
    assert run_cli("-k", stdin=url).returncode == 0
    assert run_cli("--ca-bundle", tls_server.ca_pem, stdin=url).returncode == 0


def test_help_groups_options_under_headings() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    headings = ("Input:", "Concurrency and politeness:", "Timeouts and retries:", "Request:")
    for heading in (*headings, "Output:", "Scale out:", "Display:"):
        assert heading in result.output


@pytest.mark.parametrize("loop_flag", ["--uvloop", "--no-uvloop"])
def test_runs_on_either_event_loop(server: LoopbackServer, loop_flag: str) -> None:
    ids = "".join(f"{i}\n" for i in range(30)).encode()
    result = run_cli(loop_flag, "-t", server.url("/item?id={}"), "-q", stdin=ids)
    assert result.returncode == 0
    assert [r["index"] for r in jsonl(result.stdout)] == list(range(30))


_RUN_ONLY = ("fetchmany.cli.commandline",)
"""What only a run needs: click answers --help and --version while it parses, first."""


@pytest.mark.parametrize(
    ("args", "absent"),
    [
        (["-q", os.devnull], ("aiohttp", "rich", "urllib.request")),
        (["--version"], ("aiohttp", "rich", "asyncio", *_RUN_ONLY)),
        (["--help"], ("aiohttp", "rich", "asyncio", *_RUN_ONLY)),
    ],
)
def test_start_up_imports_only_what_the_run_needs(args: list[str], absent: tuple[str, ...]) -> None:
    """What start-up costs is mostly imports: aiohttp builds a TLS context as it is
    imported, so a run that fetches nothing must not import it."""
    script = (
        "import atexit, sys\n"
        "atexit.register(lambda: print(sorted(m for m in sys.modules if m in "
        f"{absent!r}), file=sys.stderr))\n"
        "from fetchmany.cli import main\n"
        f"main({args!r})\n"
    )
    env = {
        k: v for k, v in os.environ.items() if not k.endswith("_proxy") and not k.endswith("_PROXY")
    }
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, timeout=60, env=env
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.decode().splitlines()[-1] == "[]"


@pytest.mark.parametrize(
    ("alias", "long_form", "path"),
    [
        (["-I"], ["-X", "HEAD"], "/echo"),
        (["--head", "-X", "head"], ["-X", "HEAD"], "/echo"),
        (["-s"], ["-q"], "/item?id=1"),
        (["--silent"], ["--quiet"], "/status/404"),
        (["--retry", "1"], ["--retries", "1"], "/status/503"),
        (["-L"], [], "/redirect/2"),
        (["--location", "--max-redirects", "1"], ["--max-redirects", "1"], "/redirect/2"),
        (["--no-location"], ["--max-redirects", "0"], "/redirect/2"),
        (["--no-location", "--max-redirects", "0"], ["--max-redirects", "0"], "/redirect/2"),
        (["-m", "5"], ["--max-time", "5"], "/item?id=1"),
    ],
)
def test_curl_spellings_behave_as_their_long_forms(
    server: LoopbackServer, alias: list[str], long_form: list[str], path: str
) -> None:
    url = f"{server.url(path)}\n".encode()
    short = run_cli(*alias, "--backoff", "0", stdin=url)
    long = run_cli(*long_form, "--backoff", "0", stdin=url)
    assert short.returncode == long.returncode

    def shown(result: CliResult) -> list[dict[str, object]]:
        return [{k: v for k, v in r.items() if k != "elapsed_ms"} for r in jsonl(result.stdout)]

    assert shown(short) == shown(long)
    assert bool(short.stderr) == bool(long.stderr)  # -s is as quiet as -q


def test_max_time_bounds_each_item_against_a_server_that_never_answers(silent_url: str) -> None:
    """curl's --max-time, per item: with --timeout 30 and 3 retries an item could take
    two minutes; -m 1 ends each attempt at a second, under -P too. The records say so;
    the wall-clock bound only says the run did not wait for one --timeout (a loaded
    machine took 5 s to start -P's workers)."""
    for args in (["-m", "1"], ["-m", "1", "-P", "2"]):
        began = time.monotonic()
        result = run_process(
            "--timeout", "30", "--retries", "3", *args, stdin=f"{silent_url}\n".encode() * 2
        )
        took = time.monotonic() - began
        assert result.returncode == 1, result.stderr
        records = jsonl(result.stdout)
        assert [r["index"] for r in records] == [0, 1]
        for record in records:
            assert record["error"] == {
                "kind": "timeout",
                "message": "--max-time 1s ran out during attempt 1",
            }
            assert record["attempts"] == 1
        assert took < 25, args  # generous, and still below one --timeout


def _words(text: str) -> set[str]:
    return set(text.split())


@pytest.mark.parametrize("columns", [80, 120])
def test_help_reads_well_at_80_and_120_columns(columns: int) -> None:
    """One metavar style, one way of showing defaults, and lines wrapped only between
    words: every word of the help at this width is a word of the help unwrapped."""
    shown = run_process("--help", env={"COLUMNS": str(columns)})
    assert shown.returncode == 0
    text = shown.text
    click_metavars = r"(?<![=\w])(INTEGER|TEXT|FLOAT|PATH|RANGE|DIRECTORY|BOOLEAN|CHOICE)\b"
    assert re.search(click_metavars, text) is None
    assert "[default" not in text
    assert "x>=" not in text
    assert "[lines|" not in text  # choices are metavars like any other: lines|csv|jsonl
    assert all(len(line) <= columns for line in text.splitlines()), columns
    ctx = cli.make_context("fetchmany", [], max_content_width=10_000, terminal_width=10_000)
    unwrapped = cli.get_help(ctx)
    assert _words(text) <= _words(unwrapped), _words(text) - _words(unwrapped)
    assert "index, input, url, ok, status, final_url, content_type" in " ".join(text.split())
    for group in ("Timeouts and retries:", "Scale out:"):
        section = text.split(group)[1].split("\n\n")[0]
        assert ("--grace" in section) == (group == "Timeouts and retries:")
        assert ("--uvloop" in section) == (group == "Scale out:")


@pytest.mark.parametrize("columns", ["120", "70", "", "0", "-3", "x", " 90 ", "+90", "9.5"])
def test_help_is_as_wide_as_shutil_says_the_terminal_is(
    monkeypatch: pytest.MonkeyPatch, columns: str
) -> None:
    """--help tells the width without importing shutil, with shutil's answer: COLUMNS when
    it is a positive number, else the terminal's (80 when stdout is none)."""
    import shutil

    from fetchmany.cli.options import UnbrokenFormatter, terminal_columns

    monkeypatch.setenv("COLUMNS", columns)
    expected = shutil.get_terminal_size().columns
    assert terminal_columns() == expected
    if columns.strip().lstrip("+").isdigit() and int(columns):
        assert expected == int(columns)
    assert UnbrokenFormatter(max_width=100).width == max(min(expected, 100) - 2, 50)
    assert UnbrokenFormatter(width=33).width == 33
    monkeypatch.setattr(click.formatting, "FORCED_WIDTH", 44)
    assert UnbrokenFormatter(max_width=100).width == 44


def test_every_option_with_a_default_says_it_one_way() -> None:
    ctx = cli.make_context("fetchmany", [])
    for param in cli.params:
        record = param.get_help_record(ctx)
        if record is None or not isinstance(param, click.Option) or param.is_flag:
            continue
        names, words = record
        default = param.get_default(ctx, call=False)
        if default not in (None, ()) and type(default).__name__ != "Sentinel":
            assert re.search(r"Default: [^ ]", words), names
        if param.metavar is None:
            raise AssertionError(f"{names}: no metavar of its own")


def test_csv_safe_help_names_what_the_writer_prefixes() -> None:
    from fetchmany.output.writers import _FORMULA_STARTS

    shown = {"=": "=", "+": "+", "-": "-", "@": "@", "\t": "a tab", "\r": "a CR"}
    option = next(p for p in cli.params if p.name == "csv_safe")
    reference = (Path(__file__).parent.parent / "docs" / "reference.md").read_text()
    entry = reference.split("#### `--csv-safe`")[1].split("####")[0]
    for char in _FORMULA_STARTS:
        assert shown[char] in (option.help or ""), char
        assert shown[char] in entry, char


@pytest.mark.parametrize("body", ["json", "text", "base64", "auto"])
def test_a_head_answer_has_no_body_whatever_body_asks(server: LoopbackServer, body: str) -> None:
    """-I reads no body: the record's body is null (as its size), never an invalid_json
    made of the nothing that came, and picks are null."""
    url = f"{server.url('/item?id=1')}\n".encode()
    result = run_cli(
        "-I", "--body", body, "--pick", "id=id", "--fields", "status,ok,id,body,size", stdin=url
    )
    assert result.returncode == 0, result.stdout
    assert jsonl(result.stdout) == [
        {"status": 200, "ok": True, "id": None, "body": None, "size": None}
    ]


def test_a_run_sets_the_collector_for_many_short_lived_requests() -> None:
    """The command (not the library) freezes what start-up made and collects the
    youngest objects less often (``tune_collector``)."""
    import gc

    from fetchmany.cli.loop import YOUNG_OBJECTS

    assert gc.get_threshold()[0] != YOUNG_OBJECTS
    result = run_cli(stdin=b"not a url\n")
    assert result.returncode == 1
    assert gc.get_threshold()[0] == YOUNG_OBJECTS
    assert gc.get_freeze_count() > 0


def test_a_bug_is_one_line_with_credentials_masked_and_controls_escaped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An exception no code path expected (a bug) is one line and exit 70, never a
    traceback; its text may quote a URL as given, so its credentials are masked, and
    an escape sequence from the input is shown, not acted on. FETCHMANY_DEBUG=1 lets
    the traceback through for a report."""

    def bug(*args: object, **kwargs: object) -> None:
        raise RuntimeError("no host in http://alice:s3cret@h.test/\x1b[2J")

    monkeypatch.setattr(cli, "main", bug)
    result = run_cli("-q", stdin=b"")
    assert result.returncode == 70
    assert result.stdout == b""
    assert result.stderr == (
        "fetchmany: internal error: RuntimeError: no host in http://alice:****@h.test/\\x1b[2J "
        "(a bug; FETCHMANY_DEBUG=1 shows where, please report it)\n"
    )
    monkeypatch.setenv("FETCHMANY_DEBUG", "1")
    from fetchmany.cli import main

    with pytest.raises(RuntimeError, match="s3cret"):
        main(["-q"])


def test_a_message_shows_every_control_character_as_its_code() -> None:
    """What stderr carries from outside (a file name, a server's words) cannot drive the
    terminal: C0 controls, DEL and the C1 range (U+009B is an 8-bit CSI, as ESC [ is)
    are shown as \\xNN; a tab and a newline stay, and text beyond ASCII is itself."""
    from fetchmany.cli.command import printable

    assert printable("a\x1b[2J\x00\x7f") == "a\\x1b[2J\\x00\\x7f"
    assert printable("b\x9b2J\x80\x85\x9f") == "b\\x9b2J\\x80\\x85\\x9f"
    assert printable("tab\tline\nnaïve €") == "tab\tline\nnaïve €"
