"""--shard K/N and --merge: shard outputs merged equal the unsharded run, record for record."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import LoopbackServer, fetchmany_command, jsonl, run_cli
from shapes_server import Shape
from test_interrupt import wait_until
from yarl import URL

from fetchmany.input.sources import Item, Shard, host_shard
from fetchmany.output.merge import (
    MergeError,
    MoreAfterEnd,
    Torn,
    check_parts,
    merged,
    open_part,
    records_of,
)

TIMING = ("elapsed_ms",)


def ids_file(tmp_path: Path, server: LoopbackServer) -> Path:
    """IDs with a failure (a 500), a line that is no URL and a blank line among them."""
    lines = [server.url(f"/item?id={i}&max_ms=5") for i in range(17)]
    lines[4] = server.url("/status/500")
    lines[9] = "not a url"
    lines.insert(12, "")
    path = tmp_path / "urls.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def records(path: Path, fmt: str) -> list[dict[str, object]]:
    data = path.read_text()
    if fmt == "jsonl":
        rows: list[dict[str, object]] = jsonl(data.encode())
    elif fmt == "json":
        rows = json.loads(data)
    else:
        rows = list(csv.DictReader(io.StringIO(data, newline="")))
    for row in rows:
        for name in TIMING:
            row.pop(name, None)
    return rows


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv"])
@pytest.mark.parametrize("shards", [1, 3, 5])
def test_shards_merged_equal_the_unsharded_run(
    server: LoopbackServer, tmp_path: Path, fmt: str, shards: int
) -> None:
    urls = ids_file(tmp_path, server)
    whole = tmp_path / f"whole.{fmt}"
    assert run_cli(str(urls), "-q", "--retries", "0", "-o", str(whole)).returncode == 1
    parts = []
    for k in range(shards):
        part = tmp_path / f"part-{k}.{fmt}"
        run_cli(str(urls), "-q", "--retries", "0", "--shard", f"{k}/{shards}", "-o", str(part))
        parts.append(str(part))
        indexes = [int(str(r["index"])) for r in records(part, fmt)]
        assert indexes == list(range(k, 17, shards))  # global indexes, this shard's only
    out = tmp_path / f"merged.{fmt}"
    result = run_cli("--merge", *reversed(parts), "-o", str(out))
    assert result.returncode == 1  # a record is not ok, as in the unsharded run
    assert records(out, fmt) == records(whole, fmt)


def test_parts_in_one_format_merge_into_another(server: LoopbackServer, tmp_path: Path) -> None:
    urls = ids_file(tmp_path, server)
    whole = tmp_path / "whole.jsonl"
    run_cli(str(urls), "-q", "--retries", "0", "-o", str(whole))
    for k in range(2):
        fmt = "json" if k else "jsonl"
        run_cli(
            str(urls),
            "-q",
            "--retries",
            "0",
            "--shard",
            f"{k}/2",
            "-o",
            str(tmp_path / f"p{k}.{fmt}"),
        )
    out = tmp_path / "merged.jsonl"
    run_cli("--merge", str(tmp_path / "p0.jsonl"), str(tmp_path / "p1.json"), "-o", str(out))
    assert records(out, "jsonl") == records(whole, "jsonl")


def test_csv_parts_keep_every_error_message_through_a_merge(
    server: LoopbackServer, tmp_path: Path
) -> None:
    """CSV kept only an error's kind, so a merge of CSV parts lost every message; the
    message has a column of its own now, and comes back whole."""
    urls = ids_file(tmp_path, server)
    fields = ("--fields", "index,input,ok,status,error")
    whole = tmp_path / "whole.jsonl"
    run_cli(str(urls), "-q", "--retries", "0", *fields, "-o", str(whole))
    parts = []
    for k in range(2):
        part = tmp_path / f"p{k}.csv"
        run_cli(str(urls), "-q", "--retries", "0", *fields, "--shard", f"{k}/2", "-o", str(part))
        parts.append(str(part))
    out = tmp_path / "merged.jsonl"
    assert run_cli("--merge", *parts, "-o", str(out)).returncode == 1
    assert jsonl(out.read_bytes()) == jsonl(whole.read_bytes())
    errors = [r["error"] for r in jsonl(whole.read_bytes()) if r["error"]]
    assert {"kind": "http", "message": "500 Internal Server Error"} in errors
    assert {
        "kind": "invalid_url",
        "message": "not an http(s) URL; use --template to expand IDs",
    } in errors


def test_a_csv_part_from_before_the_message_column_merges_with_null_messages(
    tmp_path: Path,
) -> None:
    old = tmp_path / "old.csv"
    old.write_bytes(b"index,ok,error\r\n0,true,\r\n1,false,connect\r\n")
    result = run_cli("--merge", str(old), "-f", "jsonl")
    assert result.returncode == 1
    assert jsonl(result.stdout) == [
        {"index": 0, "ok": True, "error": None},
        {"index": 1, "ok": False, "error": {"kind": "connect", "message": None}},
    ]


def test_a_missing_shard_is_named_and_leaves_no_output(
    server: LoopbackServer, tmp_path: Path
) -> None:
    urls = ids_file(tmp_path, server)
    for k in (0, 2):
        run_cli(str(urls), "-q", "--shard", f"{k}/3", "-o", str(tmp_path / f"p{k}.jsonl"))
    out = tmp_path / "merged.jsonl"
    result = run_cli(
        "--merge", str(tmp_path / "p0.jsonl"), str(tmp_path / "p2.jsonl"), "-o", str(out)
    )
    assert result.returncode == 75
    assert (
        result.stderr
        == "fetchmany: index 1 is in no part; merge every shard, or pass --allow-gaps\n"
    )
    assert not out.exists()
    allowed = run_cli(
        "--merge",
        "--allow-gaps",
        str(tmp_path / "p0.jsonl"),
        str(tmp_path / "p2.jsonl"),
        "-o",
        str(out),
    )
    assert allowed.returncode in (0, 1)
    assert [r["index"] for r in records(out, "jsonl")] == [i for i in range(17) if i % 3 != 1]


def part_of(tmp_path: Path, name: str, indexes: list[int]) -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps({"index": i, "ok": True}) + "\n" for i in indexes))
    return path


@pytest.mark.parametrize(
    ("first", "second", "before", "expect"),
    [
        ([0, 2], [1, 4, 5], [0, 1, 2], None),  # 3 missing
        ([2, 4], [3], [], None),  # 0 and 1
        ([0, 2], [1, 3, 7], [0, 1, 2, 3], None),  # 4 to 6
        ([0, 2], [1], [0, 1, 2], 4),  # 3, after every part: only --expect sees it
        ([0, 2], [1], [0, 1, 2], 5),  # 3 and 4
    ],
)
def test_a_gap_stops_the_merge_after_the_records_before_it(
    tmp_path: Path, first: list[int], second: list[int], before: list[int], expect: int | None
) -> None:
    """Records come out up to the gap and no further; --allow-gaps gives them all."""
    parts = [
        open_part(str(part_of(tmp_path, f"p{n}.jsonl", p))) for n, p in enumerate((first, second))
    ]
    given: list[int] = []
    with pytest.raises(MergeError):
        given.extend(record["index"] for record in merged(parts, expect=expect))
    assert given == before
    allowed = [r["index"] for r in merged(parts, allow_gaps=True, expect=expect)]
    assert allowed == sorted(first + second)


def test_a_gap_leaves_the_previous_output_as_it_was(tmp_path: Path) -> None:
    """Exit 75, and -o's file untouched (no half merge in its place, no file beside it);
    the same parts merged with --allow-gaps replace it."""
    parts = [str(part_of(tmp_path, "p0.jsonl", [0, 2])), str(part_of(tmp_path, "p1.jsonl", [3]))]
    out = tmp_path / "out" / "merged.jsonl"
    out.parent.mkdir()
    out.write_text("the previous merge\n")
    result = run_cli("--merge", *parts, "-o", str(out))
    assert result.returncode == 75
    assert out.read_text() == "the previous merge\n"
    assert os.listdir(out.parent) == ["merged.jsonl"]
    assert run_cli("--merge", "--allow-gaps", *parts, "-o", str(out)).returncode == 0
    assert [r["index"] for r in jsonl(out.read_bytes())] == [0, 2, 3]


def test_a_shard_that_stopped_early_is_named_with_what_to_do(tmp_path: Path) -> None:
    """Every shard given, one stopped early: the merge names that part and says to resume
    it, rather than blaming the user for a shard not given."""
    for k in range(3):
        stop = 9 if k == 2 else 30  # shard 2 stopped after index 8
        rows = (json.dumps({"index": i, "ok": True}) for i in range(k, min(stop, 30), 3))
        (tmp_path / f"p{k}.jsonl").write_text("".join(f"{row}\n" for row in rows))
    parts = [str(tmp_path / f"p{k}.jsonl") for k in range(3)]
    result = run_cli("--merge", *parts, "-o", str(tmp_path / "all.jsonl"))
    assert result.returncode == 75
    assert result.stderr == (
        f"fetchmany: index 11 is in no part: {parts[2]} stops at index 8, so its shard "
        "stopped early; resume that shard (--resume) and merge again, or pass --allow-gaps "
        "to merge what is there\n"
    )
    # At the very end only --expect sees it; an empty part is named as well.
    (tmp_path / "p2.jsonl").write_text("")
    (tmp_path / "p0.jsonl").write_text('{"index": 0}\n')
    (tmp_path / "p1.jsonl").write_text('{"index": 1}\n')
    result = run_cli("--merge", *parts, "--expect", "3")
    assert result.returncode == 75
    assert f"index 2 is in no part (--expect 3): {parts[2]} holds no record" in result.stderr


def test_a_gap_on_stdout_comes_after_the_records_before_it_and_no_closing(
    tmp_path: Path,
) -> None:
    """What the docs promise for stdout, which cannot be replaced whole as -o is: the
    records before the gap have been streamed, a JSON array is left unclosed (so no
    reader takes it for a whole result), and the exit status says it failed."""
    for k in (0, 1):
        rows = (json.dumps({"index": i, "ok": True}) for i in range(k, 6000, 2) if i != 4001)
        (tmp_path / f"p{k}.jsonl").write_text("".join(f"{row}\n" for row in rows))
    parts = [str(tmp_path / "p0.jsonl"), str(tmp_path / "p1.jsonl")]
    result = run_cli("--merge", *parts, "-f", "json")
    assert result.returncode == 75
    assert result.stderr.startswith("fetchmany: index 4001 is in no part")
    with pytest.raises(json.JSONDecodeError):
        json.loads(result.stdout)
    streamed = json.loads(result.stdout.rstrip().rstrip(b",") + b"]")
    assert [r["index"] for r in streamed] == list(range(len(streamed)))
    assert len(streamed) <= 4001


def test_a_part_an_editor_saved_with_a_bom_is_refused_saying_so(tmp_path: Path) -> None:
    part = tmp_path / "p.jsonl"
    part.write_bytes(b'\xef\xbb\xbf{"index": 0, "ok": true}\n')
    for args in (["--merge", str(part)], ["-o", str(part), "--resume"]):
        result = run_cli(*args, stdin=b"")
        assert result.returncode == 2
        assert "starts with a byte-order mark" in result.stderr
        assert part.read_bytes().startswith(b"\xef\xbb\xbf")


def test_a_part_given_twice_is_a_repeated_index(tmp_path: Path) -> None:
    part = tmp_path / "p.jsonl"
    part.write_text('{"index": 0, "ok": true}\n{"index": 1, "ok": true}\n')
    result = run_cli("--merge", str(part), str(part))
    assert result.returncode == 75
    assert "index 0 appears twice" in result.stderr


def test_parts_with_different_fields_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text('{"index": 0, "ok": true}\n')
    (tmp_path / "b.jsonl").write_text('{"index": 1, "status": 200}\n')
    result = run_cli("--merge", str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl"))
    assert result.returncode == 2
    assert "has fields index,status but" in result.stderr


@pytest.mark.parametrize(
    "content",
    [
        '{"index": 2}\n{"index": 1}\n',
        '{"ok": true}\n',
        '{"index": "0"}\n',
        "[1]\n",
        '{"index": -1}\n',
        '{"index": 0, "ok": true}\n{"index": 1}\n',  # a field short: it would merge as null
        '{"index": 0}\n' + "[" * 100_000 + "\n",  # was a RecursionError: exit 70
    ],
)
def test_a_part_out_of_order_or_without_indexes_is_refused(tmp_path: Path, content: str) -> None:
    part = tmp_path / "p.jsonl"
    part.write_text(content)
    with pytest.raises(MergeError):
        list(merged([open_part(str(part))]))


@pytest.mark.parametrize(
    ("name", "content", "whole"),
    [
        ("p.jsonl", '{"index": 0}\n{"index": 1}\n{"ind', [0, 1]),
        ("p.json", '[\n{"index": 0},\n{"index": 1}', [0]),  # no closing bracket: never finished
        ("p.json", '[\n{"index": 0},\n{"index": 1}\n', [0, 1]),  # whole lines, still no ]
        ("p.csv", "index,ok\r\n0,true\r\n1,tr", [0]),
        # Cut right after a CRLF inside a quoted cell (a body with line breaks): it ends in
        # CRLF as a whole row would, but its quote is open; never merged with half a body.
        ("p.csv", 'index,ok,body\r\n0,true,"a\r\nb"\r\n1,true,"a\r\n', [0]),
    ],
)
def test_a_part_cut_short_is_an_error_unless_gaps_are_allowed(
    tmp_path: Path, name: str, content: str, whole: list[int]
) -> None:
    part = tmp_path / name
    part.write_text(content, newline="")
    out = tmp_path / "out.jsonl"
    result = run_cli("--merge", str(part), "-o", str(out))
    assert result.returncode == 75
    assert f"{part} ends in a torn record" in result.stderr
    assert not out.exists()
    allowed = run_cli("--merge", "--allow-gaps", str(part), "-o", str(out))
    assert allowed.returncode == 0
    assert [r["index"] for r in jsonl(out.read_bytes())] == whole


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("p.json", b"["),
        ("p.csv", b"index,in"),
        ("p.csv", b"index,ok\r"),
        ("p.csv", b"index,"),
        ("p.jsonl", b'{"ind'),
    ],
)
def test_a_part_cut_before_its_first_record_is_torn(
    tmp_path: Path, name: str, content: bytes
) -> None:
    part = tmp_path / name
    part.write_bytes(content)
    whole = tmp_path / "whole.jsonl"
    whole.write_text('{"index": 0, "ok": true}\n')
    result = run_cli("--merge", str(part), str(whole))
    assert result.returncode == 75
    assert result.stderr == (
        f"fetchmany: {part} ends in a torn record (its shard was interrupted): resume "
        "that shard (--resume) and merge again, or pass --allow-gaps to merge what is there\n"
    )


def test_csv_safe_parts_are_refused_and_csv_safe_goes_to_the_merge(
    server: LoopbackServer, tmp_path: Path
) -> None:
    """--csv-safe adds a ' that cannot be told from data (=x and 'x both end as '=x), so
    a merge of such parts would not be what one run writes: it is refused, saying what
    to do instead, and that way gives exactly the one --csv-safe run."""
    ids = b"=1+2\n-3\n@sum\n5\n"
    template = server.url("/item?id={}&max_ms=1")
    common = ("-t", template, "-q", "--fields", "index,input,ok,status")
    whole = tmp_path / "whole.csv"
    assert run_cli(*common, "--csv-safe", "-o", str(whole), stdin=ids).returncode == 0
    for safe in (True, False):
        for k in range(2):
            part = tmp_path / f"{'safe' if safe else 'plain'}-{k}.csv"
            flags = ("--csv-safe",) if safe else ()
            args = (*common, *flags, "--shard", f"{k}/2", "-o", str(part))
            assert run_cli(*args, stdin=ids).returncode == 0
    out = tmp_path / "merged.csv"
    safe_parts = [str(tmp_path / f"safe-{k}.csv") for k in range(2)]
    refused = run_cli("--merge", *safe_parts, "-o", str(out))
    assert refused.returncode == 75
    assert refused.stderr == (
        f'fetchmany: {safe_parts[0]}: row 1 has input "\'=1+2", as --csv-safe writes a '
        "formula, and its ' cannot be told from data; write the shards without --csv-safe "
        "(and give it to the merge), or as JSON Lines if their data starts so\n"
    )
    assert not out.exists()
    plain_parts = [str(tmp_path / f"plain-{k}.csv") for k in range(2)]
    merged_ = run_cli("--merge", *plain_parts, "--csv-safe", "-o", str(out))
    assert merged_.returncode == 0, merged_.stderr
    assert out.read_bytes() == whole.read_bytes()


def test_a_malformed_row_inside_a_csv_part_is_an_error_not_its_end(tmp_path: Path) -> None:
    part = tmp_path / "p.csv"
    part.write_text("index,ok\r\n0,true\r\n1,true,extra\r\n2,true\r\n", newline="")
    result = run_cli("--merge", "--allow-gaps", str(part))
    assert result.returncode == 75
    assert "has 3 cells, not 2" in result.stderr


def test_expect_catches_records_missing_after_every_part(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text('{"index": 0}\n{"index": 2}\n')
    (tmp_path / "b.jsonl").write_text('{"index": 1}\n')
    parts = [str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")]
    assert run_cli("--merge", *parts, "--expect", "3").returncode == 0
    short = run_cli("--merge", *parts, "--expect", "5")
    assert short.returncode == 75
    assert "index 3 to 4 is in no part (--expect 5)" in short.stderr
    assert run_cli("--merge", *parts, "--expect", "2").returncode == 75
    assert run_cli("--expect", "3", stdin=b"").returncode == 2


def test_more_parts_than_open_files_is_a_clear_error(tmp_path: Path) -> None:
    for k in range(150):
        (tmp_path / f"p{k:03d}.jsonl").write_text(f'{{"index": {k}}}\n')
    command = " ".join(fetchmany_command())
    result = subprocess.run(
        ["bash", "-c", f"ulimit -n 100; cd {tmp_path} && {command} --merge p*.jsonl -q"],
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert b"merge them in groups" in result.stderr
    assert b"Traceback" not in result.stderr


def test_an_empty_shard_merges_as_nothing(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text('{"index": 0}\n')
    (tmp_path / "b.jsonl").write_text("")
    parts = [open_part(str(tmp_path / name)) for name in ("a.jsonl", "b.jsonl")]
    assert [r["index"] for r in merged(parts)] == [0]


@pytest.mark.parametrize(
    "args",
    [
        ["--merge", "-t", "http://h.test/{}"],
        ["--merge", "--shard", "0/2"],
        ["--merge", "--resume"],
        ["--merge", "--limit", "5"],
        ["--allow-gaps"],
        ["--shard", "2/2"],
        ["--shard", "1"],
        ["--shard", "-1/2"],
    ],
)
def test_scale_out_misuse_is_a_usage_error(tmp_path: Path, args: list[str]) -> None:
    part = tmp_path / "p.jsonl"
    part.write_text('{"index": 0}\n')
    result = run_cli(*args, str(part))
    assert result.returncode == 2
    assert result.stdout == b""


def test_merge_reads_named_files_not_stdin() -> None:
    result = run_cli("--merge", stdin=b'{"index": 0}\n')
    assert result.returncode == 2
    assert "name them" in result.stderr


def test_a_sharded_run_resumes_its_own_file(server: LoopbackServer, tmp_path: Path) -> None:
    urls = ids_file(tmp_path, server)
    out = tmp_path / "p1.jsonl"
    head = [line for i, line in enumerate(urls.read_text().splitlines(keepends=True)) if i < 8]
    (tmp_path / "head.txt").write_text("".join(head))
    run_cli(str(tmp_path / "head.txt"), "-q", "--retries", "0", "--shard", "1/3", "-o", str(out))
    assert [r["index"] for r in records(out, "jsonl")] == [1, 4, 7]
    resumed = run_cli(
        str(urls), "-q", "--retries", "0", "--shard", "1/3", "-o", str(out), "--resume"
    )
    assert resumed.returncode == 1  # index 4 is the 500
    assert [r["index"] for r in records(out, "jsonl")] == list(range(1, 17, 3))


@pytest.mark.parametrize(
    ("text", "shard"), [("0/1", Shard(0, 1)), ("3/4", Shard(3, 4)), (" 1/2 ", Shard(1, 2))]
)
def test_shard_parsing(text: str, shard: Shard) -> None:
    assert Shard.parse(text) == shard


@pytest.mark.parametrize(
    ("shard", "total", "size"), [(Shard(0, 3), 10, 4), (Shard(2, 3), 10, 3), (Shard(4, 5), 3, 0)]
)
def test_a_shard_knows_its_share_of_a_total(shard: Shard, total: int, size: int) -> None:
    assert shard.size(total) == size
    assert sum(1 for i in range(total) if shard.holds(i)) == size


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_merge_stopped_by_a_signal_leaves_no_trace(tmp_path: Path, sig: int) -> None:
    """-o is written aside and renamed when whole: stopped midway, no temporary file is
    left, and no output (a merge has nothing worth keeping half done)."""
    part = tmp_path / "p.jsonl"
    part.write_text("".join(f'{{"index":{i},"ok":true}}\n' for i in range(300_000)))
    out = tmp_path / "all.jsonl"
    proc = subprocess.Popen(
        [*fetchmany_command(), "--merge", str(part), "-o", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    wait_until(lambda: any(path.name.endswith(".part") for path in tmp_path.iterdir()))
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, stderr
    assert b"Traceback" not in stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["p.jsonl"]


# ------------------------------------------------------------- --shard-by host


def test_a_host_is_in_one_shard_whatever_else_its_url_says() -> None:
    """Scheme, host (in any case) and port decide; path, query and credentials do not.
    The hash is stable: it must be the same on every machine and every release, or the
    shards of one job (and a resumed shard) would disagree."""
    shard = host_shard(URL("http://Api.Example.test:8080/a?x=1"), 1000)
    assert host_shard(URL("http://api.example.test:8080/b/c"), 1000) == shard
    assert host_shard(URL("http://user:pw@API.EXAMPLE.TEST:8080/"), 1000) == shard
    assert host_shard(URL("https://api.example.test:8080/"), 1000) != shard
    assert [host_shard(URL(f"http://h{n}.test/"), 7) for n in range(8)] == [
        _expected_shard(f"http://h{n}.test:80", 7) for n in range(8)
    ]


def _expected_shard(origin: str, count: int) -> int:
    """The documented rule, written out: blake2b-64 of scheme://host:port, mod N."""
    import hashlib

    digest = hashlib.blake2b(origin.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


def test_an_item_without_a_url_goes_by_its_index() -> None:
    shard = Shard(1, 3, by_host=True)
    invalid = Item(index=7, input="not a url", url=None)
    assert shard.holds_item(invalid)  # 7 mod 3 == 1
    assert not Shard(0, 3, by_host=True).holds_item(invalid)


def test_shards_by_host_keep_each_host_in_one_and_merge_to_the_unsharded_run(
    serve: Callable[..., LoopbackServer], tmp_path: Path
) -> None:
    """Two shards on one machine, run at once, against four loopback hosts: with
    --per-host 2, no host ever sees more than 2 at once (by index, both shards would send
    it 2 each); and the merged parts equal one run of the whole list."""
    hosts = [Shape("jitter", jitter=(0.02, 0.03)) for _ in range(4)]
    urls = [serve(host.app()).url("/item?id=") for host in hosts]
    lines = [f"{urls[i % 4]}{i}" for i in range(160)]
    lines[33] = "not a url"
    source = tmp_path / "urls.txt"
    source.write_text("\n".join(lines) + "\n")
    common = [str(source), "-q", "--per-host", "2", "--limit", "8", "--body", "none"]
    by_host = ["--shard-by", "host"]
    shards = [
        subprocess.Popen(
            [*fetchmany_command(), *common, *by_host, "--shard", f"{k}/2", "-o", str(part)]
        )
        for k, part in enumerate(tmp_path / f"part-{k}.jsonl" for k in range(2))
    ]
    # The invalid line (index 33, by its index: shard 1) is the one record not ok.
    assert [shard.wait(60) for shard in shards] == [0, 1]
    assert all(host.max_present <= 2 for host in hosts), [h.max_present for h in hosts]
    for k in range(2):  # each host's items all in one part, in index order
        indexes = [int(str(r["index"])) for r in records(tmp_path / f"part-{k}.jsonl", "jsonl")]
        assert indexes == sorted(indexes)
    merged_out = tmp_path / "merged.jsonl"
    parts = [str(tmp_path / f"part-{k}.jsonl") for k in range(2)]
    assert run_cli("--merge", *parts, "--expect", "160", "-o", str(merged_out)).returncode == 1
    whole = tmp_path / "whole.jsonl"
    assert run_cli(*common, "-o", str(whole)).returncode == 1
    assert records(merged_out, "jsonl") == records(whole, "jsonl")


def test_a_shard_by_host_resumes(serve: Callable[..., LoopbackServer], tmp_path: Path) -> None:
    """Its indexes are not every Nth: a resumed file is checked for order, not for a
    stride, and continues where it stopped."""
    hosts = [Shape("jitter", jitter=(0.0, 0.002)) for _ in range(3)]
    urls = [serve(host.app()).url("/item?id=") for host in hosts]
    source = tmp_path / "urls.txt"
    source.write_text("".join(f"{urls[i % 3]}{i}\n" for i in range(60)))
    mine = host_shard(URL(urls[0]), 2)  # a shard with items, whichever the ports make it
    args = [str(source), "-q", "--shard", f"{mine}/2", "--shard-by", "host", "--body", "none"]
    full = tmp_path / "full.jsonl"
    assert run_cli(*args, "-o", str(full)).returncode == 0
    part = tmp_path / "part.jsonl"
    kept = full.read_bytes().splitlines(keepends=True)
    part.write_bytes(b"".join(kept[: len(kept) // 2]) + kept[len(kept) // 2][:9])  # torn
    assert run_cli(*args, "-o", str(part), "--resume").returncode == 0
    assert records(part, "jsonl") == records(full, "jsonl")


def test_shard_by_host_needs_a_shard() -> None:
    result = run_cli("--shard-by", "host", stdin=b"")
    assert result.returncode == 2
    assert "--shard-by goes with --shard" in result.stderr


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--shard-by", "index"], "--shard-by goes with --shard K/N"),
        (["--merge", "{part}", "--shard-by", "host"], "--shard-by does nothing with --merge"),
    ],
)
def test_shard_by_in_the_wrong_place_is_a_usage_error(
    args: list[str], said: str, tmp_path: Path
) -> None:
    part = tmp_path / "a.jsonl"
    part.write_text('{"index": 0}\n')
    result = run_cli(*(arg.format(part=part) for arg in args), stdin=b"")
    assert result.returncode == 2
    assert said in result.stderr


def test_data_that_reads_as_csv_safe_output_is_refused_not_changed(tmp_path: Path) -> None:
    """Found by the property suite's long profile: a body of ``'\\r\\n`` in a CSV part
    written without --csv-safe reads as --csv-safe's neutralised ``\\r\\n``. The merge
    cannot tell which it is, so it refuses and says what to do (exit 75, nothing
    written), rather than pass on a ' that may not be the data's."""
    part = tmp_path / "p0.csv"
    part.write_bytes(b'index,input,body\r\n0,a,"\'\r\n"\r\n')
    out = tmp_path / "out.jsonl"
    result = run_cli("--merge", str(part), "-o", str(out))
    assert result.returncode == 75, result.stderr
    assert "cannot be told from data" in result.stderr
    assert "as JSON Lines" in result.stderr
    assert not out.exists()


def test_a_part_on_a_pipe_or_fifo_is_refused_not_lost(tmp_path: Path) -> None:
    """Found by a hostile tester: ``--merge <(cat p0.jsonl) <(cat p1.jsonl)`` said
    "Merged 0 records" with exit 0 (the format check had read the pipe's start, the
    records read found it empty); a FIFO with no writer hung. A part is read more
    than once, so only a regular file will do: told before anything is read."""
    part = part_of(tmp_path, "p0.jsonl", [0])
    fifo = tmp_path / "p1.jsonl"
    os.mkfifo(fifo)
    read, write = os.pipe()
    try:
        for other in (str(fifo), f"/dev/fd/{read}"):
            os.write(write, b'{"index": 1, "ok": true}\n')
            result = run_cli("--merge", str(part), other, "-o", str(tmp_path / "m.jsonl"))
            assert result.returncode == 2, result.stderr
            assert f"{other} is not a regular file" in result.stderr
            assert not (tmp_path / "m.jsonl").exists()
    finally:
        os.close(read)
        os.close(write)


@pytest.mark.parametrize(
    ("error", "cells"),
    [
        ("x", ["x", ""]),
        ([1], ["[1]", ""]),
        (5, ["5", ""]),
        (True, ["true", ""]),
        ({}, ["", ""]),
        ({"message": "m"}, ["", "m"]),
        ({"kind": "http", "message": "404 Not Found"}, ["http", "404 Not Found"]),
    ],
)
def test_an_error_of_any_shape_merges_into_csv(
    tmp_path: Path, error: object, cells: list[str]
) -> None:
    """Found by a hostile tester: a JSON Lines part whose ``error`` was not an object with
    a ``kind`` (edited by hand) ended a merge into CSV with an internal error (exit 70)."""
    part = tmp_path / "p.jsonl"
    part.write_text(json.dumps({"index": 0, "ok": False, "error": error}) + "\n")
    result = run_cli("--merge", str(part), "-f", "csv")
    assert result.returncode == 1, result.stderr  # merged whole, and its record not ok
    rows = list(csv.DictReader(io.StringIO(result.stdout.decode())))
    assert [rows[0]["error"], rows[0]["error_message"]] == cells


def test_two_arrays_in_one_part_are_refused_not_cut(tmp_path: Path) -> None:
    """Found by a hostile tester: ``cat p0.json p1.json > both.json`` merged as p0's
    records alone (what followed the first ] was dropped), with --allow-gaps exit 0."""
    one = '[\n{"index": 0, "ok": true},\n{"index": 2, "ok": true}\n]\n'
    other = '[\n{"index": 1, "ok": true}\n]\n'
    both = tmp_path / "both.json"
    both.write_text(one + other)
    result = run_cli("--merge", str(both), "--allow-gaps")
    assert result.returncode == 75, result.stderr  # a damaged part: the merge is not whole
    assert f"{both}: more follows the array's closing ] (line 4)" in result.stderr
    alone = tmp_path / "one.json"
    alone.write_text(one + "\n")  # a blank line after it is no record
    assert run_cli("--merge", str(alone), "--allow-gaps").returncode == 0
    # The first an empty shard's: its [] was taken for the whole part, exit 0, 0 records.
    both.write_text("[]\n" + other)
    result = run_cli("--merge", str(both), "--allow-gaps")
    assert result.returncode == 75, result.stderr
    assert f"{both}: more follows the array's closing ] (line 1)" in result.stderr
    assert result.stdout == b""
    alone.write_text("[]\n\n")
    empty = run_cli("--merge", str(alone), "-f", "jsonl")
    assert (empty.returncode, empty.stdout) == (0, b"")


# ------------------------------------------------- what a merge says, in process


def jl(*indexes: int) -> bytes:
    """A JSON Lines part holding these indexes, each record ``ok``."""
    return b"".join(b'{"index": %d, "ok": true}\n' % i for i in indexes)


_STOPPED = (
    ", so its shard stopped early; resume that shard (--resume) and merge again, "
    "or pass --allow-gaps to merge what is there"
)
_OTHERWISE = "; merge every shard, or pass --allow-gaps"


def write_parts(tmp_path: Path, contents: tuple[bytes | str, ...]) -> list[str]:
    """Each part's path: its bytes written, or "fifo" (a named pipe), or "missing"."""
    paths = []
    for number, content in enumerate(contents):
        path = tmp_path / f"p{number}.part"
        if content == "fifo":
            os.mkfifo(path)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        paths.append(str(path))
    return paths


def merge_all(paths: list[str], **options: Any) -> list[dict[str, Any]]:
    """What ``--merge`` does with its parts, in process: opened, fields checked, merged."""
    parts = [open_part(path) for path in paths]
    check_parts(parts)
    return list(merged(parts, **options))


@pytest.mark.parametrize(
    ("contents", "options", "message"),
    [
        ((jl(0, 1, 2, 3, 7),), {}, "index 4 to 6 is in no part" + _OTHERWISE),
        ((jl(0, 2), jl(1, 4, 5)), {}, "index 3 is in no part" + _OTHERWISE),
        ((jl(0, 1), jl(2)), {"expect": 4}, "index 3 is in no part (--expect 4)" + _OTHERWISE),
        ((jl(0, 1), jl(2)), {"expect": 5}, "index 3 to 4 is in no part (--expect 5)" + _OTHERWISE),
        ((jl(0, 1, 2),), {"expect": 2}, "the parts hold index 2, beyond --expect 2"),
        ((jl(0, 1), jl(1)), {}, "index 1 appears twice (again in one of the parts)"),
        # Twice with different outcomes (a shard run twice): records differ, never compared.
        (
            (jl(0, 1), b'{"index": 1, "ok": false}\n'),
            {},
            "index 1 appears twice (again in one of the parts)",
        ),
        ((jl(0, 0),), {}, "{0}: index 0 after 0; a part must be in index order"),
        (
            (jl(0, 2, 1),),
            {"allow_gaps": True},
            "{0}: index 1 after 2; a part must be in index order",
        ),
        # The part that stopped short is found by its own stride (4 here, not the
        # number of parts): shards by host, or some shards of a run merged first.
        (
            (jl(0, 4), jl(1, 2, 3, 5, 6, 7, 9)),
            {},
            "index 8 is in no part: {0} stops at index 4" + _STOPPED,
        ),
        ((jl(0, 2), b""), {}, "index 1 is in no part: {1} holds no record" + _STOPPED),
        # An empty part's shard would have held an index below the number of parts.
        ((jl(0, 1, 3), b""), {}, "index 2 is in no part" + _OTHERWISE),
        ((b'{"index": -1, "ok": true}\n',), {}, "{0}: record 0 has no index of 0 or more"),
        (
            (jl(0) + b'{"index": true, "ok": true}\n',),
            {},
            "{0}: record 1 has no index of 0 or more",
        ),
        (
            (b'{"index": 0, "ok": true, "status": 200}\n{"index": 1, "ok": true}\n',),
            {},
            "{0}: record 1 has fields index,ok, but the part's first has index,ok,status",
        ),
        (
            (b'{"index": 0, "ok": true, "status": 200}\n',) * 2 + (jl(1),),
            {"allow_gaps": True},
            "{2} has fields index,ok but {0} has index,ok,status; merge parts written with "
            "the same --fields",
        ),
        ((b'{"ok": true}\n',), {}, "{0} has no index field; shards must be written with index"),
        ((b"[x\n",), {}, "{0}: not a JSON array written by fetchmany"),
        ((b'[\n{"index": 0, "ok": true},\nnope\n]\n',), {}, "{0}: line 3 is not a JSON record"),
        ((jl(0) + b"nope\n",), {}, "{0}: line 2 is not a JSON record"),
        ((jl(0) + b"[1]\n",), {}, "{0}: line 2 is not a record (a JSON object)"),
        (
            (b'index,ok\r\n0,true\r\n"1"x,true\r\n2,true\r\n',),
            {},
            "{0}: the row after byte 18 is not CSV",
        ),
        (
            (b"index,input\r\n0,'=SUM(A1:A9)+SUM(B1:B9)\r\n",),
            {},
            '{0}: row 1 has input "\'=SUM(A1:A9)+SUM(B1:", as --csv-safe writes a formula, '
            "and its ' cannot be told from data; write the shards without --csv-safe (and "
            "give it to the merge), or as JSON Lines if their data starts so",
        ),
        ((jl(0), "missing"), {}, "cannot read {1}: No such file or directory"),
        (
            (jl(0), "fifo"),
            {},
            "{1} is not a regular file: records are read from it more than once, which a "
            "pipe cannot do; save them to a file first",
        ),
    ],
)
def test_a_merge_refuses_saying_exactly_which_part_and_why(
    tmp_path: Path, contents: tuple[bytes | str, ...], options: dict[str, Any], message: str
) -> None:
    """The whole message, since it is what tells the user which shard to run again."""
    paths = write_parts(tmp_path, contents)
    with pytest.raises(MergeError) as refused:
        merge_all(paths, **options)
    assert type(refused.value) is MergeError
    assert str(refused.value) == message.format(*paths)


@pytest.mark.parametrize("empty", [b"[]\n", b"[\n]\n"])
def test_an_empty_array_and_more_in_one_part_is_refused_not_cut(
    tmp_path: Path, empty: bytes
) -> None:
    """``cat p0.json p1.json`` where p0 is an empty shard's array: p1's records were
    dropped without a word (exit 0, even without --allow-gaps). Opened, it is a part
    like any other; merged, it is refused as damaged, gaps allowed or not."""
    (path,) = write_parts(tmp_path, (empty + b'[\n{"index": 0, "ok": true}\n]\n',))
    part = open_part(path)
    for allow_gaps in (False, True):
        with pytest.raises(MoreAfterEnd) as refused:
            list(merged([part], allow_gaps=allow_gaps))
        line = empty.count(b"\n")
        assert str(refused.value) == f"{path}: more follows the array's closing ] (line {line})"


def test_a_part_that_is_a_file_but_cannot_be_read_is_refused_saying_why() -> None:
    """A regular file whose read fails (/proc/self/mem at 0: EIO; a disk error, a
    file unreadable to this user, which root running the tests cannot make)."""
    with pytest.raises(MergeError) as refused:
        open_part("/proc/self/mem")
    assert str(refused.value) == "cannot read /proc/self/mem: Input/output error"


@pytest.mark.parametrize("content", [b"hello\n", b"\x00\x01binary", b"<html>\n"])
def test_a_part_that_is_not_records_is_refused_saying_what_a_part_is(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "part.txt"
    path.write_bytes(content)
    with pytest.raises(MergeError) as refused:
        open_part(str(path))
    assert str(refused.value) == (
        f"{path} is not records fetchmany wrote (JSON Lines, a JSON array or CSV)"
    )


def test_a_torn_part_is_refused_as_torn_in_process(tmp_path: Path) -> None:
    (path,) = write_parts(tmp_path, (jl(0) + b'{"ind',))
    with pytest.raises(Torn) as refused:
        list(merged([open_part(path)]))
    assert str(refused.value) == (
        f"{path} ends in a torn record (its shard was interrupted): resume that shard "
        "(--resume) and merge again, or pass --allow-gaps to merge what is there"
    )
    assert list(merged([open_part(path)], allow_gaps=True)) == [{"index": 0, "ok": True}]


@pytest.mark.parametrize(
    ("contents", "records"),
    [
        ((b"[]",), []),  # an empty array whose newline was stripped
        ((b'[\n{"index": 0, "ok": true}\n]',), [{"index": 0, "ok": True}]),
        # A cell that is not a boolean stays as it is, not null.
        (
            (b"index,ok,unchanged\r\n0,yes,false\r\n1,true,maybe\r\n",),
            [
                {"index": 0, "ok": "yes", "unchanged": False},
                {"index": 1, "ok": True, "unchanged": "maybe"},
            ],
        ),
        (
            (
                b"index,ok,status,error,error_message\r\n0,true,200,,\r\n"
                b"3,false,,connect,refused\r\n",
                b'[\n{"index": 1, "ok": true, "status": 201, "error": null}\n]\n',
                b'{"index": 2, "ok": false, "status": 500, "error": {"kind": "http", '
                b'"message": "500"}}\n',
            ),
            [
                {"index": 0, "ok": True, "status": 200, "error": None},
                {"index": 1, "ok": True, "status": 201, "error": None},
                {
                    "index": 2,
                    "ok": False,
                    "status": 500,
                    "error": {"kind": "http", "message": "500"},
                },
                {
                    "index": 3,
                    "ok": False,
                    "status": None,
                    "error": {"kind": "connect", "message": "refused"},
                },
            ],
        ),
    ],
)
def test_parts_of_each_shape_merge_to_exactly_their_records(
    tmp_path: Path, contents: tuple[bytes, ...], records: list[dict[str, Any]]
) -> None:
    assert merge_all(write_parts(tmp_path, contents), expect=len(records)) == records


@pytest.mark.parametrize(
    ("cells", "read"),
    [
        ("0,200,12,1,3.5", {"status": 200, "size": 12, "attempts": 1, "elapsed_ms": 3.5}),
        ("0,-1,0,10,1e-05", {"status": -1, "size": 0, "attempts": 10, "elapsed_ms": 1e-05}),
        ("0,,,,12.0", {"status": None, "size": None, "attempts": None, "elapsed_ms": 12.0}),
        # Numbers as Python reads them, never as fetchmany writes them: kept as they are,
        # not changed into another number (1_0 into 10) or into null (nan, inf).
        (
            "0,1_0,\u0661,+1,nan",
            {"status": "1_0", "size": "\u0661", "attempts": "+1", "elapsed_ms": "nan"},
        ),
        ("0, 200,12 ,1,inf", {"status": " 200", "size": "12 ", "attempts": 1, "elapsed_ms": "inf"}),
        ("0,200,12,1,1_0.5", {"status": 200, "size": 12, "attempts": 1, "elapsed_ms": "1_0.5"}),
        (
            "0,200,12,1,-Infinity",
            {"status": 200, "size": 12, "attempts": 1, "elapsed_ms": "-Infinity"},
        ),
        # Digits Python reads as a number that str() and repr() never write: 01 was 1,
        # -0 was 0, 1e3 was 1000.0, and 1e400 (inf) was null in the merged JSON.
        ("0,01,-0,007,1e3", {"status": "01", "size": "-0", "attempts": "007", "elapsed_ms": "1e3"}),
        ("0,200,12,1,1e400", {"status": 200, "size": 12, "attempts": 1, "elapsed_ms": "1e400"}),
        ("0,200,12,1,01.5", {"status": 200, "size": 12, "attempts": 1, "elapsed_ms": "01.5"}),
        ("0,200,12,1,-0.0", {"status": 200, "size": 12, "attempts": 1, "elapsed_ms": -0.0}),
        ("0,200,12,1,1e+16", {"status": 200, "size": 12, "attempts": 1, "elapsed_ms": 1e16}),
    ],
)
def test_csv_numbers_are_read_back_only_as_fetchmany_writes_them(
    tmp_path: Path, cells: str, read: dict[str, Any]
) -> None:
    header = "index,status,size,attempts,elapsed_ms\r\n"
    (path,) = write_parts(tmp_path, ((header + cells + "\r\n").encode(),))
    assert merge_all([path]) == [{"index": 0, **read}]


@pytest.mark.parametrize("cell", ["1_0", "01", "+1"])
def test_a_csv_index_python_would_read_as_a_number_is_no_index(tmp_path: Path, cell: str) -> None:
    """``1_0`` was merged as index 10, ``01`` as index 1."""
    (path,) = write_parts(tmp_path, (f"index,ok\r\n0,true\r\n{cell},true\r\n".encode(),))
    with pytest.raises(MergeError) as refused:
        merge_all([path], allow_gaps=True)
    assert str(refused.value) == f"{path}: record 1 has no index of 0 or more"
    out = tmp_path / "all.jsonl"
    result = run_cli("--merge", path, "--allow-gaps", "-o", str(out))
    assert result.returncode == 75
    assert result.stderr == f"fetchmany: {path}: record 1 has no index of 0 or more\n"
    assert not out.exists()


def test_a_csv_number_of_more_digits_than_python_reads_stays_text(tmp_path: Path) -> None:
    """A hand-edited 5000-digit size ended the merge with an internal error (exit 70):
    int() refuses more than 4300 digits, which str() cannot write either."""
    digits = "9" * 5000
    (part,) = write_parts(tmp_path, (f"index,size\r\n0,{digits}\r\n".encode(),))
    out = tmp_path / "all.jsonl"
    result = run_cli("--merge", part, "-o", str(out))
    assert (result.returncode, result.stderr) == (0, "Merged 1 records from 1 parts\n")
    assert jsonl(out.read_bytes()) == [{"index": 0, "size": digits}]


def test_records_of_refuses_csv_safe_cells_unless_told_they_are_neutralised(
    tmp_path: Path,
) -> None:
    """What a merge reads by default; --refresh (neutralised) takes the cell as it stands."""
    (path,) = write_parts(tmp_path, (b"index,input\r\n0,'=1+2\r\n",))
    part = open_part(path)
    with pytest.raises(MergeError, match='row 1 has input "\'=1\\+2", as --csv-safe'):
        list(records_of(part))
    assert list(records_of(part, neutralised=True)) == [{"index": 0, "input": "'=1+2"}]
