"""One command-line run from start to end: ``run_job`` (httpie's ``program()``).

``run_job`` owns the things that exist once per run (the signal handlers, the
counting thread, the display's updates, the writer) around ``fetch_batches``, and
guarantees that however the run ends (done, Ctrl-C, SIGTERM, a closed pipe) the
output is closed validly, and that a failed run leaves the previous output as it
was. Errors and exit codes are ``command.py``'s business.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import AsyncIterable, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

from fetchmany.api import fetch_finished
from fetchmany.cli.options import DEFAULT_GRACE
from fetchmany.fetch.engine import Engine
from fetchmany.fetch.limits import Limits
from fetchmany.fetch.session import SessionSetup
from fetchmany.input.rows import InputFormat
from fetchmany.input.sources import Item, Shard, count_items, flatten, one_by_one, read_item_chunks
from fetchmany.input.templates import RequestTemplate
from fetchmany.options import FetchOptions
from fetchmany.output.destination import OutputClosed
from fetchmany.output.progress import Display
from fetchmany.output.stats import RunStats
from fetchmany.output.writers import OutputFormat, RecordWriter, neutralise_formula
from fetchmany.records import Record
from fetchmany.signals import STOP_SIGNALS

if TYPE_CHECKING:  # imported where a run uses them: a plain run pays for neither
    from fetchmany.fetch.refresh import PreviousTable
    from fetchmany.output.previous import PreviousOutput
    from fetchmany.output.resume import ResumePoint


@dataclass(frozen=True)
class Resume:
    """An output file being continued: its records so far and how to read them back."""

    path: str
    format: OutputFormat
    fields: tuple[str, ...]
    point: ResumePoint
    csv_safe: bool = False

    def key(self, item: Item) -> str | None:
        """The item's value as the file holds it, to compare with the recorded one."""
        from fetchmany.output.resume import key_field

        value = item.input if key_field(self.fields) == "input" else item.url
        if value is not None and self.csv_safe and self.format is OutputFormat.CSV:
            value = neutralise_formula(value)
        return value


@dataclass
class Job:
    """A CLI run, fully parsed and validated."""

    inputs: Sequence[str]
    request: RequestTemplate
    options: FetchOptions
    writer: RecordWriter
    display: Display
    resume: Resume | None = None
    grace: float = DEFAULT_GRACE
    input_format: InputFormat = InputFormat.LINES
    setup: SessionSetup | None = None
    """The session's setup, prepared when the command checked it."""
    shard: Shard | None = None
    refresh: PreviousOutput | None = None
    """``--refresh PREVIOUS``: checked against the inputs before the run starts."""
    summary: bool = True
    """Whether the closing summary is shown (not --quiet): the run counts for it only then."""

    def refreshing(
        self, chunks: AsyncIterable[Sequence[Item]]
    ) -> tuple[AsyncIterable[Sequence[Item]], PreviousTable | None]:
        """The items with their previous records joined, and the table the fetch takes
        them from (None without --refresh)."""
        if self.refresh is None:
            return chunks, None
        from fetchmany.fetch.refresh import PreviousTable

        table = PreviousTable()
        return one_by_one(self.refresh.join(flatten(chunks), self.shard, table)), table

    def keeps_previous(self, interrupted: bool) -> bool:
        """An interrupted refresh in place leaves PREVIOUS as it was: its prefix would
        replace a whole file, and the records after it would be lost."""
        return interrupted and self.refresh is not None and self.refresh.in_place


@dataclass
class Outcome:
    """How a run ended; the CLI turns it into an exit status."""

    stats: RunStats
    signal: int | None = None
    broken_pipe: bool = False
    earlier_failures: int = 0
    """Failed records a resumed file already held."""


def stopping_note(sig: int, grace: float) -> str:
    """What the first Ctrl-C or SIGTERM prints, in one process or under -P."""
    name = "Ctrl-C" if sig == signal.SIGINT else "SIGTERM"
    return (
        f"{name}: starting no new requests; waiting up to {grace:g}s for those in "
        "flight (Ctrl-C again to stop now)"
    )


