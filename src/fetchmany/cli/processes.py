"""``-P N``: N worker processes, each a shard of the input, merged in order on the fly.

One process tops out at one core; the work per record is CPU in aiohttp and the
interpreter, so processes are the lever. Each worker is a fork of the prepared
run with ``--shard k/N`` and its share of ``--limit``, ``--rate`` and
``--per-host`` (so the totals hold across processes). A worker encodes its
records in the run's final format and sends them to the parent in pickled
batches (record without body, encoded bytes) over a pipe; the parent writes them
in index order (item *i* comes from worker *i* mod N, so no sorting is needed),
or as they come with ``--unordered``, and keeps the one progress bar and summary.

Workers run in their own process group, so a terminal's Ctrl-C reaches only the
parent, which forwards it (and SIGTERM) once: every worker then finishes as a
single process would, and the parent writes the in-order prefix they completed.
Stdin, and any input that is not a regular file (a pipe, a FIFO, ``<(...)``), is
read once, by the parent, and passed to every worker (each parses only its shard's
lines). A worker that dies is an error the user sees: the others are
stopped, exit 75 (incomplete); stdout holds the valid prefix, and a file is left as a failed run
leaves it (the previous one in place, a resumed one with its whole records).

The parent stops reading from workers that are ahead while what it holds for the
order exceeds ``--window-bytes``; their pipes fill, and they wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import pickle
import signal
import stat
import struct
import sys
import threading
from collections import deque
from collections.abc import AsyncIterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from fetchmany.cli.loop import loop_factory
from fetchmany.cli.run import (
    Finished,
    Interruption,
    Job,
    Outcome,
    count_total,
    encoder,
    finished_cost,
    keeps_nothing,
    plural,
    watch_limits,
)
from fetchmany.fetch.adaptive import Settled
from fetchmany.fetch.engine import Engine
from fetchmany.fetch.limits import Limits, join_marks
from fetchmany.input.sources import STDIN, Item, Shard, flatten, one_by_one, read_item_chunks
from fetchmany.output.destination import OutputClosed, OutputError, write_all
from fetchmany.output.progress import SilentDisplay
from fetchmany.output.resume import recorded_keys, skip_recorded
from fetchmany.output.stats import RunStats
from fetchmany.signals import WorkerSignals, held_back

_HEADER: Final = struct.Struct("<I")
_END: Final = _HEADER.pack(0)


@dataclass(frozen=True)
class _Limits:
    """A worker's limits, a few times a second and last: the parent shows their sums."""

    limit: int
    mark: str
    retries_waiting: int
    settled: dict[str, Settled]

    @classmethod
    def of(cls, limits: Limits) -> _Limits:
        return cls(limits.current_limit(), limits.mark(), limits.retries_waiting, limits.settled())


@dataclass(frozen=True)
class _Checked:
    """A resumed worker's first frame: its share of the file matches its inputs."""


@dataclass(frozen=True)
class _Refused:
    """A worker refused its shard as one process refuses a run (an input that changed
    since the file being resumed was written, an input it cannot read as text): the
    whole run is refused, before anything is written. ``later``: the input at fault is
    not the first, so items before it may have been fetched (the run stopped, exit 75)."""

    message: str
    later: bool = False


@dataclass(frozen=True)
class _Stopped:
    """A worker's last frame when a signal stopped it: its shard ends short. Forwarded by
    the parent, that is the interruption; sent to the worker alone, a failure."""

    signal: int


_Frame = list[Finished] | _Limits | _Checked | _Refused | _Stopped


class WorkerFailed(Exception):
    """A worker process ended without finishing its shard."""


class WorkerRefused(Exception):
    """A worker refused the run (see ``_Refused``): a usage error, the output untouched;
    ``later`` as for ``InputError``."""

    def __init__(self, message: str, later: bool = False) -> None:
        super().__init__(message)
        self.later = later


