"""Meta-gradients against independent references: finite differences, a closed form, autograd.

The reference forward pass below is written with stock ``torch.nn.functional`` calls (conv2d,
batch_norm with batch statistics, relu, max_pool2d, linear), independently of
``metalearner.nn.backbones``; the reference inner loop uses ``torch.autograd.grad`` in a plain loop.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metalearner.strategies import LR_PREFIX, available, build, get_strategy
from metalearner.tasks import TaskBatch
from metalearner.testing import conv_biases, image_batch, regression_batch, rel_error, tiny_conv

Params = dict[str, Tensor]


def ref_forward(p: Params, x: Tensor) -> Tensor:
    """tiny_conv's function, from its parameter names, with stock functional calls."""
    h = x
    for i in range(2):
        pre = f"features.blocks.{i}."
        h = F.conv2d(h, p[pre + "conv.weight"], p[pre + "conv.bias"], padding=1)
        h = F.batch_norm(h, None, None, p[pre + "norm.weight"], p[pre + "norm.bias"], True)
        h = F.max_pool2d(F.relu(h), 2)
    return F.linear(h.flatten(1), p["head.weight"], p["head.bias"])


def ref_objective(
    p: Params, batch: TaskBatch, *, lr: float, steps: int, head_only: bool = False
) -> Tensor:
    """Mean query loss after ``steps`` inner SGD steps per task (second-order graph kept)."""
    names = [k for k in p if not k.startswith(LR_PREFIX)]
    if head_only:
        names = [k for k in names if k.startswith("head.")]
    total = torch.zeros((), dtype=torch.float64)
    alpha = torch.tensor(lr, dtype=torch.float64)  # a float32 α would cost 8 digits
    for t in range(batch.num_tasks):
        fast = {k: v for k, v in p.items() if not k.startswith(LR_PREFIX)}
        for _ in range(steps):
            loss = F.cross_entropy(ref_forward(fast, batch.support_x[t]), batch.support_y[t])
            grads = torch.autograd.grad(loss, [fast[k] for k in names], create_graph=True)
            for k, g in zip(names, grads, strict=True):
                fast[k] = fast[k] - p.get(LR_PREFIX + k, alpha) * g
        total = total + F.cross_entropy(ref_forward(fast, batch.query_x[t]), batch.query_y[t])
    return total / batch.num_tasks


def finite_differences(f: Callable[[Params], Tensor], p: Params, h: float = 1e-6) -> Params:
    """Central differences of ``f`` at ``p``, one coordinate at a time (float64)."""
    out = {}
    for k, v in p.items():
        g = torch.zeros_like(v).flatten()
        for i in range(v.numel()):
            plus, minus = v.clone().flatten(), v.clone().flatten()
            plus[i] += h
            minus[i] -= h
            fp = f({**p, k: plus.view_as(v)})
            fm = f({**p, k: minus.view_as(v)})
            g[i] = (fp - fm) / (2 * h)
        out[k] = g.view_as(v)
    return out


def leaves(p: Params) -> Params:
    return {k: v.detach().clone().requires_grad_() for k, v in p.items()}


SECOND_ORDER = ["maml", "metasgd", "anil"]


@pytest.mark.parametrize("name", SECOND_ORDER)
def test_meta_gradient_matches_finite_differences(name: str) -> None:
    net, batch = tiny_conv(), image_batch(tasks=2)
    settings = {"inner_lr": 0.3, "inner_steps": 2}
    params = build(name, net, settings).init_params(0)
    head_only = name == "anil"

    def objective(p: Params) -> Tensor:
        with torch.enable_grad():
            return ref_objective(leaves(p), batch, lr=0.3, steps=2, head_only=head_only)

    reference = finite_differences(objective, params)
    p = leaves(params)
    value = ref_objective(p, batch, lr=0.3, steps=2, head_only=head_only)
    autograd = dict(zip(p, torch.autograd.grad(value, list(p.values())), strict=True))
    assert rel_error(autograd, reference) < 1e-6
    for batching in ("loop", "vmap"):
        grads, _ = build(name, net, {**settings, "batching": batching}).meta_grads(params, batch)
        assert rel_error(grads, reference) < 1e-6, batching
        assert rel_error(grads, autograd) < 1e-10, batching  # the same function, to round-off


