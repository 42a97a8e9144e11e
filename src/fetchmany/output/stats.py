"""Running totals of a run: outcome counts and latency percentiles in constant memory.

Latencies go into logarithmic buckets 1% wide rather than a list, so a run of
millions of requests keeps the same few kilobytes and percentiles stay within 1%.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from fetchmany.records import ErrorKind, Record, Refresh

if TYPE_CHECKING:
    from fetchmany.fetch.adaptive import Settled

_BUCKET_RATIO = 1.01
_LOG_RATIO = math.log(_BUCKET_RATIO)
_FLOOR_MS = 0.001
_PENDING: Final = 4096
"""Latencies held as they came before they are put into buckets, a few at a time."""


class LatencyHistogram:
    """Approximate percentiles (within 1%) of latencies in milliseconds; exact max.

    A latency is not put into its bucket as it comes (a logarithm, a float made an
    int and a dict update: about 3k instructions each, per record). Up to
    ``_PENDING`` wait in a list; then they are sorted, and each bucket they fill is
    counted in one step, its edge found by bisection: a few hundred instructions a
    latency, the memory still bounded."""

    def __init__(self) -> None:
        self._buckets: dict[int, int] = {}
        self._pending: list[float] = []
        self._count = 0
        self._max = 0.0

    @property
    def count(self) -> int:
        return self._count + len(self._pending)

    @property
    def max(self) -> float:
        self._fold()
        return self._max

    def add(self, ms: float) -> None:
        self.add_all((ms,))

    def add_all(self, values: Iterable[float]) -> None:
        """Several latencies at once: a batch of records costs one call, not one each."""
        pending = self._pending
        pending.extend(values)
        if len(pending) >= _PENDING:
            self._fold()

    def _fold(self) -> None:
        """Put the pending latencies into their buckets. Sorted, the latencies of one
        bucket are a run: from the first (whose bucket its logarithm says) up to the
        bucket's upper edge. Each is counted into a bucket whose edge is above it and
        at most 1% over the bucket's lowest latency, so no percentile moves by more."""
        pending = self._pending
        if not pending:
            return
        pending.sort()
        buckets = self._buckets
        seen = buckets.get
        end = len(pending)
        start = 0
        while start < end:
            ms = pending[start]
            bucket = int(math.log(max(ms, _FLOOR_MS) / _FLOOR_MS) / _LOG_RATIO)
            # Rounding may put the edge at or below ``ms``: the run is then ``ms`` alone.
            after = max(bisect_left(pending, _edge(bucket), start), start + 1)
            buckets[bucket] = seen(bucket, 0) + after - start
            start = after
        self._count += end
        self._max = max(self._max, pending[-1])
        pending.clear()

    def percentile(self, p: float) -> float | None:
        """The latency at or below which ``p`` percent of samples fall (None if empty)."""
        self._fold()
        if not self._count:
            return None
        rank = max(1, math.ceil(self._count * p / 100))
        seen = 0
        for bucket in sorted(self._buckets):
            seen += self._buckets[bucket]
            if seen >= rank:
                return min(_edge(bucket), self._max)
        return self._max


def _edge(bucket: int) -> float:
    """The upper edge of a bucket: every latency in it is below this."""
    return _FLOOR_MS * _BUCKET_RATIO ** (bucket + 1)


_HTTP: Final = ErrorKind.HTTP
_LABELS: Final[dict[int | None, str]] = {
    None: "no_response",
    **{status: f"{status // 100}xx" for status in range(100, 1000)},
}
"""The label of each three-digit status (and of none), made once, not per record."""


def outcome_label(record: Record) -> str:
    """How a record is counted in the summary: its error kind, else its status class
    (an HTTP failure by its class too: ``4xx``, ``5xx``)."""
    error = record.error
    if error is not None and error.kind is not _HTTP:
        return error.kind.value
    return status_label(record.status)


def status_label(status: int | None) -> str:
    """A status's class (``2xx``), or ``no_response``."""
    label = _LABELS.get(status)
    if label is None:
        assert status is not None  # None has its label
        label = f"{status // 100}xx"
    return label


@dataclass(slots=True)
class Sample:
    """A failed record kept for the summary, so users see what went wrong without jq."""

    shown: str
    """The record's url (masked) if it has one, else which item it is: never its input,
    which a template may have put into a URL's userinfo (``http://{user}:{pw}@...``)."""
    outcome: str
    message: str


