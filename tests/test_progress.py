"""The display and the summary: plain, escaped, secret-free text on stderr."""

from __future__ import annotations

import pytest

from fetchmany.fetch.adaptive import Settled
from fetchmany.output.progress import NoDisplay, limit_text, summary_lines, terminal_safe
from fetchmany.output.stats import RunStats
from fetchmany.records import ErrorKind, FetchError, Record


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
