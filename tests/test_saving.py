"""--save-dir: names inside the directory, never two items on one file, the user's umask."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import resource
import stat
import subprocess
import zlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import brotli
import pytest
from aiohttp import web
from backports import zstd
from conftest import LoopbackServer, fetchmany_command, jsonl, run_cli, run_process
from hypothesis import example, given
from hypothesis import strategies as st

from fetchmany.fetch.saving import BodyFile, SaveDir, SaveError, sanitise


def test_names_from_the_template_are_sanitised() -> None:
    assert sanitise("../../etc/passwd") == "_.._.._etc_passwd"
    # Found by a hostile tester: a lone surrogate (a JSON "\ud800", an input's byte that
    # is not UTF-8) crashed the save or left a path no record could carry.
    assert sanitise("a\udcffb.json") == "a_xffb.json"
    assert sanitise("\ud800.json") == "_ud800.json"
    assert sanitise(".hidden") == "_.hidden"
    assert sanitise("a\x00b\nc") == "a_b_c"
    assert len(sanitise("x" * 500 + ".json")) == 200


@pytest.mark.parametrize(
    ("content_type", "ext"),
    [
        (None, ".bin"),  # no type said
        ("", ".bin"),
        ("application/json; charset=utf-8", ".json"),  # the common ones, by our table
        ("TEXT/HTML", ".html"),
        ("image/jpeg", ".jpg"),  # not mimetypes' first pick, .jpe
        ("application/problem+json", ".json"),  # any +json
        ("image/png", ".png"),  # the rest by mimetypes
        ("image/jpg", ".jpg"),  # a common misspelling mimetypes knows, not strictly
        ("application/x-nothing-known", ".bin"),
    ],
)
def test_a_body_s_extension_follows_its_content_type(content_type: str | None, ext: str) -> None:
    from fetchmany.fetch.saving import extension_for

    assert extension_for(content_type) == ext


def test_two_items_never_get_one_name(tmp_path: Path) -> None:
    save = SaveDir(str(tmp_path), "{id}{ext}")
    names = [save.name_for(i, "same", None, "application/json") for i in range(3)]
    assert names == ["same.json", "same-2.json", "same-3.json"]
    assert save.name_for(3, "same-2", None, "application/json") == "same-2-2.json"


def test_an_index_later_in_the_name_may_be_cut_off_so_names_are_still_kept_apart(
    tmp_path: Path,
) -> None:
    """Only a name that starts with ``{index}`` is unique: a long input before it is cut
    with the rest at the name's length limit, and the index with it, so two items that
    share the input's start must still get two names (one body was lost over the other)."""
    save = SaveDir(str(tmp_path), "{}-{index}{ext}")
    long = "x" * 300
    names = [save.name_for(i, long, None, "application/json") for i in range(2)]
    assert names[0] != names[1]


def test_a_name_taken_back_is_the_same_items_again(tmp_path: Path) -> None:
    """A retried attempt's file goes and its name with it (``remove``): the retry gets
    the same name, not ``-2``; taking back a name twice, or one never given, is nothing."""
    save = SaveDir(str(tmp_path), "{id}{ext}")
    path = save.path_for(0, "same", None, "application/json")
    Path(path).write_bytes(b"503 page")
    save.remove(path)
    assert not Path(path).exists()
    save.remove(path)  # already gone: nothing to do
    save.release(str(tmp_path / "never-given.json"))
    assert save.path_for(0, "same", None, "application/json") == path
    assert save.name_for(1, "same", None, "application/json") == "same-2.json"
    save.remove(path)  # free again: whichever item comes first takes it
    assert save.name_for(2, "same", None, "application/json") == "same.json"


def test_a_body_file_discarded_leaves_nothing_and_twice_is_once(tmp_path: Path) -> None:
    body = SaveDir(str(tmp_path)).open_body()
    body.write(b"half a body")
    body.discard()
    assert os.listdir(tmp_path) == []
    body.discard()  # a failure path may discard again: never an error of its own


def test_a_body_file_whose_last_bytes_cannot_be_flushed_is_discarded_quietly(
    tmp_path: Path,
) -> None:
    """The disk filled: closing the file flushes its buffer and fails (ENOSPC). The save
    already failed with its own error; discarding adds none, and leaves no file."""
    body = SaveDir(str(tmp_path)).open_body()
    real = body._stream

    class Full:
        def close(self) -> None:
            real.close()
            raise OSError(28, "No space left on device")

    body._stream = Full()  # type: ignore[assignment]
    body.discard()
    assert os.listdir(tmp_path) == []


