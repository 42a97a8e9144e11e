"""Run totals: counts by outcome and latency percentiles in constant memory."""

from __future__ import annotations

import math
from collections import Counter
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fetchmany.output.stats import LatencyHistogram, RunStats, outcome_label
from fetchmany.records import ErrorKind, FetchError, Record, Refresh


def test_percentiles_are_within_one_percent() -> None:
    histogram = LatencyHistogram()
    for ms in range(1, 1001):
        histogram.add(float(ms))
    assert histogram.percentile(50) == pytest.approx(500, rel=0.011)
    assert histogram.percentile(95) == pytest.approx(950, rel=0.011)
    assert histogram.max == 1000
    assert LatencyHistogram().percentile(50) is None


def test_outcomes_failures_and_latency() -> None:
    stats = RunStats()
    stats.add(
        [
            Record(0, "a", "u", ok=True, status=200, elapsed_ms=10.0),
            Record(
                1,
                "b",
                "u",
                status=404,
                elapsed_ms=20.0,
                error=FetchError(ErrorKind.HTTP, "404 Nope"),
            ),
            Record(2, "c", None, error=FetchError(ErrorKind.INVALID_URL, "bad")),
            Record(3, "d", "u", status=200, error=FetchError(ErrorKind.INVALID_CHARSET, "x")),
        ]
    )
    assert (stats.done, stats.ok, stats.failed) == (4, 1, 3)
    assert dict(stats.outcomes) == {"2xx": 1, "4xx": 1, "invalid_url": 1, "invalid_charset": 1}
    assert [f.outcome for f in stats.failures] == ["4xx", "invalid_url", "invalid_charset"]
    assert stats.failures[0].message == "404 Nope"  # the reason as the server sent it
    assert stats.latency.count == 2


_statuses = st.one_of(st.none(), st.integers(100, 999), st.integers(0, 99), st.integers(1000, 1200))
_records = st.builds(
    lambda ok, status, kind, elapsed: Record(
        0,
        "a",
        "u",
        ok=ok,
        status=status,
        elapsed_ms=elapsed,
        error=None if ok else FetchError(kind, "m"),
    ),
    st.booleans(),
    _statuses,
    st.sampled_from(ErrorKind),
    st.one_of(st.none(), st.floats(0, 1e6)),
)


@given(st.lists(_records, max_size=40), st.lists(st.integers(0, 40), max_size=5))
def test_counts_in_batches_are_the_counts_one_by_one(
    records: list[Record], cuts: list[int]
) -> None:
    """Batches are counted as the records one at a time by ``outcome_label`` (the
    common ok path looks its label up instead), however the run splits them."""
    stats = RunStats()
    edges = sorted({0, len(records), *(min(cut, len(records)) for cut in cuts)})
    for start, end in pairwise(edges):
        stats.add(records[start:end])
    elapsed = [r.elapsed_ms for r in records if r.elapsed_ms is not None]
    assert stats.done == len(records)
    assert stats.ok == sum(r.ok for r in records)
    assert stats.outcomes == Counter(outcome_label(r) for r in records)
    assert stats.latency.count == len(elapsed)
    assert stats.latency.max == max(elapsed, default=0.0)


@pytest.mark.parametrize(
    ("status", "label"),
    [(503, "5xx"), (None, "no_response"), (42, "0xx"), (1000, "10xx"), (1234, "12xx")],
)
def test_labels(status: int | None, label: str) -> None:
    """A status below 100 (aiohttp takes any three digits: ``042``) or past 999 (a
    library's record) is counted by its hundreds like any other."""
    assert outcome_label(Record(0, "a", "u", status=status)) == label


@pytest.mark.parametrize(
    ("latencies", "p", "near"),
    [
        ([10.0, 1000.0], 50, 10.0),  # half are at or below the lower one
        ([10.0] * 190 + [500.0] * 10, 95, 10.0),  # 95% at 10 ms exactly
        ([10.0] * 189 + [500.0] * 11, 95, 500.0),  # 94.5% at 10 ms: p95 is a slow one
    ],
)
def test_a_percentile_is_the_latency_at_its_rank(
    latencies: list[float], p: int, near: float
) -> None:
    histogram = LatencyHistogram()
    histogram.add_all(latencies)
    assert histogram.percentile(p) == pytest.approx(near, rel=0.01)


