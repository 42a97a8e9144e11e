"""The display and the summary: plain, escaped, secret-free text on stderr."""

from __future__ import annotations

import pytest

from fetchmany.output.progress import NoDisplay, summary_lines, terminal_safe
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