class Stoppable(Protocol):
    """What a signal stops: an engine, or the workers of a -P run."""

    def stop(self) -> None: ...

    def abort(self) -> None: ...


class Interruption:
    """First signal: stop starting work, let in-flight requests finish for a grace
    period, then cancel them. Second signal: cancel at once. Output is closed
    validly either way by ``run_job``.

    Installed on the loop before the run starts, so a signal at any moment of the run
    is taken here; what it stops (``watch``) may come later and is stopped at once."""

    def __init__(self, loop: asyncio.AbstractEventLoop, display: Display, grace: float) -> None:
        self.signal: int | None = None
        self._display = display
        self._grace = grace
        self._watched: list[Stoppable] = []
        self._loop = loop
        self._installed = False
        self._aborted = False

    def watch(self, target: Stoppable) -> None:
        """Make ``target`` obey signals, including any that came before it existed."""
        self._watched.append(target)
        if self._aborted:
            target.abort()
        elif self.signal is not None:
            target.stop()

    def install(self) -> None:
        self._installed = True
        for sig in STOP_SIGNALS:
            self._loop.add_signal_handler(sig, self.receive, sig)

    def finishing(self) -> None:
        """The run is closing its output: later signals are noted, not acted on (the
        commit is quick, and cutting it short could lose the file)."""
        self._watched.clear()

    def uninstall(self) -> None:
        if not self._installed:
            return
        self._installed = False
        for sig in STOP_SIGNALS:
            self._loop.remove_signal_handler(sig)

    def receive(self, sig: int) -> None:
        """A SIGINT or SIGTERM, from the loop or (a -P worker) kept since the fork."""
        if self.signal is not None:
            self._abort()
            return
        self.signal = sig
        self._display.note(stopping_note(sig, self._grace))
        for target in self._watched:
            target.stop()
        self._loop.call_later(self._grace, self._abort)

    def _abort(self) -> None:
        self._aborted = True
        for target in self._watched:
            target.abort()


Finished = tuple[Record, bytes]
"""A completed record, its body dropped, and its encoded output."""

RECORD_COST: Final = 512
"""What a finished record costs the window besides its encoded bytes (its object)."""


def encoder(writer: RecordWriter) -> Callable[[Record], Finished]:
    encode = writer.encode_one

    def finish(record: Record) -> Finished:
        data = encode(record)
        # Written into data: held once, not twice (timings stay, for the summary's ttfb).
        record.body = record.picks = record.headers = record.redirects = None
        return record, data

    return finish


def finished_cost(finished: Finished) -> int:
    return len(finished[1]) + RECORD_COST


def count_total(
    inputs: Sequence[str],
    display: Display,
    stop: threading.Event,
    skipped: int,
    input_format: InputFormat,
    shard: Shard | None = None,
) -> None:
    """Count items of regular files in a daemon thread and give the display its total."""
    loop = asyncio.get_running_loop()

    def count() -> None:
        total = 0
        for path in inputs:
            try:
                n = count_items(path, stop, input_format)
            except OSError:  # the reader meets the same error and reports it
                return
            if n is None:
                return
            total += n
        if shard is not None:
            if shard.by_host:
                return  # known only as its items are read
            total = shard.size(total)
        if not stop.is_set():
            with contextlib.suppress(RuntimeError):  # the run ended first
                loop.call_soon_threadsafe(display.set_total, max(0, total - skipped))

    threading.Thread(target=count, name="fetchmany-count", daemon=True).start()


def keeps_nothing(writer: RecordWriter, signalled: bool) -> bool:
    """Interrupted before any record completed, with a file to replace or one that did not
    exist: leave the previous file (or none) as it was, not an empty document in its
    place. (A resumed file keeps its records, and is closed as a whole document.)"""
    return signalled and writer.written == 0 and writer.output.discardable


def kept_saved_files(job: Job, skipped: int) -> list[str]:
    """A resumed run with --save-dir under a --save-name that two items may share: the
    files the kept records name, each to be saved over by no new item (the names are
    kept in memory anyway, as the run's own are)."""
    options, resume = job.options, job.resume
    if resume is None or not skipped or options.save_dir is None:
        return []
    from fetchmany.fetch.saving import names_may_collide

    if not names_may_collide(options.save_name):
        return []
    from fetchmany.output.resume import recorded_paths

    return list(recorded_paths(resume.path, resume.format, resume.fields))


