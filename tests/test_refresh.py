"""``--refresh PREVIOUS``: conditional requests from a previous output, against a real
loopback server that counts what it answered with 200 and with 304."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import signal
import subprocess
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from conftest import LoopbackServer, fetchmany_command, jsonl, run_cli, run_process
from yarl import URL

from fetchmany.input.sources import host_shard

LAST_MODIFIED = "Wed, 21 Oct 2015 07:28:00 GMT"


@dataclass
class Site:
    """Resources /r/N with a version each; how the server validates is set per test."""

    versions: dict[int, int] = field(default_factory=dict)
    answered: Counter[int] = field(default_factory=Counter)
    asked: list[dict[str, str]] = field(default_factory=list)
    body_bytes: int = 0
    etag: Callable[[int, int], str | None] = lambda n, v: f'"{n}-{v}"'
    last_modified: Callable[[int, int], str | None] = lambda n, v: None
    honours: bool = True
    """Answers 304 when a condition matches (else always 200)."""
    always_304: set[int] = field(default_factory=set)
    """Items answered 304 whatever was asked (a broken cache in front)."""
    not_modified_once: set[int] = field(default_factory=set)
    """Items answered 304 once, whatever was asked."""
    hang: set[int] = field(default_factory=set)
    """Items that are never answered; ``arrived`` is set when one is asked."""
    arrived: threading.Event = field(default_factory=threading.Event)

    def app(self) -> web.Application:
        async def resource(request: web.Request) -> web.Response:
            n = int(request.match_info["n"])
            if n in self.hang:
                self.arrived.set()
                await asyncio.Event().wait()
            version = self.versions.get(n, 0)
            self.asked.append(
                {k: v for k, v in request.headers.items() if k.lower().startswith("if-")}
            )
            etag = self.etag(n, version)
            modified = self.last_modified(n, version)
            headers = {}
            if etag is not None:
                headers["ETag"] = etag
            if modified is not None:
                headers["Last-Modified"] = modified
            matches = (etag is not None and request.headers.get("If-None-Match") == etag) or (
                modified is not None and request.headers.get("If-Modified-Since") == modified
            )
            if n in self.always_304 or n in self.not_modified_once or (self.honours and matches):
                self.not_modified_once.discard(n)
                self.answered[304] += 1
                return web.Response(status=304, headers=headers)
            body = json.dumps({"n": n, "version": version, "pad": "x" * 100}).encode()
            self.answered[200] += 1
            self.body_bytes += len(body)
            return web.Response(body=body, content_type="application/json", headers=headers)

        app = web.Application()
        app.router.add_get("/r/{n}", resource)
        return app

    def reset(self) -> None:
        self.answered.clear()
        self.asked.clear()
        self.body_bytes = 0


@pytest.fixture
def site(serve: Callable[[web.Application], LoopbackServer]) -> tuple[Site, LoopbackServer]:
    made = Site()
    return made, serve(made.app())


def _inputs(tmp_path: Path, server: LoopbackServer, count: int) -> Path:
    path = tmp_path / "urls.txt"
    path.write_text("".join(server.url(f"/r/{n}") + "\n" for n in range(count)))
    return path


def _comparable(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What must equal a full run's: all but elapsed_ms, attempts and unchanged."""
    skip = {"elapsed_ms", "attempts", "unchanged"}
    return [{k: v for k, v in record.items() if k not in skip} for record in records]


def test_a_refresh_keeps_what_did_not_change_and_equals_a_full_run(
    site: tuple[Site, LoopbackServer], tmp_path: Path
) -> None:
    app, server = site
    urls = _inputs(tmp_path, server, 20)
    previous = tmp_path / "previous.jsonl"
    assert run_cli(str(urls), "-o", str(previous), "-q").returncode == 0
    app.versions[7] = 1  # one resource changed between the runs
    app.reset()
    refreshed = run_cli(str(urls), "--refresh", str(previous))
    assert refreshed.returncode == 0, refreshed.stderr
    assert app.answered == {304: 19, 200: 1}
    assert all(asked["If-None-Match"].startswith('"') for asked in app.asked)
    records = jsonl(refreshed.stdout)
    assert [r["unchanged"] for r in records] == [n != 7 for n in range(20)]
    assert records[7]["body"]["version"] == 1
    assert records[7]["etag"] == '"7-1"'
    assert records[3]["body"] == {"n": 3, "version": 0, "pad": "x" * 100}
    full = run_cli(str(urls), "-q")
    assert _comparable(records) == _comparable(jsonl(full.stdout))
    saved = sum(r["size"] for r in records if r["unchanged"])
    assert (
        f"refresh: 19 unchanged · 1 changed · 0 new · 0 failed; body bytes not transferred "
        f"{saved:,}" in refreshed.stderr
    )


@pytest.mark.parametrize(
    ("etag", "sent"),
    [
        ('W/"weak-1"', 'W/"weak-1"'),  # weak: sent as is (If-None-Match compares weakly)
        ("no-quotes", "no-quotes"),  # not RFC 9110's form: sent as the server sent it
        ('"a,b"', '"a,b"'),  # a comma inside the quotes is part of the tag
        ('"caf\u00e9"', '"caf\u00e9"'),  # beyond ASCII: obs-text, its bytes as they came
    ],
)
def test_etags_go_back_as_the_server_sent_them(
    site: tuple[Site, LoopbackServer], tmp_path: Path, etag: str, sent: str
) -> None:
    app, server = site
    app.etag = lambda n, v: etag
    urls = _inputs(tmp_path, server, 2)
    previous = tmp_path / "previous.jsonl"
    run_cli(str(urls), "-o", str(previous), "-q")
    assert [r["etag"] for r in jsonl(previous.read_bytes())] == [etag, etag]
    app.reset()
    result = run_cli(str(urls), "--refresh", str(previous), "-q")
    assert result.returncode == 0, result.stderr
    assert [asked.get("If-None-Match") for asked in app.asked] == [sent, sent]
    assert app.answered == {304: 2}


@pytest.mark.parametrize(
    ("date", "sent"),
    [
        (LAST_MODIFIED, True),
        ("Wednesday, 21-Oct-15 07:28:00 GMT", True),  # RFC 850: obsolete, still a date
        ("Wed Oct 21 07:28:00 2015", True),  # asctime
        ("yesterday-ish", False),  # no date: not sent, the item is fetched whole
    ],
)
def test_last_modified_makes_if_modified_since_when_it_is_a_date(
    site: tuple[Site, LoopbackServer], tmp_path: Path, date: str, sent: bool
) -> None:
    app, server = site
    app.etag = lambda n, v: None
    app.last_modified = lambda n, v: date
    urls = _inputs(tmp_path, server, 1)
    previous = tmp_path / "previous.jsonl"
    run_cli(str(urls), "-o", str(previous), "-q")
    app.reset()
    result = run_cli(str(urls), "--refresh", str(previous))
    assert app.asked == [{"If-Modified-Since": date} if sent else {}]
    (record,) = jsonl(result.stdout)
    assert record["unchanged"] is sent
    assert record["ok"] is True
    if not sent:
        assert "0 unchanged · 0 changed · 1 untagged" in result.stderr


def test_a_server_that_ignores_conditionals_just_works(
    site: tuple[Site, LoopbackServer], tmp_path: Path
) -> None:
    app, server = site
    urls = _inputs(tmp_path, server, 5)
    previous = tmp_path / "previous.jsonl"
    run_cli(str(urls), "-o", str(previous), "-q")
    app.honours = False
    app.reset()
    result = run_cli(str(urls), "--refresh", str(previous))
    assert result.returncode == 0
    assert app.answered == {200: 5}
    assert [r["unchanged"] for r in jsonl(result.stdout)] == [False] * 5
    assert "0 unchanged · 5 changed · 0 new · 0 failed" in result.stderr