def split(total: int, parts: int, part: int) -> int:
    """``part``'s share of ``total`` split as evenly as whole numbers allow."""
    return total // parts + (1 if part < total % parts else 0)


def worker_job(job: Job, part: int, processes: int) -> Job:
    options = job.options
    per_host = options.per_host
    return dataclasses.replace(
        job,
        display=SilentDisplay(),
        shard=Shard(part, processes),
        options=dataclasses.replace(
            options,
            limit=split(options.limit, processes, part),
            rate=options.rate / processes if options.rate is not None else None,
            per_host=split(per_host, processes, part) if per_host is not None else None,
            # --limit auto: each worker adapts its share, from its share of the start
            # up to its share of the ceiling, so the totals hold as for --limit.
            adaptive=dataclasses.replace(
                options.adaptive,
                ceiling=split(options.adaptive.ceiling, processes, part),
                start=max(1, split(options.adaptive.start, processes, part)),
                share=options.adaptive.share / processes,
            )
            if options.adaptive is not None
            else None,
            # --window-bytes stays a total too: half for the workers' windows, half for
            # what the parent holds for the order.
            window_bytes=max(1, options.window_bytes // (2 * processes)),
        ),
    )


def usable_processes(job: Job, asked: int) -> int:
    """At most one process per request slot (and per per-host slot), so every worker
    has at least one and the totals are never exceeded."""
    caps = [asked, job.options.limit]
    if job.options.per_host is not None:
        caps.append(job.options.per_host)
    return max(1, min(caps))


# ------------------------------------------------------------------ the worker side


def _worker_main(
    job: Job,
    out_fd: int,
    start: int,
    streams: Mapping[int, int],
    go_fd: int | None,
    signals: WorkerSignals,
) -> int:
    """Run one shard in this (forked) process; its records go to ``out_fd``. A stop the
    parent sent before this loop existed is acted on as soon as it runs."""
    with asyncio.Runner(loop_factory=loop_factory(True)) as runner:
        interruption = Interruption(runner.get_loop(), job.display, job.grace)
        interruption.install()
        for sig in signals.received:
            interruption.receive(sig)
        return runner.run(_work(job, out_fd, start, streams, go_fd, interruption))


def _send(out_fd: int, frame: _Frame) -> None:
    payload = pickle.dumps(frame, protocol=pickle.HIGHEST_PROTOCOL)
    write_all(out_fd, _HEADER.pack(len(payload)))
    write_all(out_fd, payload)


class _NoGo(Exception):
    """The parent closed the go-ahead without giving it: the run stops, nothing fetched."""


def _checked(out_fd: int, go_fd: int | None) -> None:
    """This worker's share of a resumed file matches its inputs: say so, then wait until
    every worker's does (a blocking read: nothing else may happen before), so that a
    refused resume has fetched nothing anywhere."""
    _send(out_fd, _Checked())
    if go_fd is not None and os.read(go_fd, 1) != b"g":
        raise _NoGo


async def _work(
    job: Job,
    out_fd: int,
    start: int,
    streams: Mapping[int, int],
    go_fd: int | None,
    interruption: Interruption,
) -> int:
    from fetchmany.input.rows import InputError
    from fetchmany.output.previous import RefreshError
    from fetchmany.output.resume import ResumeError

    try:
        await _fetch_shard(job, out_fd, start, streams, go_fd, interruption)
    except (BrokenPipeError, _NoGo):
        return 0  # the parent has gone (its reader closed): nothing left to do
    except (ResumeError, InputError, RefreshError) as exc:
        later = isinstance(exc, InputError) and exc.later
        with contextlib.suppress(BrokenPipeError):
            _send(out_fd, _Refused(str(exc), later))
    return 0


async def _fetch_shard(
    job: Job,
    out_fd: int,
    start: int,
    streams: Mapping[int, int],
    go_fd: int | None,
    interruption: Interruption,
) -> None:
    from fetchmany.api import fetch_finished

    shard = job.shard
    assert shard is not None
    chunks: AsyncIterable[Sequence[Item]] = read_item_chunks(
        job.inputs, job.request, job.input_format, shard, streams
    )
    resume = job.resume
    if resume is not None and start:
        keys = (
            key
            for number, key in enumerate(recorded_keys(resume.path, resume.format, resume.fields))
            if shard.holds(number)
        )
        items = skip_recorded(
            flatten(chunks),
            keys,
            shard.size(start),
            resume.path,
            resume.key,
            on_checked=lambda: _checked(out_fd, go_fd),
            whole=start,
        )
        chunks = one_by_one(items)
    joined, previous = job.refreshing(chunks)
    engines: list[Engine[Finished]] = []

    def on_engine(engine: Engine[Finished]) -> None:
        interruption.watch(engine)
        engines.append(engine)

    finished = fetch_finished(
        joined, job.options, encoder(job.writer), finished_cost, on_engine, job.setup, previous
    )
    ticker = asyncio.create_task(
        watch_limits(engines, lambda limits: _send(out_fd, _Limits.of(limits)))
    )
    try:
        async with contextlib.aclosing(finished) as batches:
            async for batch in batches:
                for frame in _frames_of(batch):
                    _send(out_fd, frame)
    finally:
        ticker.cancel()
    limits = engines[0].limits if engines else None
    if limits is not None:
        _send(out_fd, _Limits.of(limits))
    if interruption.signal is not None:
        _send(out_fd, _Stopped(interruption.signal))
    write_all(out_fd, _END)


_FRAME_BYTES: Final = 1 << 20


def _frames_of(batch: list[Finished]) -> Iterator[list[Finished]]:
    """A batch in frames of about ``_FRAME_BYTES``: the slow worker's whole window,
    released at once, crosses the pipe (and the parent's buffer) a piece at a time."""
    frame: list[Finished] = []
    size = 0
    for finished in batch:
        frame.append(finished)
        size += len(finished[1])
        if size >= _FRAME_BYTES:
            yield frame
            frame, size = [], 0
    if frame:
        yield frame


def _start_worker(
    job: Job, start: int, streams: Mapping[int, int], go_fd: int | None, parents: list[int]
) -> tuple[int, int]:
    """Fork a worker: (pid, the read end of its record pipe). ``streams``: its copies
    of the inputs only the parent can read, by position; ``parents`` are the parent's
    descriptors the worker must not keep open (other workers' input pipes: a copy left
    open would keep them from ever seeing the end of their input)."""
    read_fd, write_fd = os.pipe()
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the worker: never returns into the parent's code
        code = 70
        try:
            os.setpgid(0, 0)  # a terminal's Ctrl-C goes to the parent, which forwards it once
            signals = WorkerSignals(parent)
            os.close(read_fd)
            for fd in set(parents) - {*streams.values(), go_fd}:
                with contextlib.suppress(OSError):
                    os.close(fd)
            code = _worker_main(job, write_fd, start, streams, go_fd, signals)
        except BaseException as exc:  # one line, as main() would say it
            with contextlib.suppress(Exception):
                os.write(2, f"fetchmany: worker: {type(exc).__name__}: {exc}\n".encode())
            code = 1
        finally:
            os._exit(code)
    with contextlib.suppress(OSError):  # as the worker does: whichever runs first
        os.setpgid(pid, pid)
    os.close(write_fd)
    return pid, read_fd


# ------------------------------------------------------------------ the parent side


class _Worker:
    def __init__(self, number: int, pid: int, fd: int) -> None:
        self.number = number
        self.pid = pid
        self.fd = fd
        self.buffer = bytearray()
        self.ready: deque[Finished] = deque()
        self.held = 0
        self.ended = False  # its end frame arrived
        self.closed = False  # its pipe reached EOF
        self.reading = False


class Parallel:
    """The parent of a ``-P`` run: reads the workers, orders, writes, displays."""

    def __init__(self, job: Job, processes: int, stats: RunStats) -> None:
        self.job = job
        self.processes = processes
        self.stats = stats
        self.workers: list[_Worker] = []
        self._limits: dict[int, _Limits] = {}
        self.next_index = 0
        self.outcome = Outcome(stats)
        self.failure: str | None = None
        self.output_error: OutputError | None = None
        self._loop = asyncio.get_running_loop()
        self._done = self._loop.create_future()
        self._held = 0
        self._budget = job.options.window_bytes // 2  # the other half: the workers' windows
        self._ordered = job.options.ordered
        self._signalled = False
        self.refused: str | None = None
        """Why a worker refused the run (then nothing is written)."""
        self.refused_later = False
        self._go: list[int] = []
        """With a resumed file: the go-ahead every worker waits for, once all are checked."""
        self._unchecked: set[int] = set()
        """Resumed workers whose share of the file is not yet checked: until it all is,
        nothing is written, so a refused resume leaves the file as it was."""

    # -- workers
    def start(self, start: int, pipes: Mapping[int, list[tuple[int, int]]]) -> None:
        """Fork the workers; call before any thread exists (a fork copies only the
        calling thread, and a lock another thread held would stay held). ``pipes``:
        for each input only the parent reads, by position, a pipe per worker. Signals
        are held back meanwhile (each worker takes them once it is ready), and a run
        stopped already forks none."""
        self.next_index = start
        if self._signalled:
            return
        with held_back():
            self._fork(start, pipes)

    def _fork(self, start: int, pipes: Mapping[int, list[tuple[int, int]]]) -> None:
        go: list[tuple[int, int]] = []
        if start and self.job.resume is not None:
            count = self.processes
            self._unchecked = {n for n in range(count) if Shard(n, count).size(start) > 0}
            go = [os.pipe() for _ in range(count)]  # every worker waits for all the checks
        parents = [fd for each in pipes.values() for pipe in each for fd in pipe]
        parents += [fd for pipe in go for fd in pipe]
        for number in range(self.processes):
            job = worker_job(self.job, number, self.processes)
            streams = {position: each[number][0] for position, each in pipes.items()}
            go_fd = go[number][0] if go else None
            pid, fd = _start_worker(
                job, start, streams, go_fd, parents + [w.fd for w in self.workers]
            )
            os.set_blocking(fd, False)
            worker = _Worker(number, pid, fd)
            self.workers.append(worker)
            self._read_from(worker)
        for read_fd, write_fd in go:
            os.close(read_fd)
            self._go.append(write_fd)

    def _read_from(self, worker: _Worker) -> None:
        if not worker.reading and not worker.closed:
            worker.reading = True
            self._loop.add_reader(worker.fd, self._on_readable, worker)

    def _pause(self, worker: _Worker) -> None:
        if worker.reading:
            worker.reading = False
            self._loop.remove_reader(worker.fd)

    def _on_readable(self, worker: _Worker) -> None:
        try:
            data = os.read(worker.fd, 1 << 18)
        except BlockingIOError:
            return
        if not data:
            self._pause(worker)
            worker.closed = True
            os.close(worker.fd)
            if not worker.ended and self.failure is None and self.refused is None:
                self.failure = (
                    f"worker {worker.number} (shard {worker.number}/{self.processes}) ended early"
                )
                self.stop(signal.SIGTERM)
        else:
            worker.buffer += data
            self._frames(worker)
        self._emit()
        if all(w.closed for w in self.workers) and not self._done.done():
            self._done.set_result(None)

    def _frames(self, worker: _Worker) -> None:
        buffer = worker.buffer
        at = 0
        while len(buffer) - at >= _HEADER.size:
            (size,) = _HEADER.unpack_from(buffer, at)
            if size == 0:
                worker.ended = True
                at += _HEADER.size
                continue
            if len(buffer) - at - _HEADER.size < size:
                break
            start = at + _HEADER.size
            with memoryview(buffer) as view:  # no copy of the frame before unpickling
                batch: _Frame = pickle.loads(view[start : start + size])
            at = start + size
            if isinstance(batch, _Limits):
                self._observe(worker, batch)
                continue
            if isinstance(batch, _Stopped):
                if not self._signalled and self.failure is None:
                    name = signal.Signals(batch.signal).name
                    self.failure = (
                        f"worker {worker.number} (shard {worker.number}/{self.processes}) "
                        f"was stopped by {name}"
                    )
                    self.stop(signal.SIGTERM)
                continue
            if isinstance(batch, _Checked):
                self._unchecked.discard(worker.number)
                if not self._unchecked:
                    self.end_go(give=True)
                continue
            if isinstance(batch, _Refused):
                if self.refused is None:
                    self.refused = batch.message
                    self.refused_later = batch.later
                    if not batch.later:
                        self.kill()  # nothing will be written: no need to let them finish
                # A later input: each worker sends every record before it, then meets it
                # too, so the output is one process's: everything before that input.
                continue
            for finished in batch:
                worker.ready.append(finished)
                cost = len(finished[1])
                worker.held += cost
                self._held += cost
        del buffer[:at]

    def _observe(self, worker: _Worker, limits: _Limits) -> None:
        """A worker's limits: the run's are the sums of the workers' latest (each adapts
        or holds its share), shown as one process shows its own."""
        self._limits[worker.number] = limits
        stats = self.stats
        every = self._limits.values()
        stats.limit = sum(each.limit for each in every)
        stats.mark = join_marks(each.mark for each in every)
        stats.retries_waiting = sum(each.retries_waiting for each in every)
        settled: dict[str, Settled] = {}
        for each in every:
            for host, one in each.settled.items():
                settled[host] = settled[host].plus(one) if host in settled else one
        stats.settled = settled
        self.job.display.update(stats)

    def _emit(self) -> None:
        """Write what can be written now: in index order, or everything with --unordered."""
        if self._unchecked or (self.refused is not None and not self.refused_later):
            self._hold()
            return
        out: list[Finished] = []
        if self._ordered:
            workers = self.workers
            count = self.processes
            while True:
                worker = workers[self.next_index % count]
                if not worker.ready or worker.ready[0][0].index != self.next_index:
                    break
                finished = worker.ready.popleft()
                worker.held -= len(finished[1])
                self._held -= len(finished[1])
                out.append(finished)
                self.next_index += 1
        else:
            for worker in self.workers:
                out.extend(worker.ready)
                worker.ready.clear()
                self._held -= worker.held
                worker.held = 0
        if out:
            self._write(out)
        self._balance()

    def _write(self, out: list[Finished]) -> None:
        self.stats.add(record for record, _ in out)
        self.job.display.update(self.stats)
        if self.outcome.broken_pipe or self.output_error is not None:
            return
        try:
            self.job.writer.write_encoded([data for _, data in out])
        except OutputClosed:
            self.outcome.broken_pipe = True
            self.kill()
        except OutputError as exc:  # a full disk: the run cannot go on, nor its workers
            self.output_error = exc
            self.kill()

    def _balance(self) -> None:
        """Stop reading workers that are ahead while the order holds too much."""
        if not self._ordered:
            return
        needed = self.workers[self.next_index % self.processes]
        for worker in self.workers:
            if worker is needed or self._held < self._budget or not worker.ready:
                self._read_from(worker)
            else:
                self._pause(worker)

    def _hold(self) -> None:
        """Until every resumed worker's share is checked: keep reading the ones still
        checking, and the others only while what is held is within the budget."""
        for worker in self.workers:
            if worker.number in self._unchecked or self._held < self._budget:
                self._read_from(worker)
            else:
                self._pause(worker)

    def end_go(self, *, give: bool) -> None:
        """Give every waiting worker the go-ahead, or (stopping) close it unanswered."""
        for fd in self._go:
            with contextlib.suppress(OSError):
                if give:
                    write_all(fd, b"g")
                os.close(fd)
        self._go = []

    # -- signals and the end
    def stop(self, sig: int) -> None:
        """Forward a stop to every worker, once: each finishes as a single run would."""
        self.end_go(give=False)  # a worker waiting for it would not see the signal
        if self._signalled:
            sig = signal.SIGINT  # a second Ctrl-C: workers treat it as "stop now"
        self._signalled = True
        for worker in self.workers:
            if not worker.closed:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, sig)

    def kill(self) -> None:
        """Nobody reads the output any more: end the workers now."""
        self.end_go(give=False)
        for worker in self.workers:
            if not worker.closed:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signal.SIGKILL)

    async def wait(self) -> None:
        if self.workers:
            await self._done
        for worker in self.workers:
            _, status = await asyncio.to_thread(os.waitpid, worker.pid, 0)
            code = os.waitstatus_to_exitcode(status)
            if code != 0 and self.failure is None and not self._signalled:
                self.failure = f"worker {worker.number} exited with status {code}"