def test_names_that_start_with_the_index_are_unique_without_remembering(tmp_path: Path) -> None:
    save = SaveDir(str(tmp_path))
    assert save.name_for(7, "x", None, "text/plain") == "00000007.txt"
    # Not remembered (nothing grows with the number of files): asked again, the same name.
    assert save.name_for(7, "x", None, "text/plain") == "00000007.txt"


@pytest.mark.parametrize(("template", "grows"), [("{index}{ext}", False), ("{id}{ext}", True)])
def test_only_names_that_may_collide_are_remembered(
    tmp_path: Path, template: str, grows: bool
) -> None:
    """A run of millions of bodies under ``{index}`` names keeps memory flat: only a
    template whose names two items may share remembers the names it gave."""
    import tracemalloc

    save = SaveDir(str(tmp_path), template)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for index in range(20_000):
            save.name_for(index, f"item{index}", None, "text/plain")
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert (grown > 1_000_000) is grows, grown


def test_a_row_without_the_field_a_name_needs_is_a_save_error(
    server: LoopbackServer, tmp_path: Path
) -> None:
    """Found by a hostile tester: the file was silently named by the index instead."""
    out = tmp_path / "bodies"
    rows = b'{"id": 1}\n{"id": 2, "name": "b"}\n'
    url = server.url("/item?id={id}")
    result = run_cli(
        "--input-format", "jsonl", "-t", url, "-q", "--save-dir", str(out),
        "--save-name", "{name}{ext}", "--fields", "index,ok,path,error", stdin=rows,
    )  # fmt: skip
    first, second = jsonl(result.stdout)
    assert first["error"] == {"kind": "save", "message": "row has no field 'name' for --save-name"}
    assert first["path"] is None
    assert second["path"] == str(out / "b.json")
    assert os.listdir(out) == ["b.json"]


