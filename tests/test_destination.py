"""The output's life: locked for the run, replaced only when whole, untouched on failure."""

from __future__ import annotations

import contextlib
import errno
import io
import os
import re
import resource
import shutil
import signal
import stat
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import pytest
from conftest import in_a_child

from fetchmany.output.destination import (
    Output,
    OutputBusy,
    OutputError,
    os_reason,
    replaceable_path,
    write_pieces,
)


def test_a_new_file_appears_only_on_commit(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(b"old\n")
    output = Output(str(path))
    output.write(b"new\n")
    assert path.read_bytes() == b"old\n"
    output.commit()
    assert path.read_bytes() == b"new\n"
    assert os.listdir(tmp_path) == ["out.jsonl"]


def test_abandon_leaves_the_previous_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(b"old\n")
    output = Output(str(path))
    output.write(b"half a rec")
    output.abandon()
    assert path.read_bytes() == b"old\n"
    assert os.listdir(tmp_path) == ["out.jsonl"]


@pytest.mark.parametrize("resume", [False, True])
def test_a_committed_file_is_on_disk_before_it_is_renamed_into_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, resume: bool
) -> None:
    """Durability, which no crash of the process can show (only of the machine): the
    records are flushed to the disk (fsync) before the rename that publishes them, so a
    power cut after the run said done leaves the whole new file or the old one, never
    an empty or short one. A resumed file is flushed before the run says done too."""
    path = tmp_path / "out.jsonl"
    path.write_bytes(b"old\n")
    events: list[tuple[str, int]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        real_fsync(fd)
        events.append(("fsync", os.fstat(fd).st_ino))

    def replace(source: str, target: str) -> None:
        events.append(("replace", os.stat(source).st_ino))
        real_replace(source, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    output = Output(str(path), resume=resume)
    output.write(b'{"index":0}\n')
    output.commit()
    written = os.stat(path).st_ino
    if resume:  # written in place: flushed, nothing renamed
        assert events == [("fsync", written)]
    else:
        assert events == [("fsync", written), ("replace", written)]
        assert path.read_bytes() == b'{"index":0}\n'


def test_abandon_removes_a_file_the_run_created(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    output = Output(str(path))
    assert path.exists()  # created empty, to hold the lock
    output.abandon()
    assert not path.exists()


def test_a_second_output_on_the_same_file_is_refused_until_the_first_ends(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    first = Output(str(path))
    with pytest.raises(OutputBusy) as busy:
        Output(str(path), resume=True)
    assert str(busy.value) == (
        f"{path} is being written by another fetchmany run; "
        "wait for it to end or choose another --output"
    )
    with pytest.raises(OutputBusy):
        Output(str(path))
    first.write(b"1\n")
    first.commit()
    second = Output(str(path), resume=True)
    second.start_at(2)
    second.write(b"2\n")
    second.commit()
    assert path.read_bytes() == b"1\n2\n"


def resumed(path: Path, content: bytes, kept: int) -> Output:
    """An output resumed on a file holding ``content``, of which ``kept`` bytes stay."""
    path.write_bytes(content)
    output = Output(str(path), resume=True)
    output.start_at(kept)
    return output


def input_output_error(*args: object) -> None:
    raise OSError(5, "Input/output error")


def test_a_resumed_file_is_cut_back_to_its_last_whole_batch_and_closed(tmp_path: Path) -> None:
    path = tmp_path / "out.json"
    output = resumed(path, b'[\n{"i":0}\n]\n', kept=len(b'[\n{"i":0}'))
    output.write(b',\n{"i":1}')
    output.mark()
    output.write(b',\n{"i":')  # the disk filled up mid-batch
    output.abandon(closing=b"\n]\n")
    assert path.read_bytes() == b'[\n{"i":0},\n{"i":1}\n]\n'


def test_a_resumed_file_is_untouched_when_nothing_was_written(tmp_path: Path) -> None:
    path = tmp_path / "out.json"
    output = resumed(path, b'[\n{"i":0}\n]\n', kept=len(b'[\n{"i":0}'))
    output.abandon(closing=b"\n]\n")
    assert path.read_bytes() == b'[\n{"i":0}\n]\n'


def test_a_resumed_file_without_a_closing_is_cut_back_and_nothing_added(tmp_path: Path) -> None:
    """JSON Lines has no closing bracket: the file ends with its last whole batch."""
    path = tmp_path / "out.jsonl"
    output = resumed(path, b'{"i":0}\n', kept=len(b'{"i":0}\n'))
    output.write(b'{"i":1}\n')
    output.mark()
    output.write(b'{"i":')
    output.abandon()
    assert path.read_bytes() == b'{"i":0}\n{"i":1}\n'


@pytest.mark.parametrize(
    ("call", "resume"),
    [("ftruncate", True), ("close", True), ("close", False), ("unlink", False)],
)
def test_abandon_never_raises_and_lets_the_file_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, call: str, resume: bool
) -> None:
    """The disk will not cut a resumed file back, close it or remove a temporary (EIO):
    abandon says nothing (the run is already failing with its own error), the previous
    records stay, and the lock is let go for the next run."""
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"i":0}\n')
    output = Output(str(path), resume=resume)
    if resume:
        output.start_at(len(b'{"i":0}\n'))
    output.write(b'{"i":')

    monkeypatch.setattr(os, call, input_output_error)
    try:
        output.abandon(closing=b"")
    finally:
        monkeypatch.undo()
    assert path.read_bytes().startswith(b'{"i":0}\n')  # the previous records stay
    if call != "close":  # (a lock whose descriptor would not close stays held)
        again = Output(str(path), resume=True)  # not OutputBusy
        again.abandon()


def test_abandon_of_a_new_file_never_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Neither the temporary nor the empty file made to hold the lock can be removed."""
    path = tmp_path / "out.jsonl"
    output = Output(str(path))
    output.write(b'{"i":')

    monkeypatch.setattr(os, "unlink", input_output_error)
    output.abandon()
    monkeypatch.undo()
    assert path.read_bytes() == b""  # nothing of this run's in it


def test_abandon_twice_is_abandon_once(tmp_path: Path) -> None:
    """A signal's handler and the way out may both abandon: the second does nothing, so
    a file another run made at the path since is not taken for this run's own."""
    path = tmp_path / "out.jsonl"
    output = Output(str(path))
    output.abandon()
    assert not path.exists()
    other = Output(str(path))  # another run's, created empty to hold its lock
    output.abandon()
    assert path.exists()
    other.abandon()


def test_devices_are_probed_before_use() -> None:
    with pytest.raises(OutputError, match="No space left on device"):
        Output("/dev/full")
    output = Output("/dev/null")
    output.write(b"x")
    output.commit()
    assert not stat.S_ISREG(os.stat("/dev/null").st_mode)


def test_a_pipe_given_as_the_output_gets_only_the_records(tmp_path: Path) -> None:
    """``-o /dev/fd/N`` (or a FIFO) is probed with a write of nothing, not of anything."""
    read, write = os.pipe()
    try:
        output = Output(f"/dev/fd/{write}")
        output.write(b"x\n")
        output.commit()
        os.close(write)
        write = -1
        with os.fdopen(read, "rb") as reader:
            read = -1
            assert reader.read() == b"x\n"
    finally:
        for fd in (read, write):
            if fd >= 0:
                os.close(fd)


def test_an_os_reason_is_its_words_or_else_the_error_itself() -> None:
    assert os_reason(OSError(28, "No space left on device")) == "No space left on device"
    assert os_reason(OSError("a reason of its own")) == "a reason of its own"


def test_a_missing_directory_is_an_output_error(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="cannot write"):
        Output(str(tmp_path / "missing" / "out.jsonl"))


def test_committed_files_follow_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        from fetchmany.files import new_file_mode

        new_file_mode.cache_clear()
        output = Output(str(tmp_path / "out.jsonl"))
        output.commit()
    finally:
        os.umask(old)
        new_file_mode.cache_clear()
    assert stat.S_IMODE(os.stat(tmp_path / "out.jsonl").st_mode) == 0o640


def test_a_commit_cut_short_leaves_the_previous_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(b"old\n")
    output = Output(str(path))
    output.write(b"new\n")

    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        output.commit()
    assert path.read_bytes() == b"old\n"
    assert os.listdir(tmp_path) == ["out.jsonl"]


def test_a_replaced_file_keeps_the_previous_mode(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(b"old\n")
    path.chmod(0o604)
    output = Output(str(path))
    output.write(b"new\n")
    output.commit()
    assert stat.S_IMODE(path.stat().st_mode) == 0o604


def test_pieces_reach_a_slow_non_blocking_pipe_whole_and_in_order() -> None:
    """More pieces than one writev takes, of sizes that a pipe's 64 KiB cuts mid-piece,
    some empty, to a reader slower than the writer: every byte arrives, in order."""
    pieces = [bytes([n % 251]) * (n * 37 % 9000) for n in range(3000)]
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)  # as another process may leave a shared pipe
    received = bytearray()

    def drain() -> None:
        with os.fdopen(read_fd, "rb", buffering=0) as stream:
            while chunk := stream.read(4096):
                received.extend(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    try:
        write_pieces(write_fd, pieces)
    finally:
        os.close(write_fd)
        reader.join()
    assert bytes(received) == b"".join(pieces)


def test_more_pieces_than_one_writev_takes_reach_a_file_whole(tmp_path: Path) -> None:
    """A file takes each writev whole, so a batch of more pieces than one writev may
    carry (IOV_MAX) goes out as several whole writes, every one of them."""
    pieces = [b"%d\n" % n for n in range(3000)]
    path = tmp_path / "records"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        write_pieces(fd, pieces)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"".join(pieces)


def test_empty_pieces_write_nothing_and_end() -> None:
    """A batch whose pieces are all empty (a frame with nothing in it) writes nothing and
    returns, rather than asking writev again for what it cannot take."""
    read_fd, write_fd = os.pipe()
    try:
        write_pieces(write_fd, [b"", b"", b""])
        write_pieces(write_fd, [b"", b"ab", b"", b"c", b""])
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as stream:
            assert stream.read() == b"abc"
    finally:
        for fd in (read_fd, write_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


def test_a_replaced_file_keeps_its_owner_and_mode_where_the_user_may_give_it(
    tmp_path: Path,
) -> None:
    """A shared output (another user's, group-writable) stays theirs and stays shared when
    a run replaces it: root gives the new file the old one's owner and group. Anyone
    else cannot give a file away, and the run goes on with the file its own."""
    path = tmp_path / "out.jsonl"
    path.write_bytes(b"old\n")
    os.chmod(path, 0o664)
    root = os.geteuid() == 0
    owner = (4321, 8765) if root else (os.geteuid(), os.getegid())
    if root:
        os.chown(path, *owner)
    output = Output(str(path))
    output.write(b"new\n")
    output.commit()
    after = os.stat(path)
    assert path.read_bytes() == b"new\n"
    assert (after.st_uid, after.st_gid) == owner
    assert stat.S_IMODE(after.st_mode) == 0o664


def test_a_new_output_is_never_executable_even_before_its_commit(tmp_path: Path) -> None:
    """The file a run creates and locks at its path is there from the start: it has the
    mode ``open`` would give it (the umask's, no execute bit), then and after the commit."""
    from fetchmany.files import new_file_mode

    path = tmp_path / "out.jsonl"
    output = Output(str(path))
    assert stat.S_IMODE(os.stat(path).st_mode) == new_file_mode()
    assert not os.stat(path).st_mode & 0o111
    output.write(b"new\n")
    output.commit()
    assert stat.S_IMODE(os.stat(path).st_mode) == new_file_mode()


def _flock_that(then: Callable[[], None], times: int = 1) -> Callable[[int, int], None]:
    """``fcntl.flock`` that locks, and the first ``times`` times does ``then`` just
    after: another run acting between our open and our check of the path."""
    import fcntl

    lock = fcntl.flock  # the real one: the test patches the module's
    calls = []

    def flock(fd: int, operation: int) -> None:
        lock(fd, operation)
        calls.append(fd)
        if len(calls) <= times:
            then()

    return flock


@pytest.mark.parametrize("removed", [True, False])
def test_a_file_removed_or_replaced_while_it_was_locked_is_opened_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, removed: bool
) -> None:
    """Another run renamed its own file into place, or removed the file, between our
    open and our lock: the lock guards a file nobody will see, so the path is opened
    again, and the records go to the file at the path."""
    import fetchmany.output.destination as destination

    path = tmp_path / "out.jsonl"
    path.write_bytes(b"old\n")

    def other_run() -> None:
        if removed:
            path.unlink()
        else:
            (tmp_path / "theirs").write_bytes(b"theirs\n")
            os.replace(tmp_path / "theirs", path)

    monkeypatch.setattr(destination.fcntl, "flock", _flock_that(other_run))
    output = Output(str(path), resume=True)
    output.write(b"mine\n")
    output.commit()
    assert path.read_bytes() == b"mine\n"


def test_a_file_that_keeps_changing_under_another_run_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fetchmany.output.destination as destination

    path = tmp_path / "out.jsonl"
    monkeypatch.setattr(destination.fcntl, "flock", _flock_that(path.unlink, times=99))
    with pytest.raises(OutputBusy) as busy:
        Output(str(path))
    assert str(busy.value) == (f"{path} keeps changing under another run; choose another --output")


@pytest.mark.parametrize(
    ("errno_", "runs"), [(errno.ENOLCK, True), (errno.EOPNOTSUPP, True), (errno.EIO, False)]
)
def test_a_file_system_without_locks_runs_unlocked_and_any_other_error_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, errno_: int, runs: bool
) -> None:
    """Some network mounts have no locks (ENOLCK, EOPNOTSUPP): the run goes on
    unlocked. Any other error of the lock stops the run, says why, and leaves no file."""
    import fetchmany.output.destination as destination

    def flock(fd: int, operation: int) -> None:
        raise OSError(errno_, os.strerror(errno_))

    monkeypatch.setattr(destination.fcntl, "flock", flock)
    path = tmp_path / "out.jsonl"
    if runs:
        output = Output(str(path))
        output.write(b"1\n")
        output.commit()
        assert path.read_bytes() == b"1\n"
    else:
        with pytest.raises(OutputError, match=f"^cannot write {path}: {os.strerror(errno_)}$"):
            Output(str(path))
        assert not path.exists()


@pytest.mark.parametrize(
    "path",
    ["/dev/fetchmany-no-such-device", "/proc/fetchmany-no-such-entry", "/dev/null", "/dev/stdout"],
)
def test_nothing_under_dev_or_proc_is_replaced_by_a_new_file(path: str) -> None:
    """-o /dev/stdout, /dev/null, /proc/self/fd/N: written in place, never a temporary
    file renamed over the name (as root, a rename would put a regular file where the
    device was). Decided by the name alone, whether or not it exists yet."""
    assert replaceable_path(path) is None


def test_a_regular_file_or_a_new_name_is_replaced_at_its_real_path(tmp_path: Path) -> None:
    """A link's target is the file replaced, never the link itself."""
    target = tmp_path / "records.jsonl"
    target.write_bytes(b"")
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)
    assert replaceable_path(str(link)) == str(target)
    assert replaceable_path(str(tmp_path / "new.jsonl")) == str(tmp_path / "new.jsonl")
    assert replaceable_path(str(tmp_path)) is None  # a directory: not a file to replace


def _stdout_on(monkeypatch: pytest.MonkeyPatch, path: Path | str) -> TextIO:
    """``sys.stdout`` opened on ``path``, as a shell's ``> path`` gives it."""
    stream = open(path, "w")  # noqa: SIM115 (closed by the test that asked for it)
    monkeypatch.setattr(sys, "stdout", stream)
    return stream


def test_stdout_is_written_by_its_descriptor_and_left_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records go to stdout's own descriptor, unbuffered; the run's end closes nothing it
    did not open, so what writes after it (a caller's own output) still can."""
    path = tmp_path / "stdout"
    with _stdout_on(monkeypatch, path) as stream:
        output = Output(None)
        output.write(b"1\n")
        assert path.read_bytes() == b"1\n"  # at once: nothing held in a buffer
        output.commit()
        os.write(stream.fileno(), b"after\n")
    assert path.read_bytes() == b"1\nafter\n"


def test_records_given_to_stdout_stay_there_when_the_run_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run that fails cannot take back what a reader of stdout already has, and adds
    nothing to it: no closing bracket after a cut is written to a stream."""
    path = tmp_path / "stdout"
    with _stdout_on(monkeypatch, path):
        output = Output(None)
        output.write(b'[\n{"i":0}')
        output.mark()
        output.abandon(closing=b"\n]\n")
    assert path.read_bytes() == b'[\n{"i":0}'


def test_a_stdout_with_no_descriptor_gets_the_records_through_its_buffer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A caller's stand-in stdout (a test runner's capture) has no descriptor to write."""
    buffer = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(buffer))
    output = Output(None)
    output.write_pieces((b"1\n", b"2\n"))
    output.commit()
    assert buffer.getvalue() == b"1\n2\n"


def test_a_closed_stdout_is_refused_with_the_way_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """``fetchmany ... >&-``: Python starts with no sys.stdout at all."""
    monkeypatch.setattr(sys, "stdout", None)
    with pytest.raises(OutputError) as refused:
        Output(None)
    assert str(refused.value) == "stdout is closed; give --output FILE"


def test_an_output_that_refuses_writes_is_named_in_the_refusal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Refused at the probe, before any request: by the name the user gave, or as stdout."""
    with pytest.raises(OutputError) as refused:
        Output("/dev/full")
    assert str(refused.value) == "cannot write /dev/full: No space left on device"
    with _stdout_on(monkeypatch, "/dev/full"), pytest.raises(OutputError) as refused:
        Output(None)
    assert str(refused.value) == "cannot write stdout: No space left on device"


@pytest.mark.parametrize(
    "name", ["missing/", "missing/.", "missing/..", "sub/", "sub/.", ".", ".."]
)
def test_a_name_that_ends_as_a_directory_is_refused_and_nothing_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """``-o missing/``: without the check, the path resolved would drop the slash and a
    file named like the directory would be made; an existing one would be refused in
    the system's words."""
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OutputError) as refused:
        Output(name)
    assert str(refused.value) == f"cannot write {name}: it names a directory, not a file"
    assert os.listdir(tmp_path) == ["sub"]
    assert os.listdir(tmp_path / "sub") == []


