"""The losses of MAML-RL: the inner policy-gradient step and the outer surrogate and KL.

Inner loop (per task): ``φ = θ − α ∇_θ L_in(θ)`` with the REINFORCE loss
``L_in = −mean_t log π_θ(a_t|s_t) · A_t`` on trajectories sampled from θ. Kept differentiable
(``create_graph``), ``φ(θ)`` carries the second-order term of the meta-gradient; first-order
treats ``∇L_in`` as a constant. As in the paper, the sampling distribution's own dependence on θ
is not differentiated (the score-function term that ProMP / DiCE add).

Outer loop: on trajectories sampled from the adapted policies, the importance-weighted
surrogate ``mean_t π_φ(θ)(a|s) / π_old(a|s) · A`` (TRPO) or its clipped form (PPO), and the mean
``KL(π_old ‖ π_φ(θ))`` over the visited states, where ``π_old`` is the adapted policy that
sampled them. Everything is batched over the meta-batch's tasks.

References:
    Finn et al., "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks", ICML 2017.
    Williams, "Simple Statistical Gradient-Following Algorithms for Connectionist Reinforcement
    Learning", Machine Learning 1992. Schulman et al., "Trust Region Policy Optimization", ICML
    2015. Schulman et al., "Proximal Policy Optimization Algorithms", 2017.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from metalearner.functional.optim import sgd
from metalearner.rl.policy import (
    Params,
    gaussian_kl,
    gaussian_log_prob,
    log_prob,
    log_std,
    mean_action,
    per_task,
)
from metalearner.rl.rollouts import Trajectories


@dataclass(frozen=True)
class Batch:
    """Trajectories with their (constant) advantages: what one loss is computed on."""

    obs: Tensor  # [T, N, H, obs_dim]
    actions: Tensor  # [T, N, H, act_dim]
    mask: Tensor  # [T, N, H]
    advantages: Tensor  # [T, N, H]

    @classmethod
    def of(cls, traj: Trajectories, advantages: Tensor) -> Batch:
        """``traj`` with its advantages (:func:`metalearner.rl.advantages.advantages`)."""
        return cls(traj.obs, traj.actions, traj.mask, advantages)


def _task_mean(x: Tensor, mask: Tensor) -> Tensor:
    dims = tuple(range(1, x.dim()))
    return (x * mask).sum(dims) / mask.sum(dims).clamp_min(1)


def inner_loss(params: Params, batch: Batch) -> Tensor:
    """``[T]`` REINFORCE loss of each task, ``−mean log π(a|s) · A`` over its valid steps."""
    return -_task_mean(log_prob(params, batch.obs, batch.actions) * batch.advantages, batch.mask)


def inner_step(
    params: Params, batch: Batch, lr: float, *, create_graph: bool, first_order: bool = False
) -> Params:
    """One policy-gradient step per task: ``φ_t = θ_t − lr · ∇ L_in,t(θ_t)``.

    Args:
        params: task-batched parameters (``[T, ...]`` each).
        batch: trajectories sampled from ``params`` with their advantages.
        lr: the inner step size α.
        create_graph: keep the step differentiable with respect to ``params`` (second order).
        first_order: with ``create_graph``, treat the gradient as a constant (first-order
            MAML): ``φ`` depends on θ through the identity only.

    Returns:
        The adapted task-batched parameters.
    """
    # A graph is only possible (and only useful) when the parameters carry one.
    keep = create_graph and not first_order and all(v.requires_grad for v in params.values())
    with torch.enable_grad():
        # Without a graph the gradient is taken at detached copies: nothing flows back to θ.
        inputs = params if keep else {k: v.detach().requires_grad_(True) for k, v in params.items()}
        # The tasks' losses are independent, so the gradient of their sum with respect to the
        # [T, ...] parameters holds each task's own gradient in its slice.
        loss = inner_loss(inputs, batch).sum()
        grads = torch.autograd.grad(loss, list(inputs.values()), create_graph=keep)
    base = params if create_graph else {k: v.detach() for k, v in params.items()}
    return sgd(lr).update(base, dict(zip(inputs, grads, strict=True)), {})[0]


def adapt(
    params: Params,
    batches: Sequence[Batch],
    lr: float,
    *,
    create_graph: bool,
    first_order: bool = False,
) -> Params:
    """θ (unbatched) adapted to each task by one inner step per batch in ``batches``.

    ``batches[k]`` must hold the trajectories sampled with the parameters after ``k`` steps
    (that is how training and evaluation collect them); with no batches this is θ per task
    (the pretrained baseline's objective).
    """
    T = batches[0].obs.shape[0] if batches else 0
    fast = per_task(params, T) if batches else params
    for batch in batches:
        fast = inner_step(fast, batch, lr, create_graph=create_graph, first_order=first_order)
    return fast


@dataclass(frozen=True)
class OldPolicy:
    """The sampling policies' log-probabilities and distributions, fixed at collection time."""

    log_prob: Tensor  # [T, N, H]
    mean: Tensor  # [T, N, H, act_dim]
    log_std: Tensor  # [T, N, H, act_dim]

    @classmethod
    def of(cls, params: Params, batch: Batch) -> OldPolicy:
        """The policy ``params`` (task-batched) evaluated on ``batch``, without a graph."""
        with torch.no_grad():
            mean = mean_action(params, batch.obs)
            ls = log_std(params, mean)
            return cls(log_prob(params, batch.obs, batch.actions), mean, ls.contiguous())


def surrogate_and_kl(
    params: Params, batch: Batch, old: OldPolicy, clip: float | None = None
) -> tuple[Tensor, Tensor]:
    """``[T]`` surrogate advantage and ``[T]`` mean KL of each task, from one forward pass.

    The surrogate is ``mean ρ·A`` with ``ρ = π(a|s) / π_old(a|s)`` (TRPO), or PPO's
    ``mean min(ρA, clip(ρ, 1−ε, 1+ε)A)`` when ``clip`` is given; both are to be maximised.
    The KL is ``mean KL(π_old(·|s) ‖ π(·|s))`` over the task's visited states.
    """
    mean = mean_action(params, batch.obs)
    log_sd = log_std(params, mean)
    ratio = torch.exp(gaussian_log_prob(mean, log_sd, batch.actions) - old.log_prob)
    adv = batch.advantages
    gain = ratio * adv
    if clip is not None:
        gain = torch.minimum(gain, ratio.clamp(1 - clip, 1 + clip) * adv)
    kl = gaussian_kl(old.mean, old.log_std, mean, log_sd)
    return _task_mean(gain, batch.mask), _task_mean(kl, batch.mask)


@dataclass(frozen=True)
class MetaObjective:
    """The outer objective as a function of θ: adapt on ``inner``, score on ``outer``.

    Attributes:
        inner: per inner step, the batch sampled before it (empty: no adaptation).
        outer: the trajectories sampled by the adapted policies.
        old: those policies' distributions on ``outer``.
        lr: the inner step size.
        first_order: treat inner gradients as constants.
    """

    inner: tuple[Batch, ...]
    outer: Batch
    old: OldPolicy
    lr: float
    first_order: bool

    def adapted(self, params: Params, *, graph: bool) -> Params:
        """φ(θ) per task; differentiable in θ when ``graph``."""
        fast = adapt(params, self.inner, self.lr, create_graph=graph, first_order=self.first_order)
        return fast if self.inner else per_task(fast, self.outer.obs.shape[0])

    def loss_and_kl(self, params: Params, *, graph: bool = True) -> tuple[Tensor, Tensor]:
        """``(−surrogate, KL)`` averaged over the tasks, at θ = ``params``."""
        with torch.enable_grad() if graph else torch.no_grad():
            gain, kl = surrogate_and_kl(self.adapted(params, graph=graph), self.outer, self.old)
        return -gain.mean(), kl.mean()

    def clipped_loss(self, params: Params, clip: float) -> tuple[Tensor, Tensor]:
        """``(−clipped surrogate, KL)`` averaged over the tasks (PPO), with a graph."""
        with torch.enable_grad():
            gain, kl = surrogate_and_kl(
                self.adapted(params, graph=True), self.outer, self.old, clip
            )
        return -gain.mean(), kl.mean()