def _sample(record: Record, label: str) -> Sample:
    message = record.error.message if record.error else f"HTTP {record.status}"
    shown = record.url if record.url is not None else f"item {record.index}"
    return Sample(shown, label, message)


@dataclass
class RunStats:
    """Totals the progress display and the final summary read."""

    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    done: int = 0
    ok: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    ttfb: LatencyHistogram = field(default_factory=LatencyHistogram)
    """With --timings: time to first byte of the final attempts."""
    failures: list[Sample] = field(default_factory=list)
    """The first failure of each kind (outcome), up to ``keep_failures`` kinds."""
    more_failures: list[Sample] = field(default_factory=list)
    """Later failures of kinds already kept, up to ``keep_failures``: shown only while
    there are fewer kinds than that, so one common kind does not hide the others."""
    keep_failures: int = 3
    limit: int | None = None
    """The limit in force now (with --limit auto summed over hosts; under -P, over
    processes)."""
    mark: str = ""
    """What holds the limit just now (``Limits.mark``): cut, held, quota, probe."""
    retries_waiting: int = 0
    """Retries whose backoff is over, waiting for a slot."""
    settled: dict[str, Settled] = field(default_factory=dict)
    """With --limit auto: where each host's limit is and why."""
    refreshed: Counter[str] = field(default_factory=Counter)
    """With --refresh: records by what became of them (``Refresh``), or ``failed``."""
    bytes_not_transferred: int = 0
    """With --refresh: the sizes of the bodies a 304 kept from crossing the network."""
    detailed: bool = True
    """Whether records are counted for the closing summary (by outcome, latency, refresh,
    sample failures). False when nothing will show it (--quiet): ``add`` then counts
    records and ok ones only, what the exit status and the progress bar read."""

    @property
    def failed(self) -> int:
        return self.done - self.ok

    @property
    def elapsed(self) -> float:
        end = self.finished if self.finished is not None else time.monotonic()
        return end - self.started

    def add(self, records: Iterable[Record]) -> None:
        """Count a batch of records. An ok record (most of them) costs a few lookups: it
        is tallied by status in a plain dict, and its label (its status class) is found
        once per status in the batch."""
        if not self.detailed:
            done = ok = 0
            for record in records:
                done += 1
                if record.ok:
                    ok += 1
            self.done += done
            self.ok += ok
            return
        outcomes = self.outcomes
        done = 0
        ok_statuses: dict[int | None, int] = {}
        tally = ok_statuses.get
        latencies: list[float] = []
        for record in records:
            done += 1
            if record.ok:
                status = record.status
                ok_statuses[status] = tally(status, 0) + 1
            else:
                label = outcome_label(record)
                outcomes[label] += 1
                if len(self.failures) < self.keep_failures and all(
                    kept.outcome != label for kept in self.failures
                ):
                    self.failures.append(_sample(record, label))
                elif len(self.more_failures) < self.keep_failures:
                    self.more_failures.append(_sample(record, label))
            if (elapsed := record.elapsed_ms) is not None:
                latencies.append(elapsed)
            if record.timings is not None and (ttfb := record.timings.get("ttfb_ms")) is not None:
                self.ttfb.add(ttfb)
            if (refresh := record.refresh) is not None:
                self.refreshed[refresh.value if record.ok else "failed"] += 1
                if refresh is Refresh.UNCHANGED:
                    self.bytes_not_transferred += record.size or 0
        for status, count in ok_statuses.items():
            outcomes[status_label(status)] += count
            self.ok += count
        self.done += done
        self.latency.add_all(latencies)

    @property
    def samples(self) -> list[Sample]:
        """Failures to show: one of each kind first (a connect error, a timeout, a 404),
        then more of them while there is room."""
        room = self.keep_failures - len(self.failures)
        return self.failures + self.more_failures[: max(room, 0)]

    def finish(self) -> None:
        self.finished = time.monotonic()


@dataclass(frozen=True)
class FileTotals:
    """A resumed output file as a whole, after this run: what the summary says beside
    this run's counts, so it never contradicts the exit status (which counts them all)."""

    path: str
    records: int
    failed: int | None
    """Records not ok, when the file's fields say (``ok`` among them); else unknown."""