def test_an_etag_that_changes_every_time_means_every_item_is_fetched_whole(
    site: tuple[Site, LoopbackServer], tmp_path: Path
) -> None:
    app, server = site
    counter = iter(range(10**6))
    app.etag = lambda n, v: f'"{next(counter)}"'
    urls = _inputs(tmp_path, server, 3)
    previous = tmp_path / "previous.jsonl"
    run_cli(str(urls), "-o", str(previous), "-q")
    app.reset()
    result = run_cli(str(urls), "--refresh", str(previous), "-q")
    records = jsonl(result.stdout)
    assert app.answered == {200: 3}
    assert not any(r["unchanged"] for r in records)
    assert [r["etag"] for r in records] != [r["etag"] for r in jsonl(previous.read_bytes())]


def test_a_304_to_an_unconditional_request_is_asked_again_and_then_an_error(
    site: tuple[Site, LoopbackServer], tmp_path: Path
) -> None:
    """Items the previous output had no tag for (item 0: none sent; item 1: a failure)
    are asked unconditionally; a 304 to that is asked once more; a second 304 is an
    error that says so, never an ok record without the body."""
    app, server = site
    app.etag = lambda n, v: None if n == 0 else f'"{n}"'
    urls = _inputs(tmp_path, server, 3)
    previous = tmp_path / "previous.jsonl"
    run_cli(str(urls), "-o", str(previous), "-q")
    lines = previous.read_bytes().splitlines(keepends=True)
    failed = json.loads(lines[1])
    failed.update(ok=False, status=503, error={"kind": "http", "message": "503"})
    previous.write_bytes(lines[0] + json.dumps(failed).encode() + b"\n" + lines[2])
    app.reset()
    app.not_modified_once = {0}
    app.always_304 = {1}
    result = run_cli(str(urls), "--refresh", str(previous))
    first, second, third = jsonl(result.stdout)
    assert first["status"] == 200
    assert first["attempts"] == 2
    assert first["unchanged"] is False
    assert first["body"]["n"] == 0
    assert second["ok"] is False
    assert second["attempts"] == 2
    assert second["error"]["kind"] == "protocol"
    assert "304 Not Modified twice" in second["error"]["message"]
    assert third["unchanged"] is True
    assert sorted(map(len, app.asked)) == [0, 0, 0, 0, 1]  # only item 2 asked conditionally
    assert (
        "1 unchanged · 0 changed · 1 untagged (no etag or last_modified before) · 0 new · "
        "1 failed" in result.stderr
    )


def _previous(app: Site, server: LoopbackServer, tmp_path: Path, count: int, *args: str) -> Path:
    urls = _inputs(tmp_path, server, count)
    previous = tmp_path / "previous.jsonl"
    assert run_cli(str(urls), "-o", str(previous), "-q", *args).returncode == 0
    app.reset()
    return previous


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda lines: lines[:1] + lines[:1] + lines[1:], "index 0 comes after 0"),
        (lambda lines: [*lines, lines[-1].replace(b'"index":2', b'"index":3')],
         "a record at index 3, beyond the inputs' last item"),
        (lambda lines: [lines[0].replace(b"/r/0", b"/r/9"), *lines[1:]], "input changed since"),
        (lambda lines: [b'{"index":0}\n'], "has neither input nor url"),
        (lambda lines: [b"not json\n", *lines], "is not records fetchmany wrote"),
        (lambda lines: [*lines[:1], b"{broken\n", *lines[2:]], "line 2 is not a JSON record"),
    ],
)  # fmt: skip
def test_a_previous_output_that_cannot_serve_is_refused_with_nothing_fetched(
    site: tuple[Site, LoopbackServer],
    tmp_path: Path,
    change: Callable[[list[bytes]], list[bytes]],
    message: str,
) -> None:
    app, server = site
    previous = _previous(app, server, tmp_path, 3)
    previous.write_bytes(b"".join(change(previous.read_bytes().splitlines(keepends=True))))
    result = run_cli(
        str(tmp_path / "urls.txt"), "--refresh", str(previous), "-o", str(tmp_path / "o.jsonl")
    )
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert app.answered == {}
    assert not (tmp_path / "o.jsonl").exists()


def test_bad_combinations_are_one_line_and_exit_2(
    site: tuple[Site, LoopbackServer], tmp_path: Path
) -> None:
    app, server = site
    previous = _previous(app, server, tmp_path, 2)
    urls = str(tmp_path / "urls.txt")
    other = str(tmp_path / "other.jsonl")
    cases = {
        ("--resume", "-o", other): "--resume continues --output and --refresh reads another",
        ("--resume", "-o", str(previous)): "there is nothing to --resume",
        ("--dedupe",): "--dedupe shares one answer",
        ("-X", "POST"): "--refresh makes GET and HEAD requests conditional",
        ("--merge",): "--refresh does nothing with --merge",
        ("--fields", "index,input,unchanged,body,picked"): "unknown field 'picked'",
    }
    for args, message in cases.items():
        result = run_cli(urls, "--refresh", str(previous), *args)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr, args
        assert len(result.stderr.splitlines()) == 1, args
    missing = run_cli(urls, "--refresh", str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 2
    assert "does not exist" in missing.stderr
    from_stdin = run_cli("--refresh", str(previous), stdin=(tmp_path / "urls.txt").read_bytes())
    assert from_stdin.returncode == 2
    assert "stdin and pipes are read once" in from_stdin.stderr
    without = run_cli(urls, "--fields", "input,unchanged")
    assert without.returncode == 2
    assert "(unchanged comes with --refresh)" in without.stderr
    assert app.answered == {}


def test_a_previous_output_without_validators_or_a_carried_field_is_refused(
    site: tuple[Site, LoopbackServer], tmp_path: Path
) -> None:
    """An output written before etag and last_modified existed (or without them in
    --fields) gives nothing to ask with; one without the body this run writes could not
    carry it over a 304."""
    app, server = site
    urls = str(_inputs(tmp_path, server, 2))
    old = tmp_path / "old.jsonl"
    run_cli(urls, "-o", str(old), "-q", "--fields", "index,input,url,ok,status,body")
    thin = tmp_path / "thin.jsonl"
    run_cli(urls, "-o", str(thin), "-q", "--fields", "index,input,ok,status,etag")
    app.reset()
    no_tags = run_cli(urls, "--refresh", str(old))
    assert no_tags.returncode == 2
    assert "has no etag or last_modified field" in no_tags.stderr
    no_body = run_cli(urls, "--refresh", str(thin))
    assert no_body.returncode == 2
    assert "has no status field" not in no_body.stderr
    assert "has no content_type field, which this run writes" in no_body.stderr
    fine = run_cli(urls, "--refresh", str(thin), "--fields", "index,input,ok,status,etag,unchanged")
    assert fine.returncode == 0, fine.stderr
    assert [r["unchanged"] for r in jsonl(fine.stdout)] == [True, True]
    assert app.answered == {304: 2}


def test_a_torn_last_record_is_dropped_and_its_item_fetched_whole(
    site: tuple[Site, LoopbackServer], tmp_path: Path
) -> None:
    app, server = site
    previous = _previous(app, server, tmp_path, 3)
    whole = previous.read_bytes()
    previous.write_bytes(whole[: len(whole) - 10])
    result = run_cli(str(tmp_path / "urls.txt"), "--refresh", str(previous))
    assert result.returncode == 0, result.stderr
    assert [r["unchanged"] for r in jsonl(result.stdout)] == [True, True, False]
    assert app.answered == {304: 2, 200: 1}
    assert sorted(map(len, app.asked)) == [0, 1, 1]  # the torn one asked unconditionally
    assert "2 unchanged · 0 changed · 1 new · 0 failed" in result.stderr


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("status", "abc"),
        ("status", "200"),
        ("status", [200]),
        ("status", True),
        ("status", 404),
        ("size", "big"),
        ("size", -1),
        ("size", {"n": 1}),
        ("content_type", 7),
    ],
)
def test_a_previous_record_edited_out_of_shape_is_fetched_whole(
    site: tuple[Site, LoopbackServer], tmp_path: Path, field: str, value: object
) -> None:
    """Found by a hostile tester: an ok record whose status was "abc" (or size "big")
    was carried over on a 304 and the summary's counting ended the run with exit 70.
    A record that cannot stand for an answer of this run is not asked with: its item
    is fetched whole and written afresh; the others are refreshed as usual."""
    app, server = site
    previous = _previous(app, server, tmp_path, 3)
    records = jsonl(previous.read_text())
    records[1][field] = value
    previous.write_text("".join(json.dumps(record) + "\n" for record in records))
    result = run_cli(str(tmp_path / "urls.txt"), "--refresh", str(previous))
    assert result.returncode == 0, result.stderr
    fresh = jsonl(result.stdout)
    assert [r["unchanged"] for r in fresh] == [True, False, True]
    assert (fresh[1]["status"], fresh[1]["size"]) == (200, records[0]["size"])
    assert app.answered == {304: 2, 200: 1}
    assert "2 unchanged · 0 changed · 1 new · 0 failed" in result.stderr


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv"])
def test_a_previous_output_torn_at_any_byte_is_refreshed_or_refused_cleanly(
    site: tuple[Site, LoopbackServer], tmp_path: Path, fmt: str
) -> None:
    """Cut at every byte: each run either refreshes (the whole records kept, the rest
    fetched) with an output equal to a full run's, or refuses in one line with nothing
    fetched; never a traceback."""
    app, server = site
    urls = str(_inputs(tmp_path, server, 3))
    previous = tmp_path / f"previous.{fmt}"
    run_cli(urls, "-o", str(previous), "-q", "--fields", "index,input,ok,status,etag,size")
    whole = previous.read_bytes()
    full = run_cli(urls, "-q", "-f", fmt, "--fields", "index,input,ok,status,etag,size")
    outcomes = Counter()
    for cut in range(len(whole)):
        previous.write_bytes(whole[:cut])
        app.reset()
        result = run_cli(
            urls, "--refresh", str(previous), "-q", "-f", fmt, "--fields",
            "index,input,ok,status,etag,size",
        )  # fmt: skip
        if result.returncode == 2:
            assert len(result.stderr.splitlines()) == 1
            assert "Traceback" not in result.stderr
            assert app.answered == {}, cut
            outcomes["refused"] += 1
            continue
        assert result.returncode == 0, (cut, result.stderr)
        assert result.stdout == full.stdout, cut  # unchanged is not in --fields
        assert sum(app.answered.values()) == 3
        outcomes["refreshed"] += 1
    assert outcomes["refreshed"] > len(whole) // 2


