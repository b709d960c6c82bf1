"""Where a run's metrics go besides ``metrics.jsonl``: the trackers its ``log`` setting names
(TensorBoard), and its ``curves.png``, always.

A tracker takes every line the loop appends to ``metrics.jsonl`` (:meth:`Tracker.log`) and is
closed however the run ends: finished, out of time budget, interrupted or diverged; then the
picture is drawn (:class:`Trackers`). Another tracker (MLflow, Weights & Biases) is a class with
the same two methods, registered in :data:`TRACKERS` under a name that
:data:`metalearner.runs.config.TrackerName` lists.

``metrics.jsonl`` stays the record of a run; trackers only show it. Failing to draw the picture
is therefore a warning, never the loss of a run that trained.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Protocol

from metalearner.errors import DataError, require_extra
from metalearner.runs.config import TrackerName
from metalearner.runs.curves import CURVES, draw_curves, read_curves

TENSORBOARD = "tensorboard"  # the event files' folder in a run folder

_logger = logging.getLogger(__name__)


class Tracker(Protocol):
    """Receives a run's metrics lines as they are logged."""

    def log(self, step: int, metrics: Mapping[str, Any]) -> None:
        """Records one ``metrics.jsonl`` line (its ``step`` included) at outer step ``step``."""

    def close(self) -> None:
        """Finishes: flushes, writes what is written at the end. Called once, however the run
        ended."""


def open_trackers(names: Sequence[TrackerName], folder: Path, *, start: int) -> Trackers:
    """The trackers of the run in ``folder``: its curves picture and those ``names`` ask for.

    Args:
        names: the run's ``log`` setting.
        folder: the run folder, already this run's (created or resumed).
        start: the step the run starts from; lines a killed session logged after it are
            dropped by the trackers, as the resume drops them from ``metrics.jsonl``.

    Raises:
        MissingExtraError: a tracker's package is not installed.
    """
    opened: list[Tracker] = []
    try:
        for name in dict.fromkeys(names):  # each once, in the order given
            opened.append(TRACKERS[name](folder, start))
    except BaseException:
        Trackers(None, opened).close()  # the run never started: no picture
        raise
    return Trackers(folder, opened)


class Trackers:
    """A run's trackers as one, and its ``curves.png``, drawn when they close.

    Used as a context manager around the run: however it ends, every tracker is closed (even
    if another fails to) and the picture drawn.

    Attributes:
        folder: the run folder; ``None`` in a process that writes no run folder (a torchrun
            rank other than 0): nothing is drawn.
        trackers: the trackers of the run's ``log`` setting.
    """

    def __init__(self, folder: Path | None = None, trackers: Sequence[Tracker] = ()) -> None:
        self.folder = folder
        self.trackers = list(trackers)

    def log(self, step: int, metrics: Mapping[str, Any]) -> None:
        """Gives a metrics line to every tracker."""
        for tracker in self.trackers:
            tracker.log(step, metrics)

    def close(self, *, failed: bool = False) -> None:
        """Closes every tracker, then draws ``curves.png``.

        Args:
            failed: the run stopped on an error, its own message to the user; a picture that
                cannot be drawn then (the disk that filled up) is not a second one.
        """
        with ExitStack() as closing:
            if self.folder is not None:  # drawn last: callbacks run in reverse
                closing.callback(write_curves, self.folder, quiet=failed)
            for tracker in self.trackers:
                closing.callback(tracker.close)

    def __enter__(self) -> Trackers:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        # Ctrl-C is the user's stop, not an error: its run still warns of a missing picture.
        self.close(failed=kind is not None and not issubclass(kind, KeyboardInterrupt))


def write_curves(folder: Path, *, quiet: bool = False) -> None:
    """Draws the run's ``curves.png`` from its whole ``metrics.jsonl`` (every session of a
    resumed run); a run that logged nothing has nothing to draw.

    Drawing never stops a run: a failure is a warning (``quiet``: an info), the run and its
    metrics being intact.
    """
    file = folder / CURVES
    try:
        draw_curves([read_curves(folder)], file)
    except DataError:
        return  # stopped before its first line
    except Exception as err:  # a font, a full disk
        _logger.log(
            logging.INFO if quiet else logging.WARNING,
            "could not draw %s (%s: %s); the run is intact and metrics.jsonl holds every number "
            "(`metalearner plot` draws it again).", file, type(err).__name__, err,
        )  # fmt: skip


class TensorBoard:
    """Writes each metrics line's numbers as TensorBoard scalars (tag: the line's key) into
    ``RUN/tensorboard/``; ``tensorboard --logdir RUN`` shows them."""

    def __init__(self, folder: Path, start: int) -> None:
        require_extra("tensorboard", "tensorboard")
        from torch.utils.tensorboard import SummaryWriter

        # purge_step: TensorBoard hides what an earlier session logged from this step on (the
        # lines a resume drops, or a whole earlier attempt that never reached a checkpoint).
        self._writer = SummaryWriter(str(folder / TENSORBOARD), purge_step=start + 1)

    def log(self, step: int, metrics: Mapping[str, Any]) -> None:
        """One scalar per number of the line, at ``step``."""
        for key, value in metrics.items():
            if key != "step" and isinstance(value, int | float) and not isinstance(value, bool):
                self._writer.add_scalar(key, value, step)

    def close(self) -> None:
        """Flushes the event file."""
        self._writer.close()


TRACKERS: dict[TrackerName, Callable[[Path, int], Tracker]] = {"tensorboard": TensorBoard}
"""Each tracker by its name in a run's ``log`` setting: called with the run folder and the
step the run starts from."""
