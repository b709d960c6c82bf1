"""The no-training floor beside every score: what it scores, when a model beats it, and where
`evaluate`, `adapt` and `benchmark` show it (issue 31)."""

from __future__ import annotations

import json
import math
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from metalearner.benchmark.plan import BenchmarkPlan
from metalearner.benchmark.scoring import StrategyResult
from metalearner.benchmark.yardsticks import paper_share
from metalearner.data.labeled import LabeledSet
from metalearner.evaluation.evaluator import Score, evaluate
from metalearner.evaluation.floor import compare_to_floor, floor_predict, floor_task_scores
from metalearner.runs.config import load_config
from metalearner.runs.experiment import build_experiment
from metalearner.tasks import EpisodeSampler, SinusoidTasks
from metalearner.training.loop import meta_train

sys.path.insert(0, str(Path(__file__).parent))
from cli_runner import run_cli as cli
from image_classes import write_class

WAYS = 5


def image_tasks(spread: float, *, classes: int = 12, count: int = 6, tasks: int = 200):
    """Fixed 5-way 1-shot tasks over 28×28 classes: a random pattern each, plus noise; with
    ``spread`` 0 every class is the same noise (identical in distribution)."""
    g = torch.Generator().manual_seed(0)
    looks = torch.rand(classes, 1, 28, 28, generator=g) * spread
    noise = torch.rand(classes, count, 1, 28, 28, generator=g) * 0.2
    x = ((looks[:, None] + noise).clamp(0, 1) * 255).to(torch.uint8).reshape(-1, 1, 28, 28)
    y = torch.arange(classes).repeat_interleave(count)
    data = LabeledSet(x, y, tuple(f"c{i}" for i in range(classes)))
    sampler = EpisodeSampler(data, torch.arange(classes), ways=WAYS, shots=1, queries=5)
    return sampler.fixed(tasks, seed=1)


def test_the_floor_is_about_100_percent_on_classes_far_apart_in_pixel_space() -> None:
    scores = floor_task_scores(image_tasks(spread=0.8))
    assert scores.shape == (200,) and float(scores.mean()) > 0.99


def test_the_floor_is_near_chance_when_the_classes_are_identical_in_distribution() -> None:
    scores = floor_task_scores(image_tasks(spread=0.0))
    half = 1.96 * float(scores.std()) / math.sqrt(len(scores))
    assert abs(float(scores.mean()) - 1 / WAYS) < max(2 * half, 0.03)


def reference_nearest_mean(support, labels, query, bag=False):
    """A plain-Python nearest class mean, one query at a time, for the checks below."""

    def features(x):
        if not bag:
            return {i: v for i, v in enumerate(x.flatten().tolist())}
        return Counter(t for t in x[0].tolist() if t != 0)  # token ids, padding left out

    def distance(a, b):
        return sum((a.get(k, 0.0) - b.get(k, 0.0)) ** 2 for k in set(a) | set(b))

    means = {}
    for c in sorted(set(labels)):
        members = [features(s) for s, y in zip(support, labels, strict=True) if y == c]
        keys = set().union(*members)
        means[c] = {k: sum(m.get(k, 0.0) for m in members) / len(members) for k in keys}
    return [min(means, key=lambda c: (distance(features(q), means[c]), c)) for q in query]


def test_images_and_tables_go_to_the_nearest_class_mean_of_their_flattened_values() -> None:
    g = torch.Generator().manual_seed(3)
    support, query = torch.rand(4, 6, 2, 3, 3, generator=g), torch.rand(4, 7, 2, 3, 3, generator=g)
    labels = torch.tensor([0, 1, 2, 0, 1, 2]).repeat(4, 1)
    got = floor_predict(support, labels, query, 3).argmax(-1)
    for t in range(4):
        want = reference_nearest_mean(support[t], labels[t].tolist(), query[t])
        assert got[t].tolist() == want


def test_sentences_are_bags_of_their_token_ids_without_padding_or_positions() -> None:
    g = torch.Generator().manual_seed(4)
    L = 12

    def sentences(n):  # ids 2..9, each sentence of its own length, random position rows
        x = torch.zeros(n, 3, L, dtype=torch.int64)
        for i in range(n):
            k = int(torch.randint(2, L + 1, (1,), generator=g))
            x[i, 0, :k] = torch.randint(2, 10, (k,), generator=g)
            x[i, 1:, :k] = torch.randint(1, 2 * L, (2, k), generator=g)
        return x

    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    for _ in range(20):
        support, query = sentences(6), sentences(9)
        got = floor_predict(support[None], labels[None], query[None], 3)[0].argmax(-1)
        assert got.tolist() == reference_nearest_mean(support, labels.tolist(), query, bag=True)