def test_csv_previous_refreshes_into_csv_and_json_into_csv(
    site: tuple[Site, LoopbackServer], tmp_path: Path
) -> None:
    app, server = site
    urls = str(_inputs(tmp_path, server, 3))
    as_csv = tmp_path / "previous.csv"
    as_json = tmp_path / "previous.json"
    run_cli(urls, "-o", str(as_csv), "-q")
    run_cli(urls, "-o", str(as_json), "-q")
    full = run_cli(urls, "-q", "-f", "csv")
    for previous in (as_csv, as_json):
        app.reset()
        result = run_cli(urls, "--refresh", str(previous), "-q", "-f", "csv")
        assert result.returncode == 0, result.stderr
        assert app.answered == {304: 3}
        rows = list(csv.DictReader(io.StringIO(result.text)))
        assert [row["unchanged"] for row in rows] == ["true"] * 3
        expected = list(csv.DictReader(io.StringIO(full.text)))
        skip = ("elapsed_ms", "attempts", "unchanged")
        assert [{k: v for k, v in r.items() if k not in skip} for r in rows] == [
            {k: v for k, v in r.items() if k not in skip} for r in expected
        ]
    refused = run_cli(urls, "--refresh", str(as_csv), "-q")
    assert refused.returncode == 2
    assert "CSV, which does not keep the JSON type of body" in (refused.stderr)


def test_refresh_in_place_replaces_the_file_whole(
    site: tuple[Site, LoopbackServer], tmp_path: Path
) -> None:
    app, server = site
    previous = _previous(app, server, tmp_path, 5)
    app.versions[2] = 1
    before = previous.read_bytes()
    result = run_cli(
        str(tmp_path / "urls.txt"), "--refresh", str(previous), "-o", str(previous), "-q"
    )
    assert result.returncode == 0, result.stderr
    records = jsonl(previous.read_bytes())
    assert [r["unchanged"] for r in records] == [True, True, False, True, True]
    assert _comparable(records)[0] == _comparable(jsonl(before))[0]
    assert records[2]["body"]["version"] == 1
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    app.reset()
    again = run_cli(
        str(tmp_path / "urls.txt"), "--refresh", str(previous), "-o", str(previous), "-q"
    )
    assert again.returncode == 0
    assert app.answered == {304: 5}


def _interrupted_refresh(app: Site, tmp_path: Path, previous: Path, out: Path) -> bytes:
    """Refresh from ``previous`` into ``out``, Ctrl-C once an item hangs: the stderr (exit
    130 checked)."""
    process = subprocess.Popen(
        [*fetchmany_command(), str(tmp_path / "urls.txt"), "--refresh", str(previous),
         "-o", str(out), "-q", "--grace", "0"],
        stderr=subprocess.PIPE,
    )  # fmt: skip
    assert app.arrived.wait(30)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    return stderr


def test_an_interrupted_refresh_in_place_leaves_the_file_as_it_was_and_it_runs_again(
    site: tuple[Site, LoopbackServer], tmp_path: Path
) -> None:
    """Ctrl-C during a refresh in place: the file is the previous one, byte for byte (the
    refreshed prefix would have replaced records that are whole); the next run refreshes."""
    app, server = site
    previous = _previous(app, server, tmp_path, 6)
    before = previous.read_bytes()
    app.versions[0] = 1
    app.hang = {3}
    stderr = _interrupted_refresh(app, tmp_path, previous, previous)
    assert previous.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    # Found by a hostile tester: it said the file held the records done so far and that
    # --resume would continue it; the file is whole, and --refresh with --resume refused.
    assert b"is left as it was; the same command refreshes it again" in stderr
    assert b"--resume" not in stderr
    app.hang = set()
    app.reset()
    again = run_cli(str(tmp_path / "urls.txt"), "--refresh", str(previous), "-o", str(previous))
    assert again.returncode == 0
    assert app.answered == {304: 5, 200: 1}


def test_an_interrupted_refresh_into_another_file_says_it_starts_again(
    site: tuple[Site, LoopbackServer], tmp_path: Path
) -> None:
    app, server = site
    previous = _previous(app, server, tmp_path, 6)
    app.hang = {3}
    out = tmp_path / "new.jsonl"
    stderr = _interrupted_refresh(app, tmp_path, previous, out)
    held = len(out.read_bytes().splitlines())
    assert f"new.jsonl holds {held} record".encode() in stderr
    assert b"--refresh cannot continue it: the same command starts it again" in stderr
    assert b"with --resume" not in stderr


def test_shards_refresh_from_their_parts_and_merge_like_one_run(
    site: tuple[Site, LoopbackServer], tmp_path: Path
) -> None:
    app, server = site
    urls = str(_inputs(tmp_path, server, 9))
    parts = [tmp_path / f"part-{k}.csv" for k in range(3)]
    for k, part in enumerate(parts):
        assert run_cli(urls, "--shard", f"{k}/3", "-o", str(part), "-q").returncode == 0
    app.versions[4] = 1
    app.reset()
    for k, part in enumerate(parts):  # each shard refreshes its own part, in place
        result = run_cli(urls, "--shard", f"{k}/3", "--refresh", str(part), "-o", str(part), "-q")
        assert result.returncode == 0, result.stderr
    assert app.answered == {304: 8, 200: 1}
    merged = run_cli("--merge", *map(str, parts), "-f", "jsonl", "-q")
    assert merged.returncode == 0, merged.stderr
    records = jsonl(merged.stdout)
    assert [r["unchanged"] for r in records] == [n != 4 for n in range(9)]
    full = run_cli(urls, "-q", "-f", "csv")
    expected = list(csv.DictReader(io.StringIO(full.text)))
    assert [r["etag"] for r in records] == [row["etag"] for row in expected]


