"""``metalearner adapt`` without the command line: files in, predictions.csv and a summary out."""

from __future__ import annotations

import csv
import io
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from metalearner.errors import ConfigError, DataError, file_above
from metalearner.inference.learner import Learner, Prediction, load
from metalearner.inference.taskfiles import read_items, read_support


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
            lines.append(f"mse {sum(errors) / len(errors):.4g} ({n} items)")
        if self.accuracy is not None:
            hits = round(self.accuracy * n)
            lines.append(f"accuracy {100 * self.accuracy:.2f}% ({hits}/{n})")
        return [*lines, f"wrote {self.output}"]


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
) -> AdaptReport:
    """Loads ``run``, adapts it to the support files, predicts the query files, writes a CSV.

    The CSV has one row per query item: ``item``, ``prediction``, ``probability`` (for
    regression ``item``, ``prediction``), and ``label`` and ``correct`` where the answers are
    known. It is written atomically.

    Raises:
        DataError: any input that does not fit (one sentence, naming the file), such as a
            classification support set of a single class.
        ConfigError: ``output`` is a folder or lies under a file (checked before any work).
    """
    _check_output(output)  # before any work
    learner = load(run, device=device, which=which)
    shots = read_support(support, learner, label=label)
    classes = sorted(set(shots.labels or []))
    if learner.kind == "classification" and len(classes) == 1:
        raise DataError(
            f"The support set {support} has only class {classes[0]!r}, but a task needs at "
            "least 2 classes to tell apart; add examples of another class."
        )
    items = read_items(query, learner, label=label)
    started = time.perf_counter()
    task = learner.adapt(shots.x, shots.labels or [], steps=steps)
    prediction = task.predict(items.x)
    seconds = time.perf_counter() - started
    if items.labels is not None and learner.kind == "classification":
        unknown = sorted(set(items.labels) - set(task.classes))
        if unknown:
            raise DataError(
                f"The query has class {unknown[0]!r}, which is not among the support classes "
                f"({', '.join(task.classes)}); give support examples of it or remove it."
            )
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
    )


def _rows(
    learner: Learner, prediction: Prediction, names: list[str], labels: list[str] | None
) -> list[list[str]]:
    if learner.kind == "regression":
        head = ["item", "prediction"] + (["label"] if labels is not None else [])
        rows = [[n, f"{v:.6g}"] for n, v in zip(names, prediction.scores.tolist(), strict=True)]
    else:
        head = ["item", "prediction", "probability"]
        head += ["label", "correct"] if labels is not None else []
        probs = prediction.probabilities.tolist()
        rows = [[n, c, f"{p:.4f}"] for n, c, p in zip(names, prediction.labels, probs, strict=True)]
    if labels is not None:
        for row, truth in zip(rows, labels, strict=True):
            row.append(truth)
            if learner.kind == "classification":
                row.append(str(row[1] == truth).lower())
    return [head, *rows]


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


def _write_csv(path: Path, rows: list[list[str]]) -> None:
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text.getvalue())
        os.replace(tmp, path)  # a reader never sees half a file
    finally:
        tmp.unlink(missing_ok=True)  # left only when writing or renaming failed