def read_once(inputs: Sequence[str]) -> list[int]:
    """Positions of the inputs that can be read only once: stdin, and any path that is
    not a regular file (a pipe, a FIFO, ``<(...)``, ``/dev/stdin``). Each worker
    opening one of those would take lines from the others, so the parent reads it and
    hands every worker a copy. (A path that cannot be examined is left to the workers,
    which meet the same error and report it as one process would.)"""
    positions = []
    for position, path in enumerate(inputs):
        if path != STDIN:
            try:
                if stat.S_ISREG(os.stat(path).st_mode):
                    continue
            except OSError:
                continue
        positions.append(position)
    return positions


class Tee:
    """Copies each read-once input to every worker's pipe for it, in input order, in a
    thread (reads and writes block). A worker reaches an input's pipe only after the
    inputs before it, so writing them in order never waits on one that is not read."""

    def __init__(self, inputs: Sequence[str], pipes: Mapping[int, list[tuple[int, int]]]) -> None:
        self._sources = [(inputs[position], [w for _, w in pipes[position]]) for position in pipes]
        self.error: str | None = None
        """Why an input could not be read: its copies end early, so the run is not whole."""

    def start(self) -> None:
        threading.Thread(target=self._run, name="fetchmany-tee", daemon=True).start()

    def _run(self) -> None:
        for path, targets in self._sources:
            try:
                self._copy(path, targets)
            finally:
                for fd in targets:
                    with contextlib.suppress(OSError):
                        os.close(fd)

    def _copy(self, path: str, targets: list[int]) -> None:
        try:
            if path == STDIN:
                if sys.stdin is None:  # started with <&-: the workers see an empty input
                    return
                source = os.dup(sys.stdin.fileno())
            else:
                source = os.open(path, os.O_RDONLY)
        except (OSError, ValueError) as exc:
            self.error = f"cannot read {'stdin' if path == STDIN else path}: {exc}"
            return
        try:
            while chunk := os.read(source, 1 << 16):
                for fd in list(targets):
                    try:
                        write_all(fd, chunk)
                    except OSError:  # that worker stopped reading
                        targets.remove(fd)
                        os.close(fd)
        except OSError as exc:
            self.error = f"cannot read {'stdin' if path == STDIN else path}: {exc.strerror or exc}"
        finally:
            os.close(source)


