"""Training-mode BatchNorm with fused kernels and a second derivative in a few dozen kernels.

Second-order MAML differentiates each BatchNorm twice: once in the inner step, and again
through that inner gradient in the outer step. PyTorch's fused ``F.batch_norm`` is fast once
and once more, but its double backward (``batchnorm_double_backward``) is a composite of
~100 small operations per call, most of them reductions done one dimension at a time. In a
20-way, five-step meta-step on a CPU it took a fifth of the time; on a GPU each of those
operations is a kernel launch or a node of a recorded CUDA graph.

:func:`task_batch_norm` keeps the fused kernels for the forward pass and for the gradient, and
writes the gradient's own derivative in closed form: five per-channel means, ten other
operations on full-size tensors, and about twenty on per-channel vectors. That derivative is
the exact one (``tests/test_norm.py`` checks it with ``gradgradcheck`` and against PyTorch's in
float64), and it is itself differentiable.

Statistics are always the batch's own (the transductive setting of the MAML and Reptile
papers); there are no running statistics. Inductive BatchNorm, whose statistics are a reference
set's, is written with plain operations in :mod:`metalearner.nn.layers` and does not come here.
Only outside ``torch.func.vmap``: under vmap the
fused kernels' batching rule gives wrong second-order gradients (see
:class:`metalearner.nn.layers.TaskBatchNorm2d`), and these functions define no vmap rule.

The derivation, per channel, over the ``M`` values it normalises: with ``x̂ = (x - μ) r`` and
``r = (σ² + ε)^(-1/2)``, the gradient is ``dx = w r (g - mean(g) - x̂ mean(g x̂))``,
``dw = Σ g x̂``, ``db = Σ g``. Given cotangents ``u, u_w, u_b`` of ``dx, dw, db``, the map is
self-adjoint in ``g`` and ``x`` enters through ``x̂`` and ``r`` (``∂r/∂x = -r² x̂ / M``):

- ``∂/∂g = w r (u - mean(u) - x̂ mean(u x̂)) + u_w x̂ + u_b``
- ``∂/∂w = r M q`` with ``q = mean(u g) - mean(u) mean(g) - mean(u x̂) mean(g x̂)``
- ``∂/∂x = r (v - mean(v) - x̂ mean(v x̂)) - w q r² x̂``, where
  ``v = (u_w - w r mean(u x̂)) g - w r mean(g x̂) u`` is the cotangent of ``x̂``; ``mean(v)`` and
  ``mean(v x̂)`` follow from the means above, so they cost no further reduction.

References:
    Ioffe & Szegedy, "Batch Normalization: Accelerating Deep Network Training by Reducing
    Internal Covariate Shift", ICML 2015 (the gradient).
    Finn et al., "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks", ICML 2017
    (second-order meta-gradients through BatchNorm with batch statistics).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

_DIMS = (0, 2, 3)  # everything but the channels of [S, C, H, W]


def task_batch_norm(x: Tensor, weight: Tensor, bias: Tensor, eps: float = 1e-5) -> Tensor:
    """BatchNorm of one task's ``[S, C, H, W]`` batch with its own statistics.

    Equal to ``F.batch_norm(x, None, None, weight, bias, training=True, eps=eps)``, with the
    same fused kernels forward and backward, and a lean exact second derivative.

    Example:
        >>> y = task_batch_norm(conv_out, norm.weight, norm.bias)
    """
    y: Tensor = _BatchNorm.apply(x, weight, bias, eps)[0]
    return y


def _channel(t: Tensor) -> Tensor:
    return t[:, None, None]  # a per-channel vector, broadcast over [S, C, H, W]


class _BatchNorm(torch.autograd.Function):
    """``native_batch_norm`` in training mode, whose gradient is :class:`_BatchNormGrad`."""

    @staticmethod
    def forward(x: Tensor, weight: Tensor, bias: Tensor, eps: float) -> tuple[Tensor, ...]:
        return tuple(torch.native_batch_norm(x, weight, bias, None, None, True, 0.0, eps))

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, ...]) -> None:
        x, weight, _, eps = inputs
        _, mean, invstd = output
        ctx.mark_non_differentiable(mean, invstd)  # they are functions of x: see _BatchNormGrad
        ctx.set_materialize_grads(False)  # no zero-filled gradients for them: one kernel each
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.eps = eps

    @staticmethod
    def backward(ctx: Any, grad_y: Tensor | None, *_: Tensor | None) -> tuple[Tensor | None, ...]:
        if grad_y is None:
            return None, None, None, None
        x, weight, mean, invstd = ctx.saved_tensors
        grads = _BatchNormGrad.apply(grad_y, x, weight, mean, invstd, ctx.eps)
        return (*grads, None)


class _BatchNormGrad(torch.autograd.Function):
    """BatchNorm's gradient ``(g, x, w) -> (dx, dw, db)``: fused forward, closed-form backward.

    ``mean`` and ``invstd`` are the forward pass's statistics of ``x``; the backward accounts
    for their dependence on ``x`` analytically, so they get no gradient of their own.
    """

    @staticmethod
    def forward(
        grad_y: Tensor, x: Tensor, weight: Tensor, mean: Tensor, invstd: Tensor, eps: float
    ) -> tuple[Tensor, ...]:
        mask = [True, True, True]
        return tuple(
            torch.ops.aten.native_batch_norm_backward(
                grad_y, x, weight, None, None, mean, invstd, True, eps, mask
            )
        )

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, ...]) -> None:
        grad_y, x, weight, mean, invstd, _ = inputs
        ctx.set_materialize_grads(False)  # a missing cotangent is zero: its terms are skipped
        ctx.save_for_backward(grad_y, x, weight, mean, invstd)

    @staticmethod
    def backward(
        ctx: Any, u: Tensor | None, u_w: Tensor | None, u_b: Tensor | None
    ) -> tuple[Tensor | None, ...]:
        g, x, weight, mean, invstd = ctx.saved_tensors
        m = x.numel() // x.shape[1]
        u_w = torch.zeros_like(invstd) if u_w is None else u_w
        u_b = torch.zeros_like(invstd) if u_b is None else u_b
        # Per-channel vectors are combined first, so that each full-size result takes one
        # fused multiply-add (addcmul) per term: on a GPU every operation is a kernel.
        r, w = invstd, weight.to(invstd.dtype)
        wr, nr = w * r, -r
        xhat = (x - _channel(mean)) * _channel(r)  # in the statistics' precision (float32 at least)
        g_mean, gx_mean = g.mean(_DIMS), (g * xhat).mean(_DIMS)
        k = wr * gx_mean
        if u is None:
            u_mean = ux_mean = q = torch.zeros_like(invstd)
        else:
            u_mean, ux_mean = u.mean(_DIMS), (u * xhat).mean(_DIMS)
            q = torch.addcmul((u * g).mean(_DIMS), u_mean, g_mean, value=-1)
            q = torch.addcmul(q, ux_mean, gx_mean, value=-1)
        a = torch.addcmul(u_w, wr, ux_mean, value=-1)  # v = a g - k u, the cotangent of x̂
        v_mean = torch.addcmul(a * g_mean, k, u_mean, value=-1)
        vx_mean = torch.addcmul(a * gx_mean, k, ux_mean, value=-1)
        xhat_coef = torch.addcmul(nr * vx_mean, w * q, r * r, value=-1)

        grad_g = torch.addcmul(
            _channel(torch.addcmul(u_b, wr, u_mean, value=-1)), _channel(a), xhat
        )
        grad_x = torch.addcmul(_channel(nr * v_mean), _channel(r * a), g)
        grad_x = torch.addcmul(grad_x, _channel(xhat_coef), xhat)
        if u is not None:
            grad_g = torch.addcmul(grad_g, _channel(wr), u)
            grad_x = torch.addcmul(grad_x, _channel(nr * k), u)
        grad_w = r * q * m
        return (
            grad_g.to(g.dtype),
            grad_x.to(x.dtype),
            grad_w.to(weight.dtype),
            None,
            None,
            None,
        )
