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

Adam is the package's pure one (:mod:`metalearner.functional.optim`): its state is a dict of
tensors, a plain part of the checkpoint.

References:
    Schulman et al., "Proximal Policy Optimization Algorithms", 2017. Nichol et al., "On
    First-Order Meta-Learning Algorithms", 2018 (first-order MAML). Kingma & Ba, "Adam: A
    Method for Stochastic Optimization", ICLR 2015.
"""

from __future__ import annotations

import torch

from metalearner.functional.optim import State, adam
from metalearner.rl.objectives import MetaObjective
from metalearner.rl.policy import Params

AdamState = State
"""Adam's moments and step count (:func:`metalearner.functional.optim.adam`)."""


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
        >>> params, state, info = ppo_step(params, objective, adam(3e-4).init(params))
    """
    opt = adam(lr)
    first_loss = None
    kl = torch.zeros(())
    loss = torch.zeros(())
    for _ in range(epochs):
        leaves = {k: v.detach().requires_grad_(True) for k, v in params.items()}
        loss, kl = objective.clipped_loss(leaves, clip)
        grads = torch.autograd.grad(loss, list(leaves.values()))
        first_loss = float(loss.detach()) if first_loss is None else first_loss
        named = dict(zip(leaves, grads, strict=True))
        params, state = opt.update({k: v.detach() for k, v in leaves.items()}, named, state)
    with torch.no_grad():
        after, kl = objective.loss_and_kl(params, graph=False)
    info = {"loss": first_loss or 0.0, "loss_after": float(after), "kl": float(kl)}
    return params, state, info
