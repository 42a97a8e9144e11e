"""Ctrl-C, SIGTERM and crashes on a real process: output stays valid and in order."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from aiohttp import web
from conftest import LoopbackServer, fetchmany_command

IDS = "".join(f"{i}\n" for i in range(60)).encode()


def start(server: LoopbackServer, *args: str) -> subprocess.Popen[bytes]:
    with tempfile.TemporaryFile() as ids:
        ids.write(IDS)
        ids.seek(0)
        return subprocess.Popen(
            [*fetchmany_command(), "-t", server.url("/maybe-hang?id={}"), "--limit", "4", *args],
            stdin=ids,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )


def hang_after(server: LoopbackServer, first_hanging: int) -> None:
    """Items before ``first_hanging`` answer; later ones hang. Returns when 4 hang (the limit),
    so every earlier item has completed."""
    server.hang_from(first_hanging, signal_when_hung=4)


def wait_hung(server: LoopbackServer) -> None:
    assert server.state.hung_signal.wait(20), "the run never reached the hanging items"


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_ends_with_valid_json_in_order(server: LoopbackServer, sig: int, code: int) -> None:
    hang_after(server, 15)
    proc = start(server, "-f", "json", "--grace", "0.5")
    wait_hung(server)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == code
    records = json.loads(stdout)  # a complete JSON array
    assert [r["index"] for r in records] == list(range(15))
    assert "Interrupted." in stderr.decode()
    assert "Traceback" not in stderr.decode()


def test_sigterm_leaves_whole_csv_rows(server: LoopbackServer) -> None:
    hang_after(server, 7)
    proc = start(server, "-f", "csv", "--grace", "0.5")
    wait_hung(server)
    proc.send_signal(signal.SIGTERM)
    stdout, _ = proc.communicate(timeout=30)
    assert proc.returncode == 143
    rows = list(csv.DictReader(io.StringIO(stdout.decode(), newline="")))
    assert [row["index"] for row in rows] == [str(i) for i in range(7)]


def test_in_flight_requests_finish_within_the_grace(server: LoopbackServer) -> None:
    hang_after(server, 5)
    proc = start(server, "-f", "jsonl", "--grace", "30")
    wait_hung(server)
    proc.send_signal(signal.SIGINT)
    server.stop_hanging()  # the hung requests now answer, inside the grace period
    stdout, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130
    indices = [json.loads(line)["index"] for line in stdout.splitlines()]
    assert indices[:9] == list(range(9))  # the 4 in flight completed and were written
    assert indices == list(range(len(indices)))
    assert len(indices) < 60  # and no new work started


def test_second_ctrl_c_exits_at_once(server: LoopbackServer) -> None:
    hang_after(server, 3)
    proc = start(server, "-f", "json", "-o", "/dev/stdout", "--grace", "60")
    wait_hung(server)
    assert proc.stderr is not None
    proc.send_signal(signal.SIGINT)
    note = proc.stderr.readline().decode()
    assert "Ctrl-C" in note  # the first one was handled: it waits for the grace
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    stdout, _ = proc.communicate(timeout=30)
    assert time.monotonic() - started < 20  # far less than the 60 s grace
    assert proc.returncode == 130
    assert [r["index"] for r in json.loads(stdout)] == [0, 1, 2]


def test_a_crash_never_destroys_the_previous_result(server: LoopbackServer, tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    out.write_text('{"previous": "complete result"}\n')
    hang_after(server, 10)
    proc = start(server, "-o", str(out))
    wait_hung(server)
    proc.send_signal(signal.SIGKILL)  # no handler runs: a crash
    proc.communicate(timeout=30)
    assert out.read_text() == '{"previous": "complete result"}\n'


def test_output_file_is_complete_after_ctrl_c(server: LoopbackServer, tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    hang_after(server, 12)
    proc = start(server, "-o", str(out), "--grace", "0.2")
    wait_hung(server)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert [r["index"] for r in json.loads(out.read_text())] == list(range(12))
    assert sorted(os.listdir(tmp_path)) == ["results.json"]  # no temporary file left behind


def wait_until(condition: Callable[[], bool], timeout: float = 20) -> None:
    """Spin until ``condition`` holds (a file appearing has no event to wait on)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.0005)


