"""Where records go: stdout, a stream the user named, or a file replaced only when whole.

The promise to the user is about the previous result: whatever goes wrong, a file
that was there before the run is either replaced by a complete new document or left
exactly as it was. So a run writes a temporary sibling and ``commit()`` renames it
into place, while ``abandon()`` (any failure that is not an interruption) removes it.
Resuming continues the file itself; then ``abandon()`` cuts it back to the end of
the last batch written whole, so it still holds only complete records.

A file is locked (``flock``, advisory) for the whole run, so two runs on one output
refuse instead of interleaving. The lock is taken on the destination itself: a
destination that does not exist yet is created empty for the run and removed again
if the run fails.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import sys
import tempfile
from collections.abc import Sequence
from typing import BinaryIO, Final

from fetchmany.files import new_file_mode
from fetchmany.signals import held_back

STDOUT: Final = "-"


class OutputError(Exception):
    """The output cannot be opened or written; the message names it and says why."""


class OutputBusy(OutputError):
    """Another run holds the output's lock."""


class OutputClosed(OutputError):
    """The reader of the output went away (``| head``): a clean end, not a failure."""


def describe(path: str | None) -> str:
    return "stdout" if path is None else path


def os_reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def replaceable_path(path: str) -> str | None:
    """The regular file to replace for ``path``, or None when it must be written in place.

    A symlink's target is replaced, never the link itself; devices, FIFOs and
    anything under /dev or /proc (``-o /dev/stdout``) are written directly.
    """
    real = os.path.realpath(path)
    for special in ("/dev/", "/proc/"):
        if os.path.abspath(path).startswith(special) or real.startswith(special):
            return None
    if os.path.exists(real) and not os.path.isfile(real):
        return None
    return real


def _probe(fd: int, name: str) -> None:
    """A zero-byte write: it fails at once on /dev/full (ENOSPC) or /proc files (EIO),
    so such an output is refused before any request instead of after the first."""
    try:
        os.write(fd, b"")
    except BrokenPipeError:
        raise OutputClosed(name) from None
    except OSError as exc:
        raise OutputError(f"cannot write {name}: {os_reason(exc)}") from None


def write_all(fd: int, data: bytes) -> None:
    """Write every byte: a regular file on a full disk takes part of a write before
    it fails, and a non-blocking pipe (set so by another process) may take none."""
    write_pieces(fd, (data,))


_IOV_MAX: Final = 1024
"""The most pieces one writev takes (Linux's IOV_MAX)."""


def write_pieces(fd: int, pieces: Sequence[bytes]) -> None:
    """Write every byte of ``pieces``, in order, as ``write_all`` does, by ``writev``: a
    batch of records (tens of MiB of bodies) goes out without being copied into one
    buffer first. A writev that takes the whole batch (nearly every one) costs one
    sum of lengths; only a partial one is walked piece by piece."""
    pending: list[bytes | memoryview] = list(pieces)
    while pending:
        batch = pending[:_IOV_MAX]
        try:
            written = os.writev(fd, batch)
        except BlockingIOError:
            select.select([], [fd], [])
            continue
        if written == sum(map(len, batch)):
            del pending[:_IOV_MAX]
            continue
        whole = 0  # pieces written whole; ``written`` is then what went of the next
        for piece in batch:
            if written < len(piece):
                break
            written -= len(piece)
            whole += 1
        del pending[:whole]
        pending[0] = memoryview(pending[0])[written:]