def test_a_file_written_in_place_holds_only_this_runs_records(tmp_path: Path) -> None:
    """``-o /dev/fd/N`` naming a regular file is written in place, from its start, as
    ``curl -o`` would: nothing of what it held before is left after the records."""
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"an older":"and longer record"}\n')
    fd = os.open(path, os.O_RDONLY)
    try:
        output = Output(f"/dev/fd/{fd}")
        output.write(b"1\n")
        output.commit()
    finally:
        os.close(fd)
    assert path.read_bytes() == b"1\n"


def test_a_resume_refused_for_a_file_written_in_place_loses_nothing(tmp_path: Path) -> None:
    """``--resume -o /dev/fd/N`` is refused (only a regular file by its own name is
    continued): the records the file holds are still all there."""
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"i":0}\n')
    fd = os.open(path, os.O_RDONLY)
    try:
        output = Output(f"/dev/fd/{fd}", resume=True)
        assert not output.resumable
        output.abandon()
    finally:
        os.close(fd)
    assert path.read_bytes() == b'{"i":0}\n'


def test_a_new_file_made_in_place_is_not_executable() -> None:
    """``-o /dev/shm/out.jsonl`` is written in place (under /dev) and made by the run: it
    gets the mode ``open`` gives, the umask's, as a file in any other place does."""
    from fetchmany.files import new_file_mode

    path = Path(f"/dev/shm/fetchmany-test-{os.getpid()}.jsonl")
    try:
        output = Output(str(path))
        output.write(b"1\n")
        output.commit()
        assert path.read_bytes() == b"1\n"
        assert stat.S_IMODE(path.stat().st_mode) == new_file_mode()
    finally:
        path.unlink(missing_ok=True)


