"""The display and the summary: plain, escaped, secret-free text on stderr."""

from __future__ import annotations

import contextlib

import pytest

from fetchmany.fetch.adaptive import Settled
from fetchmany.output.progress import NoDisplay, limit_text, summary_lines, terminal_safe
from fetchmany.output.stats import RunStats
from fetchmany.records import ErrorKind, FetchError, Record, Refresh


def test_outside_text_cannot_drive_the_terminal() -> None:
    assert terminal_safe("\x1b[31mred\u202e\x07") == "\\x1b[31mred\\u202e\\x07"
    assert terminal_safe("[bold]x[/bold]") == "[bold]x[/bold]"  # shown as text, never markup
    assert terminal_safe("a\udce9") == "a\\udce9"
    assert terminal_safe("x" * 300, 10) == "x" * 10 + "…"


def test_the_summary_counts_and_masks() -> None:
    stats = RunStats()
    stats.add(
        [
            Record(0, "http://u:pw@h.test/", "http://u:****@h.test/", status=500, elapsed_ms=5),
            Record(1, "x", None, error=FetchError(ErrorKind.INVALID_URL, "bad \x1b[2J")),
        ]
    )
    stats.finish()
    lines = summary_lines(stats, interrupted=True)
    assert lines[0].startswith("Interrupted. 2 records in ")
    assert lines[0].endswith(": 0 ok, 2 failed")
    assert lines[1] == "  5xx 1 · invalid_url 1"
    assert lines[2].startswith("  latency p50 5.0 ms")
    assert lines[3] == "  e.g. http://u:****@h.test/: 5xx: HTTP 500"
    assert lines[4] == "  e.g. item 1: invalid_url: bad \\x1b[2J"  # no url: never the input


def test_without_a_bar_lines_go_to_stderr_plainly(capsys: pytest.CaptureFixture[str]) -> None:
    display = NoDisplay()
    display.start(None)
    display.note("Resuming: 1 record already in out.jsonl")
    display.stop()
    assert capsys.readouterr() == ("", "Resuming: 1 record already in out.jsonl\n")


@pytest.mark.parametrize(
    ("limit", "mark", "waiting", "shown"),
    [
        (10, "", 0, "limit 10"),
        (12, "cut", 0, "limit 12 (cut)"),
        (9, "held", 1, "limit 9 (held), 1 retry waiting for a slot"),
        (4, "quota", 3, "limit 4 (quota), 3 retries waiting for a slot"),
        (None, "", 0, ""),
    ],
)
def test_the_bar_always_shows_the_limit_and_what_holds_it(
    limit: int | None, mark: str, waiting: int, shown: str
) -> None:
    stats = RunStats(limit=limit, mark=mark, retries_waiting=waiting)
    assert limit_text(stats) == shown


def test_the_summary_says_where_each_host_settled_and_why() -> None:
    stats = RunStats()
    stats.settled = {
        "a.test:443": Settled(12, 25, "overload"),
        "b.test:443": Settled(18, 0, "latency", baseline_ms=40.0, latency_ms=49.5),
        "c.test:443": Settled(10, 0, "quota", quota_rate=93.0),
        "d\x1b[2J.test:80": Settled(256, 0, "ceiling"),
    }
    stats.finish()
    line = next(x for x in summary_lines(stats, interrupted=False) if "settled" in x)
    assert line == (
        "  limit auto settled at: a.test:443 12 (overload answers), "
        "b.test:443 18 (latency 49.5 ms, 40 ms alone), "
        "c.test:443 10 (paced by a quota at 93/s), "
        "d\\x1b[2J.test:80 256 (the ceiling); 25 overload answers"
    )


def _overloaded(*numbers: int) -> str:
    return ", ".join(f"h{n}.test:80 {n} (overload answers)" for n in numbers)


