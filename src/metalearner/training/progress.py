"""The progress of a training run, for a person at a terminal and for one reading its log.

In a terminal (stderr a TTY) a rich bar redraws in place. Where stdout is not a terminal (a file
under nohup, SLURM or CI) one plain line is printed every ``every`` seconds, at each validation
and once at the end, each with the step, the wall time, the loss, the latest validation score,
the pace and an ETA. Both come from :func:`forecast`: the ETA and the bar's end are what ends
the run, its last step or its time budget, whichever comes first.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn


@dataclass(frozen=True)
class Horizon:
    """What ends a run: its last step, or its time budget, whichever comes first.

    Attributes:
        steps: the step it ends at.
        budget: seconds of training (outer steps only) it may spend, or ``None``.
    """

    steps: int
    budget: float | None = None


@dataclass(frozen=True)
class Forecast:
    """Where a run stands against its :class:`Horizon`.

    Attributes:
        fraction: of the run done, by whichever of steps and budget ends it first (0 to 1).
        steps_per_s: steps per second of wall time in this session; ``None`` before a step.
        eta: wall seconds left; ``None`` before a step of this session.
        ends_by: ``"steps"`` or ``"time_budget"``: which will end the run at this pace.
    """

    fraction: float
    steps_per_s: float | None
    eta: float | None
    ends_by: Literal["steps", "time_budget"]


def forecast(
    horizon: Horizon,
    step: int,
    elapsed: float,
    *,
    start_step: int,
    start_elapsed: float,
    wall: float,
) -> Forecast:
    """Forecasts the end of a run from its pace in this session.

    A time budget counts seconds of outer steps only, so the training seconds left are the
    smaller of the steps left at this session's pace and the budget left; the wall time that
    validation and checkpoints add is then added in the proportion this session has seen.

    Args:
        horizon: what ends the run.
        step: steps done, over all sessions.
        elapsed: seconds of training, over all sessions (what a budget counts).
        start_step: ``step`` when this session began (a resumed run's pace is its own).
        start_elapsed: ``elapsed`` when this session began.
        wall: wall seconds since this session began.

    Example:
        >>> forecast(Horizon(20_000, 8.0), 20, 2.0, start_step=0, start_elapsed=0.0, wall=2.0)
        Forecast(fraction=0.25, steps_per_s=10.0, eta=6.0, ends_by='time_budget')
    """
    fraction = step / max(horizon.steps, 1)
    budget_left = None
    if horizon.budget is not None:
        fraction = max(fraction, elapsed / horizon.budget)
        budget_left = max(horizon.budget - elapsed, 0.0)
    done, trained = step - start_step, elapsed - start_elapsed
    fraction = min(fraction, 1.0)
    ends_by: Literal["steps", "time_budget"] = "steps"
    if done <= 0 or trained <= 0 or wall <= 0:  # no pace to go by yet
        if budget_left == 0.0:
            ends_by = "time_budget"
        return Forecast(fraction, None, 0.0 if fraction >= 1 else None, ends_by)
    steps_left = max(horizon.steps - step, 0) * trained / done  # in training seconds
    left = steps_left
    if budget_left is not None and budget_left < steps_left:
        left, ends_by = budget_left, "time_budget"
    return Forecast(fraction, done / wall, left * max(wall / trained, 1.0), ends_by)


def clock_text(seconds: float) -> str:
    """``seconds`` as ``h:mm:ss`` (hours unbounded: a long run reads ``58:12:00``)."""
    whole = round(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def score_text(metric: str, value: float) -> str:
    """A validation score as the progress shows it: ``val accuracy 85.12%``, ``val mse 0.29``."""
    shown = f"{100 * value:.2f}%" if metric == "accuracy" else f"{value:.4g}"
    return f"val {metric} {shown}"


class TrainingProgress:
    """A rich bar on stderr in a terminal; plain lines on stdout when it is not one.

    ``quiet`` silences both (and the notes), leaving the caller's own summary.

    Args:
        horizon: what ends the run.
        label: the run's name, starting each line (a benchmark trains several).
        start: the step this session starts from.
        spent: seconds of training before this session (a resumed run's).
        tasks_per_step: tasks of a meta-batch, for the throughput in tasks per second.
        every: seconds between lines in a log (and one at each validation and at the end);
            ``None``: no lines, only the bar in a terminal.
        quiet: neither bar nor lines nor notes.
        notes: lines said once before training starts (where a resumed run continues from).
        console: where the bar draws (default: stderr).
        log: where the lines go (default: stdout).
        clock: wall-clock seconds (tests move their own).
    """

    def __init__(
        self,
        horizon: Horizon,
        label: str,
        *,
        start: int,
        spent: float = 0.0,
        tasks_per_step: int = 1,
        every: float | None = None,
        quiet: bool,
        notes: Sequence[str] = (),
        console: Console | None = None,
        log: TextIO | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ):
        self.horizon, self.label, self.every = horizon, label, every
        self.console = console if console is not None else Console(stderr=True)
        self.log = log if log is not None else sys.stdout
        self.clock, self.tasks_per_step, self.notes = clock, tasks_per_step, notes
        self.quiet = quiet
        # FORCE_COLOR can make rich call a pipe a terminal: a redrawn bar only clutters a log.
        self.drawn = not quiet and self.console.is_terminal and self.console.file.isatty()
        self.logged = not quiet and every is not None and not self.log.isatty()
        self.started = self.last_line = clock()
        self.start, self.spent = start, spent
        self.step, self.elapsed, self.loss, self.val = start, spent, float("nan"), "val -"
        self._losses: list[float] = []  # since the last line: one step's loss is too noisy
        self._progress: Progress | None = None
        self._task = None
        if self.drawn:
            self._progress = Progress(
                TextColumn("{task.description}", style="bold", markup=False),  # a folder's name
                BarColumn(),
                TextColumn("{task.fields[status]}", markup=False),
                console=self.console,
                transient=False,
            )
            self._task = self._progress.add_task(label, total=1.0, status="")

    def __enter__(self) -> TrainingProgress:
        if not self.quiet:
            for note in self.notes:
                print(note, file=self.log, flush=True)
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
        if kind is None and self.logged:  # an error says its own words instead
            self._print(self._final())

    @property
    def fraction(self) -> float:
        """The part of the run done, by whichever of its steps and budget ends it first."""
        return self._forecast().fraction

    def update(
        self,
        step: int,
        elapsed: float,
        *,
        loss: float,
        val: str | None = None,
        validated: bool = False,
    ) -> None:
        """Records an outer step; redraws the bar, and prints a line when one is due.

        Args:
            step: steps done, over all sessions.
            elapsed: seconds of training, over all sessions.
            loss: this step's training loss.
            val: the latest validation score as shown (:func:`score_text`), if it changed.
            validated: this step was validated: a line is due in a log.
        """
        self.step, self.elapsed, self.loss = step, elapsed, loss
        self._losses.append(loss)
        if val is not None:
            self.val = val
        if self._progress is not None and self._task is not None:
            pace = self._forecast()
            status = self._status(pace, loss)
            self._progress.update(self._task, completed=pace.fraction, status=status)
        due = self.every is not None and self.clock() - self.last_line >= self.every
        if self.logged and (validated or due):
            mean = sum(self._losses) / len(self._losses)
            self._print(f"{self.label}: {self._status(self._forecast(), mean)}")

    def _forecast(self) -> Forecast:
        return forecast(
            self.horizon, self.step, self.elapsed, start_step=self.start,
            start_elapsed=self.spent, wall=self.clock() - self.started,
        )  # fmt: skip

    def _status(self, pace: Forecast, loss: float) -> str:
        eta = "?" if pace.eta is None else clock_text(pace.eta)
        return (
            f"step {self.step}/{self.horizon.steps} ({100 * pace.fraction:.0f}%), "
            f"{self._numbers(loss, pace)}, ETA {eta} by {pace.ends_by}"
        )

    def _numbers(self, loss: float, pace: Forecast) -> str:
        wall = clock_text(self.clock() - self.started)
        rate = pace.steps_per_s or 0.0
        return (
            f"elapsed {wall}, loss {loss:.4g}, {self.val}, {_rate(rate)} steps/s "
            f"({_rate(rate * self.tasks_per_step)} tasks/s)"
        )

    def _final(self) -> str:
        pace = self._forecast()
        loss = sum(self._losses) / len(self._losses) if self._losses else self.loss
        line = f"{self.label}: done at step {self.step}/{self.horizon.steps}, "
        line += self._numbers(loss, pace)
        budget = self.horizon.budget
        if budget is not None and self.elapsed >= budget:
            line += f"; time_budget {budget:g} s spent"
        elif self.step >= self.horizon.steps:
            line += f"; all {self.horizon.steps} steps done"
        return line

    def _print(self, line: str) -> None:
        # Flushed: a file's buffer would otherwise hold the lines until the run ends.
        print(line, file=self.log, flush=True)
        self.last_line = self.clock()
        self._losses = []


def _rate(per_s: float) -> str:
    # Three significant digits, never an exponent a reader (or a log parser) must decode.
    return f"{per_s:.3g}" if per_s < 1000 else f"{per_s:.0f}"
