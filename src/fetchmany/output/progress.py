"""The progress bar and the closing summary, both on stderr.

Shaped like httpie's display: one small interface with a plain implementation
(progress off, or not a terminal: lines on stderr) and a rich one. rich is imported
only when a bar is actually shown, so ``--version``, quiet runs and runs in a
pipeline never pay for it.
Everything that came from outside (inputs, URLs, error messages) is shown as plain
text with control characters escaped: no rich markup, no terminal escape sequences;
and with the credentials in any URL masked.
"""

from __future__ import annotations

import contextlib
import sys
import unicodedata
from typing import TYPE_CHECKING, Protocol

from fetchmany.output.stats import FileTotals, RunStats
from fetchmany.redaction import redact_text, redact_url

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID


def terminal_safe(text: str, limit: int = 200) -> str:
    """Outside text made safe to print: control and format characters become escapes.

    Removing ESC and friends stops ANSI injection; callers still hand the result to
    rich as ``Text`` (never as markup) so ``[bold]`` stays literal.
    """
    out = []
    for char in text[:limit]:
        if unicodedata.category(char) in ("Cc", "Cf", "Cs", "Zl", "Zp"):
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(char)
    if len(text) > limit:
        out.append("…")
    return "".join(out)


class Display(Protocol):
    """What the run loop tells the display; implementations decide what to draw."""

    def start(self, total: int | None) -> None: ...

    def set_total(self, total: int) -> None: ...

    def update(self, stats: RunStats) -> None: ...

    def note(self, message: str) -> None: ...

    def stop(self) -> None: ...


def write_stderr(line: str) -> None:
    """One line on stderr, if there is a stderr: a closed one (``2>&-``) or a reader that
    went away must never cost the run its records."""
    stream = sys.stderr
    if stream is None:
        return
    with contextlib.suppress(OSError, ValueError):
        stream.write(line + "\n")
        stream.flush()


class NoDisplay:
    """Progress off: notes and the summary still reach stderr, as plain lines; nothing is
    drawn, and rich is never imported."""

    def start(self, total: int | None) -> None:
        pass

    def set_total(self, total: int) -> None:
        pass

    def update(self, stats: RunStats) -> None:
        pass

    def note(self, message: str) -> None:
        write_stderr(message)

    def stop(self) -> None:
        pass


class SilentDisplay(NoDisplay):
    """A ``-P`` worker's display: the parent shows the one bar, summary and notes."""

    def note(self, message: str) -> None:
        pass


class ProgressDisplay:
    """A rich bar: done/total (or a pulse when the total is unknown, as for stdin),
    requests per second, ok and failed counts, elapsed and ETA.

    rich is imported in ``start()``, so nothing pays for it unless a bar is shown. It
    redraws from its own timer a few times a second; ``update`` only stores numbers,
    so the cost per batch of records is constant and tiny.
    """

    def __init__(self) -> None:
        self._console: Console | None = None
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def start(self, total: int | None) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        from fetchmany.output._progress_columns import CountColumn, FiguresColumn

        self._console = Console(stderr=True, highlight=False, soft_wrap=True)
        self._progress = Progress(
            TextColumn("fetching", markup=False),
            BarColumn(),
            CountColumn(),
            FiguresColumn(),
            TimeElapsedColumn(),
            TextColumn("eta", markup=False),
            TimeRemainingColumn(),
            console=self._console,
            refresh_per_second=4,
            speed_estimate_period=10,
        )
        # No figures yet: the columns read a figure not sent as none (0 ok, no limit).
        self._task = self._progress.add_task("fetching", total=total)
        self._progress.start()

    def set_total(self, total: int) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, total=total)

    def update(self, stats: RunStats) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(
                self._task,
                completed=stats.done,
                ok=stats.ok,
                failed=stats.failed,
                limit=limit_text(stats),
            )

    def note(self, message: str) -> None:
        """A line above the bar (plain text: never markup)."""
        if self._console is None:
            write_stderr(message)
            return
        from rich.text import Text

        with contextlib.suppress(OSError, ValueError):
            self._console.print(Text(message))

    def stop(self) -> None:
        if self._progress is not None:
            with contextlib.suppress(OSError, ValueError):
                self._progress.refresh()
                self._progress.stop()
            self._progress = None


