"""Trust-region policy optimisation as a pure step on a parameter dict.

One step minimises a loss ``L(θ)`` (the negative surrogate) subject to ``KL(θ) ≤ δ``: the
natural-gradient direction ``x ≈ H⁻¹(−∇L)`` from conjugate gradient on Hessian-vector products
of the mean KL (``H`` is the KL's Hessian at the current θ, the Fisher information when no
inner loop is involved), scaled so that the quadratic model of the KL equals δ, then halved by a
backtracking line search until the loss improves and the exact KL is within δ. For MAML the
loss and the KL are functions of θ *through the inner adaptation*, so the Hessian-vector
products differentiate through it too (third-order autograd; it stays cheap because the graph
of ``∇KL`` is built once and reused for every product).

References:
    Schulman et al., "Trust Region Policy Optimization", ICML 2015 (appendix C: conjugate
    gradient on Fisher-vector products, line search). Finn et al., "Model-Agnostic
    Meta-Learning for Fast Adaptation of Deep Networks", ICML 2017 (TRPO as the meta-optimiser).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from metalearner.rl.policy import Params

Objective = Callable[[Params, bool], tuple[Tensor, Tensor]]
"""``objective(params, graph) -> (loss, kl)``: scalars, differentiable when ``graph``."""


def flatten(tensors: Params | list[Tensor] | tuple[Tensor, ...]) -> Tensor:
    values = tensors.values() if isinstance(tensors, dict) else tensors
    return torch.cat([t.reshape(-1) for t in values])


def unflatten(vector: Tensor, like: Params) -> Params:
    out, start = {}, 0
    for k, v in like.items():
        out[k] = vector[start : start + v.numel()].view_as(v)
        start += v.numel()
    return out


def hvp_fn(kl: Tensor, leaves: Params, damping: float = 0.0) -> Callable[[Tensor], Tensor]:
    """``v ↦ (∇²KL + damping·I) v`` at ``leaves``, from one graph of ``∇KL`` reused per call."""
    grads = torch.autograd.grad(kl, list(leaves.values()), create_graph=True)
    flat_grad = flatten(grads)

    def hvp(v: Tensor) -> Tensor:
        products = torch.autograd.grad(
            flat_grad @ v, list(leaves.values()), retain_graph=True, allow_unused=True
        )
        filled = [
            p if p is not None else torch.zeros_like(x)
            for p, x in zip(products, leaves.values(), strict=True)
        ]
        return flatten(filled) + damping * v

    return hvp


def conjugate_gradient(
    matvec: Callable[[Tensor], Tensor], b: Tensor, iterations: int, tol: float = 1e-10
) -> Tensor:
    """Approximately solves ``A x = b`` for symmetric positive-definite ``A`` (``matvec``)."""
    x = torch.zeros_like(b)
    r, p = b.clone(), b.clone()
    rr = r @ r
    for _ in range(iterations):
        if rr < tol:
            break
        Ap = matvec(p)
        alpha = rr / (p @ Ap)
        x = x + alpha * p
        r = r - alpha * Ap
        rr_new = r @ r
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x


def trpo_step(
    params: Params,
    objective: Objective,
    *,
    max_kl: float = 0.01,
    cg_iters: int = 10,
    damping: float = 0.01,
    backtrack: float = 0.5,
    ls_steps: int = 15,
) -> tuple[Params, dict[str, float]]:
    """One TRPO update of ``params``; returns the new parameters (or the old ones) and metrics.

    Args:
        params: the current θ.
        objective: ``(loss, kl)`` at given parameters; the KL is measured against the policy
            that sampled the data, so it is 0 at ``params``.
        max_kl: δ, the trust region.
        cg_iters: conjugate-gradient iterations.
        damping: added to the KL's Hessian (``H + damping·I``) for a stable solve.
        backtrack: the line search's shrink factor.
        ls_steps: the line search's number of tries; none accepted leaves θ unchanged.

    Returns:
        ``(new_params, metrics)`` with ``loss`` (before), ``loss_after``, ``kl`` (after),
        ``ls_step`` (the accepted try, or −1) and ``cg_residual``.

    Example:
        >>> new, info = trpo_step(params, lambda p, graph: objective.loss_and_kl(p, graph=graph))
    """
    leaves = {k: v.detach().requires_grad_(True) for k, v in params.items()}
    loss, kl = objective(leaves, True)
    grad = flatten(torch.autograd.grad(loss, list(leaves.values()), retain_graph=True))
    hvp = hvp_fn(kl, leaves, damping)
    direction = conjugate_gradient(hvp, -grad.detach(), cg_iters)
    h_direction = hvp(direction)
    curvature = float(direction @ h_direction)
    old = {k: v.detach() for k, v in params.items()}
    before = float(loss.detach())
    info = {"loss": before, "loss_after": before, "kl": 0.0, "ls_step": -1.0}
    residual = (h_direction + grad).norm() / grad.norm().clamp_min(1e-12)
    info["cg_residual"] = float(residual)
    if not (curvature > 0 and math.isfinite(curvature)):
        return old, info  # a flat or broken quadratic model: no trustworthy step
    full = direction.detach() * math.sqrt(2 * max_kl / curvature)  # ½ sᵀHs = δ
    base = flatten(old)
    for i in range(ls_steps):
        candidate = unflatten(base + backtrack**i * full, old)
        new_loss, new_kl = objective(candidate, False)
        improved = float(new_loss) < before
        if improved and float(new_kl) <= max_kl and math.isfinite(float(new_loss)):
            info |= {"loss_after": float(new_loss), "kl": float(new_kl), "ls_step": float(i)}
            return {k: v.clone() for k, v in candidate.items()}, info
    return old, info