@pytest.mark.parametrize("batching", ["loop", "vmap"])
def test_maml_matches_closed_form_for_linear_regression(batching: str) -> None:
    # L(w) = (1/n)‖Xw − y‖² (MSE), with a bias column: ∇L = (2/n)Xᵀ(Xw − y), H = (2/n)XᵀX.
    # w' = w − α∇L_s(w) is affine in w, so d L_q(w')/dw = (I − αH_s)ᵀ ∇L_q(w').
    alpha, batch = 0.1, regression_batch(tasks=4, dim=3)
    model = nn.Linear(3, 1, dtype=torch.float64)
    maml = build("maml", model, {"inner_lr": alpha, "batching": batching})
    params = maml.init_params(0)
    w = torch.cat([params["weight"].flatten(), params["bias"]])
    total = torch.zeros(4, dtype=torch.float64)
    for t in range(batch.num_tasks):
        xs = F.pad(batch.support_x[t], (0, 1), value=1.0)
        xq = F.pad(batch.query_x[t], (0, 1), value=1.0)
        grad_s = 2 / len(xs) * xs.T @ (xs @ w - batch.support_y[t])
        hess_s = 2 / len(xs) * xs.T @ xs
        adapted = w - alpha * grad_s
        grad_q = 2 / len(xq) * xq.T @ (xq @ adapted - batch.query_y[t])
        total += (torch.eye(4, dtype=torch.float64) - alpha * hess_s).T @ grad_q
    expected = total / batch.num_tasks
    grads, _ = maml.meta_grads(params, batch)
    got = torch.cat([grads["weight"].flatten(), grads["bias"]])
    assert torch.allclose(got, expected, rtol=1e-10, atol=1e-12)


def _batching_strategies() -> list[str]:
    names = [n for n in available() if "batching" in vars(get_strategy(n).default_config)]
    assert {"maml", "fomaml", "metasgd", "anil", "reptile", "protonet"} <= set(names)
    return names


@pytest.mark.parametrize("name", _batching_strategies())
def test_vmap_path_equals_loop_with_batchnorm(name: str) -> None:
    net, batch = tiny_conv(), image_batch(tasks=3)
    default = get_strategy(name).default_config
    extra = {"inner_steps": 2} if "inner_steps" in vars(default) else {}
    params = build(name, net, extra).init_params(0)
    grads = {}
    for batching in ("loop", "vmap"):
        grads[batching], _ = build(name, net, {**extra, "batching": batching}).meta_grads(
            params, batch
        )
        # BatchNorm subtracts the batch mean, so a conv bias feeding it cannot matter: its true
        # meta-gradient is exactly 0. A wrong vmapped BatchNorm backward makes it non-zero.
        for k in conv_biases(params):
            assert grads[batching][k].abs().max() < 1e-8, (batching, k)
    assert rel_error(grads["vmap"], grads["loop"]) < 1e-5


def test_bias_check_catches_stock_batchnorm_under_vmap() -> None:
    # The flaw of vmapped MAML examples that keep nn.BatchNorm2d: the second-order
    # meta-gradient is wrong under vmap. The checks above must be able to see it.
    net, batch = tiny_conv(), image_batch(tasks=3)
    for block in net.features.blocks:  # type: ignore[union-attr]
        block.norm = nn.BatchNorm2d(3, track_running_stats=False, dtype=torch.float64)
    settings = {"inner_steps": 2}
    params = build("maml", net, settings).init_params(0)
    loop, _ = build("maml", net, {**settings, "batching": "loop"}).meta_grads(params, batch)
    vmapped, _ = build("maml", net, {**settings, "batching": "vmap"}).meta_grads(params, batch)
    bias_error = max(float(vmapped[k].abs().max()) for k in conv_biases(params))
    if bias_error < 1e-8 and rel_error(vmapped, loop) < 1e-5:
        pytest.skip("stock BatchNorm is now correct under vmap in this PyTorch")
    assert max(float(loop[k].abs().max()) for k in conv_biases(params)) < 1e-8
    assert bias_error > 1e-8


def test_fomaml_gradient_is_query_gradient_at_adapted_params() -> None:
    net, batch = tiny_conv(), image_batch(tasks=3)
    params = build("fomaml", net).init_params(0)
    lr, steps = 0.4, 2
    expected = {k: torch.zeros_like(v) for k, v in params.items()}
    for t in range(batch.num_tasks):
        fast = dict(params)
        for _ in range(steps):
            p = leaves(fast)
            loss = F.cross_entropy(ref_forward(p, batch.support_x[t]), batch.support_y[t])
            g = torch.autograd.grad(loss, list(p.values()))
            fast = {k: v - lr * gk for (k, v), gk in zip(fast.items(), g, strict=True)}
        p = leaves(fast)
        loss = F.cross_entropy(ref_forward(p, batch.query_x[t]), batch.query_y[t])
        for k, g in zip(p, torch.autograd.grad(loss, list(p.values())), strict=True):
            expected[k] += g / batch.num_tasks
    settings = {"inner_lr": lr, "inner_steps": steps}
    for batching in ("loop", "vmap"):
        fomaml = build("fomaml", net, {**settings, "batching": batching})
        grads, _ = fomaml.meta_grads(params, batch)
        assert rel_error(grads, expected) < 1e-10, batching
    second_order, _ = build("maml", net, settings).meta_grads(params, batch)
    # The dropped term −α H_s ∇L_q is not small on a non-linear net.
    assert rel_error(grads, second_order) > 1e-3
