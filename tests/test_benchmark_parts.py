"""The benchmark's parts: budgets, plans, paired statistics, noisy support labels, the document."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from metalearner.benchmark import BenchmarkPlan, holm, load_plan, paired, parse_budget
from metalearner.benchmark.document import Bullets, Document, Heading, Image, Paragraph, Table
from metalearner.benchmark.report import _published
from metalearner.benchmark.scoring import describe_settings
from metalearner.benchmark.suite import _reference
from metalearner.config.plans import keep_plan, same_plan
from metalearner.config.presets import get_preset
from metalearner.errors import ConfigError
from metalearner.runs.config import load_config
from metalearner.runs.experiment import build_experiment
from metalearner.tasks import EpisodeSampler, LabeledSet, NoisyLabels

# --- budgets and plans -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds", "steps"),
    [("10m", 600.0, None), ("90s", 90.0, None), ("1.5h", 5400.0, None),
     ("2000steps", None, 2000), ("1 step", None, 1)],
)  # fmt: skip
def test_budgets_parse_to_seconds_or_steps(text: str, seconds: float, steps: int) -> None:
    budget = parse_budget(text)
    assert (budget.seconds, budget.steps) == (seconds, steps)


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "write e.g. 10m"), ("ten minutes", "write e.g. 10m"), ("0m", "write e.g. 10m"),
     ("-5s", "write e.g. 10m"), ("10d", "write e.g. 10m"), ("1.5steps", "whole number"),
     ("2000", "has no unit; write 2000steps for outer steps, or a duration such as 2000m")],
)  # fmt: skip
def test_bad_budgets_are_refused_with_an_example(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_budget(text)


def test_each_strategy_gets_its_preset_or_the_maml_anchor_and_the_same_budget() -> None:
    plan = BenchmarkPlan(strategies=("maml", "protonet", "anil", "finetune"), budget="10m")
    maml, proto, anil, fine = (plan.run_config(s) for s in plan.strategies)
    assert proto.strategy_config["train_ways"] == 60  # ProtoNets' own preset
    assert proto.data.queries == 5 and maml.data.queries == 15  # training queries are the papers'
    assert maml.data.train_queries == 1 and proto.data.train_queries is None
    # ANIL: MAML's inner loop, but its own outer optimiser and meta-batch.
    assert anil.strategy_config["inner_lr"] == maml.strategy_config["inner_lr"] == 0.4
    assert anil.strategy_config["head_only"] is True
    # finetune: mini-batches of 64 examples, with a cosine schedule over the budget.
    assert fine.meta_batch == 64 and maml.meta_batch == 32
    assert fine.optimizer.schedule == "cosine"
    for cfg in (maml, proto, anil, fine):
        assert cfg.time_budget == 600.0 and cfg.val_every_seconds == 100.0
        assert (cfg.data.ways, cfg.data.shots, cfg.seed) == (5, 1, 0)
        # The anchor's classes and test protocol for all, though ProtoNets' preset keeps
        # Vinyals et al.'s alphabets apart: strategies compared on one benchmark share them.
        assert (cfg.data.split, cfg.data.test_rotations) == ("vinyals", True)
    assert get_preset("omniglot-5w1s-protonet").load()["data"]["split"] == "vinyals-alphabets"


def test_strategies_may_train_on_other_queries_but_are_never_tested_on_other_data() -> None:
    plan = BenchmarkPlan(strategies=("maml", "protonet", "finetune"), budget="10m")
    configs = {s: plan.run_config(s) for s in plan.strategies}
    reference = _reference(plan, configs)  # MAML trains on 1 query a class, ProtoNets on 5
    assert reference.data.queries == plan.queries and reference.data.train_queries is None
    proto = configs["protonet"]
    lake = dataclasses.replace(proto, data=dataclasses.replace(proto.data, split="lake"))
    with pytest.raises(ConfigError, match="other data settings"):
        _reference(plan, {**configs, "protonet": lake})


def test_the_published_column_names_the_adaptation_steps_where_the_paper_does() -> None:
    sinusoid = BenchmarkPlan(dataset="sinusoid", shots=10, strategies=("maml",))
    assert _published(sinusoid, "maml") == "MSE 0.77 ± 0.11 (after one adaptation step)"
    assert _published(BenchmarkPlan(strategies=("maml",)), "maml") == "98.7 ± 0.4%"
    assert _published(BenchmarkPlan(strategies=("anil",)), "anil") == "-"


def test_meta_sgd_adapts_with_the_steps_it_learned_and_not_mamls_evaluation_steps() -> None:
    plan = BenchmarkPlan(strategies=("maml", "metasgd", "anil"), budget="10m")
    maml, metasgd, anil = (plan.run_config(s).strategy_config for s in plan.strategies)
    assert maml["eval_steps"] == anil["eval_steps"] == 3  # MAML's preset: 1 step, tested with 3
    assert metasgd["eval_steps"] == metasgd["inner_steps"] == 1


@pytest.mark.parametrize("shots", [1, 20])
def test_sinusoids_of_a_k_without_a_preset_take_the_nearest_ks_settings(shots: int) -> None:
    # Omniglot's defaults (inner step 0.4) send sinusoid regression to inf; the MAML paper ran
    # every K with the same settings.
    plan = BenchmarkPlan(dataset="sinusoid", shots=shots, strategies=("maml", "fomaml"),
                         budget="5steps")  # fmt: skip
    maml, fomaml = (plan.run_config(s) for s in plan.strategies)
    assert maml.strategy_config["inner_lr"] == fomaml.strategy_config["inner_lr"] == 0.01
    assert maml.meta_batch == 25 and maml.optimizer.lr == 0.001 and maml.data.shots == shots


def test_a_step_budget_sets_steps_and_cross_domain_trains_on_background_alphabets() -> None:
    plan = BenchmarkPlan(strategies=("reptile", "maml"), budget="300steps", cross_domain=True)
    cfg, maml = plan.run_config("reptile"), plan.run_config("maml")
    assert cfg.steps == 300 and cfg.time_budget is None and cfg.val_every == 30
    assert cfg.data.split == maml.data.split == "lake"
    # Upright test characters, as Lake's runs are, though MAML's preset rotates its own.
    assert not cfg.data.test_rotations and not maml.data.test_rotations
    assert cfg.optimizer.schedule == "linear"  # Reptile's annealing spans the budget's steps


def test_plans_read_yaml_and_options_override_it(tmp_path: Path) -> None:
    file = tmp_path / "plan.yaml"
    file.write_text(
        "dataset: sinusoid\nshots: 10\nstrategies: [maml, scratch]\nbudget: 50steps\n"
        "sweep_shots: [5, 10]\nstrategy_overrides:\n  maml: [strategy_config.inner_steps=2]\n"
    )
    plan = load_plan(file, budget="20steps", label_noise="")
    assert plan.strategies == ("maml", "scratch") and plan.budget == "20steps"
    assert plan.sweep_shots == (5, 10) and plan.label_noise == ()
    assert plan.run_config("maml").strategy_config["inner_steps"] == 2
    assert load_plan(None, sweep_shots="1,5", strategies="maml, protonet").sweep_shots == (1, 5)


@pytest.mark.parametrize(
    ("given", "message"),
    [({"strategies": "maml,nope"}, "Unknown strategy nope"),
     ({"strategies": "maml,maml"}, "listed twice"),
     ({"colour": "red"}, "Unknown benchmark setting 'colour'"),
     ({"label_noise": "0,1.5"}, "fractions"),
     ({"sweep_shots": "1,x"}, "'sweep_shots' must be a list, each an integer, got \\[1, 'x'\\]"),
     ({"dataset": "folder"}, "needs path"),
     ({"dataset": "sinusoid", "cross_domain": True}, "needs Omniglot"),
     ({"tasks": 1}, "at least 2"),
     ({"overrides": ["stepz=3"]}, "Unknown setting 'stepz'"),
     ({"dataset": "mnist"}, "must be one of sinusoid"),
     ({"strategies": "maml", "strategy_overrides": {"protonet": ["meta_batch=2"]}},
      "strategy_overrides names 'protonet', which is not among the strategies \\(maml\\)"),
     ({"strategy_overrides": {"maml": ["strategy_config.inner_stepz=2"]}}, "no setting")],
)  # fmt: skip
def test_bad_plans_are_refused_naming_the_setting(given: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_plan(None, **given)


def test_a_missing_plan_file_is_named_without_advice_the_command_cannot_take(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError, match=r"Plan file .*nope\.yaml does not exist") as err:
        load_plan(tmp_path / "nope.yaml")
    assert "--preset" not in str(err.value)


def test_a_folder_keeps_its_plan_once_work_started_and_takes_a_new_one_before(
    tmp_path: Path,
) -> None:
    file = tmp_path / "benchmark.yaml"
    keep_plan(file, {"budget": "20steps", "workers": 1}, free={"workers"}, what="benchmark")
    same = {"budget": "20steps", "workers": 2}
    assert same_plan(file, same, free={"workers"})
    keep_plan(file, same, free={"workers"}, what="benchmark", started=True)  # workers are free
    other = {"budget": "30steps", "workers": 1}
    assert not same_plan(file, other, free={"workers"})
    with pytest.raises(ConfigError, match="another plan \\(budget: '20steps' there, '30steps' now"):
        keep_plan(file, other, free={"workers"}, what="benchmark", started=True)
    # Nothing done yet (an earlier attempt failed): the corrected plan replaces it.
    keep_plan(file, other, free={"workers"}, what="benchmark", started=False)
    assert same_plan(file, other, free={"workers"})


# --- paired statistics -------------------------------------------------------------------


def test_paired_t_test_matches_a_hand_computed_example() -> None:
    # d = a - b = [1, 0, 0, 1]: mean 1/2, sd sqrt(1/3), se = sd / 2, t = sqrt(3), 3 d.o.f.
    # Student's t with 3 d.o.f. has a closed-form CDF:
    #   F(t) = 1/2 + (1/pi) * (u / (1 + u^2) + atan(u)),  u = t / sqrt(3)
    # so at u = 1: F = 3/4 + 1/(2 pi), and p = 2 (1 - F) = 1/2 - 1/pi.
    result = paired("a", "b", [1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.0])
    assert result.n == 4 and result.mean == pytest.approx(0.5)
    assert result.p == pytest.approx(0.5 - 1 / math.pi, rel=1e-9)
    # 95% CI half-width: t_{0.975, 3} = 3.182446305 (tables) times se = sqrt(1/3) / 2.
    assert result.ci95 == pytest.approx(3.182446305 * math.sqrt(1 / 3) / 2, rel=1e-8)
    assert (result.wins, result.ties, result.losses) == (2, 2, 0)
    assert result.verdict() == "no difference shown"  # p = 0.18


def test_a_constant_difference_is_certain_and_equal_scores_are_not() -> None:
    better = paired("a", "b", [1.0, 0.75, 0.5], [0.5, 0.25, 0.0])  # exact in binary
    assert better.p == 0.0 and better.ci95 == 0.0 and better.verdict() == "a better"
    # Lower is better (MSE): a's smaller error wins.
    assert better.verdict(higher_is_better=False) == "b better"
    same = paired("a", "b", [0.5, 0.5], [0.5, 0.5])
    assert same.p == 1.0 and same.verdict() == "no difference shown"
    with pytest.raises(ValueError, match="same length"):
        paired("a", "b", [1.0, 2.0], [1.0])


def test_holm_adjusts_in_step_down_order_and_keeps_input_order() -> None:
    # Sorted: 0.01 x 3 = 0.03; 0.03 x 2 = 0.06; 0.04 x 1 = 0.04, raised to 0.06 (monotone).
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([]) == []


# --- noisy support labels ----------------------------------------------------------------


def _tasks(tiny_images: LabeledSet, n: int = 6):  # type: ignore[no-untyped-def]
    sampler = EpisodeSampler(tiny_images, torch.arange(12), ways=3, shots=2, queries=3)
    return sampler.fixed(n, seed=5)


def test_noise_mislabels_exactly_p_of_the_support_with_unseen_images_of_other_classes(
    tiny_images: LabeledSet,
) -> None:
    sampler = EpisodeSampler(tiny_images, torch.arange(12), ways=3, shots=2, queries=4)
    clean_set = sampler.fixed(6, seed=5)
    clean = clean_set.batch(0, len(clean_set))
    noisy_set = NoisyLabels(clean_set, 0.5, seed=3)
    h = noisy_set.spares
    assert h == NoisyLabels.spares_needed(6, ways=3, shots=2, p=0.5, seed=3) >= 2
    noisy = noisy_set.batch(0, len(clean_set))
    by_class = clean.query_x.reshape(6, 3, 4, 1, 8, 8)
    spares = by_class[:, :, 4 - h :]  # the held-out queries of each class
    assert torch.equal(noisy.support_y, clean.support_y)  # labels: each class keeps K = 2
    for t in range(6):
        changed = [
            s for s in range(6) if not torch.equal(noisy.support_x[t, s], clean.support_x[t, s])
        ]
        assert len(changed) == 3  # round(0.5 * 6)
        used = []
        for s in changed:
            label = int(clean.support_y[t, s])
            source = [
                (c, i) for c in range(3) for i in range(h)
                if torch.equal(noisy.support_x[t, s], spares[t, c, i])
            ]  # fmt: skip
            assert source and all(c != label for c, _ in source)  # another class, held out
            used += source
        assert len(set(used)) == len(changed)  # no image fills two slots
    # The spares are gone from the queries, which are otherwise the clean ones.
    kept = by_class[:, :, : 4 - h].reshape(6, 3 * (4 - h), 1, 8, 8)
    assert torch.equal(noisy.query_x, kept)
    assert torch.equal(noisy.query_y, torch.arange(3).repeat_interleave(4 - h).expand(6, -1))


def test_noise_is_fixed_by_its_seed_whatever_the_batching(tiny_images: LabeledSet) -> None:
    a = NoisyLabels(_tasks(tiny_images), 0.4, seed=9)
    b = NoisyLabels(_tasks(tiny_images), 0.4, seed=9)
    whole = a.batch(0, 6)
    assert torch.equal(whole.support_x[2:5], b.batch(2, 5).support_x)
    other = NoisyLabels(_tasks(tiny_images), 0.4, seed=10).batch(0, 6)
    assert not torch.equal(whole.support_x, other.support_x)
    zero = NoisyLabels(_tasks(tiny_images), 0.0, seed=9).batch(0, 6)
    assert torch.equal(zero.support_x, _tasks(tiny_images).batch(0, 6).support_x)


def test_noise_refuses_what_it_cannot_corrupt(tiny_images: LabeledSet) -> None:
    with pytest.raises(ConfigError, match="not a fraction"):
        NoisyLabels(_tasks(tiny_images), 1.5, seed=0)
    one_query = EpisodeSampler(tiny_images, torch.arange(12), ways=3, shots=1, queries=1)
    with pytest.raises(ConfigError, match="2 queries per class"):
        NoisyLabels(one_query.fixed(2, seed=0), 0.2, seed=0)
    with pytest.raises(ConfigError, match=r"needs at least 2 classes and 5 queries.*1 asked for"):
        NoisyLabels(_tasks(tiny_images), 1.0, seed=0, spares=1)  # 2 slots name one class


# --- the document ------------------------------------------------------------------------


def test_document_writes_the_same_blocks_as_markdown_and_self_contained_html(
    tmp_path: Path,
) -> None:
    png = tmp_path / "figures" / "f.png"
    png.parent.mkdir()
    import matplotlib.pyplot as plt

    plt.figure(figsize=(1, 1))
    plt.savefig(png)
    plt.close()
    doc = Document("T <1>")
    doc.add(
        Heading("Setup"),
        Paragraph("run `metalearner x` for **bold** a<b"),
        Bullets(("one", "two")),
        Table(("a", "b"), (("1", "2"),)),
        Image(png, "a figure"),
    )
    md = doc.markdown(tmp_path)
    assert "# T <1>" in md and "## Setup" in md and "| a | b |" in md and "- two" in md
    assert "![a figure](figures/f.png)" in md
    page = doc.html()
    assert "<h1>T &lt;1&gt;</h1>" in page and "<code>metalearner x</code>" in page
    assert "<b>bold</b> a&lt;b" in page and "<td>2</td>" in page
    assert 'src="data:image/png;base64,iVBORw0KGgo' in page  # the PNG itself, embedded
    assert "figures/f.png" not in page


def test_the_settings_line_names_the_model_as_built_not_as_set() -> None:
    # model.width and depth size conv4 only: an MLP reported as "mlp 64×4" was the 40-40 one.
    cfg = load_config(overrides=["data.dataset=sinusoid", "val_tasks=4"])
    exp = build_experiment(cfg)
    assert describe_settings(cfg, exp.meta["backbone"]).endswith("; model mlp")
    conv4 = {"name": "conv4", "out_features": 5, "width": 32, "depth": 3}
    assert describe_settings(cfg, conv4).endswith("; model conv4 32×3")


def test_the_settings_line_states_training_episodes_only_for_a_strategy_trained_on_them() -> None:
    # A transfer baseline trains on mini-batches: "1 training queries per class" (its MAML
    # anchor's) described nothing it did.
    cfg = load_config(overrides=["data.dataset=sinusoid", "data.queries=7", "val_tasks=4"])
    backbone = {"name": "mlp", "out_features": 1}
    assert ", 7 training queries per class; " in describe_settings(cfg, backbone)
    assert "queries" not in describe_settings(cfg, backbone, episodes=False)
    grouped = dataclasses.replace(cfg, data=dataclasses.replace(
        cfg.data, train_queries=2, train_within_groups=True))  # fmt: skip
    line = describe_settings(grouped, backbone)
    assert ", 2 training queries per class within one group; " in line