@pytest.mark.parametrize("extra", [(), ("--unordered",)])
def test_processes_each_read_their_share_of_previous(
    site: tuple[Site, LoopbackServer], tmp_path: Path, extra: tuple[str, ...]
) -> None:
    app, server = site
    previous = _previous(app, server, tmp_path, 12)
    app.versions[5] = 1
    result = run_process(
        str(tmp_path / "urls.txt"), "--refresh", str(previous), "-P", "3", "--limit", "6", *extra
    )
    assert result.returncode == 0, result.stderr
    records = sorted(jsonl(result.stdout), key=lambda r: r["index"])
    assert [r["unchanged"] for r in records] == [n != 5 for n in range(12)]
    assert app.answered == {304: 11, 200: 1}
    assert "11 unchanged · 1 changed · 0 new · 0 failed" in result.stderr


@pytest.mark.parametrize("name", [None, "page-{index}.json"])
def test_save_dir_keeps_the_files_of_unchanged_items_and_refetches_a_missing_one(
    site: tuple[Site, LoopbackServer], tmp_path: Path, name: str | None
) -> None:
    """A 304 has no content: it must not be saved. Found by a hostile tester: with a
    --save-name without {ext} each unchanged item's file was emptied (its record still
    giving the old size and sha256), and with the default name an empty .bin was left
    beside each."""
    app, server = site
    saved = tmp_path / "bodies"
    naming = ("--save-dir", str(saved), *(("--save-name", name) if name else ()))
    previous = _previous(app, server, tmp_path, 3, *naming)
    before = {p.name: (p.stat().st_ino, p.read_bytes()) for p in saved.iterdir()}
    third = "page-00000002.json" if name else "00000002.json"
    (saved / third).unlink()
    result = run_cli(str(tmp_path / "urls.txt"), "--refresh", str(previous), *naming, "-q")
    assert result.returncode == 0, result.stderr
    records = jsonl(result.stdout)
    assert [r["unchanged"] for r in records] == [True, True, False]
    assert records == [
        {**r, "elapsed_ms": records[n]["elapsed_ms"], "unchanged": records[n]["unchanged"]}
        for n, r in enumerate(jsonl(previous.read_bytes()))
    ]
    assert app.answered == {304: 2, 200: 1}
    after = {p.name: (p.stat().st_ino, p.read_bytes()) for p in saved.iterdir()}
    first = "page-00000000.json" if name else "00000000.json"
    assert after[first] == before[first]  # kept, not rewritten
    assert set(after) == set(before)  # the missing one fetched again, nothing else made


def test_a_refresh_in_place_killed_mid_run_leaves_the_file_whole_for_resume(
    site: tuple[Site, LoopbackServer], tmp_path: Path
) -> None:
    """SIGKILL (no handler runs): the file is the previous one, so --resume finds every
    record there and fetches nothing, and a refresh in place runs again."""
    app, server = site
    previous = _previous(app, server, tmp_path, 4)
    before = previous.read_bytes()
    app.hang = {2}
    process = subprocess.Popen(
        [*fetchmany_command(), str(tmp_path / "urls.txt"), "--refresh", str(previous),
         "-o", str(previous), "-q"],
        stderr=subprocess.PIPE,
    )  # fmt: skip
    assert app.arrived.wait(30)
    process.kill()
    process.communicate(timeout=30)
    assert previous.read_bytes() == before
    app.hang = set()
    app.reset()
    resumed = run_cli(str(tmp_path / "urls.txt"), "-o", str(previous), "--resume", "-q")
    assert resumed.returncode == 0, resumed.stderr
    assert previous.read_bytes() == before
    assert app.answered == {}
    again = run_cli(str(tmp_path / "urls.txt"), "--refresh", str(previous), "-o", str(previous))
    assert again.returncode == 0, again.stderr
    assert app.answered == {304: 4}


def test_an_empty_previous_output_means_every_item_is_new(
    site: tuple[Site, LoopbackServer], tmp_path: Path
) -> None:
    app, server = site
    urls = _inputs(tmp_path, server, 2)
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    result = run_cli(str(urls), "--refresh", str(empty))
    assert result.returncode == 0, result.stderr
    assert [r["unchanged"] for r in jsonl(result.stdout)] == [False, False]
    assert "0 unchanged · 0 changed · 2 new · 0 failed" in result.stderr
    assert app.answered == {200: 2}
    assert app.asked == [{}, {}]


def test_processes_refresh_in_place(site: tuple[Site, LoopbackServer], tmp_path: Path) -> None:
    app, server = site
    previous = _previous(app, server, tmp_path, 7)
    app.versions[6] = 2
    result = run_process(
        str(tmp_path / "urls.txt"), "--refresh", str(previous), "-o", str(previous), "-P", "2",
        "-q",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    records = jsonl(previous.read_bytes())
    assert [r["index"] for r in records] == list(range(7))
    assert [r["unchanged"] for r in records] == [True] * 6 + [False]


def test_unordered_refresh_in_one_process(
    site: tuple[Site, LoopbackServer], tmp_path: Path
) -> None:
    app, server = site
    previous = _previous(app, server, tmp_path, 8)
    app.versions[1] = 1
    result = run_cli(str(tmp_path / "urls.txt"), "--refresh", str(previous), "--unordered", "-q")
    assert result.returncode == 0, result.stderr
    records = sorted(jsonl(result.stdout), key=lambda r: r["index"])
    assert [r["unchanged"] for r in records] == [n != 1 for n in range(8)]
    assert app.answered == {304: 7, 200: 1}


def test_a_pick_table_without_index_is_refreshed_by_position(
    site: tuple[Site, LoopbackServer], tmp_path: Path
) -> None:
    """The --pick default has no index: records are matched by position (the whole
    input's, or under -P each worker's share of it)."""
    app, server = site
    previous = _previous(app, server, tmp_path, 6, "--pick", "v=version", "-f", "csv")
    assert previous.read_text().splitlines()[0] == (
        "input,v,ok,status,error,error_message,etag,last_modified"
    )
    app.versions[4] = 3
    for extra in ((), ("-P", "2")):
        app.reset()
        result = run_process(
            str(tmp_path / "urls.txt"), "--refresh", str(previous), "--pick", "v=version",
            "-f", "csv", "-q", *extra,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        rows = list(csv.DictReader(io.StringIO(result.text)))
        assert [row["v"] for row in rows] == ["0", "0", "0", "0", "3", "0"]
        assert app.answered == {304: 5, 200: 1}


def test_max_time_bounds_an_item_asked_twice(
    serve: Callable[[web.Application], LoopbackServer], tmp_path: Path
) -> None:
    """A 304 to an unconditional request is asked again; -m bounds the item's two asks
    together, not each: the second gets what the first left of the deadline."""
    asked: list[str] = []

    async def resource(request: web.Request) -> web.Response:
        asked.append(request.path)
        if len(asked) == 1:  # the first run: a whole answer, with no validator
            return web.json_response({"n": 0})
        if len(asked) == 2:  # the refresh: a slow 304 it cannot keep ...
            await asyncio.sleep(1.2)
            return web.Response(status=304)
        await asyncio.Event().wait()  # ... and the second ask is never answered
        raise AssertionError("unreachable")

    app = web.Application()
    app.router.add_get("/r/{n}", resource)
    urls = _inputs(tmp_path, serve(app), 1)
    previous = tmp_path / "previous.jsonl"
    assert run_cli(str(urls), "-o", str(previous), "-q").returncode == 0
    result = run_cli(str(urls), "--refresh", str(previous), "-m", "2", "--timeout", "30")
    [record] = jsonl(result.stdout)
    assert record["error"] == {
        "kind": "timeout",
        "message": "--max-time 2s ran out during attempt 1",
    }
    assert record["attempts"] == 2
    # Asked twice within the one deadline: each ask given the whole of it would take
    # 1.2 s + 2 s at least.
    assert 1900 <= record["elapsed_ms"] < 3000


def test_a_previous_output_on_a_fifo_is_refused_with_nothing_fetched(
    site: tuple[Site, LoopbackServer], tmp_path: Path
) -> None:
    """Found by a hostile tester: PREVIOUS on a pipe was silently ignored (every item
    "new"), or hung on a FIFO, or ended in an internal error for CSV."""
    app, server = site
    _inputs(tmp_path, server, 2)
    fifo = tmp_path / "previous.jsonl"
    os.mkfifo(fifo)
    result = run_cli(str(tmp_path / "urls.txt"), "--refresh", str(fifo))
    assert result.returncode == 2, result.stderr
    assert f"--refresh: {fifo} is not a regular file" in result.stderr
    assert app.answered == {}


def test_a_shard_by_host_refreshes_from_the_whole_output(
    serve: Callable[[web.Application], LoopbackServer], tmp_path: Path
) -> None:
    """Found by a hostile tester: ``--shard K/N --shard-by host --refresh WHOLE`` was
    refused for every K (the records were shared out by index). Each shard now takes
    the records of its hosts' items from the whole output, and asks for each as it was."""
    sites = [Site() for _ in range(3)]
    urls = [serve(site.app()).url("/r/") for site in sites]
    source = tmp_path / "urls.txt"
    source.write_text("".join(f"{urls[i % 3]}{i}\n" for i in range(30)))
    whole = tmp_path / "whole.jsonl"
    assert run_cli(str(source), "-q", "-o", str(whole)).returncode == 0
    for k in range(2):
        shard = ("--shard", f"{k}/2", "--shard-by", "host")
        result = run_cli(str(source), *shard, "--refresh", str(whole), "-q")
        assert result.returncode == 0, result.stderr
        refreshed = jsonl(result.stdout)
        mine = [i for i in range(30) if host_shard(URL(urls[i % 3]), 2) == k]
        assert [r["index"] for r in refreshed] == mine
        assert all(r["unchanged"] for r in refreshed)


def test_a_csv_safe_previous_output_is_refreshed(
    site: tuple[Site, LoopbackServer], tmp_path: Path
) -> None:
    """Found by a hostile tester: PREVIOUS written with --csv-safe (inputs -1 and +2
    kept as '-1 and '+2) was refused with a message about shards and merging; the
    refresh compares its inputs as --csv-safe wrote them."""
    app, server = site
    source = tmp_path / "ids.txt"
    source.write_text("-1\n+2\n3\n")
    common = (str(source), "-t", server.url("/r/{}"), "-f", "csv", "--csv-safe")
    previous = tmp_path / "previous.csv"
    assert run_cli(*common, "-q", "-o", str(previous)).returncode == 0
    app.reset()
    result = run_cli(*common, "--refresh", str(previous))
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout.decode())))
    assert [row["input"] for row in rows] == ["'-1", "'+2", "3"]
    assert [row["unchanged"] for row in rows] == ["true", "true", "true"]
    assert app.answered == {304: 3}