def test_the_regression_floor_predicts_the_mean_of_the_support_targets() -> None:
    tasks = SinusoidTasks(shots=5, queries=10).fixed(30, seed=0)
    batch = tasks.batch(0, 30)
    want = [
        float(np.mean((q - s.mean()) ** 2))
        for s, q in zip(batch.support_y.numpy(), batch.query_y.numpy(), strict=True)
    ]
    assert floor_task_scores(tasks).tolist() == pytest.approx(want, rel=1e-5)


def test_evaluate_scores_the_regression_floor_on_its_own_test_tasks(tmp_path: Path) -> None:
    cfg = load_config(
        overrides=[
            *("data.dataset=sinusoid", "steps=2", "val_every=2", "val_tasks=2", "threads=1"),
            *("meta_batch=2", "strategy_config.eval_steps=1"),
        ]
    )
    meta_train(cfg, tmp_path / "run", quiet=True)
    result = evaluate(tmp_path / "run", num_tasks=12, curve=False)
    batch = build_experiment(cfg).test_tasks(cfg, 12).batch(0, 12)
    errors = (batch.query_y - batch.support_y.mean(1, keepdim=True)).square().mean(1)
    assert result.floor is not None and result.metric == "mse"
    assert result.floor.mean == pytest.approx(float(errors.mean()), rel=1e-5)
    saved = json.loads((tmp_path / "run" / "eval.json").read_text())["floor"]
    assert saved["mean"] == pytest.approx(result.floor.mean)
    assert saved["beats"] is (saved["difference"] - saved["difference_ci95"] > 0)


def test_a_model_beats_the_floor_only_when_the_paired_interval_lies_above_zero() -> None:
    floor = [0.4, 0.6, 0.5, 0.7, 0.3, 0.5]
    gains = [0.1, 0.3, -0.05, 0.2, 0.15, 0.1]
    model = [f + d for f, d in zip(floor, gains, strict=True)]
    c = compare_to_floor(model, floor, metric="accuracy")
    half = stats.t.ppf(0.975, 5) * np.std(gains, ddof=1) / math.sqrt(6)  # Student's t, paired
    assert c.difference == pytest.approx(np.mean(gains))
    assert c.difference_ci95 == pytest.approx(half)
    assert np.mean(gains) - half > 0 and c.beats
    assert c.mean == pytest.approx(np.mean(floor))
    # A noisy gain whose interval reaches below 0 does not beat it; nor does equality.
    noisy = [f + d for f, d in zip(floor, [0.3, -0.25, 0.2, -0.2, 0.25, -0.1], strict=True)]
    assert not compare_to_floor(noisy, floor, metric="accuracy").beats
    same = compare_to_floor([1.0] * 6, [1.0] * 6, metric="accuracy")
    assert not same.beats and "does not beat the floor" in same.verdict("accuracy")
    # MSE: lower is better, so the gain is floor − model.
    mse = compare_to_floor([0.1, 0.2, 0.15], [1.0, 1.1, 0.9], metric="mse")
    assert mse.beats and mse.difference == pytest.approx(0.85)
    assert "lower mse" in mse.verdict("mse")
    one = compare_to_floor([1.0], [0.2], metric="accuracy")
    assert not one.beats and one.difference_ci95 is None


def test_the_report_gives_the_share_of_the_papers_training_and_flags_under_10_percent() -> None:
    plan = BenchmarkPlan(strategies=("maml", "protonet", "anil"), budget="600steps")

    def result(name: str, steps: int) -> StrategyResult:
        return StrategyResult(name, [], Score(None, 0.5, 0.1), 1.0, 1, steps, 1.0, 1)

    # MAML: 60,000 meta-iterations of 32 tasks (the reference code); 600 × 32 is 1% of it.
    assert paper_share(plan, result("maml", 600)) == ("1% of 60,000 × 32 tasks ‡", True)
    assert paper_share(plan, result("maml", 30000)) == ("50% of 60,000 × 32 tasks", False)
    # ProtoNets stopped early: its paper trained at least 20,000 episodes, so at most this.
    assert paper_share(plan, result("protonet", 4000)) == ("≤ 20% of 20,000 × 1 tasks", False)
    assert paper_share(plan, result("anil", 600)) == ("-", False)  # no published score