async def run_job(job: Job, interruption: Interruption) -> Outcome:
    """Run a CLI job to the end and leave its output right, however it ends.

    Done, or interrupted (Ctrl-C, SIGTERM, the reader of stdout gone): the output
    holds every record completed in order, as a valid document (an interruption
    before the first record leaves a file to replace as it was). Failed (an error
    raised out of the run, such as ``OutputError`` for a full disk): the previous
    output is left as it was, and the error propagates for the CLI to report.
    """
    stats = RunStats(detailed=job.summary)
    outcome = Outcome(stats, earlier_failures=job.resume.point.failed if job.resume else 0)
    counting_stop = threading.Event()
    resume = job.resume
    skipped = resume.point.records if resume else 0
    writer = job.writer
    failed = True
    engines: list[Engine[Any]] = []
    ticker: asyncio.Task[None] | None = None
    job.display.start(None)
    try:
        count_total(
            job.inputs or ["-"], job.display, counting_stop, skipped, job.input_format, job.shard
        )
        chunks: AsyncIterable[Sequence[Item]] = read_item_chunks(
            job.inputs, job.request, job.input_format, job.shard
        )
        if resume is not None and skipped:
            job.display.note(f"Resuming: {plural(skipped, 'record')} already in {resume.path}")
            from fetchmany.output.resume import recorded_keys, skip_recorded

            recorded = recorded_keys(resume.path, resume.format, resume.fields)
            items = skip_recorded(flatten(chunks), recorded, skipped, resume.path, resume.key)
            chunks = one_by_one(items)
        kept_files = kept_saved_files(job, skipped)
        chunks, previous = job.refreshing(chunks)

        def on_engine(engine: Engine[Any]) -> None:
            interruption.watch(engine)
            engines.append(engine)

        finished = fetch_finished(
            chunks,
            job.options,
            encoder(writer),
            finished_cost,
            on_engine,
            job.setup,
            previous,
            kept_files,
        )

        def show_limits(limits: Limits) -> None:
            observe_limits(stats, limits)
            job.display.update(stats)

        ticker = asyncio.create_task(watch_limits(engines, show_limits))
        async with aclosing(finished) as batches:
            async for batch in batches:
                stats.add([record for record, _ in batch])
                job.display.update(stats)
                try:
                    writer.write_encoded([data for _, data in batch])
                except OutputClosed:
                    outcome.broken_pipe = True
                    break
        failed = False
    finally:
        if ticker is not None:
            ticker.cancel()
        if engines and (limits := engines[0].limits) is not None:
            observe_limits(stats, limits)
        counting_stop.set()
        interruption.finishing()  # a signal from now on must not cut the commit short
        stats.finish()
        job.display.update(stats)
        job.display.stop()
        outcome.signal = interruption.signal
        interrupted = outcome.signal is not None
        if failed or keeps_nothing(writer, interrupted) or job.keeps_previous(interrupted):
            writer.abandon()
        elif outcome.broken_pipe:
            writer.output.abandon()  # nobody reads it any more: nothing to finish
        else:
            try:
                writer.close()
            except OutputClosed:
                outcome.broken_pipe = True
    return outcome


LIMITS_EVERY: Final = 0.25
"""Seconds between readings of the limits for the display (each sums over hosts)."""


async def watch_limits(engines: Sequence[Engine[Any]], show: Callable[[Limits], None]) -> None:
    """Hand the run's limits to ``show`` every ``LIMITS_EVERY`` seconds, records or not:
    while ordered output waits for one slow item, the bar still says what holds it."""
    while True:
        await asyncio.sleep(LIMITS_EVERY)
        if engines and (limits := engines[0].limits) is not None:
            show(limits)


def observe_limits(stats: RunStats, limits: Limits) -> None:
    """Copy what the display shows of the limits into ``stats``."""
    stats.limit = limits.current_limit()
    stats.mark = limits.mark()
    stats.retries_waiting = limits.retries_waiting
    stats.settled = limits.settled()


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
