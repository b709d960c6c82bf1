"""The functional core and the backbones: pure inner loop, losses, shapes, per-task BatchNorm."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from metalearner import functional as fx
from metalearner.errors import ConfigError
from metalearner.nn.backbones import build_model, init_params
from metalearner.nn.layers import per_task_kernels
from metalearner.testing import image_batch, tiny_conv


def test_params_of_returns_detached_copies() -> None:
    net = tiny_conv()
    params = fx.params_of(net)
    assert list(params) == [k for k, _ in net.named_parameters()]
    assert all(k.startswith(("features.", "head.")) for k in params)
    assert not any(v.requires_grad for v in params.values())
    params["head.bias"].add_(1.0)
    assert not torch.equal(params["head.bias"], net.head.bias)
    assert fx.buffers_of(net) == {}  # no running statistics, ever


def test_task_loss_classification_and_regression() -> None:
    logits = torch.randn(2, 4, 3, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([[0, 1, 2, 0], [2, 2, 1, 0]])
    expected = F.cross_entropy(logits.reshape(8, 3), labels.reshape(8))
    assert torch.allclose(fx.task_loss(logits, labels), expected)
    out, target = torch.arange(6.0).view(2, 3, 1), torch.ones(2, 3)
    # [T, S, 1] outputs are squeezed to [T, S]; without it MSE would broadcast to [T, S, S].
    assert torch.allclose(fx.task_loss(out, target), ((out[..., 0] - 1) ** 2).mean())
    with pytest.raises(ValueError, match="does not match"):
        fx.task_loss(torch.zeros(2, 3, 2), target)


def context(per_task: bool) -> AbstractContextManager[None]:
    """Per-task code takes inner gradients with torch.autograd; other code with torch.func."""
    return per_task_kernels() if per_task else nullcontext()


@pytest.mark.parametrize("per_task", [False, True])
def test_adapt_equals_manual_sgd_and_is_pure(per_task: bool) -> None:
    net, batch = tiny_conv(), image_batch()
    fn, params = fx.functional(net), fx.params_of(net)
    before = {k: v.clone() for k, v in params.items()}
    module_before = {k: v.detach().clone() for k, v in net.named_parameters()}
    sx, sy = batch.support_x[0], batch.support_y[0]
    with context(per_task):
        fast = fx.adapt(fn, params, sx, sy, steps=3, lr=0.2)
    manual = {k: v.clone().requires_grad_() for k, v in params.items()}
    for _ in range(3):
        loss = F.cross_entropy(net_forward(net, manual, sx), sy)
        grads = torch.autograd.grad(loss, list(manual.values()))
        manual = {
            k: (v - 0.2 * g).detach().requires_grad_()
            for (k, v), g in zip(manual.items(), grads, strict=True)
        }
    for k in params:
        assert torch.allclose(fast[k], manual[k], rtol=1e-12, atol=1e-12), k
        assert torch.equal(params[k], before[k])  # the input dict is untouched
        assert torch.equal(dict(net.named_parameters())[k].detach(), module_before[k])
    assert fx.adapt(fn, params, sx, sy, steps=0, lr=0.2) == params


def net_forward(net: torch.nn.Module, params: dict[str, Tensor], x: Tensor) -> Tensor:
    return fx.functional(net)(params, x)


def test_adapt_per_parameter_lr_and_trainable_subset() -> None:
    net, batch = tiny_conv(), image_batch()
    fn, params = fx.functional(net), fx.params_of(net)
    sx, sy = batch.support_x[0], batch.support_y[0]
    lrs = {k: torch.full_like(v, 0.1 * (i + 1)) for i, (k, v) in enumerate(params.items())}
    fast = fx.adapt(fn, params, sx, sy, steps=1, lr=lrs)
    p = {k: v.clone().requires_grad_() for k, v in params.items()}
    grads = torch.autograd.grad(F.cross_entropy(fn(p, sx), sy), list(p.values()))
    for (k, v), g in zip(params.items(), grads, strict=True):
        assert torch.allclose(fast[k], v - lrs[k] * g, rtol=1e-12, atol=1e-14)
    head = [k for k in params if k.startswith("head.")]
    fast = fx.adapt(fn, params, sx, sy, steps=2, lr=0.5, trainable=head)
    assert all(fast[k] is params[k] for k in params if k not in head)
    assert all(not torch.equal(fast[k], params[k]) for k in head)


@pytest.mark.parametrize("per_task", [False, True])
def test_adapt_first_order_keeps_only_the_identity_path(per_task: bool) -> None:
    net, batch = tiny_conv(), image_batch()
    fn = fx.functional(net)
    params = {k: v.requires_grad_() for k, v in fx.params_of(net).items()}
    sx, sy = batch.support_x[0], batch.support_y[0]
    with context(per_task):
        fast = fx.adapt(fn, params, sx, sy, steps=2, lr=0.3, first_order=True)
        second = fx.adapt(fn, params, sx, sy, steps=2, lr=0.3)
    # φ = θ − α·const: dΣφ/dθ is exactly one everywhere.
    grads = torch.autograd.grad(sum(v.sum() for v in fast.values()), list(params.values()))
    assert all(torch.equal(g, torch.ones_like(g)) for g in grads)
    grads = torch.autograd.grad(sum(v.sum() for v in second.values()), list(params.values()))
    assert any(not torch.equal(g, torch.ones_like(g)) for g in grads)


@pytest.mark.parametrize("head_only", [False, True])
def test_per_task_inner_gradients_equal_torch_funcs_to_second_order(head_only: bool) -> None:
    """torch.autograd in per-task code, torch.func elsewhere: one meta-gradient (float64).

    With the head alone adapted (ANIL), the frozen backbone still gets its outer gradient; a
    parameter the network never reads gets a zero inner gradient and stays as it was.
    """
    net, batch = tiny_conv(), image_batch()
    model = fx.functional(net)

    def fn(p: dict[str, Tensor], x: Tensor) -> Tensor:
        return model({k: v for k, v in p.items() if k != "unused"}, x)

    base = {**fx.params_of(net), "unused": torch.ones(3, dtype=torch.float64)}
    trainable = [k for k in base if k.startswith("head.") or k == "unused"] if head_only else None
    sx, sy, qx, qy = batch.support_x[0], batch.support_y[0], batch.query_x[0], batch.query_y[0]
    results = []
    for per_task in (False, True):
        params = {k: v.clone().requires_grad_() for k, v in base.items()}
        with context(per_task):
            fast = fx.adapt(fn, params, sx, sy, steps=2, lr=0.3, trainable=trainable)
            query = F.cross_entropy(fn(fast, qx), qy)
        assert torch.equal(fast["unused"], base["unused"])
        results.append(torch.autograd.grad(query, list(params.values()), allow_unused=True))
    for k, a, b in zip(base, *results, strict=True):
        if k == "unused":
            assert a is None and b is None
            continue
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12), k
        assert a.abs().max() > 0 or k.endswith("conv.bias"), k  # BatchNorm cancels conv biases


def test_adapt_rejects_unknown_names() -> None:
    net, batch = tiny_conv(), image_batch()
    fn, params = fx.functional(net), fx.params_of(net)
    sx, sy = batch.support_x[0], batch.support_y[0]
    with pytest.raises(ConfigError, match="unknown parameter 'nope'"):
        fx.adapt(fn, params, sx, sy, steps=1, lr=0.1, trainable=["nope"])
    with pytest.raises(ConfigError, match="No inner learning rate"):
        fx.adapt(fn, params, sx, sy, steps=1, lr={"head.bias": torch.tensor(0.1)})


@pytest.mark.parametrize(("shape", "features"), [((1, 28, 28), 64), ((3, 84, 84), 1600)])
def test_conv4_feature_sizes(shape: tuple[int, int, int], features: int) -> None:
    net = build_model("conv4", shape, 5, generator=0)
    assert net.feature_dim == features
    x = torch.zeros(2, 3, *shape)  # [T, S, C, H, W]
    assert net.features(x).shape == (2, 3, features)
    assert net(x[0]).shape == (3, 5)


def test_mlp_is_the_sinusoid_network() -> None:
    net = build_model("mlp", (1,), 1, generator=0)
    shapes = {k: tuple(v.shape) for k, v in net.named_parameters()}
    assert shapes == {
        "features.0.weight": (40, 1), "features.0.bias": (40,),
        "features.2.weight": (40, 40), "features.2.bias": (40,),
        "head.weight": (1, 40), "head.bias": (1,),
    }  # fmt: skip
    assert net(torch.zeros(4, 10, 1)).shape == (4, 10, 1)


@pytest.mark.parametrize(
    ("args", "options", "message"),
    [
        (("resnet", (1, 28, 28), 5), {}, "Unknown model"),
        (("conv4", (1, 8, 8), 5), {}, "too small"),
        (("conv4", (28, 28), 5), {}, "3 dimension"),
        (("mlp", (1,), 0), {}, "at least one output"),
        (("mlp", (1,), 1), {"width": 3}, "no option 'width'"),
    ],
)
def test_build_model_validation(args: tuple, options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_model(*args, **options)


def test_initialisation_is_seeded_and_leaves_the_global_rng_alone() -> None:
    state = torch.random.get_rng_state()
    a = build_model("conv4", (1, 28, 28), 5, generator=3)
    b = build_model("conv4", (1, 28, 28), 5, generator=torch.Generator().manual_seed(3))
    fresh = init_params(a, generator=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    for k, v in a.named_parameters():
        assert torch.equal(v, dict(b.named_parameters())[k])
        assert torch.equal(v, fresh[k])
    other = build_model("conv4", (1, 28, 28), 5, generator=4)
    assert not torch.equal(a.head.weight, other.head.weight)


def test_batchnorm_uses_each_tasks_statistics() -> None:
    net, batch = tiny_conv(), image_batch(tasks=3)
    fn, params = fx.functional(net), fx.params_of(net)
    x = batch.query_x  # [T, S, C, H, W]
    together = fn(params, x)
    one_by_one = torch.stack([fn(params, x[t]) for t in range(3)])
    assert torch.allclose(together, one_by_one, rtol=1e-12, atol=1e-12)
    with per_task_kernels():
        assert torch.allclose(fn(params, x[0]), one_by_one[0], rtol=1e-12, atol=1e-12)
    # Shifting one task's inputs must not change another task's outputs (no shared statistics).
    shifted = x.clone()
    shifted[1] = shifted[1] * 3 + 1
    assert torch.equal(fn(params, shifted)[0], together[0])


@pytest.mark.parametrize("channels", [1, 3])
def test_per_task_kernels_run_conv4_channels_last_with_the_same_function(channels: int) -> None:
    net = build_model("conv4", (channels, 28, 28), 5, generator=0, dtype=torch.float64)
    fn, params = fx.functional(net), fx.params_of(net)
    x = torch.randn(
        6, channels, 28, 28, dtype=torch.float64, generator=torch.Generator().manual_seed(3)
    )
    layouts: list[bool] = []
    for block in list(net.features.blocks)[:3]:  # type: ignore[union-attr]  # the 4th is 1x1
        block.register_forward_hook(lambda _m, _i, out: layouts.append(out.stride(1) == 1))

    def loss_and_grads(p: dict[str, Tensor]) -> tuple[Tensor, ...]:
        leaves = {k: v.clone().requires_grad_() for k, v in p.items()}
        loss = fn(leaves, x).square().sum()
        return (loss, *torch.autograd.grad(loss, list(leaves.values())))

    default = loss_and_grads(params)
    assert layouts == [False] * 3  # outside the context: PyTorch's default layout
    layouts.clear()
    with per_task_kernels():
        fast = loss_and_grads(params)
    assert layouts == [True] * 3  # every block's activations channels-last
    for a, b in zip(fast, default, strict=True):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)


def test_task_batchnorm_equals_stock_batch_statistics() -> None:
    net = tiny_conv()
    norm = net.features.blocks[0].norm  # type: ignore[index]
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5, generator=torch.Generator().manual_seed(1))
    x = torch.randn(5, 3, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    stock = F.batch_norm(x, None, None, norm.weight, norm.bias, training=True, eps=norm.eps)
    assert torch.allclose(norm(x), stock, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("chunk_size", [None, 2])
def test_map_tasks_vmap_equals_loop(chunk_size: int | None) -> None:
    net, batch = tiny_conv(), image_batch(tasks=3)
    fn, params = fx.functional(net), fx.params_of(net)

    def task(p: dict[str, Tensor], sx: Tensor, sy: Tensor) -> tuple[Tensor, ...]:
        fast = fx.adapt(fn, p, sx, sy, steps=2, lr=0.3)
        out = fn(fast, sx)
        return fx.task_loss(out, sy), out

    inputs = [batch.support_x, batch.support_y]
    loop = fx.map_tasks(task, params, inputs, vectorize=False)
    vmapped = fx.map_tasks(task, params, inputs, vectorize=True, chunk_size=chunk_size)
    assert loop[0].shape == (3,) and loop[1].shape == (3, 6, 3)
    for a, b in zip(loop, vmapped, strict=True):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)


def test_meta_gradient_gives_zeros_for_unused_and_no_grad_to_the_caller() -> None:
    params = {"w": torch.tensor([1.0, 2.0]), "unused": torch.ones(3)}

    def objective(p: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        return (p["w"] ** 2).sum(), {"norm": p["w"].norm()}

    with torch.no_grad():
        grads, metrics = fx.meta_gradient(objective, params)
    assert torch.equal(grads["w"], torch.tensor([2.0, 4.0]))
    assert torch.equal(grads["unused"], torch.zeros(3))
    assert metrics == {"loss": 5.0, "norm": pytest.approx(5**0.5)}
    assert params["w"].grad is None and not params["w"].requires_grad


def test_summed_meta_gradient_is_the_mean_objectives_with_zeros_for_unused_and_integers() -> None:
    # The per-task loop adds each objective's gradient into one set of leaves during backward;
    # a parameter no objective uses, and an integer entry (no gradient), get zeros.
    params = {"w": torch.tensor([1.0, 2.0]), "unused": torch.ones(3), "count": torch.tensor([4])}

    def objective(scale: float) -> Callable[[dict[str, Tensor]], tuple[Tensor, dict]]:
        def f(p: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
            return scale * (p["w"] ** 2).sum(), {"first": scale * p["w"][0]}

        return f

    grads, metrics = fx.summed_meta_gradient([objective(1.0), objective(3.0)], params)
    assert torch.equal(grads["w"], torch.tensor([4.0, 8.0]))  # mean of 1x and 3x of 2w
    assert torch.equal(grads["unused"], torch.zeros(3))
    assert torch.equal(grads["count"], torch.zeros(1, dtype=torch.int64))
    assert float(metrics["loss"]) == 10.0 and float(metrics["first"]) == 2.0
    assert params["w"].grad is None and not params["w"].requires_grad
