"""Custom rich progress columns; imported only when a bar is shown (rich is slow to import)."""

from __future__ import annotations

from rich.progress import ProgressColumn, Task
from rich.text import Text

SEPARATOR = " · "


class CountColumn(ProgressColumn):
    """``done/total``, or just ``done`` while the total is unknown (stdin)."""

    def render(self, task: Task) -> Text:
        total = f"/{int(task.total)}" if task.total is not None else ""
        return Text(f"{int(task.completed)}{total}", style="progress.download")


class FiguresColumn(ProgressColumn):
    """Records per second (over rich's recent-samples window), the limit in force and
    what holds it (``progress.limit_text``), ok and failed counts: each apart, so
    that ``limit 2`` and ``370 ok`` never read as one number, and red only for
    failures there are (a healthy rate and ``0 failed`` are no alarm)."""

    def render(self, task: Task) -> Text:
        speed = task.speed
        failed = task.fields.get("failed", 0)
        parts = [
            (f"{speed:.1f}/s" if speed else "-/s", "cyan"),
            (task.fields.get("limit") or "", "blue"),
            (f"{task.fields.get('ok', 0)} ok", "green"),
            (f"{failed} failed", "bold red" if failed else "dim"),
        ]
        text = Text()
        for shown, style in parts:
            if shown:
                if text:
                    text.append(SEPARATOR, style="dim")
                text.append(shown, style=style)
        return text
