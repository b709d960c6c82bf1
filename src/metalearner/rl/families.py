"""The RL task families by name, their paper settings, and their Gymnasium registrations.

A family knows how to draw tasks (``sample_tasks(n, generator)``), how to build a vector of its
environments with one task per sub-environment (``vector(num_envs)`` whose ``set_tasks`` takes
one task each), its episode length and its meta-batch size in the MAML paper.

Registered Gymnasium ids (``gymnasium.make(id)`` gives a single environment with the task API):
``metalearner/Navigation2D-v0``, ``metalearner/HalfCheetahVel-v0``,
``metalearner/HalfCheetahDir-v0``.

References:
    Finn et al., "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks", ICML 2017,
    section 5.3 and appendix A.2 (meta-batch 20 for navigation, 40 for the locomotion tasks;
    horizons 100 and 200; 20 trajectories per task).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
import torch

from metalearner.errors import ConfigError


class TaskVectorEnv(Protocol):
    """What the rollout collector needs from a vector of task environments."""

    num_envs: int
    single_observation_space: gym.spaces.Space[Any]
    single_action_space: gym.spaces.Space[Any]

    def set_tasks(self, tasks: Sequence[dict[str, Any]]) -> None: ...

    def reset(self, *, seed: Any = None, options: dict[str, Any] | None = None) -> Any: ...

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]: ...


@dataclass(frozen=True)
class Family:
    """One task family: its name, Gymnasium id, paper settings and constructors."""

    name: str
    env_id: str
    horizon: int
    meta_batch: int
    sample_tasks: Callable[[int, torch.Generator], list[dict[str, Any]]]
    vector: Callable[[int], TaskVectorEnv]
    obs_dim: int
    act_dim: int
    published: str  # the published MAML score, for reports


def _navigation_vector(n: int) -> TaskVectorEnv:
    from metalearner.rl.navigation import NavigationVectorEnv

    return NavigationVectorEnv(n)


def _cheetah_vector(kind: str) -> Callable[[int], TaskVectorEnv]:
    def make(n: int) -> TaskVectorEnv:
        from metalearner.rl.cheetah import HalfCheetahDir, HalfCheetahVel, TaskSyncVectorEnv

        cls = HalfCheetahVel if kind == "vel" else HalfCheetahDir
        return TaskSyncVectorEnv(cls, n)

    return make


def _sample(kind: str) -> Callable[[int, torch.Generator], list[dict[str, Any]]]:
    def sample(n: int, generator: torch.Generator) -> list[dict[str, Any]]:
        if kind == "navigation":
            from metalearner.rl.navigation import sample_goals

            return sample_goals(n, generator)
        from metalearner.rl.cheetah import HalfCheetahDir, HalfCheetahVel

        cls = HalfCheetahVel if kind == "vel" else HalfCheetahDir
        return cls.sample_tasks(n, generator)

    return sample


FAMILIES: dict[str, Family] = {
    "navigation2d": Family(
        "navigation2d", "metalearner/Navigation2D-v0", 100, 20, _sample("navigation"),
        _navigation_vector, 2, 2, "−20.3 ± 3.2 after one step (MAML, Raghu et al. 2020)",
    ),
    "halfcheetah-vel": Family(
        "halfcheetah-vel", "metalearner/HalfCheetahVel-v0", 200, 40, _sample("vel"),
        _cheetah_vector("vel"), 17, 6, "−139.0 ± 18.9 after one step (MAML)",
    ),
    "halfcheetah-dir": Family(
        "halfcheetah-dir", "metalearner/HalfCheetahDir-v0", 200, 40, _sample("dir"),
        _cheetah_vector("dir"), 17, 6, "(figure only in Finn et al. 2017)",
    ),
}  # fmt: skip


def get_family(name: str) -> Family:
    """The family called ``name``.

    Raises:
        ConfigError: for an unknown name (the message lists the known ones).
    """
    if name not in FAMILIES:
        raise ConfigError(f"Unknown RL environment {name!r}; use one of {', '.join(FAMILIES)}.")
    return FAMILIES[name]


def register() -> None:
    """Registers the families' single environments with Gymnasium (idempotent)."""
    entries = {
        "metalearner/Navigation2D-v0": ("metalearner.rl.navigation:Navigation2D", 100),
        "metalearner/HalfCheetahVel-v0": ("metalearner.rl.cheetah:HalfCheetahVel", 200),
        "metalearner/HalfCheetahDir-v0": ("metalearner.rl.cheetah:HalfCheetahDir", 200),
    }
    vector = {"metalearner/Navigation2D-v0": "metalearner.rl.navigation:NavigationVectorEnv"}
    for env_id, (entry, steps) in entries.items():
        if env_id not in gym.registry:
            gym.register(
                env_id,
                entry_point=entry,
                vector_entry_point=vector.get(env_id),
                max_episode_steps=steps,
            )
