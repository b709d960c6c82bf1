"""The cheaper outer loop: a few epochs of Adam on PPO's clipped surrogate.

Each epoch re-adapts θ to every task, by default with the inner gradient treated as a constant
(``first_order``, first-order MAML: the meta-gradient is the outer gradient at φ, no Hessian;
``first_order=false`` differentiates through the inner step instead), evaluates the clipped
surrogate of the post-adaptation trajectories against the adapted policies that sampled them,
and takes one Adam step. It needs no conjugate gradient, no Hessian-vector products and no
line search, so an iteration costs a few backward passes instead of TRPO's ~25; in exchange
the trust region is only the clipping's soft one. By default this is *first-order MAML with a
PPO outer loop*, not ProMP (which adds a low-variance curvature term and a KL penalty on the
inner step).

Adam is written as two pure functions over a dict of tensors (optax style), so its state is a
plain part of the checkpoint.

References:
    Schulman et al., "Proximal Policy Optimization Algorithms", 2017. Nichol et al., "On
    First-Order Meta-Learning Algorithms", 2018 (first-order MAML). Kingma & Ba, "Adam: A
    Method for Stochastic Optimization", ICLR 2015.
"""

from __future__ import annotations

import torch

from metalearner.rl.objectives import MetaObjective
from metalearner.rl.policy import Params

AdamState = dict[str, torch.Tensor]


def adam_init(params: Params) -> AdamState:
    """Zero moments for every parameter and a step count of 0."""
    state = {f"m/{k}": torch.zeros_like(v) for k, v in params.items()}
    state |= {f"v/{k}": torch.zeros_like(v) for k, v in params.items()}
    state["count"] = torch.zeros((), dtype=torch.int64)
    return state


def adam_update(
    params: Params,
    grads: Params,
    state: AdamState,
    lr: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> tuple[Params, AdamState]:
    """One bias-corrected Adam step; returns new parameters and state (inputs unchanged)."""
    b1, b2 = betas
    count = state["count"] + 1
    new_params, new_state = {}, {"count": count}
    n = int(count)
    for k, p in params.items():
        g = grads[k]
        m = b1 * state[f"m/{k}"] + (1 - b1) * g
        v = b2 * state[f"v/{k}"] + (1 - b2) * g * g
        m_hat, v_hat = m / (1 - b1**n), v / (1 - b2**n)
        new_params[k] = p - lr * m_hat / (v_hat.sqrt() + eps)
        new_state[f"m/{k}"], new_state[f"v/{k}"] = m, v
    return new_params, new_state


def ppo_step(
    params: Params,
    objective: MetaObjective,
    state: AdamState,
    *,
    epochs: int = 5,
    clip: float = 0.2,
    lr: float = 3e-4,
) -> tuple[Params, AdamState, dict[str, float]]:
    """``epochs`` Adam steps on the clipped surrogate; returns parameters, state and metrics.

    Example:
        >>> params, state, info = ppo_step(params, objective, adam_init(params))
    """
    first_loss = None
    kl = torch.zeros(())
    loss = torch.zeros(())
    for _ in range(epochs):
        leaves = {k: v.detach().requires_grad_(True) for k, v in params.items()}
        loss, kl = objective.clipped_loss(leaves, clip)
        grads = torch.autograd.grad(loss, list(leaves.values()))
        first_loss = float(loss.detach()) if first_loss is None else first_loss
        named = dict(zip(leaves, grads, strict=True))
        params, state = adam_update({k: v.detach() for k, v in leaves.items()}, named, state, lr)
    with torch.no_grad():
        after, kl = objective.loss_and_kl(params, graph=False)
    info = {"loss": first_loss or 0.0, "loss_after": float(after), "kl": float(kl)}
    return params, state, info
