"""The live progress line of a training run: step, loss, validation score, tasks/s, ETA."""

from __future__ import annotations

import sys
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)


class TrainingProgress:
    """A rich progress bar on stderr; silent when ``quiet`` or stderr is not a terminal.

    Logs and pipes get ``metrics.jsonl`` instead: redrawn bars only clutter them.
    """

    def __init__(self, total: int, start: int, *, quiet: bool, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self.enabled = not quiet and self.console.is_terminal and sys.stderr.isatty()
        self._progress: Progress | None = None
        self._task = None
        if self.enabled:
            self._progress = Progress(
                TextColumn("[bold]meta-train"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
            self._task = self._progress.add_task("train", total=total, completed=start, status="")

    def __enter__(self) -> TrainingProgress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

    def update(self, step: int, *, loss: float, val: str, tasks_per_s: float) -> None:
        """Moves the bar to ``step`` with the latest numbers."""
        if self._progress is None or self._task is None:
            return
        status = f"loss {loss:.4g}  val {val}  {tasks_per_s:.0f} tasks/s"
        self._progress.update(self._task, completed=step, status=status)
