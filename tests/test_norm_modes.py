"""BatchNorm's two modes: transductive (the papers' protocol) and inductive (the support's).

In inductive mode a prediction for an item depends on the task's support set and on the item
alone: predicting ``x[i : i + 1]`` gives row ``i`` of predicting ``x``, through every
strategy's ``adapt`` and through ``predict_tasks`` (the user's ``Learner``:
tests/test_norm_modes_use.py); in transductive mode the two differ, which shows that the checks
can fail. Meta-gradients in inductive mode are checked against a reference written with stock
``torch.nn.functional`` calls, its support set run through the network on its own and its
statistics taken by ``torch.var_mean``, differentiated by plain autograd in float64.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import vmap

from metalearner.errors import ConfigError
from metalearner.nn.layers import (
    NORM_MODES,
    NormMode,
    TaskBatchNorm2d,
    normalise_with,
    per_task_kernels,
    reference_statistics,
)
from metalearner.runs.config import load_config
from metalearner.runs.devices import threads
from metalearner.strategies import LR_PREFIX, Strategy, available, build, get_strategy
from metalearner.tasks import TaskBatch
from metalearner.testing import image_batch, rel_error, tiny_conv
from metalearner.testing.toys import TOY_SETTINGS

Params = dict[str, Tensor]
CLASSIFIERS = [n for n in available() if "classification" in get_strategy(n).task_kinds]


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with threads(1):  # tiny models: one thread is fastest on a busy machine
        yield


def strategy(name: str, norm: NormMode, **extra: Any) -> Strategy:
    """``name`` on the tiny conv4 (BatchNorm in two blocks), in BatchNorm mode ``norm``."""
    settings = {**TOY_SETTINGS.get(name, {}), **extra}
    return build(name, tiny_conv(), settings, norm=norm)


def batching(name: str) -> list[dict[str, str]]:
    """Each batching path of a strategy that has several, else its only one."""
    if "batching" not in vars(get_strategy(name).default_config):
        return [{}]
    return [{"batching": "loop"}, {"batching": "vmap"}]


def one_by_one(predict: Any, x: Tensor) -> Tensor:
    return torch.cat([predict(x[i : i + 1]) for i in range(len(x))])


# ------------------------------------------------------------------ the layer


def normalised(x: Tensor, reference: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """BatchNorm of ``x`` [S, C, H, W] with ``reference``'s statistics, by torch.var_mean."""
    var, mean = torch.var_mean(reference, dim=(0, 2, 3), unbiased=False)
    scale = weight / torch.sqrt(var + 1e-5)
    return (x - mean[:, None, None]) * scale[:, None, None] + bias[:, None, None]


def test_the_layer_normalises_every_item_with_the_reference_in_every_path() -> None:
    g = torch.Generator().manual_seed(0)
    norm = TaskBatchNorm2d(3).double()
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5, generator=g)
        norm.bias.uniform_(-1, 1, generator=g)
    tasks = torch.randn(2, 7, 3, 4, 4, generator=g, dtype=torch.float64)
    expected = torch.stack([normalised(t, t[:3], norm.weight, norm.bias) for t in tasks])
    with reference_statistics(3):
        assert torch.allclose(norm(tasks), expected, atol=1e-12)  # [T, S, ...] at once
        assert torch.allclose(vmap(norm)(tasks), expected, atol=1e-12)
        with per_task_kernels():  # the path of the fused kernels, transductive only
            assert torch.allclose(norm(tasks[0]), expected[0], atol=1e-12)
    # The reference normalised alone by stock BatchNorm is the first rows: its own statistics.
    stock = F.batch_norm(tasks[0, :3], None, None, norm.weight, norm.bias, True)
    assert torch.allclose(expected[0, :3], stock, atol=1e-12)
    assert not torch.allclose(norm(tasks), expected)  # outside the context: the batch's own