@pytest.mark.parametrize(
    ("hosts", "shown"),
    [
        (1, _overloaded(1) + "; 1 overload answers"),
        (5, _overloaded(5, 4, 3, 2, 1) + "; 15 overload answers"),
        (6, _overloaded(6, 5, 4, 3, 2) + " and 1 more host; 21 overload answers"),
        (7, _overloaded(7, 6, 5, 4, 3) + " and 2 more hosts; 28 overload answers"),
    ],
)
def test_the_summary_names_the_five_hosts_most_overloaded_and_counts_the_rest(
    hosts: int, shown: str
) -> None:
    """Hosts come by their overload answers, most first (not by name, not as they came),
    five at most, the rest counted; the overload answers are all the hosts'."""
    stats = RunStats()
    stats.settled = {f"h{n}.test:80": Settled(n, n, "overload") for n in range(1, hosts + 1)}
    stats.finish()
    lines = summary_lines(stats, interrupted=False)
    assert lines[1:] == [f"  limit auto settled at: {shown}"]


def test_the_summary_cuts_a_long_host_name_at_60_characters() -> None:
    stats = RunStats()
    stats.settled = {"h" * 70 + ".test:443": Settled(3, 2, "overload")}
    stats.finish()
    line = summary_lines(stats, interrupted=False)[1]
    assert (
        line
        == "  limit auto settled at: " + "h" * 60 + "… 3 (overload answers); 2 overload answers"
    )


def test_two_workers_limits_are_shown_as_one() -> None:
    one = Settled(6, 3, "latency", baseline_ms=40.0, latency_ms=48.0, quota_rate=None)
    other = Settled(5, 1, "overload", baseline_ms=41.0, latency_ms=52.0, quota_rate=None)
    both = one.plus(other)
    assert both == Settled(11, 4, "overload", baseline_ms=40.0, latency_ms=52.0)


@pytest.mark.parametrize(
    ("limit", "ok", "failed", "plain"),
    [
        ("limit 2", 370, 0, "-/s · limit 2 · 370 ok · 0 failed"),
        ("limit 12 (cut)", 5, 3, "-/s · limit 12 (cut) · 5 ok · 3 failed"),
        ("", 1, 0, "-/s · 1 ok · 0 failed"),
    ],
)
def test_the_bar_keeps_its_figures_apart_and_red_for_failures_only(
    limit: str, ok: int, failed: int, plain: str
) -> None:
    """ "limit 2 370 ok" read as one number; a healthy rate and "0 failed" in red read as
    an alarm. The figures are apart, and red means failures there are."""
    import io

    from rich.console import Console
    from rich.progress import Progress

    from fetchmany.output._progress_columns import FiguresColumn

    column = FiguresColumn()
    console = Console(file=io.StringIO(), force_terminal=True, color_system="truecolor")
    with Progress(column, console=console, auto_refresh=False) as progress:
        progress.add_task("fetching", total=10, ok=ok, failed=failed, limit=limit)
        text = column.render(progress.tasks[0])
    assert text.plain == plain
    styles = {text.plain[span.start : span.end]: str(span.style) for span in text.spans}
    assert "red" not in styles["-/s"]
    assert ("red" in styles[f"{failed} failed"]) == (failed > 0)


def _ansi(text: object) -> str:
    """What a colour terminal is sent for ``text``, rich's default theme in force."""
    import io

    from rich.console import Console

    console = Console(file=io.StringIO(), force_terminal=True, color_system="truecolor")
    console.print(text, end="")
    out = console.file
    assert isinstance(out, io.StringIO)
    return out.getvalue()


def _bar_task(**fields: object) -> object:
    """A rich task as the columns read it: counts, speed and the display's fields."""
    from types import SimpleNamespace

    given = {"completed": 5, "total": 10, "speed": None}
    given.update(fields)
    keys = ("completed", "total", "speed")
    return SimpleNamespace(
        **{k: given[k] for k in keys},
        fields={k: v for k, v in given.items() if k not in keys},
    )


