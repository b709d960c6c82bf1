"""A run's learning curves as a picture, from its ``metrics.jsonl``: training loss and
validation score (with its 95% CI) against steps and against training time.

Every run draws its own ``curves.png`` when it ends or stops (:mod:`metalearner.runs.trackers`);
``metalearner plot`` overlays several runs. Drawing uses matplotlib's object API on a figure of
its own, never pyplot: no global state, and no backend switched under a user who trains from a
notebook. matplotlib is imported only when a picture is drawn.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TypeGuard

from metalearner.errors import DataError
from metalearner.runs.folder import CONFIG, METRICS, read_metrics, write_atomic

if TYPE_CHECKING:
    from matplotlib.axes import Axes

CURVES = "curves.png"


class Point(NamedTuple):
    """One logged number, at an outer step and after that many seconds of training."""

    step: int
    seconds: float
    value: float
    ci95: float = 0.0  # a validation score's 95% CI half-width


@dataclass(frozen=True)
class Curves:
    """One run's logged numbers as series to draw.

    Attributes:
        name: the run's name in the figure (its folder as the user gave it).
        metric: the validation score's name (``"accuracy"``, ``"mse"``); ``None`` before the
            first validation.
        loss: the training loss of every line (its mean since the line before).
        val: the validation score of every validation, with its CI.
    """

    name: str
    metric: str | None
    loss: list[Point]
    val: list[Point]


def read_curves(folder: Path, *, name: str | None = None) -> Curves:
    """The curves of the run in ``folder`` (named ``name``, default the folder's name).

    Raises:
        DataError: ``folder`` is not a run folder, or its run has logged nothing yet.
    """
    if not (folder / CONFIG).is_file():
        raise DataError(
            f"{folder} is not a run folder (it has no {CONFIG}); give a folder written by "
            "`metalearner train`."
        )
    loss, val, metric = [], [], None
    for line in read_metrics(folder):
        step, seconds = line.get("step"), line.get("time")
        if not (isinstance(step, int) and _is_number(seconds)):
            continue  # not a training line (another kind of run, a hand-edited file)
        if _is_number(line.get("loss")):
            loss.append(Point(step, seconds, line["loss"]))
        key = _score_key(line)
        if key is not None:
            metric = key.removeprefix("val_")
            ci = line.get("val_ci95")
            val.append(Point(step, seconds, line[key], ci if _is_number(ci) else 0.0))
    if not (loss or val):
        raise DataError(
            f"{folder} has no metrics yet (its {METRICS} holds no logged step); train it for "
            "log_every steps first."
        )
    return Curves(name if name is not None else folder.name, metric, loss, val)


def draw_curves(runs: Sequence[Curves], out: Path) -> Path:
    """Draws ``runs`` into ``out`` (a format matplotlib writes, told by its ending: ``.png``,
    ``.pdf``, ``.svg``, ...) and returns it: loss on the top row, validation score below,
    against steps on the left and training time on the right; one colour per run, named in the
    legend when there are several.
    """
    import matplotlib
    from matplotlib.figure import Figure

    scale, unit = _time_unit(max(p.seconds for r in runs for p in (*r.loss, *r.val)))
    # Names are the user's strings: "$x$" stays dollars and an x, never mathtext.
    with matplotlib.rc_context({"text.parse_math": False}):
        fig = Figure(figsize=(10, 6.4), layout="constrained")
        (loss_steps, loss_time), (val_steps, val_time) = fig.subplots(2, 2, sharex="col")
        columns = (
            (loss_steps, val_steps, lambda p: p.step),
            (loss_time, val_time, lambda p: p.seconds / scale),
        )
        lines = []
        for i, run in enumerate(runs):
            colour = f"C{i % 10}"
            for loss_ax, val_ax, x in columns:
                (line,) = loss_ax.plot([x(p) for p in run.loss], [p.value for p in run.loss],
                                       color=colour, lw=1.2)  # fmt: skip
                xs = [x(p) for p in run.val]
                val_ax.plot(xs, [p.value for p in run.val], color=colour, marker="o", ms=3, lw=1.2)
                val_ax.fill_between(xs, [p.value - p.ci95 for p in run.val],
                                    [p.value + p.ci95 for p in run.val], color=colour, alpha=0.15,
                                    lw=0)  # fmt: skip
            lines.append(line)
        metrics = sorted({r.metric for r in runs if r.metric is not None})
        loss_steps.set(ylabel="training loss")
        val_steps.set(ylabel=f"validation {' / '.join(metrics) or 'score'} (95% CI)",
                      xlabel="outer step")  # fmt: skip
        val_time.set(xlabel=f"training time ({unit})")
        for ax in (loss_steps, loss_time):
            _log_scale_if_wide(ax, [p.value for r in runs for p in r.loss])
        for ax in (loss_steps, loss_time, val_steps, val_time):
            ax.grid(alpha=0.3)
        if len(runs) == 1:
            fig.suptitle(runs[0].name)
        else:  # explicit labels: matplotlib's legend would drop a name that starts with "_"
            fig.legend(lines, [r.name for r in runs], loc="outside upper center",
                       ncols=min(len(runs), 4), fontsize=8)  # fmt: skip
        picture = io.BytesIO()
        fig.savefig(picture, format=out.suffix.removeprefix(".").lower(), dpi=100)
    write_atomic(out, picture.getvalue())  # a kill or a full disk leaves no half picture
    return out


def _score_key(line: Mapping[str, Any]) -> str | None:
    # The loop logs a validation as val_<metric> beside val_ci95 (training/loop.py: _validate).
    keys = [k for k in line if k.startswith("val_") and k != "val_ci95" and _is_number(line[k])]
    return keys[0] if len(keys) == 1 else None


def _is_number(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _time_unit(longest: float) -> tuple[float, str]:
    if longest < 120:
        return 1.0, "s"
    return (60.0, "min") if longest < 7200 else (3600.0, "h")


def _log_scale_if_wide(ax: Axes, values: Sequence[float]) -> None:
    # A loss falling over decades is flat after its first steps on a linear axis.
    finite = [v for v in values if math.isfinite(v)]
    if finite and min(finite) > 0 and max(finite) / min(finite) >= 10:
        ax.set_yscale("log")