@pytest.mark.parametrize("written_with", [("--body", "none"), ("-I",)])
def test_a_previous_output_without_bodies_does_not_stand_for_one_with_them(
    site: tuple[Site, LoopbackServer], tmp_path: Path, written_with: tuple[str, ...]
) -> None:
    """Found by a hostile tester: refreshing from an output written with --body none (or
    by HEAD) carried its null bodies over on every 304. Its items are fetched whole, so
    the refresh writes what a full run writes."""
    app, server = site
    previous = _previous(app, server, tmp_path, 3, *written_with)
    result = run_cli(str(tmp_path / "urls.txt"), "--refresh", str(previous))
    assert result.returncode == 0, result.stderr
    refreshed = jsonl(result.stdout)
    assert [r["unchanged"] for r in refreshed] == [False, False, False]
    assert all(r["body"] is not None for r in refreshed)
    full = run_cli(str(tmp_path / "urls.txt"))
    assert _comparable(refreshed) == _comparable(jsonl(full.stdout))


def test_a_head_refresh_carries_no_body_or_size(
    site: tuple[Site, LoopbackServer], tmp_path: Path
) -> None:
    """-I --refresh from an output of GETs: a HEAD record has neither, as a full -I run
    writes it; the 304s still keep the rest."""
    app, server = site
    previous = _previous(app, server, tmp_path, 2)
    result = run_cli(str(tmp_path / "urls.txt"), "-I", "--refresh", str(previous))
    assert result.returncode == 0, result.stderr
    refreshed = jsonl(result.stdout)
    assert [r["unchanged"] for r in refreshed] == [True, True]
    assert [(r["size"], r["body"]) for r in refreshed] == [(None, None), (None, None)]


def test_a_changed_item_never_takes_the_file_an_unchanged_one_keeps(
    site: tuple[Site, LoopbackServer], tmp_path: Path
) -> None:
    """Found by a hostile tester: --save-name naming two items alike gave x.json and
    x-2.json; on refresh the changed second item was saved as x.json, over the file the
    unchanged first one kept (its record then naming another body), and x-2.json was
    left to no record. Each item's previous file is its own for the run."""
    import hashlib

    app, server = site
    rows = tmp_path / "rows.csv"
    rows.write_text(f"url,name\n{server.url('/r/0')},x\n{server.url('/r/1')},x\n")
    saved = tmp_path / "bodies"
    common = (str(rows), "--save-dir", str(saved), "--save-name", "{name}{ext}")
    previous = tmp_path / "previous.jsonl"
    # One at a time: the first item finishes first and is x.json (two at once, either
    # may be, and the test asserted the wrong file's fate about one run in twenty).
    assert run_cli(*common, "-q", "--limit", "1", "-o", str(previous)).returncode == 0
    assert [r["path"] for r in jsonl(previous.read_text())] == [
        str(saved.resolve() / "x.json"),
        str(saved.resolve() / "x-2.json"),
    ]
    kept = (saved / "x.json").stat().st_ino, (saved / "x.json").read_bytes()
    app.versions[1] = 1
    app.reset()
    result = run_cli(*common, "-q", "--refresh", str(previous))
    assert result.returncode == 0, result.stderr
    first, second = jsonl(result.stdout)
    assert (first["unchanged"], second["unchanged"]) == (True, False)
    assert sorted(p.name for p in saved.iterdir()) == ["x-2.json", "x.json"]
    assert ((saved / "x.json").stat().st_ino, (saved / "x.json").read_bytes()) == kept
    for record in (first, second):
        assert hashlib.sha256(Path(record["path"]).read_bytes()).hexdigest() == record["sha256"]
    assert json.loads((saved / "x-2.json").read_bytes())["version"] == 1


@pytest.mark.parametrize("value", [5, ["Sat, 05 Dec 2026 06:00:00 GMT"], {"a": 1}])
def test_a_validator_that_is_not_text_is_not_carried(
    site: tuple[Site, LoopbackServer], tmp_path: Path, value: object
) -> None:
    """Found by a hostile tester: a previous ``last_modified`` of 5 (an edited file) was
    carried into the new record when the 304 sent none; a record's validators are text."""
    app, server = site
    previous = _previous(app, server, tmp_path, 2)
    records = jsonl(previous.read_text())
    assert records[0]["last_modified"] is None  # this site sends ETags only
    records[0]["last_modified"] = value
    previous.write_text("".join(json.dumps(record) + "\n" for record in records))
    result = run_cli(str(tmp_path / "urls.txt"), "--refresh", str(previous))
    assert result.returncode == 0, result.stderr
    first = jsonl(result.stdout)[0]
    assert first["unchanged"] is True
    assert first["last_modified"] is None


# In process, on refresh.py's own parts: what a mutation tester reaches (a test through
# a subprocess is invisible to it). Each table holds one guarantee.

_DATE = "Wed, 21 Oct 2015 07:28:00 GMT"


