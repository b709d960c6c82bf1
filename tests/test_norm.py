"""The per-task BatchNorm's lean second derivative against PyTorch's and finite differences."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode

from metalearner.nn.norm import task_batch_norm

Norm = Callable[[Tensor, Tensor, Tensor], Tensor]


def stock(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    return F.batch_norm(x, None, None, w, b, training=True, eps=1e-5)


def lean(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    return task_batch_norm(x, w, b, 1e-5)


def inputs(shape: tuple[int, ...], *, seed: int = 0, channels_last: bool = False) -> list[Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, dtype=torch.float64, generator=gen) * 2 + 0.5
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    w = torch.rand(shape[1], dtype=torch.float64, generator=gen) + 0.5
    b = torch.randn(shape[1], dtype=torch.float64, generator=gen)
    return [t.requires_grad_() for t in (x, w, b)]


SHAPES = [(5, 3, 4, 4), (2, 2, 3, 3), (6, 4, 1, 1)]  # the last is conv4's 4th block at 28x28


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("channels_last", [False, True])
def test_first_and_second_derivatives_match_finite_differences(
    shape: tuple[int, ...], channels_last: bool
) -> None:
    args = tuple(inputs(shape, channels_last=channels_last))
    assert torch.autograd.gradcheck(lean, args)
    assert torch.autograd.gradgradcheck(lean, args)


def second_order(norm: Norm, args: list[Tensor], use: str) -> tuple[Tensor, ...]:
    """Gradients of a function of BatchNorm's gradient, as the outer step of MAML takes them."""
    x, w, b = args
    y = norm(x, w, b)
    gen = torch.Generator().manual_seed(7)
    g = torch.randn(y.shape, dtype=y.dtype, generator=gen).requires_grad_()
    dx, dw, db = torch.autograd.grad(y, (x, w, b), g, create_graph=True)
    losses = {
        "dx": dx.sin().sum(),
        "dw": (dw * dw).sum(),
        "db": (db * db.cos()).sum(),
        "all": dx.sin().sum() + (dw * dw).sum() + (db * db.cos()).sum(),
    }
    return torch.autograd.grad(losses[use], (x, w, b, g), allow_unused=True, materialize_grads=True)


@pytest.mark.parametrize("use", ["dx", "dw", "db", "all"])
def test_second_derivative_equals_pytorchs(use: str) -> None:
    """Every combination of the gradient's parts the outer loss may depend on, in float64."""
    args = inputs((5, 3, 4, 4), seed=1)
    for a, b in zip(second_order(lean, args, use), second_order(stock, args, use), strict=True):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)


def test_forward_and_gradient_are_pytorchs_fused_ones() -> None:
    x, w, b = inputs((5, 3, 4, 4), seed=2)
    y_lean, y_stock = lean(x, w, b), stock(x, w, b)
    assert torch.equal(y_lean, y_stock)
    g = torch.randn_like(y_lean)
    for a, c in zip(
        torch.autograd.grad(y_lean, (x, w, b), g),
        torch.autograd.grad(y_stock, (x, w, b), g),
        strict=True,
    ):
        assert torch.equal(a, c)


def test_bfloat16_activations_with_float32_weights_keep_pytorchs_dtypes() -> None:
    """Under bfloat16 autocast the convolutions hand BatchNorm bfloat16 activations."""
    x64, w64, b64 = inputs((6, 4, 5, 5), seed=3)
    x = x64.detach().bfloat16().requires_grad_()
    w, b = (t.detach().float().requires_grad_() for t in (w64, b64))
    results = [second_order(norm, [x, w, b], "all") for norm in (lean, stock)]
    for a, c in zip(*results, strict=True):
        assert a.dtype == c.dtype
        assert torch.allclose(a.float(), c.float(), rtol=5e-2, atol=5e-2 * c.float().abs().max())


class CountOps(TorchDispatchMode):
    """Counts the ATen operations that do work (views and allocations aside)."""

    FREE = ("view", "alias", "expand", "unsqueeze", "squeeze", "detach", "empty", "t.default")

    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        name = str(func)
        if not any(free in name for free in self.FREE):
            self.ops[name] += 1
        return func(*args, **(kwargs or {}))


def test_the_second_derivative_takes_half_of_pytorchs_operations() -> None:
    """What the lean derivative is for: PyTorch's composite runs ~100 operations per call."""
    totals = {}
    for norm in (lean, stock):
        x, w, b = inputs((5, 3, 4, 4))
        y = norm(x, w, b)
        dx, dw, db = torch.autograd.grad(y.sin().sum(), (x, w, b), create_graph=True)
        outer = dx.square().sum() + dw.square().sum() + db.square().sum()
        with CountOps() as counter:
            outer.backward()
        totals[norm] = sum(counter.ops.values())
    # Both outer graphs share ~15 operations outside BatchNorm's second derivative (the sine's
    # and squares' derivatives, BatchNorm's own gradient): measured 52 against 113.
    assert totals[lean] < 0.6 * totals[stock], totals
