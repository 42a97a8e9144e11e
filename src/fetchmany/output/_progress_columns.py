"""Custom rich progress columns; imported only when a bar is shown (rich is slow to import)."""

from __future__ import annotations

from rich.progress import ProgressColumn, Task
from rich.text import Text


class CountColumn(ProgressColumn):
    """``done/total``, or just ``done`` while the total is unknown (stdin)."""

    def render(self, task: Task) -> Text:
        total = f"/{int(task.total)}" if task.total is not None else ""
        return Text(f"{int(task.completed)}{total}", style="progress.download")


class RateColumn(ProgressColumn):
    """Records per second over rich's recent-samples window."""

    def render(self, task: Task) -> Text:
        speed = task.speed
        return Text(f"{speed:.1f}/s" if speed else "-/s", style="progress.data.speed")


class LimitColumn(ProgressColumn):
    """The limit in force (``progress.limit_text``)."""

    def render(self, task: Task) -> Text:
        return Text(task.fields.get("limit") or "", style="progress.data.speed")