@pytest.mark.parametrize(
    ("values", "sent"),
    [
        ({"etag": '"a"'}, {"If-None-Match": '"a"'}),
        ({"last_modified": _DATE}, {"If-Modified-Since": _DATE}),
        ({"etag": 'W/"a"', "last_modified": _DATE},
         {"If-None-Match": 'W/"a"', "If-Modified-Since": _DATE}),
        ({"etag": "", "last_modified": None}, None),
        ({"etag": "  "}, None),  # blank: no tag to match
        ({"etag": 5, "last_modified": ["x"]}, None),  # not text: an edited file
        ({"etag": '"a"\r\nX-Injected: 1'}, None),  # a control character cannot be sent
        ({"etag": '"a"', "last_modified": f"{_DATE}\r\nX-Injected: 1"}, {"If-None-Match": '"a"'}),
        ({"last_modified": "yesterday-ish"}, None),  # no HTTP date
        ({}, None),
    ],
)  # fmt: skip
def test_the_conditional_headers_are_made_from_the_previous_validators_alone(
    values: dict[str, Any], sent: dict[str, str] | None
) -> None:
    from fetchmany.fetch.refresh import Previous

    assert Previous({"ok": True, "status": 200, **values}).conditional() == sent


@pytest.mark.parametrize(
    ("values", "ok"),
    [
        ({"status": 200}, True),
        ({"status": 399}, True),  # the last status that is ok
        ({"status": 400}, False),
        ({"status": 199}, False),
        ({"status": 200, "size": 0}, True),
        ({"status": 200, "ok": False}, False),
        ({"status": 200, "error": {"kind": "http", "message": "x"}}, False),
        ({"status": None}, False),
    ],
)
def test_only_an_ok_previous_record_can_stand_for_an_answer(
    values: dict[str, Any], ok: bool
) -> None:
    from fetchmany.fetch.refresh import Previous

    assert Previous(values).ok is ok


def _not_modified(**fields: Any) -> Any:
    """A 304's record as the client makes it: this run's timing facts, no content."""
    from fetchmany.records import Record

    made = {"ok": True, "status": 304, "final_url": "http://h.test/r", "elapsed_ms": 4.5,
            "attempts": 1, **fields}  # fmt: skip
    return Record(0, "u", "http://h.test/r", **made)


_PREVIOUS: dict[str, Any] = {
    "index": 0, "input": "u", "url": "http://h.test/r", "ok": True, "status": 203,
    "final_url": "http://h.test/old", "content_type": "application/json", "etag": '"1"',
    "last_modified": _DATE, "size": 12, "elapsed_ms": 99.0, "attempts": 3, "error": None,
    "body": {"v": 7}, "path": "/saved/0.json", "sha256": "ab" * 32, "v": 7,
}  # fmt: skip


@pytest.mark.parametrize(
    ("answered", "etag", "last_modified"),
    [
        ({}, '"1"', _DATE),  # the 304 sent neither: the previous ones stand
        ({"etag": '"2"'}, '"2"', _DATE),  # RFC 9111 4.3.4: what the 304 sent replaces them
        ({"last_modified": "Thu, 22 Oct 2015 07:28:00 GMT"}, '"1"',
         "Thu, 22 Oct 2015 07:28:00 GMT"),
    ],
)  # fmt: skip
def test_a_304_carries_the_previous_record_with_this_runs_facts(
    answered: dict[str, str], etag: str, last_modified: str
) -> None:
    from fetchmany.fetch.refresh import Previous, carried
    from fetchmany.options import FetchOptions

    record = carried(_not_modified(**answered), Previous(_PREVIOUS), FetchOptions(picks=("v=v",)))
    assert record.to_dict((*record.to_dict(), "path", "sha256", "unchanged", "v")) == {
        **_PREVIOUS,
        "final_url": "http://h.test/r",  # this run's
        "elapsed_ms": 4.5,
        "attempts": 1,
        "etag": etag,
        "last_modified": last_modified,
        "unchanged": True,
    }
    assert record.picks == {"v": 7}
    assert record.headers is None


@pytest.mark.parametrize("value", [5, ["x"], {"a": 1}, None])
def test_a_carried_validator_that_is_not_text_is_none(value: object) -> None:
    from fetchmany.fetch.refresh import Previous, carried
    from fetchmany.options import FetchOptions

    previous = Previous({**_PREVIOUS, "etag": value, "last_modified": value})
    record = carried(_not_modified(), previous, FetchOptions())
    assert (record.etag, record.last_modified) == (None, None)


@pytest.mark.parametrize(
    ("kept", "fresh", "headers"),
    [
        # The 304's headers update the stored ones, except those that describe the 304.
        ({"content-type": "application/json", "etag": '"1"', "x-a": "old"},
         {"etag": '"2"', "x-a": "new", "content-length": "0", "content-encoding": "gzip",
          "transfer-encoding": "chunked", "date": "today"},
         {"content-type": "application/json", "etag": '"2"', "x-a": "new", "date": "today"}),
        # A CSV PREVIOUS keeps them as their JSON text: carried as written.
        ('{"x-a": "old"}', {"etag": '"2"'}, '{"x-a": "old"}'),
        (None, {"etag": '"2"'}, None),
    ],
)  # fmt: skip
def test_a_304_carries_the_previous_headers_updated_by_its_own(
    kept: object, fresh: dict[str, str], headers: object
) -> None:
    from fetchmany.checks import ALL_HEADERS
    from fetchmany.fetch.refresh import Previous, carried
    from fetchmany.options import FetchOptions

    options = FetchOptions(response_headers=ALL_HEADERS)
    record = carried(
        _not_modified(headers=fresh), Previous({**_PREVIOUS, "headers": kept}), options
    )
    assert record.headers == headers


def test_a_304_carries_no_headers_into_a_run_that_records_none() -> None:
    from fetchmany.fetch.refresh import Previous, carried
    from fetchmany.options import FetchOptions

    previous = Previous({**_PREVIOUS, "headers": {"x-a": "old"}})
    assert carried(_not_modified(), previous, FetchOptions()).headers is None


@dataclass
class _Answers:
    """A fetch that notes each ask and answers it with the next record given, or when
    none is left as an unchanged resource would: 304 to a condition, else 200."""

    records: list[Any] = field(default_factory=list)
    asked: list[tuple[dict[str, str] | None, float]] = field(default_factory=list)

    async def __call__(self, item: Any, headers: dict[str, str] | None, spent: float) -> Any:
        self.asked.append((headers, spent))
        if self.records:
            return self.records.pop(0)
        return _not_modified(status=304 if headers else 200)


async def _refresh(previous: dict[str, Any] | None, answers: _Answers, **options: Any) -> Any:
    from fetchmany.fetch.refresh import Previous, PreviousTable, Refresher
    from fetchmany.input.sources import Item
    from fetchmany.options import FetchOptions

    table = PreviousTable()
    table.put(0, None if previous is None else Previous(previous))
    refresher = Refresher(answers, table, FetchOptions(**options))
    return await refresher(Item(0, "u", "http://h.test/r"))


@pytest.mark.parametrize(
    ("previous", "options", "sent"),
    [
        # A HEAD record has no size or body: it stands for a HEAD answer.
        ({"size": None, "body": None}, {"method": "HEAD"}, {"If-None-Match": '"1"'}),
        ({"size": None, "body": None}, {}, None),  # ... not for a GET's
        # Written with --body none: a size, no body; it stands for a --body none answer.
        ({"size": 12, "body": None}, {"body": "none"}, {"If-None-Match": '"1"'}),
        ({"size": 12, "body": None}, {}, None),  # ... not for one that keeps bodies
        ({"size": 0, "body": None}, {}, {"If-None-Match": '"1"'}),  # an empty body is null
        ({"size": 12, "body": {"v": 7}}, {}, {"If-None-Match": '"1"'}),
        ({"size": 12, "body": None, "ok": False}, {"body": "none"}, None),
    ],
)  # fmt: skip
async def test_a_previous_record_stands_for_an_answer_only_of_the_same_kind(
    previous: dict[str, Any], options: dict[str, Any], sent: dict[str, str] | None
) -> None:
    answers = _Answers()
    values = {"ok": True, "status": 200, "etag": '"1"', **previous}
    record = await _refresh(values, answers, **options)
    assert answers.asked == [(sent, 0.0)]
    assert record.unchanged is (sent is not None)


