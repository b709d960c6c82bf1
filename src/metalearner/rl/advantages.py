"""Advantages for the policy gradient: discounted returns, a linear baseline per task, GAE.

The baseline is rllab's linear feature baseline, refitted for each task on that task's own
trajectories by ridge regression of the discounted returns on the features
``[s, s², t/H, (t/H)², (t/H)³, 1]`` (observations clipped to ±10). Advantages are generalised
advantage estimates; with λ = 1 (the MAML paper's setting) they are the discounted return minus
the baseline. Finally they are normalised to zero mean and unit variance within each task, which
makes the inner step size independent of the reward scale of a task.

References:
    Duan et al., "Benchmarking Deep Reinforcement Learning for Continuous Control", ICML 2016
    (rllab's ``LinearFeatureBaseline``). Schulman et al., "High-Dimensional Continuous Control
    Using Generalized Advantage Estimation", ICLR 2016. Williams, "Simple Statistical
    Gradient-Following Algorithms for Connectionist Reinforcement Learning", Machine Learning
    1992 (REINFORCE).
"""

from __future__ import annotations

import torch
from torch import Tensor

from metalearner.rl.rollouts import Trajectories


def discounted_returns(rewards: Tensor, mask: Tensor, gamma: float) -> Tensor:
    """``R_t = Σ_{l≥0} γ^l r_{t+l}`` within each episode; ``[..., H]`` in and out."""
    out = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[..., 0])
    for t in range(rewards.shape[-1] - 1, -1, -1):
        running = (rewards[..., t] + gamma * running) * mask[..., t]
        out[..., t] = running
    return out


def baseline_features(obs: Tensor) -> Tensor:
    """``[T, N, H, 2·obs_dim + 4]``: rllab's time-varying linear features of each step."""
    H = obs.shape[-2]
    o = obs.clamp(-10, 10)
    t = (torch.arange(H, dtype=obs.dtype) / H).reshape(*([1] * (obs.dim() - 2)), H, 1)
    t = t.expand(*obs.shape[:-1], 1)
    return torch.cat([o, o.square(), t, t.square(), t**3, torch.ones_like(t)], -1)


def linear_baseline(obs: Tensor, returns: Tensor, mask: Tensor, reg: float = 1e-5) -> Tensor:
    """Values ``[T, N, H]`` of a ridge regression of ``returns`` on the features, per task.

    Solved in float64; like rllab, the ridge coefficient grows tenfold (up to five times)
    while the solution is not finite.
    """
    X = baseline_features(obs).double() * mask.double().unsqueeze(-1)
    T, F = X.shape[0], X.shape[-1]
    X = X.reshape(T, -1, F)
    y = (returns.double() * mask.double()).reshape(T, -1, 1)
    gram, target = X.transpose(1, 2) @ X, X.transpose(1, 2) @ y
    eye = torch.eye(F, dtype=torch.float64)
    coef = torch.zeros(T, F, 1, dtype=torch.float64)
    for attempt in range(5):
        coef = torch.linalg.solve(gram + reg * 10**attempt * eye, target)
        if bool(torch.isfinite(coef).all()):
            break
    values = (X @ coef).reshape(returns.shape)
    return values.to(returns.dtype) * mask


def gae(rewards: Tensor, values: Tensor, mask: Tensor, gamma: float, lam: float) -> Tensor:
    """``A_t = Σ_l (γλ)^l δ_{t+l}``, ``δ_t = r_t + γ V(s_{t+1}) − V(s_t)`` (V = 0 past the end)."""
    out = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[..., 0])
    next_value = torch.zeros_like(rewards[..., 0])
    for t in range(rewards.shape[-1] - 1, -1, -1):
        delta = rewards[..., t] + gamma * next_value - values[..., t]
        running = (delta + gamma * lam * running) * mask[..., t]
        out[..., t] = running
        next_value = values[..., t] * mask[..., t]
    return out


def normalize(advantages: Tensor, mask: Tensor, eps: float = 1e-8) -> Tensor:
    """Zero mean and unit variance over each task's valid steps (dimensions after the first)."""
    dims = tuple(range(1, advantages.dim()))
    count = mask.sum(dims, keepdim=True).clamp_min(1)
    mean = (advantages * mask).sum(dims, keepdim=True) / count
    var = ((advantages - mean).square() * mask).sum(dims, keepdim=True) / count
    return (advantages - mean) / (var.sqrt() + eps) * mask


def advantages(
    traj: Trajectories,
    *,
    gamma: float,
    lam: float,
    baseline: bool = True,
    normalized: bool = True,
    reg: float = 1e-5,
) -> Tensor:
    """``[T, N, H]`` advantages of every step, computed per task (see the module docstring).

    Args:
        traj: the trajectories.
        gamma: discount γ.
        lam: GAE's λ (1: return minus baseline; 0: one-step TD error).
        baseline: fit the linear baseline (False: V = 0, plain REINFORCE with returns).
        normalized: normalise within each task.
        reg: the baseline's ridge coefficient.
    """
    if baseline:
        returns = discounted_returns(traj.rewards, traj.mask, gamma)
        values = linear_baseline(traj.obs, returns, traj.mask, reg)
    else:
        values = torch.zeros_like(traj.rewards)
    adv = gae(traj.rewards, values, traj.mask, gamma, lam)
    return normalize(adv, traj.mask) if normalized else adv