class _Forward:
    """The workers as a signal stops them: the parent forwards it, once; a second (or the
    end of the grace) reaches them as SIGINT, which they take as "stop now"."""

    def __init__(self, parallel: Parallel, interruption: Interruption) -> None:
        self._parallel = parallel
        self._interruption = interruption

    def stop(self) -> None:
        assert self._interruption.signal is not None
        self._parallel.stop(self._interruption.signal)

    def abort(self) -> None:
        self._parallel.stop(signal.SIGINT)


async def run_parallel(job: Job, processes: int, interruption: Interruption) -> Outcome:
    """Run ``job`` over ``processes`` workers; the output ends right however it ends
    (as ``run_job`` guarantees for one process)."""
    stats = RunStats(detailed=job.summary)
    parallel = Parallel(job, processes, stats)
    resume = job.resume
    start = resume.point.records if resume is not None else 0
    parallel.outcome.earlier_failures = resume.point.failed if resume is not None else 0
    counting_stop = threading.Event()
    inputs = list(job.inputs) or [STDIN]
    pipes = {position: [os.pipe() for _ in range(processes)] for position in read_once(inputs)}
    tee = Tee(inputs, pipes)
    writer = job.writer
    replaces, resumable = writer.output.replaces, writer.output.resumable  # before it ends
    failed = True
    interruption.watch(_Forward(parallel, interruption))

    # aiohttp is imported once here, not once per worker: the forks share it.
    import fetchmany.fetch.client  # noqa: F401

    started_cpu = sum(os.times()[:2])

    try:
        parallel.start(start, pipes)  # first: no thread may exist at a fork
        job.display.start(None)
        count_total(job.inputs or ["-"], job.display, counting_stop, start, job.input_format)
        if resume is not None and start:
            job.display.note(f"Resuming: {plural(start, 'record')} already in {resume.path}")
        for each in pipes.values():
            for read_fd, _ in each:
                os.close(read_fd)
        tee.start()
        await parallel.wait()
        if tee.error is not None and parallel.failure is None:
            parallel.failure = tee.error  # its items after the error are missing
        failed = parallel.failure is not None and interruption.signal is None
    finally:
        interruption.finishing()
        parallel.end_go(give=False)  # however it ended, no worker waits on it
        counting_stop.set()
        stats.finish()
        job.display.update(stats)
        job.display.stop()
        parallel.outcome.signal = interruption.signal
        if parallel.outcome.broken_pipe:
            writer.output.abandon()
        elif parallel.refused is not None or job.keeps_previous(interruption.signal is not None):
            writer.abandon()  # nothing was written: the file is as it was
        elif parallel.output_error is not None or (failed and parallel.failure is None):
            writer.abandon()
        elif failed and (replaces or resumable):
            # A worker died: a failure, so a file is left as one process leaves it (the
            # previous one in place; a resumed one cut back to its whole records).
            writer.abandon()
        elif keeps_nothing(writer, interruption.signal is not None):
            writer.abandon()
        else:
            try:
                writer.close()  # the valid prefix, also after a worker failed
            except OutputClosed:
                parallel.outcome.broken_pipe = True
    if os.environ.get("FETCHMANY_DEBUG"):  # for bench/: what the merging parent costs
        import resource

        usage = resource.getrusage(resource.RUSAGE_SELF)
        cpu = usage.ru_utime + usage.ru_stime - started_cpu
        per = cpu / stats.done * 1e6 if stats.done else 0.0
        job.display.note(f"parent CPU after start-up: {cpu:.3f} s, {per:.1f} us per record")
    if parallel.refused is not None:
        raise WorkerRefused(parallel.refused, parallel.refused_later)
    if parallel.output_error is not None:
        raise parallel.output_error  # the previous output is left as it was
    if (
        parallel.failure is not None
        and not parallel.outcome.broken_pipe
        and interruption.signal is None
    ):
        if resumable:
            kept = f"{writer.output.shown} keeps its whole records; --resume continues it"
        elif replaces:
            kept = f"{writer.output.shown} is left as it was"
        else:
            kept = "the output holds the records before its first missing one"
        raise WorkerFailed(f"{parallel.failure}; {kept}")
    return parallel.outcome