@pytest.mark.parametrize("group", [False, True], ids=["to-the-process", "to-its-group"])
@pytest.mark.parametrize("processes", ["1", "2", "3"])
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_as_the_output_file_appears_leaves_no_trace(
    server: LoopbackServer, tmp_path: Path, sig: int, code: int, processes: str, group: bool
) -> None:
    """The moment a pod's SIGTERM or a terminal's Ctrl-C (sent to the whole process
    group) likes to hit: the temporary file and the lock exist, the run is starting.
    No temporary file, lock or empty file is left; a file left is a whole document;
    nothing says "stopping" without the summary after it; exit 130 or 143."""
    ids = tmp_path / "ids.txt"
    ids.write_text("".join(f"{i}\n" for i in range(200)))
    out = tmp_path / "new.json"
    proc = subprocess.Popen(
        [*fetchmany_command(), str(ids), "-t", server.url("/item?id={}"), "-P", processes,
         "-o", str(out), "--grace", "0.5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip
    wait_until(lambda: any(path.name.endswith(".part") for path in tmp_path.iterdir()))
    (os.killpg if group else os.kill)(proc.pid, sig)
    stdout, stderr = proc.communicate(timeout=30)
    said = stderr.decode()
    assert proc.returncode == code, said
    assert stdout == b""
    assert "Traceback" not in said
    assert "KeyboardInterrupt" not in said
    assert "worker" not in said
    if "starting no new requests" in said:
        assert "Interrupted." in said
    left = sorted(path.name for path in tmp_path.iterdir())
    assert left in (["ids.txt"], ["ids.txt", "new.json"])
    if out.exists():
        records = json.loads(out.read_bytes())
        assert [r["index"] for r in records] == list(range(len(records)))
        assert records  # an interrupted run that completed nothing leaves no file


def test_after_an_interruption_one_line_says_what_the_file_holds_and_how_to_go_on(
    server: LoopbackServer, tmp_path: Path
) -> None:
    out = tmp_path / "results.jsonl"
    hang_after(server, 12)
    proc = start(server, "-o", str(out), "--grace", "0.2", "-q")
    wait_hung(server)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 143
    assert stderr.decode().splitlines()[-1] == (
        f"fetchmany: {out} holds 12 records; the same command with --resume continues it"
    )
    server.stop_hanging()
    server.reset()
    hang_after(server, 20)
    proc = start(server, "-o", str(out), "--grace", "0.2", "--resume")
    wait_hung(server)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert stderr.decode().splitlines()[-1] == (
        f"fetchmany: {out} holds 20 records; the same command continues it"
    )
    assert [json.loads(line)["index"] for line in out.read_bytes().splitlines()] == list(range(20))


@pytest.mark.parametrize(
    ("name", "previous", "resume"),
    [
        ("results.json", b'[{"previous": "complete result"}]\n', False),
        ("results.jsonl", None, False),
        # --resume creates the file to lock it: no empty file (nor empty document) is left
        *((f"results.{fmt}", None, True) for fmt in ("jsonl", "json", "csv")),
    ],
)
def test_an_interruption_before_any_record_leaves_the_file_as_it_was(
    server: LoopbackServer, tmp_path: Path, name: str, previous: bytes | None, resume: bool
) -> None:
    out = tmp_path / name
    if previous is not None:
        out.write_bytes(previous)
    hang_after(server, 0)
    proc = start(server, "-o", str(out), "--grace", "0.2", *(["--resume"] if resume else []))
    wait_hung(server)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 143
    assert stderr.decode().splitlines()[-1] == (
        f"fetchmany: no record was complete; {out} is left as it was"
    )
    assert sorted(os.listdir(tmp_path)) == ([name] if previous is not None else [])
    if previous is not None:
        assert out.read_bytes() == previous


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_items_wait_under_max_time(server: LoopbackServer, sig: int) -> None:
    """-m wraps each attempt and each retry's wait for a slot; a signal still ends the
    run at once, with every record completed in order and none half-made."""
    hang_after(server, 15)
    proc = start(server, "-f", "json", "--grace", "0.5", "-m", "60")
    wait_hung(server)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 128 + sig
    assert [r["index"] for r in json.loads(stdout)] == list(range(15))
    assert "Traceback" not in stderr.decode()


def test_ctrl_c_during_a_backoff_under_max_time(
    serve: Callable[[web.Application], LoopbackServer],
) -> None:
    """An item backing off (a Retry-After of 20 s, within its -m 60) is abandoned on
    Ctrl-C: the run ends at once, and the item has no record rather than a made-up one."""
    asked = threading.Event()

    async def busy(request: web.Request) -> web.Response:
        asked.set()
        return web.Response(status=503, headers={"Retry-After": "20"})

    app = web.Application()
    app.router.add_get("/busy", busy)
    url = serve(app).url("/busy")
    proc = subprocess.Popen(
        [*fetchmany_command(), "-m", "60", "--max-backoff", "60"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None
    proc.stdin.write(url.encode() + b"\n")
    proc.stdin.close()
    assert asked.wait(20)
    time.sleep(0.2)  # the answer read and the backoff begun (it lasts 20 s: no race)
    began = time.monotonic()
    proc.send_signal(signal.SIGINT)
    stdout = proc.stdout.read() if proc.stdout is not None else b""
    stderr = proc.stderr.read() if proc.stderr is not None else b""
    proc.wait(30)
    assert time.monotonic() - began < 10
    assert proc.returncode == 130
    assert stdout == b""
    assert "Interrupted. 0 records" in stderr.decode()
    assert "Traceback" not in stderr.decode()
