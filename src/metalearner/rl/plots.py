"""Figures of an RL evaluation: return vs adaptation steps, and navigation trajectories.

References:
    Finn et al., "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks", ICML 2017
    (figures 4 and 5: return vs gradient steps; the point robot before and after one step).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed
import matplotlib.pyplot as plt
from torch import Tensor

COLORS = {"maml": "tab:blue", "pretrained": "tab:orange", "random": "tab:gray"}


@dataclass(frozen=True)
class Curve:
    """One policy's mean return (and 95% interval) after 0, 1, …, S adaptation steps."""

    policy: str
    mean: list[float]
    ci95: list[float]


def plot_returns(curves: Sequence[Curve], out: Path, *, env: str, tasks: int) -> Path:
    """Average return (± 95% CI over tasks) against adaptation steps, one line per policy."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for c in curves:
        steps = list(range(len(c.mean)))
        ax.errorbar(
            steps, c.mean, yerr=c.ci95, marker="o", capsize=3, label=c.policy,
            color=COLORS.get(c.policy),
        )  # fmt: skip
    ax.set_xlabel("policy-gradient steps on the test task")
    ax.set_ylabel("average return")
    ax.set_xticks(range(max(len(c.mean) for c in curves)))
    ax.set_title(f"{env}: {tasks} test tasks, mean ± 95% CI")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def plot_trajectories(
    paths: Sequence[Tensor], goals: Sequence[Sequence[float] | None], out: Path, shown: int = 5
) -> Path:
    """Navigation: a few trajectories per goal, before and after each adaptation step.

    Args:
        paths: per adaptation step, observations ``[tasks, N, H, 2]`` (NaN after an episode
            ended: matplotlib leaves those points out).
        goals: the tasks' goals.
        out: the PNG to write.
        shown: trajectories drawn per task and step.
    """
    tasks = len(goals)
    fig, axes = plt.subplots(1, tasks, figsize=(3.2 * tasks, 3.4), squeeze=False)
    cmap = plt.get_cmap("viridis")
    for t, ax in enumerate(axes[0]):
        for s, obs in enumerate(paths):
            color = cmap(s / max(len(paths) - 1, 1))
            for i in range(min(shown, obs.shape[1])):
                xy = obs[t, i].numpy()
                label = f"{s} steps" if i == 0 and t == 0 else None
                ax.plot(xy[:, 0], xy[:, 1], color=color, alpha=0.7, lw=1, label=label)
        goal = goals[t]
        if goal is not None:
            ax.plot(*goal, marker="*", color="red", markersize=14, ls="none")
        ax.plot(0, 0, marker="o", color="black", markersize=5, ls="none")
        ax.set_xlim(-0.6, 0.6)
        ax.set_ylim(-0.6, 0.6)
        ax.set_aspect("equal")
        ax.set_title(f"goal {t + 1}")
    axes[0][0].legend(loc="lower left", fontsize=7)
    fig.suptitle("2D navigation: meta-learned policy before and after adaptation (start ●, goal ★)")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