def test_colliding_names_become_distinct_files(server: LoopbackServer, tmp_path: Path) -> None:
    out = tmp_path / "bodies"
    result = run_cli(
        "--save-dir", str(out), "--save-name", "{id}{ext}", "-t", server.url("/item?id={}"),
        "--limit", "1", "-q", "--fields", "input,path", stdin=b"a\na\nb\n",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    paths = [r["path"] for r in jsonl(result.stdout)]
    assert [os.path.basename(p) for p in paths] == ["a.json", "a-2.json", "b.json"]
    assert all(os.path.exists(p) for p in paths)


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_saved_files_follow_the_umask(server: LoopbackServer, tmp_path: Path, umask: int) -> None:
    out = tmp_path / "bodies"
    old = os.umask(umask)
    try:
        # A process of its own: the umask is read once per process.
        result = run_process("--save-dir", str(out), "-q", stdin=server.url("/item?id=1").encode())
    finally:
        os.umask(old)
    (record,) = jsonl(result.stdout)
    assert stat.S_IMODE(os.stat(record["path"]).st_mode) == 0o666 & ~umask


def test_picks_work_with_save_dir(server: LoopbackServer, tmp_path: Path) -> None:
    out = tmp_path / "bodies"
    result = run_cli(
        "--save-dir", str(out), "--pick", "id=id", "-t", server.url("/item?id={}"), "-q",
        stdin=b"5\n6\n",
    )  # fmt: skip
    records = jsonl(result.stdout)
    assert [r["id"] for r in records] == ["5", "6"]
    assert list(records[0]) == [
        "input", "id", "path", "sha256", "ok", "status", "error", "etag", "last_modified",
    ]  # fmt: skip
    assert Path(records[0]["path"]).read_bytes().startswith(b'{"id": "5"')


def test_a_disk_error_while_saving_is_a_save_record_not_a_connect_one(
    server: LoopbackServer, tmp_path: Path
) -> None:
    def small_files() -> None:  # writes past 50 kB fail (EFBIG), as on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, 50_000))

    out = tmp_path / "bodies"
    proc = subprocess.run(
        [*fetchmany_command(), "--save-dir", str(out), "-t", server.url("/big?bytes={}"), "-q"],
        input=b"100\n200000\n300\n",
        capture_output=True,
        preexec_fn=small_files,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 1
    small, big, other = jsonl(proc.stdout)
    assert small["ok"]
    assert other["ok"]
    assert big["error"]["kind"] == "save"
    assert "File too large" in big["error"]["message"]
    assert big["attempts"] == 1  # a disk error is not retried like a network one
    assert sorted(os.listdir(out)) == ["00000000.txt", "00000002.txt"]  # no partial file


@pytest.mark.parametrize(
    "name", ["界" * 300 + ".json", "x." + "é" * 400, "\udcff" * 300, "a" * 500]
)
def test_a_sanitised_name_fits_a_file_system_in_bytes(name: str) -> None:
    assert len(os.fsencode(sanitise(name))) <= 200


@example("a" * 300, "x" * 44)  # a suffix of 45 bytes, 50 and 51: the edge is 50
@example("a" * 300, "x" * 49)
@example("a" * 300, "x" * 50)
@given(
    st.text(st.sampled_from("ab界é\U0001f600"), min_size=150, max_size=400),
    st.text(st.sampled_from("xj界"), min_size=1, max_size=60),
)
def test_a_long_name_keeps_as_much_as_fits_and_its_extension(stem: str, ext: str) -> None:
    """A name over 200 bytes keeps its extension (up to 50 bytes: a longer "suffix" is
    no extension) and as much of the rest as fits, whole characters only."""
    name = f"{stem}.{ext}"
    kept = sanitise(name)
    size = len(os.fsencode(kept))
    assert size <= 200
    if len(os.fsencode(name)) <= 200:
        assert kept == name
        return
    suffix = f".{ext}" if len(os.fsencode(f".{ext}")) <= 50 else ""
    assert kept.endswith(suffix)
    front = kept.removesuffix(suffix) if suffix else kept
    whole = name.removesuffix(suffix) if suffix else name
    assert whole.startswith(front)
    assert size + len(os.fsencode(whole[len(front)])) > 200  # one more would not fit


@pytest.mark.parametrize(("name", "kept"), [("", "_"), (" ", "_"), ("\t\n", "__")])
def test_a_name_of_nothing_is_an_underscore(name: str, kept: str) -> None:
    assert sanitise(name) == kept


@pytest.mark.parametrize(
    ("name", "busy_type", "extra"),
    [
        ("{id}{ext}", "application/json", ()),
        ("{index}{ext}", "text/plain", ()),
        ("{id}{ext}", "application/json", ("--per-host", "2")),  # the governed path
        ("{index}{ext}", "text/plain", ("--per-host", "2")),  # its stray file
    ],
)
def test_only_the_answer_an_item_ends_with_is_saved(
    serve: Callable[[web.Application], LoopbackServer],
    tmp_path: Path,
    name: str,
    busy_type: str,
    extra: tuple[str, ...],
) -> None:
    """Found by a hostile tester: every attempt's body was saved, so a 503 retried into a
    200 left the error page under the item's name and the answer under ``-2`` (or a
    stray ``.txt`` beside the ``.json``). A retried attempt's file goes, and its name
    with it."""
    asked: dict[str, int] = {}

    async def flaky(request: web.Request) -> web.Response:
        key = request.match_info["id"]
        asked[key] = asked.get(key, 0) + 1
        if asked[key] == 1:
            busy = {"Retry-After": "0"}
            return web.Response(
                text='{"error": "busy"}', status=503, content_type=busy_type, headers=busy
            )
        return web.json_response({"id": key})

    app = web.Application()
    app.router.add_get("/{id}", flaky)
    out = tmp_path / "bodies"
    url = serve(app).url("/{}")
    args = ("--save-dir", str(out), "--save-name", name, "-t", url, "-q", *extra)
    result = run_cli(*args, stdin=b"0\n1\n2\n")
    assert result.returncode == 0, result.stderr
    records = jsonl(result.stdout)
    assert [r["attempts"] for r in records] == [2, 2, 2]
    paths = [r["path"] for r in records]
    assert sorted(os.listdir(out)) == sorted(os.path.basename(p) for p in paths)
    assert [json.loads(Path(p).read_bytes()) for p in paths] == [{"id": k} for k in "012"]


@pytest.mark.parametrize("extra", [(), ("--per-host", "2")])  # the lean path, the governed one
@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "zstd"])
def test_a_body_sent_in_a_coding_is_saved_decoded(
    serve: Callable[[web.Application], LoopbackServer],
    tmp_path: Path,
    coding: str,
    extra: tuple[str, ...],
) -> None:
    """A saved body is the content, as a record's ``body`` is: a Content-Encoding is
    undone while the file is written (the coded bytes are no file a user can open), and
    the record's size and sha256 are the decoded bytes'. --pick reads the same bytes."""
    content = json.dumps({"id": "7", "text": "é" * 300}).encode()
    coders = {
        "gzip": gzip.compress,
        "deflate": zlib.compress,
        "br": brotli.compress,
        "zstd": zstd.compress,
    }
    sent = coders[coding](content)

    async def coded(request: web.Request) -> web.Response:
        headers = {"Content-Encoding": coding, "Content-Type": "application/json"}
        return web.Response(body=sent, headers=headers)

    app = web.Application()
    app.router.add_get("/{id}", coded)
    out = tmp_path / "bodies"
    url = serve(app).url("/{}")
    args = ("--save-dir", str(out), "--pick", "id=id", "-t", url, "-q", *extra)
    result = run_cli(*args, stdin=b"7\n")
    assert result.returncode == 0, result.stderr
    (record,) = jsonl(result.stdout)
    assert Path(record["path"]).read_bytes() == content
    assert record["sha256"] == hashlib.sha256(content).hexdigest()
    assert record["id"] == "7"
    assert sent != content


