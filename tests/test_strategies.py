"""Strategy-specific properties, the registry, configs, and the contract every strategy meets."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from metalearner import functional as fx
from metalearner.errors import ConfigError, DataError
from metalearner.strategies import (
    LR_PREFIX,
    MAMLConfig,
    Strategy,
    available,
    build,
    get_strategy,
    register,
)
from metalearner.strategies.reptile import minibatch
from metalearner.tasks import TaskBatch
from metalearner.testing import (
    ContractCase,
    StrategyContract,
    contract_cases,
    image_batch,
    tiny_conv,
)

# ---------------------------------------------------------------- the registry and configs


def test_registry_lists_every_strategy() -> None:
    assert set(available()) >= {"maml", "fomaml", "metasgd", "anil", "reptile", "protonet"}
    with pytest.raises(ConfigError, match="Unknown strategy 'mamll'"):
        get_strategy("mamll")
    with pytest.raises(ValueError, match="already registered"):
        register("maml")(get_strategy("maml"))
    with pytest.raises(TypeError, match="must subclass"):
        register("duck")(type("Duck", (), {"default_config": MAMLConfig()}))
    assert "duck" not in available()


@pytest.mark.parametrize(
    ("name", "settings", "message"),
    [
        ("maml", {"inner_lr": -0.1}, r"inner_lr must be > 0"),
        ("maml", {"inner_lr": "0.4"}, r"inner_lr must be a number"),
        ("maml", {"inner_steps": 1.5}, r"inner_steps must be an integer"),
        ("maml", {"first_order": 1}, r"first_order must be true or false"),
        ("maml", {"batching": "gpu"}, r"batching must be one of auto, vmap, loop"),
        ("maml", {"inner_lr_init": (0.1, 0.2)}, r"needs strategy_config.learn_inner_lr=true"),
        ("metasgd", {"inner_lr_init": (0.2, 0.1)}, r"strategy_config.inner_lr_init \[0.2, 0.1\]"),
        ("maml", {"innerlr": 0.1}, r"has no setting 'innerlr'"),
        ("fomaml", {"first_order": False}, r"'fomaml' is defined by strategy_config.first_order"),
        ("reptile", {"adam_betas": (0.9, 1.0)}, r"strategy_config.adam_betas \[0.9, 1.0\]"),
        ("reptile", {"inner_optimizer": "rmsprop"}, r"inner_optimizer must be one of"),
        ("protonet", {"train_ways": 1}, r"train_ways must be >= 2"),
    ],
)
def test_bad_settings_raise_config_error(name: str, settings: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build(name, tiny_conv(), settings)


def test_paper_defaults_and_presets() -> None:
    maml = get_strategy("maml").default_config
    assert (maml.inner_lr, maml.inner_steps, maml.meta_batch_size, maml.meta_lr) == (
        0.4, 1, 32, 1e-3,
    )  # fmt: skip
    sine = maml.with_preset("sinusoid")
    assert (sine.inner_lr, sine.inner_steps, sine.meta_batch_size) == (0.01, 1, 25)
    assert get_strategy("metasgd").default_config.with_preset("sinusoid").learn_inner_lr
    with pytest.raises(ConfigError, match="no preset 'cifar'"):
        maml.with_preset("cifar")
    with pytest.raises(ConfigError, match="takes a ReptileConfig, not MAMLConfig"):
        build("reptile", tiny_conv(), MAMLConfig())


# ---------------------------------------------------------------- strategy-specific checks


def test_reptile_sgd_moves_theta_to_the_interpolation() -> None:
    net, batch = tiny_conv(), image_batch(tasks=3)
    k, lr, eps = 3, 0.1, 0.25
    settings = {"inner_optimizer": "sgd", "inner_lr": lr, "inner_steps": k,
                "inner_batch_size": None}  # fmt: skip
    reptile = build("reptile", net, settings)
    theta = reptile.init_params(0)
    fn = fx.functional(net)
    phis = []
    for t in range(batch.num_tasks):  # k plain SGD steps on support + query, by hand
        x = torch.cat([batch.support_x[t], batch.query_x[t]])
        y = torch.cat([batch.support_y[t], batch.query_y[t]])
        phi = dict(theta)
        for _ in range(k):
            p = {n: v.detach().requires_grad_() for n, v in phi.items()}
            grads = torch.autograd.grad(F.cross_entropy(fn(p, x), y), list(p.values()))
            phi = {n: v.detach() - lr * g for (n, v), g in zip(p.items(), grads, strict=True)}
        phis.append(phi)
    pseudo, metrics = reptile.meta_grads(theta, batch)
    leaves = {n: v.clone().requires_grad_() for n, v in theta.items()}
    opt = torch.optim.SGD(leaves.values(), lr=eps)
    for n, v in leaves.items():
        v.grad = pseudo[n]
    opt.step()
    for n in theta:
        mean_phi = torch.stack([phi[n] for phi in phis]).mean(0)
        expected = theta[n] + eps * (mean_phi - theta[n])
        assert torch.allclose(leaves[n].detach(), expected, rtol=1e-12, atol=1e-12), n
    assert metrics["loss"] > 0


@pytest.mark.parametrize("batching", ["loop", "vmap"])
def test_reptile_inner_minibatches_follow_the_batch_order(batching: str) -> None:
    net, batch = tiny_conv(), image_batch(tasks=2, shots=2, queries=3)
    batch = batch.with_order(torch.Generator().manual_seed(7))
    size, k, lr = 4, 4, 0.1  # 15 examples a task: the 4th step wraps round
    settings = {"inner_optimizer": "sgd", "inner_lr": lr, "inner_steps": k,
                "inner_batch_size": size, "batching": batching}  # fmt: skip
    reptile = build("reptile", net, settings)
    theta = reptile.init_params(0)
    fn = fx.functional(net)
    pseudo, _ = reptile.meta_grads(theta, batch)
    phis = []
    for t in range(batch.num_tasks):  # SGD on runs of the task's shuffled examples, by hand
        x = torch.cat([batch.support_x[t], batch.query_x[t]])
        y = torch.cat([batch.support_y[t], batch.query_y[t]])
        order = batch.info["order"][t].tolist()
        assert sorted(order) == list(range(len(x)))
        phi = dict(theta)
        for step in range(k):
            rows = [order[(step * size + i) % len(x)] for i in range(size)]
            p = {n: v.detach().requires_grad_() for n, v in phi.items()}
            loss = F.cross_entropy(fn(p, x[rows]), y[rows])
            grads = torch.autograd.grad(loss, list(p.values()))
            phi = {n: v.detach() - lr * g for (n, v), g in zip(p.items(), grads, strict=True)}
        phis.append(phi)
    for n in theta:
        mean_phi = torch.stack([phi[n] for phi in phis]).mean(0)
        assert torch.allclose(theta[n] - pseudo[n], mean_phi, rtol=1e-10, atol=1e-12), n


def test_reptile_minibatches_draw_every_label_alike() -> None:
    # The paper's Omniglot 20-way 1-shot setting: 5 inner steps of 10 examples out of each
    # task's 20 + 300 (class by class). A fixed slicing skipped 6 of the 20 labels every time.
    ways, shots, queries, size, steps = 20, 1, 15, 10, 5
    labels = torch.cat([torch.arange(ways).repeat_interleave(n) for n in (shots, queries)])
    n, tasks = len(labels), 400
    batch = TaskBatch(
        torch.zeros(tasks, ways * shots),
        labels[:ways].expand(tasks, -1),
        torch.zeros(tasks, ways * queries),
        labels[ways:].expand(tasks, -1),
    )
    order = batch.with_order(torch.Generator().manual_seed(0)).info["order"]
    seen = torch.cat([order[:, minibatch(s, size, n)] for s in range(steps)], dim=1)
    counts = torch.bincount(labels[seen].flatten(), minlength=ways).double()
    expected = tasks * size * steps / ways  # 1000: the draws are uniform over labels
    assert ((counts - expected).abs() < 5 * expected**0.5).all(), counts
    assert not torch.equal(order[0], order[1])  # each task its own order


def test_reptile_adam_matches_torch_adam() -> None:
    net, batch = tiny_conv(), image_batch(tasks=1)
    settings = {"inner_steps": 4, "inner_batch_size": None, "inner_lr": 0.01}
    reptile = build("reptile", net, settings)
    theta = reptile.init_params(0)
    pseudo, _ = reptile.meta_grads(theta, batch)
    leaves = {n: v.clone().requires_grad_() for n, v in theta.items()}
    opt = torch.optim.Adam(leaves.values(), lr=0.01, betas=(0.0, 0.999), eps=1e-8)
    x = torch.cat([batch.support_x[0], batch.query_x[0]])
    y = torch.cat([batch.support_y[0], batch.query_y[0]])
    for _ in range(4):
        opt.zero_grad()
        F.cross_entropy(fx.functional(net)(leaves, x), y).backward()
        opt.step()
    # atol: Adam turns the conv biases' round-off gradients (~1e-17) into ~1e-11 steps.
    for n in theta:
        assert torch.allclose(theta[n] - pseudo[n], leaves[n].detach(), rtol=1e-9, atol=1e-9)


def test_protonet_logits_are_negative_squared_distances() -> None:
    net, batch = tiny_conv(), image_batch(tasks=2, shots=3)
    proto = build("protonet", net)
    params = proto.init_params(0)
    embed = fx.functional(net.features)
    for t in range(batch.num_tasks):
        sx, sy, qx = batch.support_x[t], batch.support_y[t], batch.query_x[t]
        z = embed(fx.subset(params, "features."), torch.cat([sx, qx]))
        zs, zq = z[: len(sx)], z[len(sx) :]
        expected = torch.empty(len(qx), 3, dtype=torch.float64)
        for i in range(len(qx)):
            for c in range(3):
                members = [zs[j] for j in range(len(sx)) if int(sy[j]) == c]
                centre = sum(members) / len(members)
                expected[i, c] = -sum(float(d) ** 2 for d in zq[i] - centre)
        assert torch.allclose(proto.adapt(params, sx, sy)(qx), expected, rtol=1e-10)


def test_protonet_handles_any_number_of_ways() -> None:
    net, batch = tiny_conv(ways=3), image_batch(tasks=1, ways=7)
    proto = build("protonet", net)
    params = proto.init_params(0)
    predict = proto.adapt(params, batch.support_x[0], batch.support_y[0])
    assert predict(batch.query_x[0]).shape == (14, 7)
    assert all(k.startswith("features.") for k in params)
    with pytest.raises(DataError, match="no example of class 1"):
        proto.adapt(params, batch.support_x[0][:2], torch.tensor([0, 2]))


def test_metasgd_learning_rates_get_gradients() -> None:
    net, batch = tiny_conv(), image_batch()
    metasgd = build("metasgd", net)
    params = metasgd.init_params(0)
    lrs = [k for k in params if k.startswith(LR_PREFIX)]
    assert len(lrs) == sum(1 for _ in net.parameters())
    for k in lrs:
        assert params[k].shape == params[k[len(LR_PREFIX) :]].shape
        assert float(params[k].min()) >= 0.005 and float(params[k].max()) <= 0.1
    grads, _ = metasgd.meta_grads(params, batch)
    assert all(float(grads[k].abs().sum()) > 0 for k in lrs)


def test_anil_adapts_only_the_head_and_trains_the_backbone_through_the_outer_loss() -> None:
    net, batch = tiny_conv(), image_batch()
    anil = build("anil", net, {"inner_steps": 2})
    params = anil.init_params(0)
    head = [k for k in params if k.startswith("head.")]
    backbone = [k for k in params if k.startswith("features.")]
    fast = fx.adapt(fx.functional(net), params, batch.support_x[0], batch.support_y[0],
                    steps=2, lr=0.4, trainable=head)  # fmt: skip
    assert all(fast[k] is params[k] for k in backbone)
    grads, _ = anil.meta_grads(params, batch)
    weights = [k for k in backbone if not k.endswith("conv.bias")]  # conv biases: exactly 0
    assert all(float(grads[k].abs().sum()) > 0 for k in weights)
    # First-order ANIL: the backbone's gradient is the query loss's, at (θ_backbone, φ_head).
    first, _ = build("anil", net, {"inner_steps": 2, "first_order": True}).meta_grads(params, batch)
    expected = {k: torch.zeros_like(params[k]) for k in backbone}
    for t in range(batch.num_tasks):
        phi = fx.adapt(fx.functional(net), params, batch.support_x[t], batch.support_y[t],
                       steps=2, lr=0.4, trainable=head)  # fmt: skip
        p = {k: (params[k].clone().requires_grad_() if k in backbone else phi[k]) for k in params}
        loss = F.cross_entropy(fx.functional(net)(p, batch.query_x[t]), batch.query_y[t])
        for k, g in zip(backbone, torch.autograd.grad(loss, [p[k] for k in backbone]), strict=True):
            expected[k] += g / batch.num_tasks
    for k in backbone:
        assert torch.allclose(first[k], expected[k], rtol=1e-9, atol=1e-12), k


# ---------------------------------------------------------------- the contract


class TestEveryRegisteredStrategy(StrategyContract):
    """The shipped contract (metalearner.testing) over every registered strategy, each on the
    toy families it is held to: registering a strategy is all it takes to be checked here."""

    @pytest.fixture(autouse=True, params=contract_cases(), ids=str)
    def _each_case(self, request: pytest.FixtureRequest) -> None:
        self.case: ContractCase = request.param


def test_every_registered_strategy_is_a_strategy_with_its_declarations() -> None:
    for name in available():
        kind = get_strategy(name)
        assert issubclass(kind, Strategy) and dataclasses.is_dataclass(kind.default_config)
        assert kind.task_kinds and set(kind.task_kinds) <= {"classification", "regression"}
        assert kind.trains_as is None or kind.trains_as in available()
        outer = kind.outer_loop(kind.default_config)
        assert outer.lr > 0 and outer.meta_batch >= 1
        # A strategy that applies the run's precision itself has the setting to hold it.
        fields = {f.name for f in dataclasses.fields(kind.default_config)}
        assert kind.applies_precision == ("precision" in fields), name
