"""Pure optimisers: an initial state and an update, both functions of explicit tensors.

Every optimiser that runs *inside* a strategy (MAML's and Reptile's inner loops, a transfer
head's fine-tuning, RL's PPO epochs) is written here once. An :class:`Optimizer` is two pure
functions, as in optax: ``init(params) -> state`` and ``update(params, grads, state) ->
(params, state)``. Neither writes into its inputs, so an update stays differentiable with
respect to the parameters it started from (second-order MAML differentiates through it) and
can run under ``torch.func.vmap``. The outer loop, where parameters are leaves that change in
place, uses ``torch.optim`` (:mod:`metalearner.training.optimizer`).

Unlike optax's ``update``, which returns updates to add, ``update`` here returns the new
parameters: ``p - lr·g`` is one operation per parameter in a second-order graph where
``p + (-lr·g)`` would be two.

A state is a flat ``name -> tensor`` dict (``"count"``, ``"m/<param>"``, ``"v/<param>"``,
``"momentum/<param>"``), so a checkpoint stores it as safetensors like any parameters.

Example:
    >>> opt = adam(3e-4)
    >>> state = opt.init(params)
    >>> params, state = opt.update(params, grads, state)

References:
    Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.
    Sutskever et al., "On the importance of initialization and momentum in deep learning", ICML
    2013 (momentum as PyTorch's SGD writes it).
    DeepMind, optax (``scale_by_adam``: an optimiser as init and update over a small state).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple

import torch
from torch import Tensor

Params = dict[str, Tensor]
State = dict[str, Tensor]
LearningRate = float | Mapping[str, Tensor]
"""A step size, or one per parameter (Meta-SGD), each broadcastable to its parameter."""


class Optimizer(NamedTuple):
    """A pure optimiser: ``init(params) -> state``; ``update(params, grads, state) -> (params,
    state)`` for the entries of ``grads`` (other parameters pass through unchanged)."""

    init: Callable[[Params], State]
    update: Callable[[Params, Mapping[str, Tensor], State], tuple[Params, State]]


def sgd(lr: LearningRate, *, momentum: float = 0.0, weight_decay: float = 0.0) -> Optimizer:
    """Gradient descent, optionally with momentum and L2 weight decay (PyTorch's ``SGD``).

    With momentum ``μ`` and decay ``λ`` the velocity is ``v ← μ·v + g + λ·p`` (zero at the
    start, so the first step is ``g + λ·p``, as PyTorch's) and the step ``p ← p − lr·v``.

    Args:
        lr: the step size, or a dict of per-parameter step sizes.
        momentum: ``μ`` in [0, 1); 0 keeps no state.
        weight_decay: ``λ`` ≥ 0, added to the gradient.
    """

    def init(params: Params) -> State:
        if not momentum:
            return {}
        return {f"momentum/{k}": torch.zeros_like(v) for k, v in params.items()}

    def update(params: Params, grads: Mapping[str, Tensor], state: State) -> tuple[Params, State]:
        new, new_state = dict(params), dict(state)
        for k, g in grads.items():
            p = params[k]
            rate = lr[k] if isinstance(lr, Mapping) else lr
            if weight_decay:
                g = g + weight_decay * p
            if momentum:
                g = new_state[f"momentum/{k}"] = momentum * state[f"momentum/{k}"] + g
            new[k] = p - rate * g
        return new, new_state

    return Optimizer(init, update)


def adam(lr: float, *, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> Optimizer:
    """Adam with PyTorch's bias correction: ``p ← p − lr·m̂ / (√v̂ + ε)``.

    The step count is a tensor in the state (``"count"``) so that a checkpointed state resumes
    where it stopped; it is read as a Python number for the bias correction, so the update is
    not for ``torch.compile``'d code.

    Args:
        lr: the step size.
        betas: decay rates of the first and second moments (Reptile's inner Adam uses β₁ = 0).
        eps: added to the root of the second moment.
    """
    beta1, beta2 = betas

    def init(params: Params) -> State:
        state = {f"m/{k}": torch.zeros_like(v) for k, v in params.items()}
        state |= {f"v/{k}": torch.zeros_like(v) for k, v in params.items()}
        state["count"] = torch.zeros((), dtype=torch.int64)
        return state

    def update(params: Params, grads: Mapping[str, Tensor], state: State) -> tuple[Params, State]:
        count = state["count"] + 1
        t = int(count)
        new, new_state = dict(params), {**state, "count": count}
        for k, g in grads.items():
            m = beta1 * state[f"m/{k}"] + (1 - beta1) * g
            v = beta2 * state[f"v/{k}"] + (1 - beta2) * g.square()
            new[k] = params[k] - lr * (m / (1 - beta1**t)) / ((v / (1 - beta2**t)).sqrt() + eps)
            new_state[f"m/{k}"], new_state[f"v/{k}"] = m, v
        return new, new_state

    return Optimizer(init, update)
