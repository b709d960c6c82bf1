"""Regression task families.

References:
    Finn et al., "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks", ICML 2017,
    section 5.1 (sinusoid regression: amplitude U[0.1, 5], phase U[0, pi], x U[-5, 5]).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from metalearner.errors import ConfigError
from metalearner.tasks.batch import TaskBatch


@dataclass(frozen=True)
class SinusoidTasks:
    """Tasks ``y = A sin(x - phi)``: each task a sinusoid, K points to adapt on, Q to score.

    Attributes:
        shots: K, support points per task.
        queries: Q, query points per task.
        amplitude: range of A (uniform).
        phase: range of phi (uniform).
        x_range: range of the inputs (uniform).

    Example:
        >>> tasks = SinusoidTasks(shots=10, queries=10)
        >>> batch = tasks.sample(25, generator=torch.Generator().manual_seed(0))
        >>> batch.support_x.shape, batch.support_y.shape
        (torch.Size([25, 10, 1]), torch.Size([25, 10]))
    """

    shots: int = 10
    queries: int = 10
    amplitude: tuple[float, float] = (0.1, 5.0)
    phase: tuple[float, float] = (0.0, math.pi)
    x_range: tuple[float, float] = (-5.0, 5.0)

    def __post_init__(self) -> None:
        if self.shots < 1 or self.queries < 0:
            raise ConfigError(
                f"shots={self.shots}, queries={self.queries}: use shots >= 1 and queries >= 0."
            )
        for name in ("amplitude", "phase", "x_range"):
            low, high = getattr(self, name)
            if not low <= high:
                raise ConfigError(f"The {name} range ({low}, {high}) is empty; give low <= high.")

    def sample(self, num_tasks: int, *, generator: torch.Generator) -> TaskBatch:
        """Draws ``num_tasks`` sinusoids and their points, all randomness from ``generator``."""
        amp = _uniform((num_tasks,), self.amplitude, generator)
        phase = _uniform((num_tasks,), self.phase, generator)
        x = _uniform((num_tasks, self.shots + self.queries, 1), self.x_range, generator)
        y = amp[:, None] * torch.sin(x[..., 0] - phase[:, None])
        k = self.shots
        return TaskBatch(
            support_x=x[:, :k],
            support_y=y[:, :k],
            query_x=x[:, k:],
            query_y=y[:, k:],
            info={"amplitude": amp, "phase": phase},
        )

    def fixed(self, num_tasks: int, *, seed: int) -> FixedTasks:
        """The same ``num_tasks`` sinusoids for every caller with this ``seed``."""
        return FixedTasks(self.sample(num_tasks, generator=torch.Generator().manual_seed(seed)))

    @staticmethod
    def curve(info: dict[str, Tensor], x: Tensor) -> Tensor:
        """The true function of each task at inputs ``x [T, P, 1]`` (for plots)."""
        return info["amplitude"][:, None] * torch.sin(x[..., 0] - info["phase"][:, None])


class FixedTasks:
    """A fixed task set held as one materialised batch (small tasks such as regression)."""

    def __init__(self, tasks: TaskBatch) -> None:
        self.tasks = tasks

    def __len__(self) -> int:
        return self.tasks.num_tasks

    def batch(self, start: int, stop: int) -> TaskBatch:
        """Tasks ``start..stop-1``."""
        return self.tasks[start:stop]


def _uniform(shape: tuple[int, ...], bounds: tuple[float, float], g: torch.Generator) -> Tensor:
    low, high = bounds
    return torch.rand(shape, generator=g) * (high - low) + low