def test_a_new_run_is_written_aside_in_a_hidden_part_file_beside_its_output(
    tmp_path: Path,
) -> None:
    """Beside it, so that the commit is a rename on one file system; hidden, and named
    for its output, so that one a killed run leaves behind says whose it is."""
    path = tmp_path / "out.jsonl"
    output = Output(str(path))
    output.write(b"1\n")
    aside, locked = sorted(os.listdir(tmp_path))
    assert locked == "out.jsonl"
    assert re.fullmatch(r"\.out\.jsonl\.\w+\.part", aside)
    assert (tmp_path / aside).read_bytes() == b"1\n"
    output.commit()
    assert os.listdir(tmp_path) == ["out.jsonl"]


def test_a_commit_the_disk_refuses_says_so_and_leaves_the_previous_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rename into place fails (EIO): the run is told why, the previous file stays as
    it was, no temporary is left, and the next run may use the path."""
    path = tmp_path / "out.jsonl"
    path.write_bytes(b"old\n")
    output = Output(str(path))
    output.write(b"new\n")
    monkeypatch.setattr(os, "replace", input_output_error)
    try:
        with pytest.raises(OutputError) as refused:
            output.commit()
    finally:
        monkeypatch.undo()
    assert str(refused.value) == f"cannot write {path}: Input/output error"
    assert path.read_bytes() == b"old\n"
    assert os.listdir(tmp_path) == ["out.jsonl"]
    Output(str(path)).abandon()  # not OutputBusy: the lock was let go


def test_a_committed_output_is_kept_by_an_abandon_after_it(tmp_path: Path) -> None:
    """The way out abandons whatever is unfinished; a committed output is finished. An
    empty one (an input with no lines) is the run's result, not a file to remove."""
    path = tmp_path / "out.jsonl"
    output = Output(str(path))
    output.commit()
    output.abandon()
    assert path.read_bytes() == b""