def test_normalise_with_keeps_the_outputs_of_the_items_alone() -> None:
    net, batch = tiny_conv(), image_batch(tasks=2, queries=3)
    sx, qx = batch.support_x, batch.query_x
    together = normalise_with(net, sx[0], qx[0])
    assert torch.allclose(one_by_one(lambda x: normalise_with(net, sx[0], x), qx[0]), together)
    tasks = normalise_with(net, sx, qx, dim=1)  # [T, S, ...]: each task's own support
    assert torch.allclose(tasks[0], together) and tasks.shape == (2, 9, 3)
    assert torch.equal(normalise_with(net, None, qx[0]), net(qx[0]))  # transductive: as it was


# ------------------------------------------------------------------ predictions


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_an_item_predicted_alone_is_predicted_as_among_all_only_in_inductive_mode(
    name: str,
) -> None:
    batch = image_batch(tasks=1, queries=3)
    sx, sy, qx = batch.support_x[0], batch.support_y[0], batch.query_x[0]
    gaps = {}
    for norm in NORM_MODES:
        s = strategy(name, norm)
        predict = s.adapt(s.init_params(0), sx, sy, steps=2)
        gaps[norm] = float((one_by_one(predict, qx) - predict(qx)).abs().max())
    assert gaps["inductive"] < 1e-10
    assert gaps["transductive"] > 1e-3  # the check can fail: one item is its own batch


@pytest.mark.parametrize(
    ("name", "paths"), [(n, p) for n in CLASSIFIERS for p in batching(n)], ids=str
)
def test_predict_tasks_scores_an_item_alone_as_among_all_in_inductive_mode(
    name: str, paths: dict[str, str]
) -> None:
    batch = image_batch(tasks=2, queries=2)
    q = batch.query_x.shape[1]
    # Each query item a task of its own, with its task's support set: [T·Q] tasks of 1 query.
    alone = TaskBatch(
        batch.support_x.repeat_interleave(q, 0),
        batch.support_y.repeat_interleave(q, 0),
        batch.query_x.flatten(0, 1)[:, None],
        batch.query_y.flatten(0, 1)[:, None],
    )
    gaps = {}
    for norm in NORM_MODES:
        s = strategy(name, norm, **paths)
        params = s.init_params(0)
        together = s.predict_tasks(params, batch, steps=[0, 2])  # [P, T, Q, N]
        single = s.predict_tasks(params, alone, steps=[0, 2])  # [P, T·Q, 1, N]
        gaps[norm] = float((single[:, :, 0] - together.flatten(1, 2)).abs().max())
        if norm == "inductive":  # the batched path is the per-task reference's
            s_x, s_y, q_x = batch.support_x[1], batch.support_y[1], batch.query_x[1]
            reference = s.adapt(params, s_x, s_y, steps=2)(q_x)
            assert torch.allclose(together[-1, 1], reference, atol=1e-6)
    assert gaps["inductive"] < 1e-6  # float64 rounding, grown by a head's training steps
    assert gaps["transductive"] > 1e-3


# ------------------------------------------------------------------ meta-gradients


def ref_features(p: Params, x: Tensor, support: Tensor | None = None) -> Tensor:
    """tiny_conv's backbone with stock calls: BatchNorm with ``x``'s own statistics, or with
    those of ``support`` run through the same layers beside it (inductive)."""
    h, s = x, support
    for i in range(2):
        pre = f"features.blocks.{i}."
        w, b = p[pre + "norm.weight"], p[pre + "norm.bias"]
        h = F.conv2d(h, p[pre + "conv.weight"], p[pre + "conv.bias"], padding=1)
        if s is None:
            h = F.batch_norm(h, None, None, w, b, True)
        else:
            s = F.conv2d(s, p[pre + "conv.weight"], p[pre + "conv.bias"], padding=1)
            h = normalised(h, s, w, b)
            s = F.max_pool2d(F.relu(F.batch_norm(s, None, None, w, b, True)), 2)
        h = F.max_pool2d(F.relu(h), 2)
    return h.flatten(1)


