"""Your own ``nn.Module`` as the model of every strategy and of ``functional.adapt``.

A torchvision-style ResNet with stock BatchNorm (running statistics tracked, the default) is
meta-trained as it is: its weights are the starting point, the meta-gradients through stock
BatchNorm are those of an independent autograd reference, and the module itself (weights,
running statistics, flags) is left as it was.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from metalearner import ConfigError
from metalearner import functional as fx
from metalearner.nn import as_embedding, as_network, load_into
from metalearner.nn.parts import find_head
from metalearner.strategies import (
    ANIL,
    MAML,
    FineTune,
    MAMLConfig,
    ProtoNet,
    ProtoNetConfig,
    Strategy,
    TransferConfig,
    build,
)
from metalearner.tasks import TaskBatch
from metalearner.testing import image_batch, query_loss, rel_error, toy_source

sys.path.insert(0, str(Path(__file__).parent))
from test_readme import blocks, check_comments


class Block(nn.Module):
    """torchvision's basic block, cut down: conv, BatchNorm, ReLU, conv, BatchNorm, shortcut."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                        nn.BatchNorm2d(cout))  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.downsample(x))


class TinyResNet(nn.Module):
    """A ResNet on 1x8x8 images: a stem, two stages, global pooling and an ``fc`` head."""

    def __init__(self, width: int = 4, classes: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.layer1 = Block(width, width)
        self.layer2 = Block(width, 2 * width, stride=2)
        self.fc = nn.Linear(2 * width, classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.layer2(self.layer1(F.relu(self.bn1(self.conv1(x)))))
        return self.fc(x.mean((-2, -1)))


class Unnamed(nn.Module):
    """Its last linear layer has no head's name: which layer is the head cannot be told."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten())
        self.proj = nn.Linear(4 * 6 * 6, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(self.body(x))


class TokenNet(nn.Module):
    """Sentences of token ids ``[N, L]``: embeddings, LayerNorm, dropout, mean, a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(20, 8)
        self.norm = nn.LayerNorm(8)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.drop(self.norm(self.embed(x))).mean(-2))


def snapshot(module: nn.Module) -> tuple[dict[str, Tensor], list[Any]]:
    """Everything a strategy must leave as it was: tensors, running statistics, flags, classes."""
    state = {k: v.detach().clone() for k, v in module.state_dict().items()}
    flags = [(n, type(m), m.training, getattr(m, "track_running_stats", None))
             for n, m in module.named_modules()]  # fmt: skip
    return state, flags


def assert_unchanged(module: nn.Module, before: tuple[dict[str, Tensor], list[Any]]) -> None:
    state, flags = snapshot(module)
    assert flags == before[1]
    assert state.keys() == before[0].keys()
    assert all(torch.equal(state[k], before[0][k]) for k in state), "a tensor of the module moved"


def own_name(key: str) -> str:
    """The module's name of a strategy's parameter (``features.*`` / ``head.*`` -> ``fc.*``)."""
    return (
        key.removeprefix("features.") if key.startswith("features.") else key.replace("head", "fc")
    )


def untouched(batch: TaskBatch) -> TaskBatch:
    """The batch without ``classes``: integer labels alone say it is classification."""
    return TaskBatch(batch.support_x, batch.support_y, batch.query_x, batch.query_y)


# ---------------------------------------------------------------- functional.adapt


def test_functional_adapt_on_stock_batchnorm_matches_an_unrolled_autograd_reference() -> None:
    model = TinyResNet().double()
    before = snapshot(model)
    b = image_batch(tasks=1, shots=2, queries=2, size=8)
    sx, sy, qx, qy = b.support_x[0], b.support_y[0], b.query_x[0], b.query_y[0]
    fn, params = fx.functional(model), fx.params_of(model)

    def meta_objective(p: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        fast = fx.adapt(fn, p, sx, sy, steps=2, lr=0.3)
        return fx.task_loss(fn(fast, qx), qy), {}

    fast = fx.adapt(fn, params, sx, sy, steps=2, lr=0.3)
    grads, _ = fx.meta_gradient(meta_objective, params)

    # The reference: a deep copy in train mode, BatchNorm on batch statistics with no running
    # statistics to update, two second-order steps unrolled by hand with torch.autograd.
    reference = copy.deepcopy(model).train()
    for m in reference.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.track_running_stats, m.running_mean, m.running_var = False, None, None
    leaves = {k: v.detach().clone().requires_grad_() for k, v in model.named_parameters()}
    p = leaves
    for _ in range(2):
        loss = F.cross_entropy(functional_call(reference, p, (sx,)), sy)
        g = torch.autograd.grad(loss, list(p.values()), create_graph=True)
        p = {k: v - 0.3 * gk for (k, v), gk in zip(p.items(), g, strict=True)}
    query = F.cross_entropy(functional_call(reference, p, (qx,)), qy)
    expected = dict(zip(leaves, torch.autograd.grad(query, list(leaves.values())), strict=True))

    assert rel_error(fast, {k: v.detach() for k, v in p.items()}) < 1e-12
    assert rel_error(grads, expected) < 1e-9
    assert rel_error(fast, params) > 1e-3  # it adapted
    assert_unchanged(model, before)


def test_a_loop_of_your_own_with_functional_adapt_lowers_the_query_loss() -> None:
    model, source = TinyResNet(), toy_source()
    fn, theta = fx.functional(model), fx.params_of(model)  # the module's weights: the start
    tasks = source.sample(8, generator=torch.Generator().manual_seed(99))

    def query_loss_after(p: dict[str, Tensor], batch: TaskBatch) -> Tensor:
        losses = []
        for t in range(batch.num_tasks):
            fast = fx.adapt(fn, p, batch.support_x[t], batch.support_y[t], steps=1, lr=0.4)
            losses.append(fx.task_loss(fn(fast, batch.query_x[t]), batch.query_y[t]))
        return torch.stack(losses).mean()

    start = float(query_loss_after(theta, tasks))
    optimizer = torch.optim.Adam(theta.values(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(40):
        grads, _ = fx.meta_gradient(lambda p: (query_loss_after(p, source.sample(4, generator=g)),
                                               {}), theta)  # fmt: skip
        for k, v in theta.items():
            v.grad = grads[k]
        optimizer.step()
    assert float(query_loss_after(theta, tasks)) < 0.85 * start


# ---------------------------------------------------------------- the strategy objects


def _strategy(name: str, model: nn.Module) -> Strategy:
    if name == "maml":
        return MAML(model, MAMLConfig(inner_lr=0.4, eval_steps=1))
    if name == "anil":
        return ANIL(model, MAMLConfig(head_only=True, inner_lr=0.4, eval_steps=5))
    return ProtoNet(model, ProtoNetConfig())


@pytest.mark.parametrize("name", ["maml", "protonet", "anil"])
def test_a_strategy_starts_from_the_modules_weights_learns_and_leaves_the_module(name: str) -> None:
    model = TinyResNet()
    before = snapshot(model)
    strategy = _strategy(name, model)
    params = strategy.init_params(0)
    own = dict(model.named_parameters())
    assert all(torch.equal(v, own[own_name(k)]) for k, v in params.items())  # the start
    expected = {k for k in own if name != "protonet" or not k.startswith("fc.")}
    assert {own_name(k) for k in params} == expected  # ProtoNets embed with what feeds fc

    source = toy_source()
    tasks = source.sample(16, generator=torch.Generator().manual_seed(99))
    start = query_loss(strategy, params, tasks)
    optimizer = torch.optim.Adam(params.values(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(40):
        strategy.step(optimizer, params, untouched(source.sample(4, generator=g)))
    assert query_loss(strategy, params, tasks) < 0.85 * start
    assert_unchanged(model, before)

    load_into(model, params)  # the trained weights, back in the module
    assert all(torch.equal(own[own_name(k)], v) for k, v in params.items())


def test_step_sets_each_grad_to_the_meta_gradient_and_steps_the_optimizer() -> None:
    model, batch = TinyResNet().double(), image_batch(tasks=2, size=8)
    maml = MAML(model, MAMLConfig(inner_lr=0.4))
    params = maml.init_params(0)
    grads, _ = maml.meta_grads(params, batch)
    expected = {k: v - 0.1 * grads[k] for k, v in params.items()}
    metrics = maml.step(torch.optim.SGD(params.values(), lr=0.1), params, batch)
    assert rel_error(params, expected) < 1e-12 and "loss" in metrics


@pytest.mark.parametrize("name", ["maml", "protonet", "anil"])
def test_a_users_module_gives_one_meta_gradient_vmapped_or_task_by_task(name: str) -> None:
    model, batch = TinyResNet().double(), untouched(image_batch(tasks=3, size=8))
    grads = {}
    for batching in ("loop", "vmap"):
        settings: dict[str, Any] = {"batching": batching}
        strategy = build(name, model, settings | ({"inner_steps": 2} if name != "protonet" else {}))
        grads[batching], _ = strategy.meta_grads(strategy.init_params(0), batch)
    assert rel_error(grads["loop"], grads["vmap"]) < 1e-9


@pytest.mark.parametrize("name", ["maml", "protonet"])
def test_inductive_batchnorm_of_a_users_module_predicts_each_query_alone(name: str) -> None:
    b = image_batch(tasks=1, size=8)
    sx, sy, qx = b.support_x[0], b.support_y[0], b.query_x[0]
    out = {}
    for norm in ("inductive", "transductive"):
        strategy = build(name, TinyResNet().double(), norm=norm)
        predict = strategy.adapt(strategy.init_params(0), sx, sy)
        out[norm] = predict(qx)[:1], predict(qx[:1])
    torch.testing.assert_close(*out["inductive"])  # the support's statistics: query alone
    assert not torch.allclose(*out["transductive"])  # the queries' own: they change it


def test_init_seed_initialises_afresh_from_the_strategys_seed() -> None:
    model = TinyResNet()
    maml = MAML(as_network(model, init="seed"), MAMLConfig())
    first, again = maml.init_params(0), maml.init_params(0)
    assert rel_error(first, again) == 0
    own = dict(model.named_parameters())
    assert not torch.equal(first["features.conv1.weight"], own["conv1.weight"])


# ---------------------------------------------------------------- finding the head


def test_the_head_is_found_where_unambiguous_else_named_or_refused() -> None:
    mlp = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    vgg_like = nn.Sequential()
    vgg_like.add_module("body", nn.Conv2d(1, 2, 3))
    vgg_like.add_module("classifier", nn.Sequential(nn.Flatten(), nn.Linear(72, 3)))
    assert (find_head(TinyResNet()), find_head(mlp), find_head(vgg_like)) == (
        "fc", "2", "classifier.1"
    )  # fmt: skip
    assert find_head(Unnamed()) is None
    with pytest.raises(ConfigError, match="pass head='name'"):
        as_network(Unnamed())
    with pytest.raises(ConfigError, match="pass head='name'"):
        ANIL(Unnamed(), MAMLConfig(head_only=True))
    named = Unnamed()
    net = as_network(named, head="proj")
    assert net.head.weight is named.proj.weight  # shared, not copied
    assert "features.proj.weight" not in dict(net.named_parameters())
    with pytest.raises(ConfigError, match=r"not an nn\.Linear"):
        as_network(named, head="body.0")
    with pytest.raises(ConfigError, match="has no layer 'nope'"):
        as_network(named, head="nope")

    resnet = TinyResNet(width=4)  # fc: 8 features to 3 classes
    assert as_network(resnet, out_features=3).head.weight is resnet.fc.weight
    on_top = as_network(resnet, out_features=5)  # a new head on the whole module
    assert on_top.head.weight.shape == (5, 3) and "features.fc.weight" in on_top.state_dict()
    replaced = as_network(resnet, head="fc", out_features=5)
    assert replaced.head.weight.shape == (5, 8)


# ---------------------------------------------------------------- embeddings, labels


def test_protonet_and_finetune_take_an_embedding_with_no_head_and_no_classes() -> None:
    embed = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten())  # fmt: skip
    batch = toy_source().sample(2, generator=torch.Generator().manual_seed(0))
    proto = ProtoNet(embed, ProtoNetConfig())
    grads, metrics = proto.meta_grads(proto.init_params(0), untouched(batch))
    assert set(grads) == {"features.0.weight", "features.0.bias", "features.1.weight",
                          "features.1.bias"} and metrics["accuracy"] >= 0  # fmt: skip
    regression = TaskBatch(batch.support_x, batch.support_y.double(), batch.query_x,
                           batch.query_y.double())  # fmt: skip
    with pytest.raises(ConfigError, match="integer class labels"):
        proto.meta_grads(proto.init_params(0), regression)

    finetune = FineTune(embed, TransferConfig(num_classes=24))
    grads, _ = finetune.meta_grads(finetune.init_params(0), batch)
    assert grads["pretrain_head.weight"].shape == (24, 4)
    with pytest.raises(ConfigError, match="global class ids"):
        finetune.meta_grads(finetune.init_params(0), untouched(batch))

    flat = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Flatten())  # 256 values, not 4
    finetune = FineTune(flat, TransferConfig(num_classes=24))
    with pytest.raises(ConfigError, match="feature_dim=256"):
        finetune.meta_grads(finetune.init_params(0), batch)
    right = FineTune(as_embedding(flat, feature_dim=256), TransferConfig(num_classes=24))
    right.meta_grads(right.init_params(0), batch)
    maps = ProtoNet(nn.Conv2d(1, 4, 3), ProtoNetConfig())  # [N, 4, 6, 6]: not vectors
    with pytest.raises(ConfigError, match="flatten or pool"):
        maps.meta_grads(maps.init_params(0), batch)


@pytest.mark.parametrize("name", ["maml", "fomaml", "anil", "reptile", "protonet"])
def test_embeddings_layernorm_and_dropout_run_in_every_strategy_deterministically(
    name: str,
) -> None:
    model = TokenNet()
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(3).repeat(2).expand(2, -1)
    batch = TaskBatch(torch.randint(20, (2, 6, 5), generator=g), labels,
                      torch.randint(20, (2, 6, 5), generator=g), labels)  # fmt: skip
    strategy = build(name, model, {"batching": "vmap"})
    params = strategy.init_params(0)
    first, _ = strategy.meta_grads(params, batch)
    again, _ = strategy.meta_grads(params, batch)  # dropout is off: the same meta-gradient
    assert rel_error(first, again) == 0 and all(bool(v.isfinite().all()) for v in first.values())
    assert model.training and model.drop.training  # the module keeps its mode


# ---------------------------------------------------------------- the README


def test_the_readme_example_runs_and_leaves_the_modules_running_statistics() -> None:
    code = next(b for b in blocks("python") if "load_into(model, params)" in b)
    namespace: dict[str, Any] = {}
    exec(code, namespace)
    assert check_comments(code, namespace) >= 1
    model, params = namespace["model"], namespace["params"]
    assert all(torch.equal(model.get_parameter(k), v) for k, v in params.items())
    assert model[1].running_mean.eq(0).all() and int(model[1].num_batches_tracked) == 0
    assert namespace["metrics"]["accuracy"] > 0.5  # chance is a third
