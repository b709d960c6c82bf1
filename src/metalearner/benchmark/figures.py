"""The benchmark's figures, as PNG files: one function per figure, each from the results alone.

Every strategy keeps one colour in every figure. A figure with nothing to show is not drawn
(its function returns ``None``), and the report leaves it out with a sentence saying why.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from metalearner.evaluation.evaluator import Score

from .document import FIGURE_DPI, FIGURE_WIDTH
from .scoring import StrategyResult


@dataclass(frozen=True)
class Drawn:
    """A written figure: its file (in the report folder) and its caption."""

    file: Path
    caption: str


def draw_all(
    results: Sequence[StrategyResult],
    folder: Path,
    *,
    metric: str,
    shots: int,
    floor: Score | None = None,
) -> dict[str, Drawn | None]:
    """Every figure of the report, keyed by section; ``None`` where there is nothing to draw.
    ``floor``: the no-training floor's score, a line across the scores."""
    folder.mkdir(parents=True, exist_ok=True)
    scale, label = _axis(metric)
    colours = {r.strategy: f"C{i}" for i, r in enumerate(results)}
    return {
        "scores": _scores(results, folder, scale, label, colours, floor),
        "validation": _validation(results, folder, scale, label, colours),
        "steps": _steps(results, folder, scale, label, colours, shots),
        "shots": _lines(
            results, folder / "shots.png", lambda r: r.shots, scale, label, colours,
            xlabel="K, support examples per class", title="score vs shots",
        ),
        "noise": _lines(
            results, folder / "noise.png", lambda r: r.noise, scale, label, colours,
            xlabel="fraction of support labels flipped", title="score vs label noise",
        ),
        "cross": _cross(results, folder, scale, label, colours),
    }  # fmt: skip


def _axis(metric: str) -> tuple[float, str]:
    if metric == "accuracy":
        return 100.0, "test accuracy (%)"
    return 1.0, "test MSE"


def _save(fig: Figure, file: Path, caption: str) -> Drawn:
    fig.tight_layout()
    fig.savefig(file, dpi=FIGURE_DPI)
    plt.close(fig)
    return Drawn(file, caption)


def _scores(
    results: Sequence[StrategyResult],
    folder: Path,
    scale: float,
    label: str,
    colours: dict,
    floor: Score | None = None,
) -> Drawn:
    fig, ax = plt.subplots(figsize=(FIGURE_WIDTH, 4.2))
    names = [r.strategy for r in results]
    means = [scale * r.score.mean for r in results]
    cis = [scale * r.score.ci95 for r in results]
    ax.bar(names, means, yerr=cis, capsize=4, color=[colours[n] for n in names])
    caption = "Test score of each strategy (95% CI over tasks)"
    if floor is not None:
        ax.axhline(scale * floor.mean, ls="--", lw=1.5, color="black", zorder=3,
                   label="floor: no training")  # fmt: skip
        ax.legend(fontsize=8)
        caption += "; the dashed line is the no-training floor on the same tasks"
    # Bars from 0: a cut axis makes a small gap look large (and room above 100% for the floor).
    ax.set_ylim(0, 105 if label.startswith("test accuracy") else None)
    ax.set(ylabel=label, title="test score, mean ± 95% CI")
    ax.tick_params(axis="x", labelrotation=30)
    return _save(fig, folder / "scores.png", caption + ".")


def _validation(
    results: Sequence[StrategyResult], folder: Path, scale: float, label: str, colours: dict
) -> Drawn | None:
    curves = [r for r in results if r.val_curve]
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(FIGURE_WIDTH, 4.2))
    for r in curves:
        xs = [t / 60 for t, _ in r.val_curve]
        ax.plot(xs, [scale * v for _, v in r.val_curve], marker="o", ms=3, label=r.strategy,
                color=colours[r.strategy])  # fmt: skip
    ax.set(xlabel="training time (min)", ylabel=label.replace("test", "validation"),
           title="validation score vs training time")  # fmt: skip
    ax.legend(fontsize=8)
    return _save(fig, folder / "validation.png", "Validation score during training.")


def _steps(
    results: Sequence[StrategyResult],
    folder: Path,
    scale: float,
    label: str,
    colours: dict,
    shots: int,
) -> Drawn | None:
    with_steps = [r for r in results if r.step_curve]
    if not with_steps:
        return None
    fig, ax = plt.subplots(figsize=(FIGURE_WIDTH, 4.2))
    top = max(p.steps or 0 for r in with_steps for p in r.step_curve)
    for r in with_steps:
        xs = [p.steps or 0 for p in r.step_curve]
        ax.plot(xs, [scale * p.mean for p in r.step_curve], marker="o", ms=3, label=r.strategy,
                color=colours[r.strategy])  # fmt: skip
    for r in results:  # no steps to take: one score whatever the steps
        if not r.step_curve:
            ax.axhline(scale * r.score.mean, ls="--", lw=1, color=colours[r.strategy],
                       label=f"{r.strategy} (no steps)")  # fmt: skip
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlim(0, max(top, 1))
    ax.set(xlabel="adaptation steps", ylabel=label, title=f"score vs steps (K = {shots})")
    ax.legend(fontsize=8)
    return _save(fig, folder / "steps.png", "Test score after each number of adaptation steps.")


def _lines(
    results: Sequence[StrategyResult],
    file: Path,
    points: Callable[[StrategyResult], Mapping[int, Score] | Mapping[float, Score]],
    scale: float,
    label: str,
    colours: dict,
    *,
    xlabel: str,
    title: str,
) -> Drawn | None:
    series = [(r, points(r)) for r in results if points(r)]
    if not series or all(len(s) < 2 for _, s in series):
        return None
    fig, ax = plt.subplots(figsize=(FIGURE_WIDTH, 4.2))
    for r, by_x in series:
        xs = sorted(by_x)
        scores: list[Score] = [by_x[x] for x in xs]  # type: ignore[index]
        means = [scale * s.mean for s in scores]
        cis = [scale * s.ci95 for s in scores]
        ax.errorbar(xs, means, yerr=cis, marker="o", ms=3, capsize=3, label=r.strategy,
                    color=colours[r.strategy])  # fmt: skip
    ax.set(xlabel=xlabel, ylabel=label, title=title)
    ax.legend(fontsize=8)
    return _save(fig, file, f"{title[0].upper()}{title[1:]} (95% CI over tasks).")


def _cross(
    results: Sequence[StrategyResult], folder: Path, scale: float, label: str, colours: dict
) -> Drawn | None:
    sections = sorted({k for r in results for k in r.cross})
    if not sections:
        return None
    fig, ax = plt.subplots(figsize=(FIGURE_WIDTH, 4.2))
    width = 0.8 / len(results)
    for i, r in enumerate(results):
        xs, means, cis = [], [], []
        for j, section in enumerate(sections):
            score = r.cross.get(section)
            if score is not None:
                xs.append(j + i * width)
                means.append(scale * score.mean)
                cis.append(scale * score.ci95)
        ax.bar(xs, means, width, yerr=cis, capsize=3, label=r.strategy, color=colours[r.strategy])
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(sections))], sections)
    ax.set(ylabel=label, title="cross-domain tasks")
    ax.legend(fontsize=7)
    return _save(fig, folder / "cross.png", "Scores on tasks from other domains (95% CI).")
