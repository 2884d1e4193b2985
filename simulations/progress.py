"""A live progress bar per run (rich): simulated time done and the running ``mw_hit_ratio``."""

from __future__ import annotations

from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn


class LiveProgress:
    def __init__(self, console: Console, *, disable: bool = False) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[sim]}"),
            TextColumn("hit ratio {task.fields[ratio]}"),
            TimeElapsedColumn(),
            console=console,
            disable=disable,
        )
        self._tasks: dict[str, TaskID] = {}

    def update(self, label: str, now: float, duration: float, ratio: float) -> None:
        task = self._tasks.get(label)
        if task is None:
            task = self._tasks[label] = self._progress.add_task(label, total=duration, sim="", ratio="-")
        shown = "-" if label == "baseline" else f"{ratio:.3f}"
        self._progress.update(task, completed=now, sim=f"{now:,.0f}/{duration:,.0f} sim s", ratio=shown)

    def __enter__(self) -> LiveProgress:
        self._progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._progress.stop()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._progress, name)
