"""ResNet-12 and DropBlock: shapes, tasks, the second-order meta-gradient, the drop masks.

The reference ResNet-12 below is written from the papers' description with stock
``torch.nn.functional`` calls (conv2d, batch_norm with batch statistics, leaky_relu,
max_pool2d after the ReLU, as RFS and MetaOptNet order them), independently of
``metalearner.nn.resnet12``; the reference inner loop uses ``torch.autograd.grad``.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from metalearner.errors import ConfigError
from metalearner.nn.backbones import build_model
from metalearner.nn.dropblock import block_mask, drop_block, drop_blocks, drop_units
from metalearner.nn.layers import normalise_with, per_task_kernels
from metalearner.nn.resnet12 import resnet12_features
from metalearner.runs.checkpoint import load_checkpoint
from metalearner.strategies import build
from metalearner.tasks import LabeledSet
from metalearner.tasks.batch import TaskBatch
from metalearner.tasks.minibatches import DROP_SEED, LabeledBatches
from metalearner.testing import image_batch, rel_error

sys.path.insert(0, str(Path(__file__).parent))
from cli_runner import run_cli
from image_classes import FOLDER_RUN, write_class

Params = dict[str, Tensor]


def tiny(in_channels: int = 1) -> torch.nn.Module:
    """3-way ResNet-12 of width 2 (2-5-10-20 channels) on 16x16 images, in float64."""
    shape = (in_channels, 16, 16)
    return build_model("resnet12", shape, 3, generator=0, dtype=torch.float64, width=2)


def test_default_widths_give_640_features_at_84x84() -> None:
    # The full network is built on the meta device (no memory, no time) and run at width 4: the
    # same pooling arithmetic, 84 -> 42 -> 21 -> 10 -> 5, then the average over the 5x5 map.
    with torch.device("meta"):
        body = resnet12_features(3, (84, 84))
    assert body.feature_dim == 640
    small = build_model("resnet12", (3, 84, 84), 5, generator=0, width=4)
    assert small.features(torch.rand(2, 5, 3, 84, 84)).shape == (2, 5, 40)
    convs = [m.weight.shape for m in body.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [s[0] for s in convs] == [64] * 4 + [160] * 4 + [320] * 4 + [640] * 4
    assert {s[-1] for s in convs} == {1, 3}  # 3x3 convolutions and the 1x1 shortcuts
    assert [b.block_size for b in body.blocks] == [None, None, 5, 5]  # DropBlock in the last two
    with torch.device("meta"):
        assert [b.block_size for b in resnet12_features(3, (32, 32)).blocks][2:] == [2, 2]


def test_bad_settings_are_one_sentence() -> None:
    with pytest.raises(ConfigError, match="too small"):
        build_model("resnet12", (3, 15, 15), 5)
    with pytest.raises(ConfigError, match="no option 'depth'"):
        build_model("resnet12", (3, 84, 84), 5, depth=4)
    with pytest.raises(ConfigError, match="3 dimension"):
        build_model("resnet12", (64,), 5)


def test_conv4_runs_on_84x84_rgb() -> None:
    net = build_model("conv4", (3, 84, 84), 5, generator=0, width=4)
    assert net(torch.zeros(2, 5, 3, 84, 84)).shape == (2, 5, 5) and net.feature_dim == 4 * 25


def test_tasks_dimension_equals_per_task_calls_in_both_norm_modes() -> None:
    net = tiny(3)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 6, 3, 16, 16, generator=g, dtype=torch.float64)
    ref = x[:, :2]
    together = net(x)
    alone = torch.stack([net(x[t]) for t in range(2)])
    assert torch.allclose(together, alone, atol=1e-12)
    with per_task_kernels():  # fused BatchNorm, channels-last: the same function
        assert torch.allclose(net(x[1]), alone[1], atol=1e-12)
    inductive = normalise_with(net, ref, x, dim=1)
    each = torch.stack(
        [normalise_with(net, ref[t], x[t, i : i + 1]) for t in range(2) for i in range(6)]
    ).view(2, 6, -1)
    assert torch.allclose(inductive, each, atol=1e-10)
    assert not torch.allclose(inductive, together, atol=1e-3)  # the mode matters


def ref_block(p: Params, pre: str, x: Tensor) -> Tensor:
    def cbn(h: Tensor, conv: str, norm: str, pad: int) -> Tensor:
        h = F.conv2d(h, p[pre + conv + ".weight"], padding=pad)
        w, b = p[pre + norm + ".weight"], p[pre + norm + ".bias"]
        return F.batch_norm(h, None, None, w, b, True)

    h = F.leaky_relu(cbn(x, "conv1", "norm1", 1), 0.1)
    h = F.leaky_relu(cbn(h, "conv2", "norm2", 1), 0.1)
    h = cbn(h, "conv3", "norm3", 1) + cbn(x, "shortcut", "shortcut_norm", 0)
    return F.max_pool2d(F.leaky_relu(h, 0.1), 2)


def ref_forward(p: Params, x: Tensor) -> Tensor:
    for i in range(4):
        x = ref_block(p, f"features.blocks.{i}.", x)
    return F.linear(x.mean((2, 3)), p["head.weight"], p["head.bias"])


def ref_objective(p: Params, sx: Tensor, sy: Tensor, qx: Tensor, qy: Tensor) -> Tensor:
    """Mean query loss after 2 inner SGD steps (lr 0.3) per task, second-order graph kept."""
    total = torch.zeros((), dtype=torch.float64)
    for t in range(len(sx)):
        fast = dict(p)
        for _ in range(2):
            loss = F.cross_entropy(ref_forward(fast, sx[t]), sy[t])
            grads = torch.autograd.grad(loss, list(fast.values()), create_graph=True)
            fast = {k: v - 0.3 * g for (k, v), g in zip(fast.items(), grads, strict=True)}
        total = total + F.cross_entropy(ref_forward(fast, qx[t]), qy[t])
    return total / len(sx)


def test_maml_meta_gradient_matches_finite_differences() -> None:
    net = tiny()
    batch = image_batch(tasks=2, ways=3, shots=1, queries=2, size=16)
    params = build("maml", net).init_params(0)
    args = batch.support_x, batch.support_y, batch.query_x, batch.query_y
    leaves = {k: v.detach().clone().requires_grad_() for k, v in params.items()}
    value = ref_objective(leaves, *args)
    autograd = dict(zip(leaves, torch.autograd.grad(value, list(leaves.values())), strict=True))

    def f(p: Params) -> float:
        with torch.enable_grad():
            leaf = {k: v.detach().clone().requires_grad_() for k, v in p.items()}
            return float(ref_objective(leaf, *args).detach())

    # ~12,000 parameters: central differences along random unit directions, and for one
    # coordinate of every parameter tensor. A step of 1e-6 in float64 leaves ~1e-9 of rounding
    # and keeps clear of the kinks of leaky ReLU and max-pooling (larger ones meet some).
    g, h = torch.Generator().manual_seed(1), 1e-6
    for _ in range(3):
        d = {k: torch.randn(v.shape, generator=g, dtype=v.dtype) for k, v in params.items()}
        norm = sum(float(v.square().sum()) for v in d.values()) ** 0.5
        d = {k: v / norm for k, v in d.items()}
        plus = f({k: v + h * d[k] for k, v in params.items()})
        minus = f({k: v - h * d[k] for k, v in params.items()})
        along = sum(float((autograd[k] * d[k]).sum()) for k in params)
        assert abs((plus - minus) / (2 * h) - along) < 1e-6 * abs(along)
    # One coordinate of a few tensors (the first conv and BatchNorm, the last shortcut, the head):
    # the directions above already cover every parameter.
    names = list(params)
    for k in (names[0], names[1], names[-3], names[-1]):
        v = params[k]
        i = int(torch.randint(v.numel(), (1,), generator=g))
        e = torch.zeros(v.numel(), dtype=v.dtype)
        e[i] = h
        fd = (f({**params, k: v + e.view_as(v)}) - f({**params, k: v - e.view_as(v)})) / (2 * h)
        assert abs(fd - float(autograd[k].flatten()[i])) < 1e-7 + 1e-5 * abs(fd), k
    for batching in ("loop", "vmap"):
        grads, _ = build(
            "maml", net, {"inner_lr": 0.3, "inner_steps": 2, "batching": batching}
        ).meta_grads(params, batch)
        assert rel_error(grads, autograd) < 1e-10, batching


@pytest.mark.parametrize("name", ["protonet", "reptile", "finetune"])
def test_other_strategies_run_through_it(name: str) -> None:
    net = tiny()
    batch = image_batch(tasks=2, ways=3, shots=1, queries=2, size=16)
    extra = {"num_classes": 3} if name == "finetune" else {}
    strategy = build(name, net, extra)
    params = strategy.init_params(0)
    grads, _ = strategy.meta_grads(params, batch)
    assert all(torch.isfinite(v).all() for v in grads.values())
    assert any(float(v.abs().max()) > 0 for k, v in grads.items() if k.startswith("features."))
    predict = strategy.adapt(params, batch.support_x[0], batch.support_y[0])
    assert predict(batch.query_x[0]).shape == (6, 3)


def test_transfer_pretraining_drops_blocks_by_the_mini_batch_seed() -> None:
    # RFS regularises its pretraining with DropBlock: a mini-batch's seed (from the run's seed
    # and the batch number) fixes what is dropped, so the same batch gives the same gradient
    # (a resumed run) and another batch's seed another; drop_rate 0 drops nothing.
    g = torch.Generator().manual_seed(0)
    data = LabeledSet(
        torch.randint(0, 256, (12, 3, 16, 16), generator=g, dtype=torch.uint8),
        torch.arange(3).repeat_interleave(4),
        ("a", "b", "c"),
    )
    batches = LabeledBatches(data, torch.arange(3), seed=0, augment=False)
    first, again = batches.batch(0, 6), LabeledBatches(data, torch.arange(3), seed=0).batch(0, 6)
    assert torch.equal(first.info[DROP_SEED], again.info[DROP_SEED])
    other = dataclasses.replace(first, info=batches.batch(1, 6).info)  # same images, new seed

    def grads(rate: float, batch: TaskBatch) -> Tensor:
        net = build_model("resnet12", (3, 16, 16), 3, generator=0, width=2)
        strategy = build("finetune", net, {"num_classes": 3, "drop_rate": rate})
        out, _ = strategy.meta_grads(strategy.init_params(0), batch)
        return torch.cat([v.flatten() for v in out.values()])

    assert torch.equal(grads(0.3, first), grads(0.3, first))
    assert not torch.allclose(grads(0.3, first), grads(0.3, other))
    assert torch.equal(grads(0.0, first), grads(0.0, other))
    assert not torch.allclose(grads(0.3, first), grads(0.0, first))


def test_drop_layers_are_the_identity_outside_their_context() -> None:
    x = torch.randn(4, 3, 10, 10)
    assert drop_block(x, 3) is x and drop_units(x) is x
    net = tiny()
    images = torch.randn(6, 1, 16, 16, dtype=torch.float64)
    plain = net(images)
    with drop_blocks(torch.Generator().manual_seed(0), 0.0):  # rate 0: nothing dropped
        assert torch.equal(net(images), plain)
    with drop_blocks(None, 0.5):  # no generator (a batch without a seed): nothing dropped
        assert torch.equal(net(images), plain)
    with pytest.raises(ConfigError, match="outside"), drop_blocks(torch.Generator(), 1.0):
        pass


def test_inside_the_context_the_network_drops_reproducibly() -> None:
    net = tiny(3)
    x = torch.randn(6, 3, 16, 16, dtype=torch.float64)
    plain = net(x)

    def dropped(seed: int) -> Tensor:
        with drop_blocks(torch.Generator().manual_seed(seed), 0.3):
            return net(x)

    assert torch.equal(dropped(5), dropped(5))
    assert not torch.allclose(dropped(5), dropped(6)) and not torch.allclose(dropped(5), plain)
    assert torch.equal(net(x), plain)  # and nothing stays behind


def test_dropblock_drops_whole_squares_at_the_expected_rate() -> None:
    h, b, rate = 10, 3, 0.1
    x = torch.ones(500, 8, h, h, dtype=torch.float64)
    mask = block_mask(x, b, rate, torch.Generator().manual_seed(0))
    dropped = 1 - mask
    # Every dropped unit lies in a b x b square that is dropped whole: opening the dropped set
    # by the square (erode, then dilate) gives it back.
    whole = -F.max_pool2d(-dropped.flatten(0, 1)[:, None], b, stride=1)
    opened = F.max_pool2d(F.pad(whole, (b - 1,) * 4), b, stride=1)
    assert torch.equal(opened.view_as(dropped), dropped)
    # Seeds at the (h-b+1)^2 positions where a square fits, each with probability γ: a unit
    # covered by c of them survives with probability (1-γ)^c.
    gamma = rate / b**2 * h**2 / (h - b + 1) ** 2
    cover = [min(i, h - b) - max(0, i - b + 1) + 1 for i in range(h)]
    expected = sum(1 - (1 - gamma) ** (ci * cj) for ci in cover for cj in cover) / h**2
    assert abs(float(dropped.mean()) - expected) < 0.006 and 0.08 < expected < 0.1
    with drop_blocks(torch.Generator().manual_seed(0), rate):
        out = drop_block(x, b)
    assert torch.equal(out == 0, mask == 0) and abs(float(out.mean()) - 1) < 1e-12
    # A square larger than the map covers it whole: a channel is kept or dropped entirely.
    big = block_mask(torch.ones(200, 4, 3, 3), 5, 0.5, torch.Generator().manual_seed(1))
    per_map = big.flatten(2)
    assert torch.equal(per_map.amin(-1), per_map.amax(-1)) and 0.35 < float(big.mean()) < 0.65


def test_dropout_rate_and_scale() -> None:
    x = torch.ones(200_000, dtype=torch.float64)
    with drop_blocks(torch.Generator().manual_seed(0), 0.2):
        out = drop_units(x)
    assert abs(float((out == 0).double().mean()) - 0.2) < 0.005
    assert torch.allclose(out[out != 0], torch.tensor(1.25, dtype=torch.float64))


@pytest.mark.slow  # ~6 s: a subprocess importing torch
def test_train_command_runs_resnet12(tmp_path: Path) -> None:
    data = tmp_path / "images"
    for c in range(12):
        write_class(data / f"c{c:02d}", c, 3)
    settings = [
        *FOLDER_RUN,
        "model.width=2",
        "data.image_size=16",
        f"data.path={data}",
        "steps=2",
        "val_tasks=2",
        "val_every=2",
        "meta_batch=2",
        "threads=1",
    ]
    (tmp_path / "run.yaml").write_text("data:\n  dataset: folder\nmodel:\n  name: resnet12\n")
    result = run_cli(
        "train",
        "run.yaml",
        "-q",
        "--out",
        "run",
        *(f"--set={s}" for s in settings),
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    meta = load_checkpoint(tmp_path / "run/checkpoints/latest").meta
    assert meta["backbone"] == {"name": "resnet12", "out_features": 3, "width": 2}
    assert meta["input_shape"][1:] == [16, 16]
