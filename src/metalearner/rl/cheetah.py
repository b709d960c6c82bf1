"""HalfCheetah velocity and direction tasks on MuJoCo, built on Gymnasium's ``HalfCheetah-v5``.

The dynamics and observations are HalfCheetah-v5's (17 numbers: joint positions without the
x coordinate, and velocities); only the reward depends on the task, computed from the forward
velocity that the environment reports in ``info["x_velocity"]``:

- velocity: ``−|v − v_goal| − 0.05·‖a‖²`` with ``v_goal ~ U[0, 2]``;
- direction: ``d·v − 0.05·‖a‖²`` with ``d = ±1`` (run forward or backward).

Episodes last 200 steps (the collector stops them; HalfCheetah never terminates). The action is
passed on unclipped, as in the paper's environments: MuJoCo clamps it to the motors' range and
the control cost sees the policy's raw output.

References:
    Finn et al., "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks", ICML 2017,
    section 5.3 (the ``half_cheetah_env_rand`` / ``_rand_direc`` of github.com/cbfinn/maml_rl).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import mujoco
import numpy as np
import torch
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv
from gymnasium.vector import SyncVectorEnv
from numpy.typing import NDArray

Observation = NDArray[np.float64]
Info = dict[str, np.float64]

CTRL_COST = 0.05  # 0.5 · 0.1, the paper's control cost weight
VELOCITY_LOW, VELOCITY_HIGH = 0.0, 2.0

_log = logging.getLogger(__name__)


@contextlib.contextmanager
def _quiet_mujoco() -> Iterator[None]:
    """Drops MuJoCo's deprecation warning for HalfCheetah's ``settotalmass`` while loading.

    Gymnasium's model file still uses the attribute; MuJoCo warns once per environment on
    stderr and appends to ``MUJOCO_LOG.TXT`` in the working folder, i.e. hundreds of lines per
    run of a meta-batch. Any other warning goes to the log.
    """
    previous = mujoco.get_mju_user_warning()

    def handler(message: str) -> None:
        if "settotalmass" not in message:
            _log.warning("MuJoCo: %s", message)

    mujoco.set_mju_user_warning(handler)
    try:
        yield
    finally:
        mujoco.set_mju_user_warning(previous)


class _CheetahTask(HalfCheetahEnv):
    """HalfCheetah-v5 with a task-dependent reward; subclasses define the task family.

    A subclass of the MuJoCo environment rather than a wrapper, so that what ``gym.make``
    returns has the task API on ``env.unwrapped`` (``set_task``, ``sample_tasks``), as the
    navigation environment has, and no step of it gives the untasked reward.
    """

    def __init__(self, task: dict[str, Any] | None = None, **kwargs: Any) -> None:
        with _quiet_mujoco():
            super().__init__(**kwargs)
        self.set_task(task or self.default_task())

    @classmethod
    def default_task(cls) -> dict[str, Any]:
        raise NotImplementedError

    def set_task(self, task: dict[str, Any]) -> None:
        """Makes ``task`` the task of the following steps."""
        raise NotImplementedError

    def task_reward(self, velocity: float) -> float:
        raise NotImplementedError

    def step(self, action: np.ndarray) -> tuple[Observation, np.float64, bool, bool, Info]:
        obs, _, terminated, truncated, info = super().step(action)
        ctrl = CTRL_COST * float(np.square(action).sum())
        reward = np.float64(self.task_reward(float(info["x_velocity"])) - ctrl)
        return obs, reward, terminated, truncated, info


class HalfCheetahVel(_CheetahTask):
    """Run at a target velocity ``v_goal ~ U[0, 2]``: reward ``−|v − v_goal| − 0.05·‖a‖²``.

    Example:
        >>> env = HalfCheetahVel()
        >>> env.set_task(env.sample_tasks(1, torch.Generator().manual_seed(0))[0])
    """

    @classmethod
    def default_task(cls) -> dict[str, Any]:
        return {"velocity": 1.0}

    @classmethod
    def sample_tasks(cls, n: int, generator: torch.Generator) -> list[dict[str, Any]]:
        """``n`` tasks ``{"velocity": v}`` with ``v ~ U[0, 2]``, drawn from ``generator``."""
        u = torch.rand(n, generator=generator, dtype=torch.float64)
        return [{"velocity": float(VELOCITY_LOW + (VELOCITY_HIGH - VELOCITY_LOW) * x)} for x in u]

    def set_task(self, task: dict[str, Any]) -> None:
        self._velocity = float(task["velocity"])

    def task_reward(self, velocity: float) -> float:
        return -abs(velocity - self._velocity)


class HalfCheetahDir(_CheetahTask):
    """Run forward (``d = 1``) or backward (``d = −1``): reward ``d·v − 0.05·‖a‖²``."""

    @classmethod
    def default_task(cls) -> dict[str, Any]:
        return {"direction": 1}

    @classmethod
    def sample_tasks(cls, n: int, generator: torch.Generator) -> list[dict[str, Any]]:
        """``n`` tasks ``{"direction": ±1}``, each direction with probability 1/2."""
        bits = torch.randint(0, 2, (n,), generator=generator)
        return [{"direction": 2 * int(b) - 1} for b in bits]

    def set_task(self, task: dict[str, Any]) -> None:
        direction = int(task["direction"])
        if direction not in (-1, 1):
            raise ValueError(f"direction must be 1 or -1, got {direction}")
        self._direction = direction

    def task_reward(self, velocity: float) -> float:
        return self._direction * velocity


class TaskSyncVectorEnv(SyncVectorEnv):
    """``SyncVectorEnv`` of task environments, with one task per sub-environment.

    MuJoCo steps dominate here (~30 µs each), so the sequential vector's own overhead (~5 µs per
    sub-environment step, measured on the 2-core CPU) is small.
    """

    def __init__(self, make: Callable[[], _CheetahTask], num_envs: int) -> None:
        with _quiet_mujoco():
            super().__init__([make for _ in range(num_envs)])

    def set_tasks(self, tasks: Sequence[dict[str, Any]]) -> None:
        """One task per sub-environment, in order."""
        if len(tasks) != self.num_envs:
            raise ValueError(f"{len(tasks)} tasks for {self.num_envs} environments")
        for env, task in zip(self.envs, tasks, strict=True):
            env.get_wrapper_attr("set_task")(task)