# ----- the commands, as a user runs them, on classes far apart in pixel space -----------------

FOLDER = [
    *("data.dataset=folder", "data.ways=3", "data.shots=1", "data.queries=2"),
    *("data.meta_train_classes=8", "data.val_classes=3", "model.width=8", "model.depth=2"),
    *("val_tasks=2", "val_every=1", "meta_batch=1", "steps=1", "threads=1", "test_tasks=10"),
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model trained one step on 12 classes of distinct patterns: the floor is ~100% there,
    and so cannot be beaten."""
    root = tmp_path_factory.mktemp("floor")
    for c in range(12):
        write_class(root / "data" / f"c{c:02d}", c, 5)
    cfg = load_config(overrides=[*FOLDER, f"data.path={root / 'data'}", "strategy=protonet",
                                 "strategy_config.train_ways=3"])  # fmt: skip
    meta_train(cfg, root / "run", quiet=True)
    return root


@pytest.mark.slow  # the command in a subprocess, as a user runs it
def test_evaluate_prints_and_stores_the_floor_and_says_the_model_does_not_beat_it(
    trained: Path,
) -> None:
    result = cli("evaluate", "run", cwd=trained)
    assert result.returncode == 0, result.stderr
    saved = json.loads((trained / "run" / "eval.json").read_text())
    floor = saved["floor"]
    assert floor["mean"] > 0.95 and floor["beats"] is False
    assert floor["difference"] == pytest.approx(saved["score"]["mean"] - floor["mean"])
    lines = result.stdout.splitlines()
    assert any(line.startswith(f"floor accuracy {100 * floor['mean']:.2f}%") for line in lines)
    assert "nearest class mean on the inputs, no training" in result.stdout
    assert "the model does not beat the floor by more than the 95% CI" in result.stdout


@pytest.mark.slow  # the command in a subprocess, as a user runs it
def test_adapt_prints_the_floor_beside_the_accuracy_or_its_agreement(trained: Path) -> None:
    for c, name in zip((50, 51, 52), ("alpha", "beta", "gamma"), strict=True):
        write_class(trained / "support" / name, c, 1)
        write_class(trained / "query" / name, c, 3)  # drawings of the same look
    labeled = cli("adapt", "run", "--support", "support", "--query", "query", cwd=trained)
    assert labeled.returncode == 0, labeled.stderr
    assert "floor accuracy 100.00% (9/9): nearest class mean on the inputs" in labeled.stdout
    # Nothing beats 100%: the verdict, paired over the 9 query items, says so.
    assert "the model does not beat the floor" in labeled.stdout
    files = sorted(str(p.relative_to(trained)) for p in (trained / "query").glob("*/*.png"))
    unlabeled = cli("adapt", "run", "--support", "support", "--query", *files, cwd=trained)
    assert unlabeled.returncode == 0, unlabeled.stderr
    assert "floor (nearest class mean on the inputs, no training) agrees with the model on" in (
        unlabeled.stdout
    )


@pytest.mark.slow  # the command in a subprocess, as a user runs it
def test_the_benchmark_report_has_a_floor_row_and_names_who_does_not_beat_it(
    trained: Path,
) -> None:
    plan = trained / "plan.yaml"
    plan.write_text(
        "dataset: folder\npath: data\nways: 3\nshots: 1\nqueries: 2\nstrategies: [scratch]\n"
        "budget: 1steps\ntasks: 8\nquick: true\nval_tasks: 2\n"
        "overrides: [model.width=8, model.depth=2, threads=1, data.meta_train_classes=8,"
        " data.val_classes=3, data.queries=2, strategy_config.eval_steps=1]\n"
    )
    result = cli("benchmark", "plan.yaml", "--out", "b", "-q", cwd=trained)
    assert result.returncode == 0, result.stderr
    assert "floor (no training)" in result.stdout
    report = (trained / "b" / "report.md").read_text()
    lines = report.splitlines()
    header = next(line for line in lines if line.startswith("| strategy | test accuracy"))
    row = next(line for line in lines if line.startswith("| *floor: no training* | 100.00%"))
    assert row.count("|") == header.count("|")  # a cell under every column
    assert "**Does not beat the floor: scratch.**" in report
    assert "(does not beat it)" in report