def test_first_byte_percentiles_come_from_timings() -> None:
    from fetchmany.output.progress import summary_lines

    stats = RunStats()
    records = [
        Record(i, "x", "http://h.test/", ok=True, status=200, elapsed_ms=5.0) for i in range(3)
    ]
    for record, ttfb in zip(records, (1.0, 2.0, 40.0), strict=True):
        record.timings = {"ttfb_ms": ttfb, "total_ms": ttfb + 1}
    stats.add(records)
    assert stats.ttfb.count == 3
    assert any(line.startswith("  first byte p50") for line in summary_lines(stats, False))
    plain = RunStats()
    plain.add([Record(0, "x", "http://h.test/", ok=True, status=200, elapsed_ms=5.0)])
    assert not any("first byte" in line for line in summary_lines(plain, False))


def test_failure_samples_show_one_of_each_kind_first() -> None:
    """Ten 404s, then a connect error, a timeout and a redirect loop: the summary's
    three "e.g." lines are one of each kind, not the first three 404s."""

    def failed(index: int, kind: ErrorKind, status: int | None = None) -> Record:
        return Record(index, str(index), f"http://h.test/{index}", status=status,
                      error=FetchError(kind, f"{kind} {index}"))  # fmt: skip

    stats = RunStats()
    stats.add(failed(i, ErrorKind.HTTP, 404) for i in range(10))
    stats.add([failed(10, ErrorKind.CONNECT), failed(11, ErrorKind.TIMEOUT)])
    stats.add([failed(12, ErrorKind.TOO_MANY_REDIRECTS), failed(13, ErrorKind.CONNECT)])
    assert [(s.outcome, s.shown) for s in stats.samples] == [
        ("4xx", "http://h.test/0"),
        ("connect", "http://h.test/10"),
        ("timeout", "http://h.test/11"),
    ]
    # With fewer kinds than samples, the room left shows more of them.
    one_kind = RunStats()
    one_kind.add(failed(i, ErrorKind.HTTP, 404) for i in range(10))
    assert [s.shown for s in one_kind.samples] == [f"http://h.test/{i}" for i in range(3)]
    two_kinds = RunStats()
    two_kinds.add(failed(i, ErrorKind.HTTP, 404) for i in range(5))
    two_kinds.add([failed(5, ErrorKind.DNS)])
    assert [s.outcome for s in two_kinds.samples] == ["4xx", "dns", "4xx"]
    # However many failures, a few are kept: memory does not grow with the run.
    many = RunStats()
    many.add(failed(i, ErrorKind.HTTP, 404) for i in range(100))
    assert [s.shown for s in many.failures] == ["http://h.test/0"]
    assert [s.shown for s in many.more_failures] == [f"http://h.test/{i}" for i in (1, 2, 3)]


def test_refresh_counts_the_bytes_of_unchanged_bodies_only() -> None:
    """A 304 saves its previous body's size: an empty body or one of unknown size
    saved nothing that can be counted; a changed body crossed the network."""

    def refreshed(index: int, refresh: Refresh, size: int | None) -> Record:
        return Record(index, "i", "http://h.test/", ok=True, status=200, size=size,
                      refresh=refresh)  # fmt: skip

    stats = RunStats()
    stats.add(
        [
            refreshed(0, Refresh.UNCHANGED, 1000),
            refreshed(1, Refresh.UNCHANGED, 0),
            refreshed(2, Refresh.UNCHANGED, None),
            refreshed(3, Refresh.CHANGED, 500),
        ]
    )
    assert (stats.bytes_not_transferred, dict(stats.refreshed)) == (
        1000,
        {"unchanged": 3, "changed": 1},
    )


