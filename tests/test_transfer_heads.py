"""SimpleShot's and RFS's heads, and the supervised pretraining on shuffled mini-batches that the
transfer baselines share."""

from __future__ import annotations

import copy
import dataclasses
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from torch import nn
from torch.func import functional_call

import metalearner
from metalearner.evaluation import evaluate
from metalearner.runs.checkpoint import load_checkpoint, save_checkpoint
from metalearner.runs.config import OptimizerConfig, load_config
from metalearner.runs.experiment import build_experiment
from metalearner.strategies import Params, Strategy, build
from metalearner.strategies.heads import cl2n, logistic_regression
from metalearner.tasks import EpisodeSampler, LabeledBatches, LabeledSet
from metalearner.tasks.augment import colour_jitter, random_crop, random_flip
from metalearner.testing import ContractCase, toy_model, toy_source
from metalearner.training.loop import meta_train
from metalearner.training.optimizer import lr_factor

sys.path.insert(0, str(Path(__file__).parent))
from cli_runner import run_cli
from omniglot_fixture import write_fake_omniglot


class LinearNet(nn.Module):
    """A backbone that is one linear map, and a head: with the identity, features are inputs."""

    def __init__(self, width: int = 2, classes: int = 4) -> None:
        super().__init__()
        self.features = nn.Linear(width, width)
        self.head = nn.Linear(width, classes)


def identity_backbone(name: str, width: int = 2) -> tuple[Strategy, Params]:
    strategy = build(name, LinearNet(width).double(), {"num_classes": 4})
    params = strategy.init_params(0)
    params["features.weight"] = torch.eye(width, dtype=torch.float64)
    params["features.bias"] = torch.zeros(width, dtype=torch.float64)
    return strategy, params


# ---------------------------------------------------------------- SimpleShot


def test_cl2n_and_the_nearest_centroid_match_a_hand_computation() -> None:
    strategy, params = identity_backbone("simpleshot")
    params["feature_mean"] = torch.tensor([1.0, 1.0], dtype=torch.float64)
    # Centred: (3, 4), (0, 2), (2, 0); normalised: (0.6, 0.8), (0, 1), (1, 0). Class 0's mean is
    # (0.6, 0.8), class 1's (0.5, 0.5) (the mean of the normalised features, not normalised).
    support = torch.tensor([[4.0, 5.0], [1.0, 3.0], [3.0, 1.0]], dtype=torch.float64)
    labels = torch.tensor([0, 1, 1])
    # Queries centred (1, 0) and (0, 3), normalised (1, 0) and (0, 1). Squared distances:
    # (1, 0) to (0.6, 0.8): 0.16 + 0.64 = 0.8, to (0.5, 0.5): 0.5; (0, 1): 0.4 and 0.5.
    queries = torch.tensor([[2.0, 1.0], [1.0, 4.0]], dtype=torch.float64)
    logits = strategy.adapt(params, support, labels)(queries)
    scale = strategy.config.scale
    expected = -scale * torch.tensor([[0.8, 0.5], [0.4, 0.5]], dtype=torch.float64)
    torch.testing.assert_close(logits, expected)
    assert logits.argmax(1).tolist() == [1, 0]
    torch.testing.assert_close(
        cl2n(support, params["feature_mean"]),
        torch.tensor([[0.6, 0.8], [0.0, 1.0], [1.0, 0.0]], dtype=torch.float64),
    )
    # Centring matters: with no mean, the same support and queries give other distances.
    params["feature_mean"] = torch.zeros(2, dtype=torch.float64)
    assert not torch.allclose(strategy.adapt(params, support, labels)(queries), expected)


# ---------------------------------------------------------------- RFS