@pytest.mark.parametrize(
    ("task", "parts"),
    [
        (
            {"speed": 12.34, "limit": "limit 8 (cut)", "ok": 7, "failed": 2},
            [
                ("12.3/s", "cyan"),
                ("limit 8 (cut)", "blue"),
                ("7 ok", "green"),
                ("2 failed", "bold red"),
            ],
        ),
        (
            {"speed": 0.0, "ok": 3, "failed": 0},
            [("-/s", "cyan"), ("3 ok", "green"), ("0 failed", "dim")],
        ),
        ({}, [("-/s", "cyan"), ("0 ok", "green"), ("0 failed", "dim")]),  # before the first record
    ],
)
def test_the_figures_column_reads_and_colours_each_figure_apart(
    task: dict[str, object], parts: list[tuple[str, str]]
) -> None:
    """Each figure in its colour, apart from the next by a dim separator; a rate not yet
    known is ``-/s``, a limit not shown leaves no empty part, counts not yet sent are 0."""
    from typing import cast

    from rich.progress import Task
    from rich.style import Style
    from rich.text import Text

    from fetchmany.output._progress_columns import SEPARATOR, FiguresColumn

    expected = Text()
    for i, (shown, style) in enumerate(parts):
        if i:
            expected.append(SEPARATOR, Style(dim=True))
        expected.append(shown, Style.parse(style))
    rendered = FiguresColumn().render(cast(Task, _bar_task(**task)))
    assert rendered.plain == expected.plain
    assert _ansi(rendered) == _ansi(expected)


@pytest.mark.parametrize(("total", "shown"), [(10, "5/10"), (None, "5"), (0, "5/0")])
def test_the_count_column_shows_the_total_once_known(total: int | None, shown: str) -> None:
    """``done/total``, or ``done`` alone while the total is unknown (stdin), in rich's
    download colour."""
    from typing import cast

    from rich.progress import Task
    from rich.text import Text

    from fetchmany.output._progress_columns import CountColumn

    rendered = CountColumn().render(cast(Task, _bar_task(total=total)))
    assert rendered.plain == shown
    assert _ansi(rendered) == _ansi(Text(shown, style="progress.download"))
    assert _ansi(rendered) != _ansi(Text(shown))  # a colour of its own


