"""The progress display of every long command (the CLI's loads and sends, the demo)."""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


def progress_bars(console: Console) -> Progress:
    """Label, bar, done/total, elapsed."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def advancer(progress: Progress, label: str, total: int | None) -> Callable[[int], None]:
    """A new bar, and a callback that advances it by n."""
    task = progress.add_task(label, total=total)
    return lambda n: progress.advance(task, n)