def separable_task(
    seed: int, ways: int, shots: int, width: int, tasks: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit-length features ``[tasks, ways·shots, width]`` around a random direction per class."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(tasks, ways, width, generator=g, dtype=torch.float64)
    noise = torch.randn(tasks, ways * shots, width, generator=g, dtype=torch.float64)
    z = F.normalize(centres.repeat_interleave(shots, dim=1) + 0.8 * noise, dim=-1)
    return z, torch.arange(ways).repeat_interleave(shots).expand(tasks, -1)


@pytest.mark.parametrize(
    ("ways", "shots", "width", "c"),
    [(5, 1, 64, 1.0), (5, 5, 64, 1.0), (5, 5, 16, 0.1), (3, 5, 4, 10.0)],
)  # features wider than the support, and narrower (4 for 15 examples)
def test_rfs_logistic_regression_equals_scikit_learns(
    ways: int, shots: int, width: int, c: float
) -> None:
    z, y = separable_task(ways * 100 + shots, ways, shots, width)
    weight, bias = logistic_regression(z[0], y[0], ways, c=c)
    # scikit-learn's LogisticRegression: lbfgs, multinomial, the intercept unpenalised; its
    # tolerance tightened so that its answer is the optimum rather than near it.
    reference = LogisticRegression(C=c, max_iter=10_000, tol=1e-12)
    reference.fit(z[0].numpy(), y[0].numpy())
    np.testing.assert_allclose(weight.numpy(), reference.coef_, atol=1e-4, rtol=0)
    np.testing.assert_allclose(bias.numpy(), reference.intercept_, atol=1e-4, rtol=0)
    # Tasks fitted together get each the head fitted alone.
    zs, ys = separable_task(7, ways, shots, width, tasks=3)
    weights, biases = logistic_regression(zs, ys, ways, c=c)
    for t in range(3):
        w, b = logistic_regression(zs[t], ys[t], ways, c=c)
        torch.testing.assert_close(weights[t], w, atol=1e-6, rtol=0)
        torch.testing.assert_close(biases[t], b, atol=1e-6, rtol=0)


def test_the_rfs_strategy_predicts_as_tian_et_als_classifier() -> None:
    """Through the strategy: L2-normalised features, then scikit-learn's classifier with the
    defaults of Tian et al.'s code (C=1, lbfgs, max_iter 1000, its default tolerance)."""
    strategy, params = identity_backbone("rfs", width=8)
    z, y = separable_task(3, ways=4, shots=5, width=8)
    scaled = z[0] * torch.linspace(0.5, 3.0, 20, dtype=torch.float64)[:, None]  # not unit length
    queries, _ = separable_task(4, ways=4, shots=3, width=8)
    logits = strategy.adapt(params, scaled, y[0])(queries[0] * 2.5)
    clf = LogisticRegression(C=1.0, max_iter=1000).fit(z[0].numpy(), y[0].numpy())
    assert logits.argmax(1).tolist() == clf.predict(queries[0].numpy()).tolist()
    tight = LogisticRegression(C=1.0, max_iter=10_000, tol=1e-12)
    tight.fit(z[0].numpy(), y[0].numpy())
    np.testing.assert_allclose(
        logits.numpy(), tight.decision_function(queries[0].numpy()), atol=1e-4, rtol=0
    )
    assert strategy.eval_steps is None  # a fitted head: no adaptation steps


@pytest.mark.parametrize("name", ["simpleshot", "rfs"])
def test_a_batch_of_tasks_scores_as_each_task_adapted_alone(name: str) -> None:
    case = ContractCase(name)
    strategy, params = case.strategy(), case.strategy().init_params(0)
    params["feature_mean"] = torch.linspace(-0.5, 0.5, len(params["feature_mean"]))
    source = toy_source()
    tasks = EpisodeSampler(source.data, source.classes, ways=3, shots=2, queries=4).fixed(7, seed=1)
    together = strategy.predict_tasks(params, tasks.batch(0, 7))[0]
    for t in range(7):
        task = tasks.batch(t, t + 1)
        alone = strategy.adapt(params, task.support_x[0], task.support_y[0])(task.query_x[0])
        torch.testing.assert_close(together[t], alone, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- mini-batches


def labeled_set(rgb: bool = False) -> LabeledSet:
    """9 classes of 3 to 5 examples (36 in all), uint8 images of 1 or 3 channels."""
    g = torch.Generator().manual_seed(0)
    y = torch.cat([torch.full((3 + i % 3,), i) for i in range(9)])
    x = torch.randint(0, 256, (len(y), 3 if rgb else 1, 6, 6), generator=g, dtype=torch.uint8)
    return LabeledSet(x, y, tuple(f"c{i}" for i in range(9)), name="set")


def test_each_epoch_holds_every_training_example_once() -> None:
    data, train = labeled_set(), torch.tensor([0, 2, 3, 5, 6, 8])
    batches = LabeledBatches(data, train, seed=3)
    rows = torch.cat([batches.rows_of(k, 7) for k in range(12)])  # 84 = 3 epochs of 24, + 12
    epoch = len(batches)
    assert epoch == int(torch.isin(data.y, train).sum()) == 24
    expected = torch.isin(data.y, train).nonzero().flatten()
    for e in range(3):
        assert torch.equal(rows[e * epoch : (e + 1) * epoch].sort().values, expected)
    assert not torch.equal(rows[:epoch], rows[epoch : 2 * epoch])  # a fresh order each epoch
    batch = batches.batch(2, 7)
    assert batch.support_x.shape == (7, 1, 1, 6, 6) and batch.query_x.shape == (7, 0, 1, 6, 6)
    assert batch.classes is not None
    assert torch.equal(batch.classes.flatten(), data.y[batches.rows_of(2, 7)])
    assert torch.equal(batch.support_y, torch.zeros(7, 1, dtype=torch.int64))
    # Grey images are not augmented (Omniglot's augmentation is its rotation classes).
    assert torch.equal(batch.support_x[:, 0] * 255, data.x[batches.rows_of(2, 7)].float())


def test_batch_k_is_a_function_of_the_seed_and_k() -> None:
    data, train = labeled_set(rgb=True), torch.arange(9)
    first = LabeledBatches(data, train, seed=5)
    for k in range(6):  # draws in between change nothing
        first.batch(k, 8)
    again = LabeledBatches(data, train, seed=5).batch(4, 8)
    assert torch.equal(first.batch(4, 8).support_x, again.support_x)
    assert torch.equal(first.rows_of(4, 8), LabeledBatches(data, train, seed=5).rows_of(4, 8))
    other = LabeledBatches(data, train, seed=6).batch(4, 8)
    assert not torch.equal(other.support_x, again.support_x)
    # Colour images are augmented: in [0, 1], not the stored pixels.
    x = again.support_x[:, 0]
    assert float(x.min()) >= 0 and float(x.max()) <= 1
    assert not torch.equal(x * 255, data.x[first.rows_of(4, 8)].float())


def test_a_mini_batch_step_is_the_plain_supervised_gradient() -> None:
    """Pretraining on a mini-batch as one-example tasks is ordinary supervised training: the
    gradient of the cross-entropy of the backbone and linear head over the batch's classes."""
    model = toy_model(dtype=torch.float64)
    strategy = build("finetune", model, {"num_classes": 24})
    params = strategy.init_params(0)
    batches = LabeledBatches(toy_source().data, torch.arange(24), seed=0)
    batch = batches.batch(0, 32)
    batch = dataclasses.replace(
        batch, support_x=batch.support_x.double(), query_x=batch.query_x.double()
    )
    grads, metrics = strategy.meta_grads(params, batch)
    leaves = {k: v.clone().requires_grad_() for k, v in params.items()}
    backbone = {k.removeprefix("features."): v for k, v in leaves.items() if "features." in k}
    z = functional_call(model.features, backbone, (batch.support_x[:, 0],))
    logits = F.linear(z, leaves["pretrain_head.weight"], leaves["pretrain_head.bias"])
    loss = F.cross_entropy(logits, batches.data.y[batches.rows_of(0, 32)])
    reference = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
    for name, g in zip(leaves, reference, strict=True):
        expected = torch.zeros_like(params[name]) if g is None else g  # the mean: never learned
        torch.testing.assert_close(grads[name], expected, rtol=1e-7, atol=1e-10)
    assert metrics["loss"] == pytest.approx(float(loss.detach()))


def test_the_crop_flip_and_jitter_are_what_they_say() -> None:
    g = torch.Generator().manual_seed(0)
    images = torch.rand(6, 3, 8, 8, generator=g)
    cropped = random_crop(images, 2, torch.Generator().manual_seed(1))
    padded = F.pad(images, (2, 2, 2, 2))
    for i in range(6):  # each is an 8x8 window of the zero-padded image
        windows = [padded[i, :, r : r + 8, c : c + 8] for r in range(5) for c in range(5)]
        assert any(torch.equal(cropped[i], w) for w in windows)
    flipped = random_flip(images, torch.Generator().manual_seed(1))
    same = [torch.equal(flipped[i], images[i]) for i in range(6)]
    mirrored = [torch.equal(flipped[i], images[i].flip(-1)) for i in range(6)]
    assert all(a or b for a, b in zip(same, mirrored, strict=True)) and any(mirrored)
    torch.testing.assert_close(colour_jitter(images, 0.0, g), images)  # factors of 1: as it was
    jittered = colour_jitter(images, 0.4, g)
    assert float(jittered.min()) >= 0 and float(jittered.max()) <= 1


def test_a_schedule_over_the_run_spans_its_time_budget() -> None:
    cosine = OptimizerConfig(schedule="cosine")
    # Steps set beyond reach (a benchmark's time budget): the budget's share decides.
    assert lr_factor(cosine, 10, 10**6, spent=30.0, budget=60.0) == pytest.approx(0.5)
    assert lr_factor(cosine, 10, 10**6, spent=60.0, budget=60.0) == pytest.approx(0.0)
    assert lr_factor(cosine, 500, 1000, spent=1.0, budget=60.0) == pytest.approx(0.5)
    assert lr_factor(cosine, 500, 1000) == pytest.approx(0.5)


# ---------------------------------------------------------------- training


TINY = [
    "data.dataset=omniglot", "data.ways=3", "data.queries=2", "data.meta_train_classes=10",
    "data.val_classes=3", "model.width=8", "model.depth=2", "val_tasks=4", "meta_batch=16",
    "threads=1",
]  # fmt: skip


@pytest.fixture(scope="module")
def fake_omniglot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("data")
    write_fake_omniglot(data)
    return data


def test_pretraining_draws_mini_batches_and_a_killed_run_resumes_to_the_same_place(
    fake_omniglot: Path, tmp_path: Path
) -> None:
    cfg = load_config(overrides=["strategy=simpleshot", *TINY, "steps=6", "val_every=2"])
    assert cfg.optimizer.schedule == "cosine" and cfg.meta_batch == 16
    exp = build_experiment(cfg, data_dir=fake_omniglot)
    batch = exp.training_batch(3, 16, torch.Generator())
    assert batch.num_tasks == 16 and batch.support_x.shape[1] == 1  # examples, not episodes
    whole = meta_train(cfg, tmp_path / "whole", data_dir=fake_omniglot, quiet=True)
    meta_train(cfg, tmp_path / "cut", data_dir=fake_omniglot, quiet=True, stop_at=3)
    cut = meta_train(cfg, tmp_path / "cut", data_dir=fake_omniglot, quiet=True, resume=True)
    assert all(torch.equal(whole.params[k], cut.params[k]) for k in whole.params)


def test_the_mean_feature_is_the_training_examples_and_survives_save_and_load(
    fake_omniglot: Path, tmp_path: Path
) -> None:
    cfg = load_config(overrides=["strategy=simpleshot", *TINY, "steps=4", "val_every=4"])
    result = meta_train(cfg, tmp_path / "run", data_dir=fake_omniglot, quiet=True)
    saved = load_checkpoint(tmp_path / "run/checkpoints/best").tensors
    mean = saved["params/feature_mean"]
    assert torch.equal(mean, result.params["feature_mean"]) and bool(mean.abs().sum() > 0)
    # The reference: the backbone of the checkpoint as a float64 module, on every training
    # example (fewer than mean_examples: each drawing of each character and its rotations), a
    # meta-batch at a time (BatchNorm normalises each with its own statistics).
    exp = build_experiment(cfg, data_dir=fake_omniglot)
    features = {k.removeprefix("params/features."): v for k, v in saved.items()
                if k.startswith("params/features.")}  # fmt: skip
    assert exp.batches is not None and len(exp.batches) < cfg.strategy_config["mean_examples"]
    backbone = exp.model.features
    assert isinstance(backbone, nn.Module)
    wide = copy.deepcopy(backbone).double()
    with torch.no_grad():
        chunks = [functional_call(wide, {k: v.double() for k, v in features.items()},
                                  (x.double(),)) for x in exp.batches.examples(16)]  # fmt: skip
    # float32's fused BatchNorm on near-constant fake images: within 1e-4 of float64's.
    torch.testing.assert_close(mean.double(), torch.cat(chunks).mean(0), rtol=0, atol=1e-4)
    # A loaded run adapts with it: its probabilities are CL2N's with the saved mean.
    learner = metalearner.load(tmp_path / "run")
    task = exp.test_source.fixed(1, seed=9).batch(0, 1)
    sx, sy, qx = task.support_x[0], task.support_y[0], task.query_x[0]
    probs = learner.adapt(sx, sy.tolist()).predict(qx).scores
    with torch.no_grad():
        zs = cl2n(functional_call(backbone, features, (sx,)), mean)
        zq = cl2n(functional_call(backbone, features, (qx,)), mean)
    distances = (zq[:, None] - zs[None]).square().sum(-1)  # 1-shot: the centroids are zs
    expected = (-learner.strategy.config.scale * distances).softmax(1)
    torch.testing.assert_close(probs, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["simpleshot", "rfs"])
def test_train_and_evaluate_from_the_command_line(
    strategy: str, fake_omniglot: Path, tmp_path: Path
) -> None:
    lines = [f"strategy: {strategy}", "steps: 4", "val_every: 2", "test_tasks: 6"]
    config = tmp_path / "run.yaml"
    config.write_text("\n".join(lines) + "\n")
    sets = [f"--set={s}" for s in TINY]
    trained = run_cli("train", str(config), "--data-dir", str(fake_omniglot), *sets, "--out=r",
                      cwd=tmp_path)  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    assert "trained 4 steps" in trained.stdout
    evaluated = run_cli("evaluate", "r", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    accuracy = float(evaluated.stdout.split("accuracy ")[1].split("%")[0])
    assert math.isfinite(accuracy) and "(6 tasks)" in evaluated.stdout
    assert load_checkpoint(tmp_path / "r/checkpoints/best").tensors["params/feature_mean"].any()


def test_a_finetune_run_written_before_the_mean_feature_still_evaluates_and_adapts(
    fake_omniglot: Path, tmp_path: Path
) -> None:
    # A checkpoint of the old format: the same parameters but feature_mean (re-signed, so that
    # only the missing tensor differs from what the code writes now).
    cfg = load_config(overrides=["strategy=finetune", *TINY, "steps=2", "val_every=2"])
    meta_train(cfg, tmp_path / "run", data_dir=fake_omniglot, quiet=True)
    path = tmp_path / "run/checkpoints/latest"
    ckpt = load_checkpoint(path)
    meta = {k: v for k, v in ckpt.meta.items() if k not in ("sha256", "meta_sha256")}
    index = meta["param_names"].index("feature_mean")
    assert index == len(meta["param_names"]) - 1  # the last: no other index moves
    meta["param_names"] = meta["param_names"][:index]
    tensors = {k: v for k, v in ckpt.tensors.items()
               if k != "params/feature_mean" and not k.startswith(f"optim/{index}/")}  # fmt: skip
    shutil.rmtree(path)
    save_checkpoint(path, tensors, meta)
    assert "params/feature_mean" not in load_checkpoint(path).tensors
    scores = evaluate(tmp_path / "run", which="latest", num_tasks=3, curve=False, steps=2)
    assert 0.0 <= scores.score.mean <= 1.0
    task = build_experiment(cfg, data_dir=fake_omniglot).test_source.fixed(1, seed=9).batch(0, 1)
    learner = metalearner.load(tmp_path / "run", which="latest")
    assert learner.adapt(task.support_x[0], task.support_y[0].tolist()).predict(task.query_x[0])
