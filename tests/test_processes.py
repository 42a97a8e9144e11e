"""-P N: worker processes, each a shard, merged in order; the same output as -P 1."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest
from conftest import LoopbackServer, fetchmany_command, jsonl, run_process
from test_limits import starts_within
from test_merge import ids_file, records

from fetchmany.cli.processes import split, usable_processes, worker_job
from fetchmany.cli.run import Job
from fetchmany.input.templates import RequestTemplate
from fetchmany.options import Adaptive, FetchOptions
from fetchmany.output.destination import Output
from fetchmany.output.progress import SilentDisplay
from fetchmany.output.writers import OutputFormat, make_writer


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv"])
@pytest.mark.parametrize("processes", ["2", "3"])
def test_processes_write_what_one_process_writes(
    server: LoopbackServer, tmp_path: Path, fmt: str, processes: str
) -> None:
    urls = ids_file(tmp_path, server)
    one, many = tmp_path / f"one.{fmt}", tmp_path / f"many.{fmt}"
    assert run_process(str(urls), "-q", "--retries", "0", "-o", str(one)).returncode == 1
    result = run_process(str(urls), "-q", "--retries", "0", "-P", processes, "-o", str(many))
    assert result.returncode == 1, result.stderr  # the 500, as with one process
    assert result.stderr == ""
    assert records(many, fmt) == records(one, fmt)


def test_unordered_processes_write_the_same_records(server: LoopbackServer, tmp_path: Path) -> None:
    urls = ids_file(tmp_path, server)
    one = run_process(str(urls), "-q", "--retries", "0")
    many = run_process(str(urls), "-q", "--retries", "0", "-P", "2", "--unordered")

    def key(record: dict[str, object]) -> int:
        return int(str(record["index"]))

    strip = [{k: v for k, v in r.items() if k != "elapsed_ms"} for r in jsonl(many.stdout)]
    expected = [{k: v for k, v in r.items() if k != "elapsed_ms"} for r in jsonl(one.stdout)]
    assert sorted(strip, key=key) == expected


def test_stdin_is_read_once_and_shared(server: LoopbackServer) -> None:
    ids = "".join(f"{i}\n" for i in range(40)).encode()
    result = run_process("-q", "-t", server.url("/item?id={}&max_ms=5"), "-P", "2", stdin=ids)
    assert result.returncode == 0
    assert [r["body"]["id"] for r in jsonl(result.stdout)] == [str(i) for i in range(40)]
    assert server.state.requests == 40


def test_inputs_that_can_be_read_once_are_read_once_and_shared(
    server: LoopbackServer, tmp_path: Path
) -> None:
    """A FIFO and /dev/stdin (a pipe) between regular files: each worker opening them
    would take lines from the others; every line must still get its record, in order."""
    first, last = tmp_path / "first.txt", tmp_path / "last.txt"
    first.write_text("".join(f"{i}\n" for i in range(0, 10)))
    last.write_text("".join(f"{i}\n" for i in range(50, 60)))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    writer = subprocess.Popen(
        ["sh", "-c", f"seq 10 29 > {fifo}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    piped = "".join(f"{i}\n" for i in range(30, 50)).encode()
    url = server.url("/item?id={}&max_ms=3")
    args = [str(first), str(fifo), "/dev/stdin", str(last)]
    result = run_process("-q", "-t", url, "-P", "3", *args, stdin=piped)
    writer.wait(10)
    assert result.returncode == 0, result.stderr
    assert [r["body"]["id"] for r in jsonl(result.stdout)] == [str(i) for i in range(60)]
    assert server.state.requests == 60


def test_the_limit_is_a_total_across_processes(server: LoopbackServer) -> None:
    ids = "".join(f"{i}\n" for i in range(60)).encode()
    url = server.url("/item?id={}&max_ms=30")
    result = run_process("-q", "-t", url, "-P", "2", "--limit", "3", stdin=ids)
    assert result.returncode == 0
    assert len(jsonl(result.stdout)) == 60
    assert server.state.max_in_flight <= 3


@pytest.mark.parametrize(("total", "parts"), [(10, 3), (3, 3), (7, 2), (50, 4)])
def test_limits_split_into_whole_shares_that_add_up(total: int, parts: int) -> None:
    shares = [split(total, parts, part) for part in range(parts)]
    assert sum(shares) == total
    assert max(shares) - min(shares) <= 1


def _job(options: FetchOptions) -> Job:
    return Job(
        inputs=["-"],
        request=RequestTemplate(),
        options=options,
        writer=make_writer(OutputFormat.JSONL, Output(os.devnull)),
        display=SilentDisplay(),
    )


@pytest.mark.parametrize("processes", [2, 3, 4])
def test_each_worker_gets_its_share_of_the_rate_and_limits(processes: int) -> None:
    """-P N: what the user gave is the run's total, so each worker gets a share: the
    rate (a worker given all of it made -P 2 --rate 5/s send 10 a second), --limit and
    --per-host; the shares add up to the totals."""
    job = _job(FetchOptions(rate="6/s", limit=12, per_host=4))
    shares = [worker_job(job, part, processes).options for part in range(processes)]
    assert [share.rate for share in shares] == pytest.approx([6 / processes] * processes)
    assert sum(share.limit for share in shares) == 12
    assert sum(share.per_host or 0 for share in shares) == 4


@pytest.mark.parametrize(
    ("asked", "options", "used"),
    [
        (4, FetchOptions(limit=8, per_host=2), 2),  # each worker keeps a per-host slot
        (4, FetchOptions(limit=3), 3),  # and a request slot
        (4, FetchOptions(limit=8), 4),
        (12, FetchOptions(limit=64, adaptive=Adaptive(ceiling=64, start=4)), 12),
    ],
)
def test_every_worker_gets_at_least_one_of_each_slot_and_an_auto_start(
    asked: int, options: FetchOptions, used: int
) -> None:
    """-P N with fewer per-host slots (or requests) than N runs fewer workers, so none is
    given a share of 0 (a worker of --per-host 0 failed with an internal error); with
    --limit auto each worker starts at one at least, though the start split gives less."""
    job = _job(options)
    processes = usable_processes(job, asked)
    assert processes == used
    for part in range(processes):
        share = worker_job(job, part, processes).options
        assert share.limit >= 1
        assert share.per_host is None or share.per_host >= 1
        assert share.adaptive is None or share.adaptive.start >= 1


@pytest.mark.parametrize("processes", [1, 2, 3, 8])
def test_the_workers_windows_hold_half_of_window_bytes(processes: int) -> None:
    """--window-bytes is the run's total: the workers' windows together hold at most half
    of it, and the parent the other half for putting their records in order."""
    job = _job(FetchOptions(window_bytes=1_000_000))
    shares = [worker_job(job, part, processes).options.window_bytes for part in range(processes)]
    assert sum(shares) <= 500_000
    assert sum(shares) > 500_000 - processes  # whole bytes: at most one short a worker


def test_the_rate_is_a_total_across_processes(server: LoopbackServer) -> None:
    """-P 2 --rate 5/s sends 5 a second, counted at the server. Each worker starts one
    every 0.4 s, so any 2 s holds at most 6 of each: at most 16 with room for late
    starts on a loaded machine; each worker given the whole rate put 22 there."""
    ids = "".join(f"{i}\n" for i in range(30)).encode()
    url = server.url("/item?id={}&max_ms=0")
    result = run_process("-q", "-t", url, "-P", "2", "--rate", "5/s", "--body", "none", stdin=ids)
    assert result.returncode == 0, result.stderr
    arrivals = [at for at, _ in server.state.arrivals]
    assert len(arrivals) == 30
    assert starts_within(arrivals, 2.0) <= 16


def test_more_processes_than_the_limit_allows_use_fewer(server: LoopbackServer) -> None:
    ids = "".join(f"{i}\n" for i in range(10)).encode()
    result = run_process(
        "-q", "-t", server.url("/item?id={}"), "-P", "4", "--limit", "2", stdin=ids
    )
    assert result.returncode == 0
    assert len(jsonl(result.stdout)) == 10
    assert server.state.max_in_flight <= 2


def test_ctrl_c_leaves_the_valid_in_order_prefix(server: LoopbackServer, tmp_path: Path) -> None:
    server.hang_from(15, signal_when_hung=4)
    ids = tmp_path / "ids.txt"
    ids.write_text("".join(f"{i}\n" for i in range(60)))
    out = tmp_path / "out.json"
    url = server.url("/maybe-hang?id={}")
    proc = subprocess.Popen(
        [
            *fetchmany_command(),
            str(ids),
            "-t",
            url,
            "--limit",
            "4",
            "-P",
            "2",
            "--grace",
            "0.5",
            "-o",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert server.state.hung_signal.wait(20), "the run never reached the hanging items"
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    written = json.loads(out.read_text())  # a whole JSON array
    assert [r["index"] for r in written] == list(range(15))
    assert "Traceback" not in stderr.decode()


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()]


@pytest.mark.parametrize("output", ["stdout", "file", "resumed"])
@pytest.mark.parametrize(
    ("kill", "said"),
    [
        (signal.SIGKILL, "worker 1 (shard 1/2) ended early"),
        # A worker alone stopped (not through its parent) ends its shard short, cleanly:
        # that is no whole run either, never an output silently cut at its first gap.
        (signal.SIGTERM, "worker 1 (shard 1/2) was stopped by SIGTERM"),
    ],
)
def test_a_worker_that_dies_is_an_error_and_the_output_is_left_whole(
    server: LoopbackServer, tmp_path: Path, output: str, kill: int, said: str
) -> None:
    """Exit 75 naming the worker. Stdout holds the valid in-order prefix; an -o file is
    left as any failed run leaves it: the previous file in place, a resumed file with
    its whole records (so --resume continues it)."""
    server.hang_from(20, signal_when_hung=2)
    ids = tmp_path / "ids.txt"
    ids.write_text("".join(f"{i}\n" for i in range(60)))
    out = tmp_path / "out.jsonl"
    url = server.url("/maybe-hang?id={}")
    args = [str(ids), "-t", url, "--limit", "2", "-P", "2", "--grace", "0.2"]
    if output == "file":
        out.write_text('{"previous": true}\n')
        args += ["-o", str(out)]
    elif output == "resumed":
        out.write_text("".join(f'{{"index":{i},"input":"{i}"}}\n' for i in range(4)))
        args += ["-o", str(out), "--fields", "index,input", "--resume"]
    before = out.read_bytes() if out.exists() else b""
    proc = subprocess.Popen(
        [*fetchmany_command(), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert server.state.hung_signal.wait(20)
    workers = _children(proc.pid)
    assert len(workers) == 2
    os.kill(workers[1], kill)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 75
    assert said in stderr.decode()
    if output == "stdout":
        indexes = [r["index"] for r in jsonl(stdout)]
        assert indexes == list(range(len(indexes)))
        assert len(indexes) <= 20
    elif output == "file":
        assert out.read_bytes() == before
        assert f"{out} is left as it was" in stderr.decode()
    else:
        indexes = [r["index"] for r in jsonl(out.read_bytes())]
        assert out.read_bytes().startswith(before)
        assert indexes == list(range(len(indexes)))  # whole records, in order
        assert "--resume continues it" in stderr.decode()


def test_a_closed_pipe_ends_every_worker(server: LoopbackServer) -> None:
    ids = "".join(f"{i}\n" for i in range(3000)).encode()
    command = " ".join(fetchmany_command())
    url = server.url("/item?id={}&max_ms=1")
    result = subprocess.run(
        ["bash", "-c", f"{command} -q -t '{url}' -P 2 | head -n 3; echo ${{PIPESTATUS[0]}}"],
        input=ids,
        capture_output=True,
        timeout=60,
    )
    lines = result.stdout.decode().splitlines()
    assert len(lines) == 4
    assert lines[-1] == "141"
    assert result.stderr == b""


def test_resume_under_processes_continues_the_file(server: LoopbackServer, tmp_path: Path) -> None:
    urls = ids_file(tmp_path, server)
    out = tmp_path / "out.jsonl"
    head = "".join(urls.read_text().splitlines(keepends=True)[:7])
    (tmp_path / "head.txt").write_text(head)
    run_process(str(tmp_path / "head.txt"), "-q", "--retries", "0", "-o", str(out))
    resumed = run_process(str(urls), "-q", "--retries", "0", "-P", "2", "-o", str(out), "--resume")
    assert resumed.returncode == 1
    whole = tmp_path / "whole.jsonl"
    run_process(str(urls), "-q", "--retries", "0", "-o", str(whole))
    assert records(out, "jsonl") == records(whole, "jsonl")


@pytest.mark.parametrize("processes", ["2", "3"])
def test_a_resume_onto_changed_input_is_refused_and_the_file_untouched(
    server: LoopbackServer, tmp_path: Path, processes: str
) -> None:
    """As with one process: exit 2, one line, the file as it was (a hostile tester saw
    exit 1 or 143 and the file's torn end trimmed, because a worker's refusal looked
    like a worker dying)."""
    url = server.url("/item?id={}&max_ms=2")
    ids = tmp_path / "ids.txt"
    ids.write_text("".join(f"{i}\n" for i in range(1, 41)))
    out = tmp_path / "out.jsonl"
    assert run_process(str(ids), "-q", "-t", url, "-o", str(out)).returncode == 0
    out.write_bytes(out.read_bytes()[:-5])  # torn, as an interrupted run may leave it
    before = out.read_bytes()
    requests = server.state.requests
    ids.write_text("".join(f"{i}\n" for i in range(2, 42)))  # every line moved up one
    result = run_process(str(ids), "-q", "-t", url, "-o", str(out), "--resume", "-P", processes)
    assert result.returncode == 2, result.stderr
    # Exit 2 says nothing was fetched: no worker starts before every share is checked.
    assert server.state.requests == requests
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("fetchmany:")]
    assert error.startswith("fetchmany: input changed since")
    assert "worker" not in result.stderr
    assert out.read_bytes() == before


def test_a_resume_onto_a_shorter_input_names_the_files_records_not_a_workers(
    server: LoopbackServer, tmp_path: Path
) -> None:
    url = server.url("/item?id={}&max_ms=1")
    out = tmp_path / "out.jsonl"
    ids = "".join(f"{i}\n" for i in range(40)).encode()
    assert run_process("-q", "-t", url, "-o", str(out), stdin=ids).returncode == 0
    fewer = "".join(f"{i}\n" for i in range(30)).encode()
    result = run_process("-q", "-t", url, "-o", str(out), "--resume", "-P", "3", stdin=fewer)
    assert result.returncode == 2
    assert "fewer items than the 40 records the file already holds" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["-P", "0"],
        ["-P", "many"],
        ["-P", "2", "--shard", "0/2"],
        ["-P", "2", "--save-dir", "d", "--save-name", "{id}"],
    ],
)
def test_process_misuse_is_a_usage_error(args: list[str], tmp_path: Path) -> None:
    result = run_process(*args, stdin=b"")
    assert result.returncode == 2
    assert result.stderr.startswith("fetchmany: ")


def test_limit_auto_under_processes_reports_where_it_settled(server: LoopbackServer) -> None:
    ids = "".join(f"{i}\n" for i in range(200)).encode()
    url = server.url("/item?id={}&max_ms=5")
    result = run_process("-t", url, "-P", "2", "--limit", "auto", "-o", "/dev/null", stdin=ids)
    assert result.returncode == 0
    assert "limit auto settled at: 127.0.0.1:" in result.stderr


def test_limit_auto_under_processes_splits_its_ceiling_and_start(server: LoopbackServer) -> None:
    """Each worker adapts its share of auto:MAX: never more than MAX in flight, and the
    settled limits the summary adds up never above it (a hostile tester saw 16 for
    auto:4 with -P 4, each worker reaching the whole ceiling)."""
    ids = "".join(f"{i}\n" for i in range(200)).encode()
    url = server.url("/item?id={}&max_ms=5")
    result = run_process("-t", url, "-P", "3", "--limit", "auto:4", "-o", "/dev/null", stdin=ids)
    assert result.returncode == 0, result.stderr
    settled = re.search(r"limit auto settled at: 127\.0\.0\.1:\d+ (\d+)", result.stderr)
    assert settled is not None, result.stderr
    assert 3 <= int(settled[1]) <= 4  # a share each, grown to its ceiling's share
    assert server.state.max_in_flight <= 4


def test_an_unreadable_later_input_stops_the_run_as_with_one_process(
    server: LoopbackServer, tmp_path: Path
) -> None:
    """Found by a hostile tester: under -P 2 a UTF-16 second input gave exit 2 (nothing
    fetched) after requests were made, or exit 1, from run to run."""
    first, utf16 = tmp_path / "first.txt", tmp_path / "utf16.txt"
    first.write_text("".join(server.url(f"/item?id={i}&max_ms=30") + "\n" for i in range(9)))
    utf16.write_bytes("2\n".encode("utf-16"))
    for _ in range(3):
        later = run_process(str(first), str(utf16), "-q", "-P", "2")
        assert later.returncode == 75, later.stderr
        assert "utf16.txt is UTF-16 text" in later.stderr
        # One process's output: every record before the input that cannot be read (a
        # second tester saw a random few, the parent killing the workers at the first).
        assert [r["index"] for r in jsonl(later.stdout)] == list(range(9))
    at_once = run_process(str(utf16), str(first), "-q", "-P", "2")
    assert at_once.returncode == 2
    assert at_once.stdout == b""


async def test_a_workers_stop_report_after_the_users_signal_is_the_interruption(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The parent forwards Ctrl-C to every worker, and each reports "stopped" as it ends.
    That report is the interruption, not a failure: the parent signals no one again, so
    a worker still in its --grace finishes its requests in flight (a second signal means
    "stop now", and dropped them). A worker stopped without its parent (a SIGTERM to it
    alone) is a failure that stops the others."""
    import pickle

    from fetchmany.cli import processes
    from fetchmany.output.stats import RunStats

    sent: list[tuple[int, int]] = []
    monkeypatch.setattr(processes.os, "kill", lambda pid, sig: sent.append((pid, sig)))

    def stopped_report(worker: processes._Worker, sig: int) -> None:
        payload = pickle.dumps(processes._Stopped(sig))
        worker.buffer += processes._HEADER.pack(len(payload)) + payload

    for user_signal in (True, False):
        sent.clear()
        parent = processes.Parallel(_job(FetchOptions(limit=4)), 2, RunStats(started=0.0))
        parent.workers = [processes._Worker(0, 1000, -1), processes._Worker(1, 1001, -1)]
        if user_signal:
            parent.stop(signal.SIGINT)
            assert sent == [(1000, signal.SIGINT), (1001, signal.SIGINT)]
            sent.clear()
        stopped_report(parent.workers[0], signal.SIGTERM if not user_signal else signal.SIGINT)
        parent._frames(parent.workers[0])
        if user_signal:
            assert (parent.failure, sent) == (None, [])
        else:
            assert parent.failure == "worker 0 (shard 0/2) was stopped by SIGTERM"
            assert sent == [(1000, signal.SIGTERM), (1001, signal.SIGTERM)]