def _frames(err: str) -> list[str]:
    """The bar's frames and the lines above it, as a terminal shows them, colours gone."""
    import re

    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", err.replace("\r\x1b[2K", "\n"))
    return [line for line in plain.split("\n") if line]


_TIME = r"\d+:\d\d:\d\d"


def test_the_bar_draws_on_stderr_what_the_run_has_done_and_its_last_state_at_stop(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A terminal on stderr: the bar starts at 0 of the total with no rate yet, a note
    goes above it as it was written (one line however long, never markup), the figures
    follow the run, and the last frame drawn at stop holds the last update. stdout
    carries nothing of it."""
    import re

    from fetchmany.output.progress import ProgressDisplay

    monkeypatch.setenv("FORCE_COLOR", "1")  # rich draws as on a terminal
    monkeypatch.setenv("COLUMNS", "160")
    display = ProgressDisplay()
    display.start(10)
    first = _frames(capsys.readouterr().err)
    assert re.fullmatch(
        rf"fetching [━╸╺]+ 0/10 -/s · 0 ok · 0 failed {_TIME} eta -:--:--", first[-1]
    )
    note = "[bold]Resuming[/bold]: " + "x" * 150
    display.note(note)
    display.set_total(20)
    display.update(RunStats(done=3, ok=2, limit=4, mark="cut"))
    display.stop()
    out, err = capsys.readouterr()
    assert out == ""
    frames = _frames(err)
    assert note in frames  # one line, brackets and all
    assert re.fullmatch(
        rf"fetching [━╸╺]+ 3/20 -/s · limit 4 \(cut\) · 2 ok · 1 failed {_TIME} eta -:--:--",
        frames[-1],
    ), frames[-1]
    display.stop()  # twice is harmless
    assert capsys.readouterr() == ("", "")


def test_a_bar_without_a_total_counts_alone(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """stdin: no total to show until a count of the input gives one."""
    import re

    from fetchmany.output.progress import ProgressDisplay

    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "160")
    display = ProgressDisplay()
    display.start(None)
    display.update(RunStats(done=4, ok=4))
    display.stop()
    last = _frames(capsys.readouterr().err)[-1]
    assert re.fullmatch(rf"fetching [━╸╺]+ 4 -/s · 4 ok · 0 failed {_TIME} eta *", last), last


def test_outside_text_is_cut_at_200_characters_and_line_breaks_of_unicode_escaped() -> None:
    """A line or paragraph separator would start a new line on the terminal as a newline
    does; 200 characters are kept whole."""
    assert terminal_safe("x" * 200) == "x" * 200
    assert terminal_safe("x" * 201) == "x" * 200 + "…"
    assert terminal_safe("a\u2028b\u2029c\u00adé") == "a\\u2028b\\u2029c\\xadé"


def test_a_bar_not_started_writes_notes_plainly_and_ignores_the_rest(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Notes come before the bar starts (a resumed file's count): they go to stderr as
    lines, and the bar's own calls do nothing until it starts."""
    from fetchmany.output.progress import ProgressDisplay

    display = ProgressDisplay()
    display.note("Resuming: 3 records already in out.jsonl")
    display.set_total(5)
    display.update(RunStats(done=1, ok=1))
    display.stop()
    assert capsys.readouterr() == ("", "Resuming: 3 records already in out.jsonl\n")


@pytest.mark.parametrize("gone", ["reader gone", "closed", "none"])
def test_a_summary_line_on_a_stderr_that_cannot_take_it_costs_the_run_nothing(
    gone: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a bar the summary goes out line by line: into a pipe whose reader went
    away (``| head``, a BrokenPipeError), a stream closed under the run (ValueError),
    or no stderr at all (``pythonw``). Each line is lost; the run goes on."""
    import io
    import os
    import sys

    stream: io.TextIOBase | None = None
    if gone == "reader gone":
        read, write = os.pipe()
        os.close(read)
        stream = open(write, "w")  # noqa: SIM115 (closed below, whatever it raised)
    elif gone == "closed":
        stream = io.StringIO()
        stream.close()
    monkeypatch.setattr(sys, "stderr", stream)
    display = NoDisplay()
    try:
        for line in ("Done. 2 records in 0.01s (200.0/s): 2 ok, 0 failed", "  2xx 2"):
            display.note(line)
    finally:
        if stream is not None:
            with contextlib.suppress(BrokenPipeError):
                stream.close()


@pytest.mark.parametrize(
    "error", [OSError(5, "Input/output error"), ValueError("I/O operation on closed file")]
)
def test_a_terminal_gone_under_the_bar_fails_neither_a_note_nor_the_stop(
    error: Exception, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The terminal closed (a hang-up) or stderr closed under the run: the bar's last
    words are lost, the run is not."""
    import sys

    from fetchmany.output.progress import ProgressDisplay

    class Gone:
        def write(self, text: str) -> int:
            raise error

        def flush(self) -> None:
            raise error

        def isatty(self) -> bool:
            return True

        def fileno(self) -> int:
            return 2

    monkeypatch.setenv("FORCE_COLOR", "1")
    display = ProgressDisplay()
    display.start(3)
    monkeypatch.setattr(sys, "stderr", Gone())
    display.note("a note")
    display.stop()


@pytest.mark.parametrize(
    ("ms", "shown"),
    [
        (None, "-"),
        (0.04, "0.0 ms"),
        (99.94, "99.9 ms"),
        (100, "100 ms"),
        (100.4, "100 ms"),
        (1234.5, "1234 ms"),
    ],
)
def test_latency_reads_to_a_tenth_of_a_millisecond_below_100_ms(
    ms: float | None, shown: str
) -> None:
    from fetchmany.output.progress import format_ms

    assert format_ms(ms) == shown


@pytest.mark.parametrize(
    ("done", "seconds", "head"),
    [
        (5, 2.0, "Done. 5 records in 2.00s (2.5/s): 5 ok, 0 failed"),
        (3, 0.5, "Done. 3 records in 0.50s (6.0/s): 3 ok, 0 failed"),
        (2, 0.0, "Done. 2 records in 0.00s (0.0/s): 2 ok, 0 failed"),  # a clock too coarse
        (0, 0.0, "Done. 0 records in 0.00s (0.0/s): 0 ok, 0 failed"),
    ],
)
def test_the_summary_head_gives_records_per_second_of_the_run(
    done: int, seconds: float, head: str
) -> None:
    """The rate is records over the run's seconds, under a second too; a run the clock
    saw take no time has no rate to show, rather than a division by zero."""
    stats = RunStats(started=50.0, finished=50.0 + seconds, done=done, ok=done)
    assert summary_lines(stats, interrupted=False) == [head]


def test_the_summary_reads_whole_every_part_in_its_place() -> None:
    """Twenty answers and three failures with --refresh and --timings: status classes
    before error kinds, latency and first byte to a tenth of a millisecond, what
    --refresh did, and one sample failure of each kind with its URL cut at 120
    characters and its message at 160, credentials masked before the cut."""
    stats = RunStats(started=100.0)
    stats.add(
        Record(
            i,
            str(i),
            f"http://h.test/{i}",
            ok=True,
            status=200,
            elapsed_ms=(i + 1) * 6 / 10,
            timings={"ttfb_ms": (i + 1) * 3 / 10},
            refresh=Refresh.UNCHANGED if i < 15 else Refresh.CHANGED,
            size=1000,
        )
        for i in range(20)
    )
    url = "http://me:hunter2@h.test/" + "a" * 150
    message = "refused by http://proxy:pw@p.test/ " + "m" * 200  # a server's own words
    stats.add(
        [
            Record(20, "x", url, error=FetchError(ErrorKind.CONNECT, message)),
            Record(21, "y", "http://h.test/gone", status=404,
                   error=FetchError(ErrorKind.HTTP, "404 Not Found"), refresh=Refresh.NEW),
            Record(22, "z", "http://h.test/busy", status=503,
                   error=FetchError(ErrorKind.HTTP, "503 Busy")),
        ]
    )  # fmt: skip
    stats.finished = 104.6
    masked = "http://me:****@h.test/" + "a" * 150
    assert summary_lines(stats, interrupted=False) == [
        "Done. 23 records in 4.60s (5.0/s): 20 ok, 3 failed",
        "  2xx 20 · 4xx 1 · 5xx 1 · connect 1",
        "  latency p50 6.0 ms · p95 11.4 ms · max 12.0 ms",
        "  first byte p50 3.0 ms · p95 5.7 ms · max 6.0 ms",
        "  refresh: 15 unchanged · 5 changed · 0 new · 1 failed; body bytes not transferred 15,000",
        f"  e.g. {masked[:120]}…: connect: {message.replace(':pw@', ':****@')[:160]}…",
        "  e.g. http://h.test/gone: 4xx: 404 Not Found",
        "  e.g. http://h.test/busy: 5xx: 503 Busy",
    ]


def test_a_resumed_files_totals_follow_the_runs_with_its_name_made_safe() -> None:
    """A resumed output's totals as a whole follow this run's; its name is the user's
    but may hold anything a file name can (an ESC from a script's variable), shown as
    text, not acted on by the terminal."""
    from fetchmany.output.stats import FileTotals

    stats = RunStats(started=10.0, finished=12.0, done=2, ok=2)
    whole = FileTotals("out\x1b[2J.jsonl", records=7, failed=1)
    lines = summary_lines(stats, interrupted=False, whole=whole)
    assert lines == [
        "Done. This run: 2 records in 2.00s (1.0/s): 2 ok, 0 failed",
        "  out\\x1b[2J.jsonl: 7 records, 6 ok, 1 failed",
    ]
    unknown = FileTotals("out.csv", records=7, failed=None)
    assert summary_lines(stats, interrupted=False, whole=unknown)[-1] == "  out.csv: 7 records"