def test_a_resumed_file_starts_a_new_array_only_when_it_holds_nothing(tmp_path: Path) -> None:
    """``at_start`` tells a JSON array's writer whether to open the array or go on."""
    assert resumed(tmp_path / "empty.json", b"", kept=0).at_start is True
    assert resumed(tmp_path / "one.json", b"[\n{}\n]\n", kept=4).at_start is False


def test_a_closing_the_disk_will_not_take_is_cut_back_so_the_file_stays_resumable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk takes a byte of the closing bracket and no more: the byte is cut off
    again, and the file ends with its last whole record, as a resume expects."""
    import fetchmany.output.destination as destination

    path = tmp_path / "out.json"
    output = resumed(path, b'[\n{"i":0}\n]\n', kept=len(b'[\n{"i":0}'))
    output.write(b',\n{"i":1}')
    output.mark()
    output.write(b',\n{"i":')

    def full(fd: int, data: bytes) -> None:
        os.write(fd, data[:1])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(destination, "write_all", full)
    output.abandon(closing=b"\n]\n")  # never raises
    assert path.read_bytes() == b'[\n{"i":0},\n{"i":1}'


def test_a_file_its_user_may_write_but_not_read_is_replaced(tmp_path: Path) -> None:
    """An output shared to write only (mode 0602, another user's): opened and locked
    write-only, replaced whole, and kept at its mode; the user cannot give the new file
    away to its old owner, and the run goes on without."""
    place = Path(tempfile.mkdtemp(prefix="fetchmany-shared-"))
    try:
        path = place / "out.jsonl"
        path.write_bytes(b"old\n")
        os.chmod(path, 0o602 if os.geteuid() == 0 else 0o200)
        if os.geteuid() == 0:
            os.chown(place, 65534, 65534)  # nobody may write the directory, not the file

        def replace() -> None:
            output = Output(str(path))
            output.write(b"new\n")
            output.commit()

        in_a_child(replace, as_nobody=True)
        after = path.stat()
        assert stat.S_IMODE(after.st_mode) == (0o602 if os.geteuid() == 0 else 0o200)
        assert after.st_uid == (65534 if os.geteuid() == 0 else os.geteuid())
        os.chmod(path, 0o600)
        assert path.read_bytes() == b"new\n"
        assert os.listdir(place) == ["out.jsonl"]
    finally:
        shutil.rmtree(place)


def test_a_write_the_file_system_refuses_mid_run_names_the_output(tmp_path: Path) -> None:
    """Past the largest file this process may write (as a full disk would refuse it):
    the run is told which output, and why, in the system's words."""
    path = tmp_path / "out.jsonl"

    def write_past_the_limit() -> None:
        output = Output(str(path))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG, not a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (4, 4))
        output.write(b"1\n")
        with pytest.raises(OutputError) as refused:
            output.write(b"22\n333\n")
        assert str(refused.value) == f"cannot write {path}: File too large"
        output.abandon()

    in_a_child(write_past_the_limit)
    assert not path.exists()  # made by the run, and abandoned: nothing left


def test_a_failed_lock_on_a_file_another_run_removed_still_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lock fails (EIO) and the empty file the run made to hold it is already gone:
    the lock's own error is what the run is told."""
    import fetchmany.output.destination as destination

    path = tmp_path / "out.jsonl"

    def flock(fd: int, operation: int) -> None:
        path.unlink()
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(destination.fcntl, "flock", flock)
    with pytest.raises(OutputError) as refused:
        Output(str(path))
    assert str(refused.value) == f"cannot write {path}: Input/output error"