def test_a_link_at_a_save_name_is_a_save_error_and_nothing_is_written_through_it(
    server: LoopbackServer, tmp_path: Path
) -> None:
    """Found by a hostile tester: a symlink at an item's save name made an ``unexpected``
    record (which docs/records.md calls a bug in fetchmany); it is the item's ``save``
    error, and the file the link points to is left alone."""
    out = tmp_path / "bodies"
    out.mkdir()
    outside = tmp_path / "outside.json"
    outside.write_text("mine")
    (out / "a.json").symlink_to(outside)
    result = run_cli(
        "--save-dir", str(out), "--save-name", "{id}{ext}", "-t", server.url("/item?id={}"),
        "-q", stdin=b"a\nb\n",
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    first, second = jsonl(result.stdout)
    assert first["error"]["kind"] == "save"
    assert "is a link" in first["error"]["message"]
    assert second["ok"] is True
    assert outside.read_text() == "mine"


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv"])
def test_a_resumed_run_saves_over_no_file_the_kept_records_name(
    server: LoopbackServer, tmp_path: Path, fmt: str
) -> None:
    """Found by a hostile tester: under a --save-name two items share, a resumed run
    began naming again from scratch, so its new items were saved over the files the kept
    records name (those records' sha256 then wrong). Each file stays its record's."""
    import hashlib

    bodies = tmp_path / "bodies"
    out = tmp_path / f"out.{fmt}"
    args = ("-t", server.url("/item?id={}"), "--save-dir", str(bodies), "--save-name")
    args += ("same{ext}", "-o", str(out), "-q")
    assert run_cli(*args, stdin=b"1\n2\n3\n").returncode == 0
    kept = {p.name: p.read_bytes() for p in bodies.iterdir()}
    assert len(kept) == 3
    again = run_cli(*args, "--resume", stdin=b"1\n2\n3\n4\n5\n")
    assert again.returncode == 0, again.stderr
    if fmt == "csv":
        import csv

        records = list(csv.DictReader(out.open(newline="")))
    elif fmt == "json":
        records = json.loads(out.read_bytes())
    else:
        records = jsonl(out.read_text())
    paths = [r["path"] for r in records]
    assert len(set(paths)) == 5
    assert sorted(os.listdir(bodies)) == sorted(os.path.basename(p) for p in paths)
    for record in records:
        assert hashlib.sha256(Path(record["path"]).read_bytes()).hexdigest() == record["sha256"]
    assert {name: (bodies / name).read_bytes() for name in kept} == kept


def contents(path: str) -> bytes:
    return Path(path).read_bytes()


@pytest.mark.parametrize(
    ("chunks", "cap", "saved", "truncated"),
    [
        ([b"abc", b"def"], 6, b"abcdef", False),  # exactly the cap: whole
        ([b"abc", b"defg"], 6, b"abcdef", True),  # one byte over: cut, and said
        ([b"abcdefgh"], 3, b"abc", True),
        ([], 6, b"", False),
    ],
)
async def test_a_saved_body_is_cut_at_the_cap_to_the_byte_and_kept_whole_for_picks(
    tmp_path: Path, chunks: list[bytes], cap: int, saved: bytes, truncated: bool
) -> None:
    """What is written, what is kept for --pick and the sha256 agree, at the cap's edge;
    while being written the body is a hidden ``.fetchmany-*.part`` file beside it."""
    import hashlib

    save = SaveDir(str(tmp_path), "{id}{ext}")
    seen: list[list[str]] = []

    async def body() -> AsyncIterator[bytes]:
        for chunk in chunks:
            seen.append(os.listdir(tmp_path))
            yield chunk

    for keep in (False, True):
        result = await save.save(
            body(), index=0, text="b", fields=None, content_type="text/plain", cap=cap, keep=keep
        )
        assert contents(result.path) == saved
        assert (result.size, result.truncated) == (len(saved), truncated)
        assert result.sha256 == hashlib.sha256(saved).hexdigest()
        assert result.body == (saved if keep else b"")
    for names in seen:
        (temp,) = [n for n in names if n != "b.txt"]
        assert temp.startswith(".fetchmany-")
        assert temp.endswith(".part")


def test_a_body_file_s_disk_errors_say_what_failed_and_why(tmp_path: Path) -> None:
    """A save error's message is the record's: the file or directory, and the system's
    reason (a full disk here is /dev/full, which refuses every write with ENOSPC)."""
    gone = tmp_path / "gone"
    reason = "No such file or directory"
    created = f"^cannot create a file in {re.escape(str(gone))}: {reason}"
    with pytest.raises(SaveError, match=created):
        BodyFile(str(gone))
    body = BodyFile(str(tmp_path))
    body._stream.close()
    body._stream = open("/dev/full", "wb", buffering=0)  # noqa: SIM115 (closed by discard)
    with pytest.raises(SaveError, match=r"^cannot write \S+/\.fetchmany-\S+\.part: No space left"):
        body.write(b"a body")
    body.discard()
    body = BodyFile(str(tmp_path))
    missing = tmp_path / "missing" / "b.txt"
    with pytest.raises(SaveError, match=f"^cannot write {re.escape(str(missing))}: {reason}$"):
        body.keep(str(missing))
    body.discard()
    assert os.listdir(tmp_path) == []


async def test_a_save_cut_short_gives_its_name_back_and_keeps_no_body_unasked(
    tmp_path: Path,
) -> None:
    """A body that broke off while being saved leaves no file, and its name goes to the
    next item that has it (not ``-2``); a body is kept in memory only when asked."""
    save = SaveDir(str(tmp_path), "{id}{ext}")

    async def broken() -> AsyncIterator[bytes]:
        yield b"half a body"
        raise ConnectionResetError("the server went away")

    async def whole() -> AsyncIterator[bytes]:
        yield b"a body"

    with pytest.raises(ConnectionResetError):
        await save.save(
            broken(), index=0, text="same", fields=None, content_type="text/plain", cap=100
        )
    assert os.listdir(tmp_path) == []
    result = await save.save(
        whole(), index=1, text="same", fields=None, content_type="text/plain", cap=100
    )
    assert result.path == str(tmp_path / "same.txt")
    assert result.body == b""
    assert contents(result.path) == b"a body"


async def test_a_body_file_that_cannot_be_made_gives_its_name_back(tmp_path: Path) -> None:
    """The directory went away (removed during the run): the item's record is a save
    error, and once it is back the next item of that name gets the name, not ``-2``."""
    directory = tmp_path / "bodies"
    directory.mkdir()
    save = SaveDir(str(directory), "{id}{ext}")

    async def whole() -> AsyncIterator[bytes]:
        yield b"a body"

    directory.rmdir()
    with pytest.raises(SaveError, match=r"^cannot create a file in"):
        await save.save(whole(), index=0, text="same", fields=None, content_type=None, cap=100)
    directory.mkdir()
    result = await save.save(whole(), index=1, text="same", fields=None, content_type=None, cap=9)
    assert result.path == str(directory / "same.bin")
