"""``metalearner adapt`` without the command line: files in, predictions.csv and a summary out."""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import re
import time
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch

from metalearner.errors import ConfigError, DataError, file_above, writing
from metalearner.inference.floor import Answers, floor_answers, floor_lines
from metalearner.inference.learner import (
    FewItemsWarning,
    Learner,
    Prediction,
    few_items_warning,
    load,
)
from metalearner.inference.taskfiles import TaskFiles, read_items, read_support


@dataclass(frozen=True)
class AdaptReport:
    """What one adaptation did, for the terminal.

    Attributes:
        prediction: the query set's prediction.
        names: each query item's name (file path or ``file:line``).
        labels: the query's known answers, or ``None``.
        classes: the task's classes (classification).
        support_size: number of support items.
        seconds: time from the loaded model to the predictions (adapt + predict).
        output: where the predictions were written.
        strategy: the model's strategy.
        kind: ``"classification"`` or ``"regression"``.
        floor: the no-training floor's answer for each query item (:mod:`.floor`).
        norm: the BatchNorm mode of the predictions (``None``: the model has none).
        notes: what the user should know about the predictions (too few items for
            transductive BatchNorm).
    """

    prediction: Prediction
    names: list[str]
    labels: list[str] | None
    classes: tuple[str, ...]
    support_size: int
    seconds: float
    output: Path
    strategy: str
    kind: str
    floor: Answers = ()
    norm: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def accuracy(self) -> float | None:
        """Fraction of correctly classified query items, where the answers are known."""
        if self.labels is None or not self.prediction.labels:
            return None
        hits = sum(p == t for p, t in zip(self.prediction.labels, self.labels, strict=True))
        return hits / len(self.labels)

    def summary(self) -> list[str]:
        """A few lines for the terminal: what was adapted, the predictions, the accuracy."""
        n, took = len(self.names), f"{1000 * self.seconds:.0f} ms"
        mode = "" if self.norm is None else f", {self.norm} BatchNorm"
        if self.kind == "regression":
            what = f"adapted {self.strategy} to {self.support_size} examples"
            lines = [f"{what}; predicted {n} items in {took}"]
        else:
            what = f"adapted {self.strategy} to {len(self.classes)} classes"
            lines = [f"{what} from {self.support_size} examples; predicted {n} items in {took}"]
            counts = Counter(self.prediction.labels)
            lines.append("predicted: " + ", ".join(f"{c} {counts[c]}" for c in self.classes))
        if self.kind == "regression" and self.labels is not None:
            truth = [float(v) for v in self.labels]
            values = self.prediction.scores.tolist()
            errors = [(p - t) ** 2 for p, t in zip(values, truth, strict=True)]
            lines.append(f"mse {sum(errors) / len(errors):.4g} ({n} items){mode}")
        if self.accuracy is not None:
            hits = round(self.accuracy * n)
            lines.append(f"accuracy {100 * self.accuracy:.2f}% ({hits}/{n}){mode}")
        lines += floor_lines(self.kind, self.prediction, self.floor, self.labels)
        return [*lines, *(f"note: {note}" for note in self.notes), f"wrote {self.output}"]


def adapt_files(
    run: Path,
    support: Path,
    query: list[Path],
    *,
    output: Path,
    steps: int | None = None,
    label: str = "label",
    which: str = "best",
    device: str = "cpu",
    norm: str | None = None,
) -> AdaptReport:
    """Loads ``run``, adapts it to the support files, predicts the query files, writes a CSV.

    The CSV has one row per query item: ``item``, ``prediction``, ``probability`` (for
    regression ``item``, ``prediction``), and ``label`` and ``correct`` where the answers are
    known. It is written atomically. ``norm`` overrides the run's BatchNorm mode.

    Raises:
        DataError: any input that does not fit (one sentence, naming the file), such as a
            classification support set of a single class; or predictions that are not finite
            numbers, naming the cause (inputs out of range, or damaged parameters) instead of
            writing ``nan``.
        ConfigError: ``output`` is a folder or lies under a file (checked before any work),
            or it is one of the input files (the files given, those in a given folder, and the
            images a CSV names; checked before anything is written).
    """
    _check_output(output)  # before any work
    learner = load(run, device=device, which=which, norm=norm)
    shots = read_support(support, learner, label=label)
    classes = sorted(set(shots.labels or []))
    if learner.kind == "classification" and len(classes) == 1:
        raise DataError(
            f"The support set {support} has only class {classes[0]!r}, but a task needs at "
            "least 2 classes to tell apart; add examples of another class."
        )
    items = read_items(query, learner, label=label)
    _check_not_an_input(output, [support, *query, *_files(shots.x), *_files(items.x)])
    started = time.perf_counter()
    # Converted once, for the model and the floor alike (a converted tensor passes as it is).
    support_x = learner.prepare(shots.x, what="support")
    task = learner.adapt(support_x, shots.labels or [], steps=steps)
    query_x = learner.prepare(items.x, what="query")
    with warnings.catch_warnings():  # said in the summary instead, as a line
        warnings.simplefilter("ignore", FewItemsWarning)
        prediction = task.predict(query_x)
    seconds = time.perf_counter() - started
    few = few_items_warning(learner, len(query_x), len(task.classes))
    if items.labels is not None and learner.kind == "classification":
        unknown = sorted(set(items.labels) - set(task.classes))
        if unknown:
            raise DataError(
                f"The query has class {unknown[0]!r}, which is not among the support classes "
                f"({', '.join(task.classes)}); give support examples of it or remove it."
            )
    if not torch.isfinite(prediction.scores).all():
        raise _not_finite(run, learner, shots, items)
    _write_csv(output, _rows(learner, prediction, items.names, items.labels))
    return AdaptReport(
        prediction,
        items.names,
        items.labels,
        task.classes,
        len(shots.names),
        seconds,
        output,
        learner.config.strategy,
        learner.kind,
        floor_answers(task, support_x, shots.labels or [], query_x),
        learner.strategy.effective_norm,
        (few,) if few else (),
    )