def test_the_run_time_stops_at_finish(monkeypatch: pytest.MonkeyPatch) -> None:
    """The summary comes after the output is closed: its seconds are the run's, not
    the run's and the closing's."""
    import types

    from fetchmany.output import stats as module

    now = [10.0]
    monkeypatch.setattr(module, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    stats = RunStats(started=10.0)
    now[0] = 12.5
    assert stats.elapsed == 2.5
    stats.finish()
    now[0] = 30.0
    assert stats.elapsed == 2.5


_latencies = st.one_of(
    st.floats(0, 1e6),
    st.integers(1000, 1100).map(lambda n: n / 100),  # dense: a few buckets, many each
    st.integers(0, 30).map(lambda n: n / 10_000),  # about the floor of 1 microsecond
)


@given(
    st.lists(_latencies, min_size=1, max_size=300),
    st.integers(1, 64),
    st.floats(0.5, 100),
)
def test_a_percentile_is_within_one_percent_above_the_latency_at_its_rank(
    latencies: list[float], pending: int, p: float
) -> None:
    """However the latencies are folded into buckets (a few at a time, sorted), a
    percentile is the latency at its rank, or at most 1% above it: never below."""
    import fetchmany.output.stats as stats_module

    histogram = LatencyHistogram()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(stats_module, "_PENDING", pending)
        for start in range(0, len(latencies), 7):
            histogram.add_all(latencies[start : start + 7])
    exact = sorted(latencies)[max(1, math.ceil(len(latencies) * p / 100)) - 1]
    found = histogram.percentile(p)
    assert found is not None
    assert exact <= found <= max(exact, 0.001) * 1.01 * (1 + 1e-12)
    assert histogram.count == len(latencies)
    assert histogram.max == max(latencies)


def test_a_quiet_run_counts_records_and_ok_ones_only() -> None:
    """With no summary to show (--quiet), a batch is counted for the exit status and
    the bar, and nothing else is kept."""
    records = [
        Record(0, "a", "u", ok=True, status=200, elapsed_ms=1.0),
        Record(1, "b", "u", status=404, elapsed_ms=2.0, error=FetchError(ErrorKind.HTTP, "404")),
        Record(2, "c", None, error=FetchError(ErrorKind.INVALID_URL, "bad")),
    ]
    quiet = RunStats(detailed=False)
    quiet.add(records)
    quiet.add(records[:1])
    assert (quiet.done, quiet.ok, quiet.failed) == (4, 2, 2)
    assert not quiet.outcomes
    assert not quiet.failures
    assert quiet.latency.count == 0


def test_a_latency_on_a_buckets_edge_as_rounded_is_counted_once() -> None:
    """A latency whose bucket, by its logarithm, has an upper edge at or below it (float
    rounding; 0.4157 ms is one): counted alone in that bucket, not looped on forever
    nor lost."""
    from fetchmany.output import stats

    on_edge = []
    for bucket in range(600, 1400):
        edge = stats._edge(bucket)
        found = int(math.log(edge / stats._FLOOR_MS) / stats._LOG_RATIO)
        if stats._edge(found) <= edge:
            on_edge.append(edge)
    assert on_edge  # such latencies exist: the branch is needed
    histogram = LatencyHistogram()
    histogram.add_all([*on_edge[:20], *on_edge[:20], 1000.0])
    histogram.add_all([0.0] * 4096)  # enough to fold what is pending
    assert histogram.count == 41 + 4096
    assert histogram.max == 1000.0
    assert histogram.percentile(100) == 1000.0


def test_a_quiet_run_counts_every_ok_record_of_a_batch() -> None:
    """With nothing shown but the exit status and the last line (-q: no breakdown kept),
    a batch's records are still each counted, ok or not."""
    stats = RunStats(started=0.0, detailed=False)
    ok = [Record(i, str(i), None, ok=True, status=200) for i in range(3)]
    stats.add([*ok, Record(3, "3", None, error=FetchError(ErrorKind.TIMEOUT, "slow"))])
    stats.add(ok[:2])
    assert (stats.done, stats.ok, stats.failed) == (6, 5, 1)
    assert not stats.outcomes  # no breakdown was kept
