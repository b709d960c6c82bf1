"""Collecting trajectories for a meta-batch: T tasks × N trajectories, each task's own policy.

One vector environment holds ``num_envs = tasks_per_chunk · N`` sub-environments; a meta-batch
larger than that runs in chunks. At every step the policies of all the chunk's tasks act in one
batched forward pass (:mod:`metalearner.rl.policy`), and the environments step together.

Randomness comes only from the ``generator`` passed in: it gives the sub-environments' reset
seeds and the policy's action noise, so a rollout is a pure function of the parameters, the
tasks and the generator's state (what bit-identical resumes rely on).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from metalearner.rl.families import TaskVectorEnv
from metalearner.rl.policy import Params, num_tasks, sample_actions


@dataclass(frozen=True)
class Trajectories:
    """A batch of equal-length (masked) trajectories, grouped by task.

    Attributes:
        obs: ``[T, N, H, obs_dim]`` the observation each action was taken in.
        actions: ``[T, N, H, act_dim]`` the sampled (unclipped) actions.
        rewards: ``[T, N, H]``; 0 after an episode ended.
        mask: ``[T, N, H]`` 1 while the episode runs, 0 after it terminated.
    """

    obs: Tensor
    actions: Tensor
    rewards: Tensor
    mask: Tensor

    @property
    def num_tasks(self) -> int:
        return int(self.obs.shape[0])

    def returns(self) -> Tensor:
        """``[T, N]`` undiscounted return of each trajectory (what evaluation reports)."""
        return (self.rewards * self.mask).sum(-1)


def collect(
    env: TaskVectorEnv,
    tasks: Sequence[dict[str, Any]],
    params: Params,
    *,
    per_task: int,
    horizon: int,
    generator: torch.Generator,
) -> Trajectories:
    """Runs ``per_task`` episodes of ``horizon`` steps for every task with that task's policy.

    Args:
        env: a vector of the family's environments; ``env.num_envs`` must be a multiple of
            ``per_task``.
        tasks: the ``T`` tasks.
        params: task-batched policy parameters (leading dimension ``T``, see
            :func:`metalearner.rl.policy.per_task`).
        per_task: ``N``, trajectories per task.
        horizon: ``H``, steps per episode (episodes that terminate earlier are masked).
        generator: the source of reset seeds and action noise.

    Returns:
        :class:`Trajectories` of shape ``[T, N, H, ...]``.
    """
    if env.num_envs % per_task:
        raise ValueError(f"{env.num_envs} environments do not hold {per_task} per task")
    if num_tasks(params) != len(tasks):
        raise ValueError(f"{num_tasks(params)} parameter sets for {len(tasks)} tasks")
    chunk = env.num_envs // per_task
    parts = []
    for start in range(0, len(tasks), chunk):
        mine = list(tasks[start : start + chunk])
        fill = chunk - len(mine)  # the last chunk runs spare copies and drops them
        sub = {k: v[start : start + chunk] for k, v in params.items()}
        if fill:
            sub = {k: torch.cat([v, v[-1:].expand(fill, *v.shape[1:])]) for k, v in sub.items()}
            mine += [mine[-1]] * fill
        out = _run(env, mine, sub, per_task, horizon, generator)
        parts.append(Trajectories(*(x[: chunk - fill] for x in out)))
    return Trajectories(*(torch.cat(xs) for xs in zip(*(_fields(p) for p in parts), strict=True)))


def _run(
    env: TaskVectorEnv,
    tasks: list[dict[str, Any]],
    params: Params,
    per_task: int,
    horizon: int,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    T, N = len(tasks), per_task
    env.set_tasks([task for task in tasks for _ in range(N)])
    base = int(torch.randint(0, 2**31 - N * T, (1,), generator=generator))
    obs_np, _ = env.reset(seed=[base + i for i in range(T * N)])
    alive = np.ones(T * N, dtype=bool)
    obs, acts, rews, masks = [], [], [], []
    for _ in range(horizon):
        o = torch.as_tensor(np.asarray(obs_np), dtype=torch.float32).reshape(T, N, -1)
        a = sample_actions(params, o, generator)
        obs_np, r, terminated, truncated, _ = env.step(a.reshape(T * N, -1).numpy())
        obs.append(o)
        acts.append(a)
        masks.append(torch.as_tensor(alive, dtype=torch.float32).reshape(T, N))
        rews.append(torch.as_tensor(np.where(alive, r, 0.0), dtype=torch.float32).reshape(T, N))
        alive = alive & ~(np.asarray(terminated) | np.asarray(truncated))
        if not alive.any():
            break
    steps = len(obs)
    if steps < horizon:  # every episode ended early: pad with masked steps
        pad = horizon - steps
        obs += [torch.zeros_like(obs[-1])] * pad
        acts += [torch.zeros_like(acts[-1])] * pad
        rews += [torch.zeros_like(rews[-1])] * pad
        masks += [torch.zeros_like(masks[-1])] * pad
    return (
        torch.stack(obs, 2),
        torch.stack(acts, 2),
        torch.stack(rews, 2),
        torch.stack(masks, 2),
    )


def _fields(t: Trajectories) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    return t.obs, t.actions, t.rewards, t.mask