def _rows(
    learner: Learner, prediction: Prediction, names: list[str], labels: list[str] | None
) -> list[list[str]]:
    # Every cell from a user's string (file names, class names, labels) goes through
    # neutralise(); the numbers are written here.
    names = [neutralise(n) for n in names]
    if learner.kind == "regression":
        head = ["item", "prediction"] + (["label"] if labels is not None else [])
        rows = [[n, f"{v:.6g}"] for n, v in zip(names, prediction.scores.tolist(), strict=True)]
    else:
        head = ["item", "prediction", "probability"]
        head += ["label", "correct"] if labels is not None else []
        probs = prediction.probabilities.tolist()
        rows = [
            [n, neutralise(c), f"{p:.4f}"]
            for n, c, p in zip(names, prediction.labels, probs, strict=True)
        ]
    if labels is not None:
        for i, (row, truth) in enumerate(zip(rows, labels, strict=True)):
            row.append(neutralise(truth))
            if learner.kind == "classification":
                row.append(str(prediction.labels[i] == truth).lower())
    return [head, *rows]


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def neutralise(cell: str) -> str:
    """``cell`` made safe to open in a spreadsheet (CSV injection): a user's string starting
    with ``=``, ``+``, ``-``, ``@``, TAB or CR gets a leading ``'``, as OWASP recommends, so
    that ``=1+1`` or ``@SUM(A1)`` stays text instead of becoming a live formula. A plain number
    (``-0.84``, a regression target) is left as it is.

    Example:
        >>> neutralise("=1+1"), neutralise("cat"), neutralise("-0.84")
        ("'=1+1", 'cat', '-0.84')
    """
    if cell.startswith(_FORMULA_START) and not _NUMBER.fullmatch(cell):
        return "'" + cell
    return cell


def _check_output(path: Path) -> None:
    """Refuses an output path that cannot become a file, before a model is loaded."""
    if path.is_dir():
        raise ConfigError(
            f"The output {path} is a folder; give a file name such as {path / 'predictions.csv'}."
        )
    blocker = file_above(path)
    if blocker is not None:
        raise ConfigError(
            f"The output {path} lies under {blocker}, which is a file; give another path."
        )


def _not_finite(run: Path, learner: Learner, shots: TaskFiles, items: TaskFiles) -> DataError:
    """Why the predictions are ``nan`` or infinite, as one sentence: the model's parameters are
    not finite (a damaged checkpoint), or the inputs are too large for it to compute with."""
    if not all(bool(torch.isfinite(p).all()) for p in learner.params.values()):
        return DataError(
            f"The model {run} has parameters that are not finite numbers, so every prediction "
            "would be nan: its checkpoint is damaged; train it again or use another checkpoint."
        )
    largest = 0.0
    for values in (shots.x, items.x):
        if isinstance(values, torch.Tensor) and values.is_floating_point() and values.numel():
            largest = max(largest, float(values.abs().max()))
    if learner.kind == "regression":
        largest = max([largest, *(abs(float(v)) for v in shots.labels or [])])
    if not math.isfinite(largest):
        size = " (values beyond 3.4e38, the largest a float32 holds)"
    elif largest > 0:
        size = f" (values as large as {largest:.3g})"
    else:
        size = ""
    return DataError(
        "The predictions are not finite numbers: the input values are out of range for this "
        f"model{size}; scale them as the training data was, or leave out the outliers."
    )


def _files(x: object) -> list[Path]:
    """The input files among what ``read_items`` gave: image paths, not tensors."""
    if isinstance(x, list):
        return [Path(p) for p in x if isinstance(p, (str, Path))]
    return []


def _check_not_an_input(output: Path, inputs: list[Path]) -> None:
    """Refuses an output that is, or links to, one of the input files (it would be lost)."""
    if not output.exists():  # a new file overwrites nothing
        return
    for path in inputs:
        try:
            same = path.is_file() and os.path.samefile(output, path)
        except OSError:
            continue
        if same:
            alias = "" if output.resolve() == path.resolve() else f" ({output.resolve()})"
            raise ConfigError(
                f"The output {output}{alias} is one of the inputs, {path}, and writing the "
                "predictions would overwrite it; give another --output."
            )


def _write_csv(path: Path, rows: list[list[str]]) -> None:
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with writing(path, tmp):
            tmp.write_text(text.getvalue())
        os.replace(tmp, path)  # a reader never sees half a file
    finally:
        # Left only when writing or renaming failed; its removal must not hide why.
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