def ref_forward(p: Params, x: Tensor, support: Tensor | None = None) -> Tensor:
    return F.linear(ref_features(p, x, support), p["head.weight"], p["head.bias"])


def ref_maml(p: Params, batch: TaskBatch, *, lr: float, steps: int, head_only: bool) -> Tensor:
    """Mean query loss after ``steps`` inner SGD steps per task, the query normalised with the
    support's statistics under the adapted weights (second-order graph kept)."""
    names = [k for k in p if not k.startswith(LR_PREFIX)]
    if head_only:
        names = [k for k in names if k.startswith("head.")]
    total = torch.zeros((), dtype=torch.float64)
    alpha = torch.tensor(lr, dtype=torch.float64)
    for t in range(batch.num_tasks):
        sx, qx = batch.support_x[t], batch.query_x[t]
        fast = {k: v for k, v in p.items() if not k.startswith(LR_PREFIX)}
        for _ in range(steps):
            loss = F.cross_entropy(ref_forward(fast, sx), batch.support_y[t])
            grads = torch.autograd.grad(loss, [fast[k] for k in names], create_graph=True)
            for k, g in zip(names, grads, strict=True):
                fast[k] = fast[k] - p.get(LR_PREFIX + k, alpha) * g
        total = total + F.cross_entropy(ref_forward(fast, qx, sx), batch.query_y[t])
    return total / batch.num_tasks


def ref_protonet(p: Params, batch: TaskBatch, ways: int) -> Tensor:
    total = torch.zeros((), dtype=torch.float64)
    for t in range(batch.num_tasks):
        sx, sy = batch.support_x[t], batch.support_y[t]
        z_s, z_q = ref_features(p, sx), ref_features(p, batch.query_x[t], sx)
        centres = torch.stack([z_s[sy == k].mean(0) for k in range(ways)])
        logits = -torch.cdist(z_q, centres).square()
        total = total + F.cross_entropy(logits, batch.query_y[t])
    return total / batch.num_tasks


def autograd(objective: Any, params: Params) -> Params:
    leaves = {k: v.detach().clone().requires_grad_() for k, v in params.items()}
    found = torch.autograd.grad(objective(leaves), list(leaves.values()))
    return dict(zip(leaves, found, strict=True))


@pytest.mark.parametrize("name", ["maml", "metasgd", "anil", "protonet"])
def test_inductive_meta_gradients_match_a_plain_autograd_reference(name: str) -> None:
    batch = image_batch(tasks=2)
    inner = {"inner_lr": 0.3, "inner_steps": 2} if name != "protonet" else {}
    params = strategy(name, "inductive", **inner).init_params(0)
    if name == "protonet":
        reference = autograd(lambda p: ref_protonet(p, batch, 3), params)
    else:
        head_only = name == "anil"
        reference = autograd(
            lambda p: ref_maml(p, batch, lr=0.3, steps=2, head_only=head_only), params
        )
    for path in ("loop", "vmap"):
        grads, _ = strategy(name, "inductive", **inner, batching=path).meta_grads(params, batch)
        assert rel_error(grads, reference) < 1e-10, path  # the same function, to round-off
    transductive, _ = strategy(name, "transductive", **inner).meta_grads(params, batch)
    assert rel_error(transductive, reference) > 1e-3  # the modes differ: the check could fail


def test_the_compiled_loop_is_refused_in_inductive_mode_in_one_sentence() -> None:
    settings = ["data.dataset=omniglot", "strategy_config.batching=compiled"]
    with pytest.raises(ConfigError, match=r"^strategy_config\.batching=compiled .*\.$"):
        load_config(overrides=[*settings, "model.norm=inductive"])
    assert load_config(overrides=settings).model.norm == "transductive"  # the default
    with pytest.raises(ConfigError, match="must be one of transductive, inductive"):
        load_config(overrides=["model.norm=both"])
    s = strategy("maml", "inductive", batching="compiled")
    with pytest.raises(ConfigError, match=r"model\.norm=inductive"):
        s.meta_grads(s.init_params(0), image_batch(tasks=1))