def _lock(path: str, shown: str) -> tuple[int, bool]:
    """Open and lock ``path``, creating it if absent: (descriptor, whether we created it).

    The path is checked again once locked: another run may have renamed a new file
    into place meanwhile, and a lock on the old one would guard nothing.
    """
    for _ in range(10):
        created = False
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, new_file_mode())
            created = True
        except FileExistsError:
            try:
                fd = os.open(path, os.O_RDONLY)
            except PermissionError:
                fd = os.open(path, os.O_WRONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputBusy(
                f"{shown} is being written by another fetchmany run; "
                "wait for it to end or choose another --output"
            ) from None
        except OSError as exc:
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                os.close(fd)
                if created:  # empty, and ours: the failed run leaves no file behind
                    with contextlib.suppress(OSError):
                        os.unlink(path)
                raise
            # A filesystem without locks (some network mounts): run unlocked.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            return fd, created
        os.close(fd)
    raise OutputBusy(f"{shown} keeps changing under another run; choose another --output")


class Output:
    """One run's destination. Open it with ``Output(path)`` (None is stdout), ``write``
    batches, ``mark()`` after each batch written whole, and end with exactly one of
    ``commit()`` (done or interrupted: keep what was written) or ``abandon()`` (failed:
    leave the previous result as it was).

    Writes go straight to the descriptor, unbuffered: a batch is one write, and on a
    failure nothing is left in a buffer to be flushed later over a cut-back file.
    Raises ``OutputError`` when the destination cannot be used, before any record.
    """

    def __init__(self, path: str | None, *, resume: bool = False) -> None:
        self.shown = describe(path)
        self.at_start = True
        self._fd: int | None = None
        self._owned = path is not None
        self._stand_in: BinaryIO | None = None
        self._temp: str | None = None
        self._target: str | None = None
        self._lock_fd: int | None = None
        self._created = False
        self._previous: os.stat_result | None = None
        self._append = resume
        self._good = 0
        self._dirty = False
        self._done = False
        try:
            with held_back():  # a signal cannot fall between creating a file and noting it
                self._open(path, resume)
        except OSError as exc:
            self.abandon()
            raise OutputError(f"cannot write {self.shown}: {os_reason(exc)}") from None
        except BaseException:  # OutputError, or a signal arriving as the hold ends
            self.abandon()
            raise

    def _open(self, path: str | None, resume: bool) -> None:
        if path is None:
            if sys.stdout is None:
                raise OutputError("stdout is closed; give --output FILE")
            stream = sys.stdout.buffer
            try:
                self._fd = stream.fileno()
            except (OSError, ValueError):  # a stand-in stdout with no descriptor (tests)
                self._stand_in = stream
                return
            _probe(self._fd, "stdout")
            return
        if path.endswith(("/", "/.", "/..")) or path in (".", ".."):
            # realpath would drop the slash and write a file named like the directory
            raise OutputError(f"cannot write {self.shown}: it names a directory, not a file")
        target = replaceable_path(path)
        if target is None:
            # /dev/stdout, a FIFO, /dev/null: not a file to replace, a stream to write.
            flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if resume else os.O_TRUNC)
            self._fd = os.open(path, flags, new_file_mode())
            self._append = False
            _probe(self._fd, self.shown)
            return
        self._target = target
        self._lock_fd, self._created = _lock(target, self.shown)
        if not self._created:  # the replacement keeps the file's permissions and owner
            self._previous = os.fstat(self._lock_fd)
        if resume:
            self._fd = os.open(target, os.O_WRONLY)
            return
        self._fd, self._temp = tempfile.mkstemp(
            prefix=f".{os.path.basename(target)}.", suffix=".part", dir=os.path.dirname(target)
        )

    @property
    def resumable(self) -> bool:
        """A file continued in place (records already in it are kept)."""
        return self._append

    @property
    def is_terminal(self) -> bool:
        """Records go to a terminal: a person reads them there, not a program."""
        try:
            return self._fd is not None and os.isatty(self._fd)
        except OSError:
            return False

    @property
    def to_file(self) -> bool:
        """A regular file, replaced whole or continued in place (not a stream), before and
        after the run ends."""
        return self._target is not None

    @property
    def discardable(self) -> bool:
        """A file that abandoning leaves as it was before the run, losing nothing: a new
        run's (written aside), or one resumed onto nothing. Stays so once the run ends."""
        return self._target is not None and (not self._append or self._created)

    @property
    def replaces(self) -> bool:
        """A file written aside and put in place only by ``commit`` (a new run's -o)."""
        return self._temp is not None

    def start_at(self, offset: int) -> None:
        """Resume: continue after the first ``offset`` bytes. Anything after them (a torn
        record, a closing bracket) is cut off by the first write, not before, so a run
        that fails before writing leaves the file exactly as it was."""
        self._good = offset
        self.at_start = offset == 0

    def write(self, data: bytes) -> None:
        """Write a batch, whole; a downstream reader sees it at once."""
        self.write_pieces((data,))

    def write_pieces(self, pieces: Sequence[bytes]) -> None:
        """Write a batch given in pieces, whole and in order, as ``write`` does."""
        try:
            if not self._dirty:
                self._dirty = True
                if self._append and self._fd is not None:
                    os.ftruncate(self._fd, self._good)
                    os.lseek(self._fd, self._good, os.SEEK_SET)
            if self._fd is not None:
                write_pieces(self._fd, pieces)
            elif self._stand_in is not None:
                for piece in pieces:
                    self._stand_in.write(piece)
                self._stand_in.flush()
        except BrokenPipeError:
            raise OutputClosed(self.shown) from None
        except OSError as exc:
            raise OutputError(f"cannot write {self.shown}: {os_reason(exc)}") from None

    def mark(self) -> None:
        """Everything written so far is whole; a failure later is cut back to here."""
        if self._append and self._fd is not None:
            self._good = os.lseek(self._fd, 0, os.SEEK_CUR)

    def commit(self) -> None:
        """Finish the output: a new file is moved into place only now, fully written."""
        if self._done:
            return
        self._done = True
        try:
            if self._owned and self._fd is not None:
                if self._target is not None:
                    os.fsync(self._fd)  # renamed or resumed: on disk before we say done
                os.close(self._fd)
                self._fd = None
            if self._temp is not None and self._target is not None:
                self._take_on_previous(self._temp)
                os.replace(self._temp, self._target)
                self._temp = None
        except BrokenPipeError:
            raise OutputClosed(self.shown) from None
        except OSError as exc:
            self._done = False
            self.abandon()
            raise OutputError(f"cannot write {self.shown}: {os_reason(exc)}") from None
        except BaseException:  # cut short (a signal with no handler): no .part left behind
            self._done = False
            self.abandon()
            raise
        finally:
            self._release()

    def _take_on_previous(self, temp: str) -> None:
        """Give the new file the old one's mode and, where allowed, owner (a shared
        output stays shared); a new file gets the umask's mode, as ``open`` would."""
        previous = self._previous
        if previous is None:
            os.chmod(temp, new_file_mode())
            return
        with contextlib.suppress(OSError):  # only root may give a file away
            if (previous.st_uid, previous.st_gid) != (os.geteuid(), os.getegid()):
                os.chown(temp, previous.st_uid, previous.st_gid)
        os.chmod(temp, previous.st_mode & 0o7777)

    def abandon(self, closing: bytes = b"") -> None:
        """The run failed: leave the previous result as it was. A new file's temporary
        sibling is removed; a resumed file is cut back to the end of its last whole
        batch and, if this run wrote to it, closed with ``closing`` (a JSON array's
        bracket) when the disk allows, so it stays valid and resumable. Never raises."""
        if self._done:
            return
        self._done = True
        fd = self._fd
        if self._append and self._dirty and fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, self._good)
                os.lseek(fd, self._good, os.SEEK_SET)
                if closing:
                    try:
                        write_all(fd, closing)
                    except OSError:
                        os.ftruncate(fd, self._good)
        if self._owned and fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
            self._fd = None
        if self._temp is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._temp)
            self._temp = None
        if self._created and self._target is not None:
            with contextlib.suppress(OSError):
                if os.path.getsize(self._target) == 0:
                    os.unlink(self._target)  # it did not exist before this run
        self._release()

    def _release(self) -> None:
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)
            self._lock_fd = None
