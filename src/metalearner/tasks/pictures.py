"""Pictures of episodes for ``metalearner tasks demo``: each task's classes by name, with their
support examples and some of their query examples, images as a grid and sentences as text.

Class names and sentences are a user's strings: they are drawn as they are, never read as
matplotlib's TeX-like math (a name such as ``$\\frac$`` would otherwise fail to draw).
"""

from __future__ import annotations

import re
from textwrap import fill, wrap

import matplotlib

matplotlib.use("Agg")  # files only: the demo must run on machines without a display
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from metalearner.data.labeled import LabeledSet
from metalearner.data.text import Vocabulary, decode, from_preprocessing, is_text
from metalearner.tasks.batch import TaskBatch

QUERY_ROWS = 2
"""Query examples drawn per class: enough to see how they differ from the support examples."""

_NAME_WIDTH = 18  # characters of a class name per line above a column of images
_TEXT_WIDTH = 120  # characters of a sentence per line
_LINE_INCHES = 0.19  # height of a line of text in a text task's picture


def episode_figure(data: LabeledSet, batch: TaskBatch) -> Figure:
    """A figure of ``batch``'s tasks: per class its name, support examples and query examples.

    Images (and feature vectors, as bars) are drawn in a grid per task, one column per class,
    support rows above query rows; sentences as wrapped text, class by class.

    Args:
        data: the labeled set the tasks come from (class names, text encoding).
        batch: episodes with ``classes``.
    """
    assert batch.classes is not None, "an episode batch names its classes"
    if is_text(data.preprocessing):
        return _text_figure(data, batch, from_preprocessing(data.preprocessing)[0])
    return _grid_figure(data, batch)


def _examples(batch: TaskBatch, t: int, label: int) -> list[tuple[str, Tensor]]:
    """Task ``t``'s support examples of class ``label``, then up to QUERY_ROWS of its queries."""
    support = (batch.support_y[t] == label).nonzero().flatten().tolist()
    query = (batch.query_y[t] == label).nonzero().flatten().tolist()[:QUERY_ROWS]
    return [("support", batch.support_x[t, i]) for i in support] + [
        ("query", batch.query_x[t, i]) for i in query
    ]


def _name(data: LabeledSet, batch: TaskBatch, t: int, label: int) -> str:
    assert batch.classes is not None
    return f"{label}: {data.class_names[int(batch.classes[t, label])]}"


def _grid_figure(data: LabeledSet, batch: TaskBatch) -> Figure:
    ways = batch.ways or 0
    rows = max(len(_examples(batch, t, j)) for t in range(batch.num_tasks) for j in range(ways))
    figure = plt.figure(
        figsize=(max(1.5 * ways, 4.0), (1.35 * rows + 0.7) * batch.num_tasks), layout="constrained"
    )
    for t, part in enumerate(figure.subfigures(batch.num_tasks, 1, squeeze=False)[:, 0]):
        part.suptitle(f"task {t}", fontsize=9, fontweight="bold")
        axes = part.subplots(rows, ways, squeeze=False)
        for j in range(ways):
            # A path-like name ("Alphabet/characterNN") breaks after its slashes first.
            parts = re.split(r"(?<=/)", _name(data, batch, t, j))
            name = "\n".join(fill(part, _NAME_WIDTH) for part in parts if part)
            axes[0][j].set_title(name, fontsize=7, parse_math=False)
            examples = _examples(batch, t, j)
            for r in range(rows):
                ax = axes[r][j]
                if r >= len(examples):
                    ax.axis("off")
                    continue
                role, x = examples[r]
                _draw_example(ax, x)
                if j == 0:
                    ax.set_ylabel(role, fontsize=7)
    return figure


def _draw_example(ax: Axes, x: Tensor) -> None:
    """An image as an image (ink dark), a feature vector as bars; no ticks either way."""
    if x.dim() == 3:
        ax.imshow(x.permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray_r")
    else:
        ax.bar(range(x.numel()), x.flatten().numpy())
    ax.set_xticks([])
    ax.set_yticks([])


def _text_figure(data: LabeledSet, batch: TaskBatch, vocab: Vocabulary) -> Figure:
    """Each task as lines of text: a class's name, then its sentences as the model reads them
    (``<unk>`` for a word outside the vocabulary), the head in ``[H ...]``, the tail in
    ``[T ...]``."""
    lines: list[tuple[str, str]] = []  # (text, weight)
    for t in range(batch.num_tasks):
        lines.append((f"task {t}", "bold"))
        for j in range(batch.ways or 0):
            lines.append((_name(data, batch, t, j), "bold"))
            for role, x in _examples(batch, t, j):
                wrapped = wrap(f"{role}: {decode(x, vocab)}", _TEXT_WIDTH, subsequent_indent="    ")
                lines += [("    " + line, "normal") for line in wrapped]
        lines.append(("", "normal"))
    figure = plt.figure(figsize=(8.0, _LINE_INCHES * len(lines) + 0.3))
    ax = figure.add_axes((0.01, 0.0, 0.98, 1.0))
    ax.axis("off")
    for i, (text, weight) in enumerate(lines):
        y = 1 - (i + 0.5) / len(lines)
        ax.text(0, y, text, fontsize=8, fontweight=weight, va="center", parse_math=False)
    return figure
