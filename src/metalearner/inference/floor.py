"""The no-training floor beside a new task's predictions (``metalearner adapt``).

The same floor as every score (:mod:`metalearner.evaluation.floor`): a nearest class mean on the
inputs as the model receives them, or the mean of the support targets for regression. A labeled
query set is scored by both, and the model is said to beat the floor only when the paired 95%
interval over the query items lies above 0; an unlabeled one tells how often the two agree.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from metalearner.evaluation.floor import FLOOR, compare_to_floor, floor_predict
from metalearner.inference.learner import Prediction, TaskModel

Answers = tuple[str | float, ...]
"""The floor's answer for each query item: a class name, or a regression prediction."""


def floor_answers(
    task: TaskModel, support: Tensor, labels: Sequence[object], query: Tensor
) -> Answers:
    """What the floor answers for each of ``query``'s items, from the ``support`` set.

    Args:
        task: the model adapted to the task (its classes, in the order of its labels).
        support, query: the inputs as the model received them (``Learner.prepare``).
        labels: the support labels as given to ``Learner.adapt``.
    """
    s, q = support[None].cpu(), query[None].cpu()
    if task.learner.kind == "regression":
        y = torch.tensor([[float(str(v)) for v in labels]])
        return tuple(floor_predict(s, y, q, 0)[0].tolist())
    ids = {c: i for i, c in enumerate(task.classes)}  # as Learner.adapt numbers them
    y = torch.tensor([[ids[str(v)] for v in labels]])
    best = floor_predict(s, y, q, len(task.classes))[0].argmax(-1)
    return tuple(task.classes[i] for i in best.tolist())


def floor_lines(
    kind: str, prediction: Prediction, floor: Answers, truth: Sequence[str] | None
) -> list[str]:
    """The floor's lines of the summary: its score and the verdict where the answers
    (``truth``) are known, else how often it agrees with the model."""
    n = len(floor)
    if not n:
        return []
    if kind == "regression":
        values = prediction.scores.tolist()
        if truth is None:
            spread = sum((p - float(f)) ** 2 for p, f in zip(values, floor, strict=True)) / n
            return [f"floor ({FLOOR['mse']}): {float(floor[0]):.4g} for every item, a mean "
                    f"squared difference of {spread:.4g} from the model"]  # fmt: skip
        targets = [float(t) for t in truth]
        model = [(p - t) ** 2 for p, t in zip(values, targets, strict=True)]
        base = [(float(f) - t) ** 2 for f, t in zip(floor, targets, strict=True)]
        head, metric = f"floor mse {sum(base) / n:.4g} ({n} items)", "mse"
    else:
        if truth is None:
            same = sum(f == p for f, p in zip(floor, prediction.labels, strict=True))
            return [f"floor ({FLOOR['accuracy']}) agrees with the model on "
                    f"{100 * same / n:.2f}% of the items ({same}/{n})"]  # fmt: skip
        model = [float(p == t) for p, t in zip(prediction.labels, truth, strict=True)]
        base = [float(f == t) for f, t in zip(floor, truth, strict=True)]
        hits = round(sum(base))
        head, metric = f"floor accuracy {100 * hits / n:.2f}% ({hits}/{n})", "accuracy"
    verdict = compare_to_floor(model, base, metric=metric).verdict(metric, over="query items")
    return [f"{head}: {FLOOR[metric]}", verdict]