def limit_text(stats: RunStats) -> str:
    """The bar's limit field: the limit, what holds it (a cut, a Retry-After, a quota's
    pacing, a probe), and retries waiting for a slot."""
    if stats.limit is None:
        return ""
    text = f"limit {stats.limit}"
    if stats.mark:
        text += f" ({stats.mark})"
    if waiting := stats.retries_waiting:
        text += f", {waiting} {'retry' if waiting == 1 else 'retries'} waiting for a slot"
    return text


def make_display(show_bar: bool) -> Display:
    return ProgressDisplay() if show_bar else NoDisplay()


def format_ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f} ms" if value >= 100 else f"{value:.1f} ms"


def refresh_line(stats: RunStats) -> str:
    """What --refresh did: unchanged, changed, new, failed (untagged when any), and the
    body bytes that 304s kept from crossing the network."""
    counts = stats.refreshed
    parts = [f"{counts[name]} {name}" for name in ("unchanged", "changed", "new", "failed")]
    if counts["untagged"]:
        parts.insert(2, f"{counts['untagged']} untagged (no etag or last_modified before)")
    saved = stats.bytes_not_transferred
    return f"refresh: {' · '.join(parts)}; body bytes not transferred {saved:,}"


def summary_lines(stats: RunStats, interrupted: bool, whole: FileTotals | None = None) -> list[str]:
    """The closing summary as plain lines: outcome counts, rate, latency, sample failures.
    ``whole``: a resumed file, whose totals follow this run's."""
    elapsed = stats.elapsed
    rate = stats.done / elapsed if elapsed > 0 else 0.0
    head = "Interrupted." if interrupted else "Done."
    if whole is not None:
        head += " This run:"
    lines = [
        f"{head} {stats.done} records in {elapsed:.2f}s ({rate:.1f}/s): "
        f"{stats.ok} ok, {stats.failed} failed"
    ]
    if whole is not None:
        counts = f"{whole.records} records"
        if whole.failed is not None:
            counts += f", {whole.records - whole.failed} ok, {whole.failed} failed"
        lines.append(f"  {terminal_safe(whole.path)}: {counts}")
    if stats.outcomes:
        # Status classes (``2xx``) before error kinds and ``no_response``: a digit sorts
        # before a lower-case letter, and every label starts with one or the other.
        lines.append("  " + " · ".join(f"{k} {stats.outcomes[k]}" for k in sorted(stats.outcomes)))
    latency = stats.latency
    if latency.count:
        lines.append(
            f"  latency p50 {format_ms(latency.percentile(50))} · "
            f"p95 {format_ms(latency.percentile(95))} · max {format_ms(latency.max)}"
        )
    if stats.ttfb.count:
        ttfb = stats.ttfb
        lines.append(
            f"  first byte p50 {format_ms(ttfb.percentile(50))} · "
            f"p95 {format_ms(ttfb.percentile(95))} · max {format_ms(ttfb.max)}"
        )
    if stats.refreshed:
        lines.append("  " + refresh_line(stats))
    if stats.settled:
        hosts = sorted(stats.settled.items(), key=lambda kv: -kv[1].overloads)
        overloads = sum(settled.overloads for settled in stats.settled.values())
        shown = ", ".join(
            f"{terminal_safe(host, 60)} {settled.limit} ({settled.why()})"
            for host, settled in hosts[:5]
        )
        rest = len(hosts) - 5
        more = f" and {rest} more {'host' if rest == 1 else 'hosts'}" if rest > 0 else ""
        lines.append(f"  limit auto settled at: {shown}{more}; {overloads} overload answers")
    for sample in stats.samples:
        lines.append(
            f"  e.g. {terminal_safe(redact_url(sample.shown), 120)}: {sample.outcome}: "
            f"{terminal_safe(redact_text(sample.message), 160)}"
        )
    return lines