async def test_a_previous_file_stands_with_save_dir_while_it_is_there(tmp_path: Path) -> None:
    """With --save-dir a record's body is in its file, not in the record: a null body
    with a size is what such a run writes, and the file still there is what counts."""
    kept = tmp_path / "0.json"
    kept.write_text('{"v": 7}')
    values = {"ok": True, "status": 200, "etag": '"1"', "size": 8, "body": None}
    for path, sent in ((str(kept), {"If-None-Match": '"1"'}), (str(tmp_path / "gone"), None)):
        answers = _Answers()
        await _refresh({**values, "path": path}, answers, save_dir=str(tmp_path))
        assert answers.asked == [(sent, 0.0)]


async def test_a_304_to_an_unconditional_ask_is_asked_again_within_the_same_time() -> None:
    """The second ask is told what the first spent of --max-time; the record adds up both
    asks' attempts and time."""
    answers = _Answers(
        [_not_modified(elapsed_ms=1200.0), _not_modified(elapsed_ms=0.2344, status=200)]
    )
    record = await _refresh(None, answers)
    assert answers.asked == [(None, 0.0), (None, 1.2)]
    assert (record.status, record.attempts, record.elapsed_ms) == (200, 2, 1200.234)
    assert record.unchanged is False


async def test_a_second_304_to_an_unconditional_ask_is_a_protocol_error() -> None:
    from fetchmany.records import ErrorKind, FetchError, Refresh

    answers = _Answers([_not_modified(), _not_modified()])
    record = await _refresh({"ok": True, "status": 200, "etag": None}, answers)
    assert answers.asked == [(None, 0.0), (None, 0.0045)]
    assert (record.ok, record.status, record.attempts, record.elapsed_ms) == (False, 304, 2, 9.0)
    assert record.error == FetchError(
        ErrorKind.PROTOCOL,
        "answered 304 Not Modified twice to a request that was not conditional "
        "(no earlier record to keep)",
    )
    assert record.refresh is Refresh.UNTAGGED


def test_the_table_holds_each_previous_record_until_its_item_takes_it() -> None:
    """Only the items in flight: a record taken is gone, and an item never put (or put
    with no record) has none."""
    from fetchmany.fetch.refresh import Previous, PreviousTable

    table = PreviousTable()
    first = Previous({"ok": True, "status": 200, "etag": '"1"'})
    table.put(0, first)
    table.put(1, None)
    assert [table.take(0), table.take(0), table.take(1), table.take(2)] == [first, None, None, None]


# previous.py in process: which record stands for which item, and what is refused.


def _written(path: Path, records: list[dict[str, Any]]) -> Path:
    """PREVIOUS as fetchmany writes it: JSON Lines, or CSV (None as an empty cell)."""
    if path.suffix == ".csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, list(records[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
        path.write_text(out.getvalue())
    else:
        path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def _open_previous(path: Path, **options: Any) -> Any:
    from fetchmany.output.previous import PreviousOutput
    from fetchmany.output.writers import OutputFormat

    fmt = OutputFormat.CSV if path.suffix == ".csv" else OutputFormat.JSONL
    return PreviousOutput.open(str(path), ("index", "input", "ok", "etag"), (), fmt, **options)


async def _items(*items: Any) -> Any:
    for item in items:
        yield item


def _item(index: int, given: str, url: str | None) -> Any:
    from fetchmany.input.sources import Item
    from fetchmany.urls import has_credentials

    target = None if url is None else URL(url)
    return Item(
        index, given, url, target=target, credentials=target is not None and has_credentials(target)
    )


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
async def test_previous_records_without_input_are_matched_by_url(
    tmp_path: Path, suffix: str
) -> None:
    """Written without ``input`` (IDs through a template): each record stands for the item
    whose URL it names, and an item without one (an invalid input) for a record of none."""
    from fetchmany.fetch.refresh import PreviousTable

    rows = [
        {"index": 0, "url": "http://h.test/r/7", "ok": True, "status": 200, "etag": '"7"'},
        {"index": 1, "url": None, "ok": False, "status": None, "etag": None},
        {"index": 2, "url": "http://h.test/r/9", "ok": True, "status": 200, "etag": '"9"'},
    ]
    previous = _open_previous(_written(tmp_path / f"previous{suffix}", rows))
    items = [
        _item(0, "7", "http://h.test/r/7"),
        _item(1, "x y", None),
        _item(2, "9", "http://h.test/r/9"),
    ]
    table = PreviousTable()
    joined = [item async for item in previous.join(_items(*items), None, table)]
    assert joined == items
    assert [table.take(n).conditional() for n in (0, 2)] == [  # type: ignore[union-attr]
        {"If-None-Match": '"7"'},
        {"If-None-Match": '"9"'},
    ]


@pytest.mark.parametrize(
    ("suffix", "recorded", "given", "url", "shown"),
    [
        # Only CSV written with --csv-safe holds an input neutralised; JSON holds it as given.
        (".jsonl", "'-1", "-1", "http://h.test/r/-1", "item 0 is '-1' but the file has \"'-1\""),
        (".csv", "a", "b", "http://h.test/r/b", "item 0 is 'b' but the file has 'a'"),
        (".jsonl", "http://alice:s3cret@h.test/r", "http://alice:s3cret@h.test/s",
         "http://alice:s3cret@h.test/s",
         "item 0 is 'http://alice:****@h.test/s' but the file has 'http://alice:****@h.test/r'"),
        (".jsonl", "id-1", "http://alice:s3cret@h.test/s", "http://alice:s3cret@h.test/s",
         "item 0 is not the one the file holds at that index (its URL carries credentials, "
         "so neither is shown)"),
    ],
)  # fmt: skip
async def test_a_record_of_another_input_is_refused_and_named_without_secrets(
    tmp_path: Path, suffix: str, recorded: str, given: str, url: str, shown: str
) -> None:
    from fetchmany.output.previous import RefreshError

    path = _written(
        tmp_path / f"previous{suffix}",
        [{"index": 0, "input": recorded, "ok": True, "status": 200, "etag": '"1"'}],
    )
    with pytest.raises(RefreshError) as refused:
        await _open_previous(path).check(_items(_item(0, given, url)))
    assert str(refused.value) == (
        f"input changed since {path} was written: {shown}; refresh from an output of these inputs"
    )


@pytest.mark.parametrize(
    ("shard", "indexes"), [(None, [0, 1, 2]), ("1/3", [1, 4, 7]), ("0/2", [0, 2, 4])]
)
def test_records_without_index_stand_by_position(
    tmp_path: Path, shard: str | None, indexes: list[int]
) -> None:
    """A --pick table has no index: its records are the items in order, or a shard's."""
    from fetchmany.input.sources import Shard

    rows = [{"input": f"u{n}", "ok": True, "status": 200, "etag": f'"{n}"'} for n in range(3)]
    path = _written(tmp_path / "previous.csv", rows)
    previous = _open_previous(path, shard=None if shard is None else Shard.parse(shard))
    assert [(index, values["input"]) for index, values in previous.records()] == [
        (index, f"u{n}") for n, index in enumerate(indexes)
    ]


def test_a_json_record_with_other_fields_than_the_first_is_refused(tmp_path: Path) -> None:
    from fetchmany.output.previous import RefreshError

    first = {"index": 0, "input": "u0", "ok": True, "status": 200, "etag": '"0"'}
    path = _written(tmp_path / "previous.jsonl", [first, {**first, "index": 1, "extra": 1}])
    with pytest.raises(RefreshError) as refused:
        list(_open_previous(path).records())
    assert str(refused.value) == (
        f"--refresh: {path}: record 1 has fields index,input,ok,status,etag,extra, but its "
        "first has index,input,ok,status,etag"
    )


@pytest.mark.parametrize(("suffix", "written"), [(".jsonl", ""), (".jsonl", None), (".csv", None)])
async def test_a_row_without_a_url_is_the_same_item_however_its_empty_url_was_written(
    tmp_path: Path, suffix: str, written: str | None
) -> None:
    """A CSV input row with an empty url cell has the URL "" (written so in JSON; CSV
    writes it and None alike, as an empty cell). Found by mutation testing: refreshing
    from an output without ``input`` refused such a row as "input changed" (item 0 is ''
    but the file has None)."""
    row = {"index": 0, "url": written, "ok": False, "status": None, "etag": None}
    previous = _open_previous(_written(tmp_path / f"previous{suffix}", [row]))
    assert await previous.check(_items(_item(0, ",a", ""))) == 1


def test_a_refresh_keeps_a_row_without_a_url_from_an_output_without_input(
    site: tuple[Site, LoopbackServer], tmp_path: Path
) -> None:
    app, server = site
    rows = tmp_path / "rows.csv"
    rows.write_text(f"url,name\n,a\n{server.url('/r/1')},b\n")
    fields = ("--fields", "index,url,ok,status,etag,unchanged")
    previous = tmp_path / "previous.jsonl"
    written = run_cli(str(rows), "-q", "-o", str(previous), "--fields", "index,url,ok,status,etag")
    assert written.returncode == 1, written.stderr  # the row without a URL is not ok
    app.reset()
    result = run_cli(str(rows), "--refresh", str(previous), *fields)
    assert result.returncode == 1, result.stderr
    assert [(r["url"], r["ok"], r["unchanged"]) for r in jsonl(result.stdout)] == [
        ("", False, False),
        (server.url("/r/1"), True, True),
    ]
    assert app.answered == {304: 1}


@pytest.mark.parametrize(
    ("indexes", "message"),
    [
        (["0"], "record 0 has no index of 0 or more"),
        ([True], "record 0 has no index of 0 or more"),
        ([None], "record 0 has no index of 0 or more"),
        ([1.0], "record 0 has no index of 0 or more"),
        ([0, -1], "record 1 has no index of 0 or more"),
        ([0, 2, 2], "index 2 comes after 2, so it is not the in-order output of a run (a "
         "record twice?)"),
        ([3, 1], "index 1 comes after 3, so it is not the in-order output of a run (a "
         "record twice?)"),
    ],
)  # fmt: skip
def test_a_previous_output_whose_indexes_are_not_a_runs_is_refused(
    tmp_path: Path, indexes: list[object], message: str
) -> None:
    from fetchmany.output.previous import RefreshError

    rows = [{"index": n, "input": "u", "ok": True, "status": 200, "etag": None} for n in indexes]
    path = _written(tmp_path / "previous.jsonl", rows)
    with pytest.raises(RefreshError) as refused:
        list(_open_previous(path).records())
    assert str(refused.value) == f"--refresh: {path}: {message}"


def _previous_of(tmp_path: Path, count: int) -> Any:
    rows = [
        {"index": n, "input": f"u{n}", "ok": True, "status": 200, "etag": f'"{n}"'}
        for n in range(count)
    ]
    return _open_previous(_written(tmp_path / "previous.jsonl", rows))


async def _joined(previous: Any, indexes: list[int], share: Any = None) -> dict[int, Any]:
    """Each item's conditional headers, as join hands its previous record over."""
    from fetchmany.fetch.refresh import PreviousTable

    table = PreviousTable()
    items = [_item(n, f"u{n}", None) for n in indexes]
    assert [item async for item in previous.join(_items(*items), share, table)] == items
    taken = {n: table.take(n) for n in indexes}
    return {n: None if taken[n] is None else taken[n].conditional() for n in indexes}


@pytest.mark.parametrize(
    ("share", "indexes", "sent"),
    [
        (None, [0, 1, 2, 3], {0: '"0"', 1: '"1"', 2: '"2"', 3: '"3"'}),
        ("1/2", [1, 3], {1: '"1"', 3: '"3"'}),  # a -P worker's share, or --shard 1/2
        ("1/2 host", [0, 3], {0: '"0"', 3: '"3"'}),  # --shard-by host: any of the indexes
        ("1/2 host", [2, 5], {2: '"2"', 5: None}),  # the others' records pass, then none
    ],
)
async def test_each_item_is_asked_with_its_own_previous_record(
    tmp_path: Path, share: str | None, indexes: list[int], sent: dict[int, str | None]
) -> None:
    from fetchmany.input.sources import Shard

    shard = None
    if share is not None:
        number, _, count = share.split()[0].partition("/")
        shard = Shard(int(number), int(count), by_host=share.endswith("host"))
    asked = await _joined(_previous_of(tmp_path, 4), indexes, shard)
    assert asked == {n: None if tag is None else {"If-None-Match": tag} for n, tag in sent.items()}


@pytest.mark.parametrize(
    ("indexes", "message"),
    [
        ([0, 2], "--refresh: {path} has a record at index 1, which is not an item of these "
         "inputs; refresh from an output of these inputs"),
        ([0, 1], "input changed since {path} was written: it has a record at index 2, beyond "
         "the inputs' last item; refresh from an output of these inputs"),
    ],
)  # fmt: skip
async def test_a_previous_record_of_no_item_is_refused(
    tmp_path: Path, indexes: list[int], message: str
) -> None:
    from fetchmany.output.previous import RefreshError

    previous = _previous_of(tmp_path, 3)
    with pytest.raises(RefreshError) as refused:
        await _joined(previous, indexes)
    assert str(refused.value) == message.format(path=previous.path)


_ROW = {"index": 0, "input": "u0", "url": "u0", "ok": True, "status": 200, "etag": '"0"'}


@pytest.mark.parametrize(
    ("drop", "fields", "suffix", "message"),
    [
        (("input", "url"), (), ".jsonl", "has neither input nor url, so it cannot be checked "
         "against the inputs; refresh from an output written with one of them"),
        (("ok", "status"), (), ".jsonl", "has neither ok nor status, so its failures cannot be "
         "told from its answers; refresh from an output written with ok"),
        (("etag",), (), ".jsonl", "has no etag or last_modified field (written by an earlier "
         "fetchmany, or --fields left them out): no request could be conditional; run once "
         "without --refresh to record them"),
        ((), ("content_type",), ".jsonl", "has no content_type field, which this run writes "
         "and a 304 would have to carry over; refresh from an output written with the same "
         "--fields, --pick and --save-dir"),
        ((), ("headers",), ".csv", "is CSV, which does not keep the JSON type of headers; "
         "refresh it into CSV (-f csv), or from JSON Lines or JSON"),
    ],
)  # fmt: skip
def test_a_previous_output_without_what_a_refresh_needs_is_refused(
    tmp_path: Path, drop: tuple[str, ...], fields: tuple[str, ...], suffix: str, message: str
) -> None:
    from fetchmany.output.previous import PreviousOutput, RefreshError
    from fetchmany.output.writers import OutputFormat

    row = {k: v for k, v in _ROW.items() if k not in drop}
    if suffix == ".csv":  # written with the field, in CSV
        row.update(dict.fromkeys(fields, "x"))
    path = _written(tmp_path / f"previous{suffix}", [row])
    with pytest.raises(RefreshError) as refused:
        PreviousOutput.open(str(path), ("index", "input", *fields), (), OutputFormat.JSONL)
    assert str(refused.value) == f"--refresh: {path} {message}"


@pytest.mark.parametrize("drop", [("ok",), ("status",), ("input",), ("etag", "url")])
async def test_a_previous_output_with_either_of_each_pair_serves(
    tmp_path: Path, drop: tuple[str, ...]
) -> None:
    """ok or status, input or url, etag or last_modified: one of each is enough."""
    row = {**_ROW, "last_modified": _DATE}
    rows = [{**row, "index": n} for n in range(3)]
    previous = _open_previous(
        _written(
            tmp_path / "p.jsonl", [{k: v for k, v in r.items() if k not in drop} for r in rows]
        )
    )
    assert (previous.in_place, previous.key) == (False, "url" if "input" in drop else "input")
    items = [_item(n, "u0", "u0") for n in range(3)]
    assert await previous.check(_items(*items)) == 3
