"""The episode sampler: shapes, labels, disjoint splits, determinism, uniformity, bad input."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest
import torch
from scipy.stats import chisquare

from metalearner.errors import ConfigError, DataError
from metalearner.runs.config import load_config
from metalearner.runs.experiment import Experiment, build_experiment
from metalearner.tasks import (
    ClassSplit,
    EpisodeSampler,
    EpisodeTaskSet,
    LabeledSet,
    iter_batches,
    random_split,
    to_float,
    with_rotations,
)

sys.path.insert(0, str(Path(__file__).parent))
from omniglot_fixture import write_fake_omniglot

# A fake Omniglot's lake split: 7 background alphabets (5 validate), 2 evaluation ones.
BACKGROUND = {f"Bg{i}": 2 for i in range(7)}
EVALUATION = {"EvalA": 3, "EvalB": 3}


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_shapes_and_dtypes(tiny_images: LabeledSet) -> None:
    sampler = EpisodeSampler(tiny_images, torch.arange(12), ways=5, shots=2, queries=3)
    b = sampler.sample(4, generator=gen(0))
    assert b.support_x.shape == (4, 10, 1, 8, 8) and b.support_x.dtype == torch.float32
    assert b.query_x.shape == (4, 15, 1, 8, 8) and b.query_x.dtype == torch.float32
    assert b.support_y.shape == (4, 10) and b.support_y.dtype == torch.int64
    assert b.query_y.shape == (4, 15) and b.query_y.dtype == torch.int64
    assert b.classes is not None and b.classes.shape == (4, 5) and b.classes.dtype == torch.int64
    assert b.num_tasks == 4 and b.ways == 5
    assert float(b.support_x.min()) >= 0.0 and float(b.support_x.max()) <= 1.0


def test_labels_match_classes_and_examples(tiny_images: LabeledSet) -> None:
    sampler = EpisodeSampler(tiny_images, torch.arange(12), ways=4, shots=2, queries=3)
    plan = sampler.plan(20, generator=gen(1))
    b = sampler.gather(plan)
    assert b.classes is not None
    # Every gathered example belongs to the class its label stands for.
    assert torch.equal(tiny_images.y[plan.rows], plan.classes[..., None].expand_as(plan.rows))
    for t in range(b.num_tasks):
        assert sorted(b.support_y[t].unique().tolist()) == [0, 1, 2, 3]
        assert torch.bincount(b.query_y[t]).tolist() == [3, 3, 3, 3]
        assert plan.classes[t].unique().numel() == 4  # N distinct classes
        assert plan.rows[t].unique().numel() == 4 * 5  # no example used twice in a task
        for x, y in zip(b.support_x[t], b.support_y[t], strict=True):
            rows = (tiny_images.y == b.classes[t, y]).nonzero().flatten()
            assert any(torch.equal(x, to_float(tiny_images.x[r])) for r in rows.tolist())


def test_split_classes_disjoint_and_respected(tiny_images: LabeledSet) -> None:
    split = random_split(12, train=6, val=3, seed=0)
    sizes = split.sizes()
    assert sizes == {"train": 6, "val": 3, "test": 3}
    all_ids = torch.cat([split.train, split.val, split.test])
    assert sorted(all_ids.tolist()) == list(range(12))
    for name in ("train", "val", "test"):
        sampler = EpisodeSampler(tiny_images, split[name], ways=3, shots=1, queries=1)
        b = sampler.sample(50, generator=gen(2))
        assert b.classes is not None
        assert set(b.classes.flatten().tolist()) <= set(split[name].tolist())
    with pytest.raises(ConfigError, match="two splits"):
        ClassSplit(torch.tensor([0, 1]), torch.tensor([1]), torch.tensor([2]))
    with pytest.raises(ConfigError, match="does not fit"):
        random_split(12, train=10, val=3, seed=0)


def test_same_seed_same_tasks_different_seed_different(tiny_images: LabeledSet) -> None:
    sampler = EpisodeSampler(tiny_images, torch.arange(12), ways=5, shots=1, queries=2)
    a = sampler.sample(8, generator=gen(7))
    b = sampler.sample(8, generator=gen(7))
    c = sampler.sample(8, generator=gen(8))
    assert torch.equal(a.support_x, b.support_x) and torch.equal(a.query_x, b.query_x)
    assert a.classes is not None and c.classes is not None
    assert not torch.equal(a.classes, c.classes)
    # The global RNG plays no part.
    torch.manual_seed(0)
    d = sampler.sample(8, generator=gen(7))
    assert torch.equal(a.query_x, d.query_x)


def test_fixed_task_set_is_identical_for_every_caller(tiny_images: LabeledSet) -> None:
    sampler = EpisodeSampler(tiny_images, torch.arange(12), ways=3, shots=1, queries=2)
    first, second = sampler.fixed(10, seed=5), sampler.fixed(10, seed=5)
    assert len(first) == 10
    joined = list(iter_batches(first, 4))
    assert [b.num_tasks for b in joined] == [4, 4, 2]
    whole = second.batch(0, 10)
    assert torch.equal(torch.cat([b.query_x for b in joined]), whole.query_x)
    assert not torch.equal(sampler.fixed(10, seed=6).batch(0, 10).query_x, whole.query_x)


def test_classes_and_examples_drawn_uniformly(tiny_images: LabeledSet) -> None:
    sampler = EpisodeSampler(tiny_images, torch.arange(12), ways=3, shots=1, queries=1)
    plan = sampler.plan(4000, generator=gen(3))
    class_counts = torch.bincount(plan.classes.flatten(), minlength=12)
    assert chisquare(class_counts.numpy()).pvalue > 1e-3
    row_counts = torch.bincount(plan.rows.flatten(), minlength=len(tiny_images))
    assert chisquare(row_counts.numpy()).pvalue > 1e-3
    # Every label position is filled by every class equally often (no order bias).
    first = torch.bincount(plan.classes[:, 0], minlength=12)
    assert chisquare(first.numpy()).pvalue > 1e-3


def test_ragged_classes_never_sample_padding() -> None:
    counts = [3, 9, 4, 5]
    y = torch.cat([torch.full((c,), i) for i, c in enumerate(counts)])
    x = torch.arange(len(y)).view(-1, 1).float()
    data = LabeledSet(x, y, ("a", "b", "c", "d"), name="ragged")
    sampler = EpisodeSampler(data, torch.arange(4), ways=2, shots=2, queries=1)
    plan = sampler.plan(500, generator=gen(4))
    assert int(plan.rows.min()) >= 0
    assert torch.equal(data.y[plan.rows], plan.classes[..., None].expand_as(plan.rows))
    # Class b's nine examples all get used, each about equally often.
    used_b = plan.rows[plan.classes == 1].flatten()
    assert chisquare(torch.bincount(used_b, minlength=len(y))[3:12].numpy()).pvalue > 1e-3


def test_class_too_small_is_a_clear_error(tiny_images: LabeledSet) -> None:
    with pytest.raises(DataError, match=r"'class00'.*6 examples.*shots \+ queries = 7"):
        EpisodeSampler(tiny_images, torch.arange(12), ways=2, shots=2, queries=5)


def test_more_ways_than_classes_is_a_clear_error(tiny_images: LabeledSet) -> None:
    with pytest.raises(DataError, match="3 classes in this split but a task needs 5 ways"):
        EpisodeSampler(tiny_images, torch.arange(3), ways=5, shots=1, queries=1)
    with pytest.raises(DataError, match="not a task"):
        EpisodeSampler(tiny_images, torch.arange(12), ways=0, shots=1, queries=1)


def test_rotations_add_classes_for_the_given_split_only(tiny_images: LabeledSet) -> None:
    split = random_split(12, train=6, val=3, seed=1)
    data, train = with_rotations(tiny_images, split.train)
    assert data.num_classes == 12 + 3 * 6 and len(train) == 24
    assert train[:6].tolist() == split.train.tolist()
    assert len(data) == len(tiny_images) + 3 * 6 * 6
    # The original examples and ids are untouched; val/test classes get no rotated copies.
    assert torch.equal(data.x[: len(tiny_images)], tiny_images.x)
    c = int(split.train[2])
    for i, angle in enumerate((90, 180, 270)):
        new = 12 + i * 6 + 2
        assert data.class_names[new] == f"class{c:02d}@rot{angle}"
        expected = torch.rot90(tiny_images.x[tiny_images.y == c], k=angle // 90, dims=(-2, -1))
        assert torch.equal(data.x[data.y == new], expected)
    sampler = EpisodeSampler(data, train, ways=5, shots=1, queries=1)
    b = sampler.sample(100, generator=gen(0))
    assert b.classes is not None and int(b.classes.max()) >= 12
    with pytest.raises(ConfigError, match="90, 180 or 270"):
        with_rotations(tiny_images, split.train, angles=(45,))


def _colour_set() -> LabeledSet:
    g = torch.Generator().manual_seed(3)
    y = torch.arange(6).repeat_interleave(5)
    x = torch.randint(0, 256, (30, 3, 10, 10), generator=g, dtype=torch.uint8)
    return LabeledSet(x, y, tuple(f"c{i}" for i in range(6)), name="colour")


def test_training_episodes_of_colour_images_are_augmented_and_fixed_sets_never() -> None:
    data = _colour_set()
    plain = EpisodeSampler(data, torch.arange(6), ways=3, shots=1, queries=2)
    augmented = EpisodeSampler(data, torch.arange(6), ways=3, shots=1, queries=2, augment=True)
    a, b = augmented.sample(4, generator=gen(5)), plain.sample(4, generator=gen(5))
    # The same tasks (the plan is drawn first), but other pixels: cropped, flipped, jittered.
    assert torch.equal(a.classes, b.classes) and a.support_x.shape == b.support_x.shape
    for aug, raw in ((a.support_x, b.support_x), (a.query_x, b.query_x)):
        assert not torch.equal(aug, raw)
        assert float(aug.min()) >= 0.0 and float(aug.max()) <= 1.0
    again = augmented.sample(4, generator=gen(5))  # reproducible from the generator alone
    assert torch.equal(again.support_x, a.support_x) and torch.equal(again.query_x, a.query_x)
    # Validation and test sets are fixed plans: the stored pixels, never augmented.
    fixed = augmented.fixed(3, seed=1).batch(0, 3)
    rows = augmented.fixed(3, seed=1).plan.rows
    assert torch.equal(fixed.support_x, to_float(data.x[rows[:, :, 0].flatten()]).view_as(
        fixed.support_x))  # fmt: skip


def test_grey_episodes_are_never_augmented(tiny_images: LabeledSet) -> None:
    plain = EpisodeSampler(tiny_images, torch.arange(12), ways=5, shots=1, queries=2)
    asked = EpisodeSampler(tiny_images, torch.arange(12), ways=5, shots=1, queries=2, augment=True)
    assert torch.equal(asked.sample(2, generator=gen(0)).query_x,
                       plain.sample(2, generator=gen(0)).query_x)  # fmt: skip


@pytest.mark.parametrize("dataset", ["omniglot", "sinusoid"])
def test_training_episodes_take_train_queries_and_fixed_tasks_keep_queries(
    dataset: str, tmp_path: Path
) -> None:
    """``data.train_queries`` (Finn et al.'s as many queries a class as shots) changes the
    training episodes only: validation and test tasks keep ``data.queries``."""
    write_fake_omniglot(tmp_path, drawings=6, background=BACKGROUND, evaluation=EVALUATION)
    images = ["data.split=lake", "data.ways=2", "model.width=8", "model.depth=2"]
    cfg = load_config(
        overrides=[f"data.dataset={dataset}", "data.queries=3", "data.train_queries=1",
                   "val_tasks=2", "test_tasks=2", *(images if dataset == "omniglot" else [])]
    )  # fmt: skip
    exp = build_experiment(cfg, data_dir=tmp_path)
    per_task = 2 if dataset == "omniglot" else 1  # classes, or points of a sinusoid
    assert exp.training_batch(0, 4, gen(0)).query_x.shape[:2] == (4, per_task * 1)
    for tasks in (exp.val_tasks(cfg), exp.test_tasks(cfg)):
        assert tasks.batch(0, 2).query_x.shape[:2] == (2, per_task * 3)
    unset = build_experiment(dataclasses.replace(cfg, data=dataclasses.replace(
        cfg.data, train_queries=None)), data_dir=tmp_path)  # fmt: skip
    assert unset.training_batch(0, 4, gen(0)).query_x.shape[:2] == (4, per_task * 3)


def _grouped() -> LabeledSet:
    """12 classes of 3 examples in three groups: A has 6 classes, B 4, C 2."""
    y = torch.arange(12).repeat_interleave(3)
    x = torch.randint(0, 256, (36, 1, 4, 4), generator=gen(2), dtype=torch.uint8)
    groups = ("A",) * 6 + ("B",) * 4 + ("C",) * 2
    return LabeledSet(x, y, tuple(f"c{i}" for i in range(12)), groups, name="grouped")


def test_within_group_episodes_draw_every_class_of_a_task_from_one_group() -> None:
    """``within_groups``: one group a task, chosen through a class drawn uniformly among those
    whose group has N classes (C, with 2, never serves a 3-way task), then N classes uniformly
    within it; without it, tasks mix groups."""
    data = _grouped()
    group = torch.tensor([ord(g) - ord("A") for g in data.groups])
    sampler = EpisodeSampler(data, torch.arange(12), ways=3, shots=1, queries=1, within_groups=True)
    plan = sampler.plan(6000, generator=gen(4))
    homes = group[plan.classes]  # [T, 3]
    assert bool((homes == homes[:, :1]).all())  # one group a task
    counts = torch.bincount(homes[:, 0], minlength=3)
    assert counts[2] == 0  # C has 2 classes: never a 3-way task
    assert chisquare(counts[:2].tolist(), [6000 * 6 / 10, 6000 * 4 / 10]).pvalue > 1e-3
    for g, members in ((0, range(6)), (1, range(6, 10))):
        seen = torch.bincount(plan.classes[homes[:, 0] == g].flatten(), minlength=12)
        assert chisquare(seen[list(members)].tolist()).pvalue > 1e-3  # uniform within it
    mixed = EpisodeSampler(data, torch.arange(12), ways=3, shots=1, queries=1).plan(
        200, generator=gen(4)
    )
    assert bool((group[mixed.classes] != group[mixed.classes][:, :1]).any())


def test_within_group_episodes_never_mix_rotations() -> None:
    """A rotated alphabet is its own group: a within-alphabet task is all of one orientation."""
    data, train = with_rotations(_grouped(), torch.arange(10))
    assert data.groups[12] == "A@rot90" and data.groups[0] == "A"
    sampler = EpisodeSampler(data, train, ways=4, shots=1, queries=1, within_groups=True)
    plan = sampler.plan(500, generator=gen(1))
    for task in plan.classes.tolist():
        assert len({data.groups[c] for c in task}) == 1
    homes = {data.groups[c] for c in plan.classes[:, 0].tolist()}
    assert homes == {"A", "A@rot90", "A@rot180", "A@rot270", "B", "B@rot90", "B@rot180",
                     "B@rot270"}  # fmt: skip


def test_within_group_episodes_without_groups_or_a_group_large_enough_are_clear_errors(
    tiny_images: LabeledSet,
) -> None:
    with pytest.raises(DataError, match=r"records no groups of classes.*train_within_groups"):
        EpisodeSampler(tiny_images, torch.arange(12), ways=2, shots=1, queries=1,
                       within_groups=True)  # fmt: skip
    with pytest.raises(DataError, match=r"No group .* has 7 classes \(the largest has 6\)"):
        EpisodeSampler(_grouped(), torch.arange(12), ways=7, shots=1, queries=1,
                       within_groups=True)  # fmt: skip


def test_train_within_groups_draws_training_episodes_within_an_alphabet_only(
    tmp_path: Path,
) -> None:
    """``data.train_within_groups`` through a run's experiment: each training task's characters
    share an alphabet (and a rotation); validation and test tasks are the same as without."""
    write_fake_omniglot(tmp_path, drawings=6, background=BACKGROUND, evaluation=EVALUATION)
    base = ["data.dataset=omniglot", "data.split=lake", "data.ways=2", "data.queries=3",
            "val_tasks=4",
            "test_tasks=4", "model.width=8", "model.depth=2"]  # fmt: skip
    cfg = load_config(overrides=[*base, "data.train_within_groups=true"])
    exp = build_experiment(cfg, data_dir=tmp_path)
    train = exp.train
    assert isinstance(train, EpisodeSampler)
    batch = exp.training_batch(0, 64, gen(0))
    assert batch.classes is not None
    for task in batch.classes.tolist():
        assert len({train.data.groups[c] for c in task}) == 1
    plain = build_experiment(load_config(overrides=base), data_dir=tmp_path)
    for ours, theirs in ((exp.val_tasks(cfg), plain.val_tasks(cfg)),
                         (exp.test_tasks(cfg), plain.test_tasks(cfg))):  # fmt: skip
        assert torch.equal(ours.batch(0, 4).query_x, theirs.batch(0, 4).query_x)


def test_val_within_groups_draws_validation_tasks_within_an_alphabet_only(
    tmp_path: Path,
) -> None:
    """``data.val_within_groups``: every validation task's characters share an alphabet (the
    same tasks drawn without it mix them); training and test tasks are the same as without."""
    write_fake_omniglot(tmp_path, drawings=6, background=BACKGROUND, evaluation=EVALUATION)
    base = ["data.dataset=omniglot", "data.split=lake", "data.ways=2", "data.queries=3",
            "val_tasks=40", "test_tasks=4", "model.width=8", "model.depth=2"]  # fmt: skip
    cfg = load_config(overrides=[*base, "data.val_within_groups=true"])
    ours, plain = (build_experiment(load_config(overrides=o), data_dir=tmp_path)
                   for o in ([*base, "data.val_within_groups=true"], base))  # fmt: skip
    assert isinstance(ours.val_source, EpisodeSampler)
    groups = ours.val_source.data.groups

    def alphabets(exp: Experiment) -> list[int]:
        classes = exp.val_tasks(cfg).batch(0, 40).classes
        assert classes is not None
        return [len({groups[c] for c in task}) for task in classes.tolist()]

    assert alphabets(ours) == [1] * 40
    assert max(alphabets(plain)) == 2  # 5 validation alphabets of 2 characters: most mix
    assert torch.equal(ours.test_tasks(cfg).batch(0, 4).query_x,
                       plain.test_tasks(cfg).batch(0, 4).query_x)  # fmt: skip
    assert torch.equal(ours.training_batch(0, 8, gen(0)).query_x,
                       plain.training_batch(0, 8, gen(0)).query_x)  # fmt: skip
    with pytest.raises(DataError, match=r"has 3 classes \(the largest has 2\).*unset "
                       r"data\.val_within_groups\.$"):  # fmt: skip
        build_experiment(load_config(overrides=[*base, "data.ways=3",
                                                "data.val_within_groups=true"]),
                         data_dir=tmp_path)  # fmt: skip


@pytest.mark.parametrize("setting", ["train_within_groups", "val_within_groups"])
def test_within_group_settings_are_refused_for_regression_tasks(setting: str) -> None:
    with pytest.raises(ConfigError, match=rf"sinusoid's tasks are regression functions; "
                       rf"unset data\.{setting}\.$"):  # fmt: skip
        load_config(overrides=["data.dataset=sinusoid", f"data.{setting}=true"])


def test_a_class_too_small_for_a_task_names_the_settings_that_size_it(
    tiny_images: LabeledSet,
) -> None:
    with pytest.raises(DataError, match=r"has 6 examples but a task needs shots \+ queries = 7; "
                       r"lower --shots/--queries \(data.train_queries, "):  # fmt: skip
        EpisodeSampler(tiny_images, torch.arange(12), ways=2, shots=2, queries=5)


def test_test_rotations_rotate_validation_and_test_characters_into_classes_of_their_own(
    tmp_path: Path,
) -> None:
    """``data.test_rotations`` (Finn et al.'s and Snell et al.'s test tasks): validation and
    test classes are each character at 0, 90, 180 and 270 degrees; training is unchanged."""
    write_fake_omniglot(tmp_path, drawings=6, background=BACKGROUND, evaluation=EVALUATION)
    base = ["data.dataset=omniglot", "data.split=lake", "data.ways=2", "data.queries=3",
            "val_tasks=40", "test_tasks=40", "model.width=8", "model.depth=2"]  # fmt: skip
    cfg = load_config(overrides=[*base, "data.test_rotations=true"])
    rotated, upright = (build_experiment(load_config(overrides=o), data_dir=tmp_path)
                        for o in ([*base, "data.test_rotations=true"], base))  # fmt: skip
    for ours, theirs in ((rotated.val_source, upright.val_source),
                         (rotated.test_source, upright.test_source)):  # fmt: skip
        assert isinstance(ours, EpisodeSampler) and isinstance(theirs, EpisodeSampler)
        assert len(ours.classes) == 4 * len(theirs.classes)
        assert torch.equal(ours.classes[: len(theirs.classes)], theirs.classes)
        first, turned = int(theirs.classes[0]), int(ours.classes[len(theirs.classes)])
        assert ours.data.class_names[turned] == f"{theirs.data.class_names[first]}@rot90"
        assert torch.equal(
            ours.data.x[ours.data.y == turned],
            torch.rot90(theirs.data.x[theirs.data.y == first], 1, (-2, -1)),
        )
    tasks = rotated.test_tasks(cfg)
    assert isinstance(tasks, EpisodeTaskSet)
    # Some test task holds a rotated character (ids after the upright set's).
    assert int(tasks.plan.classes.max()) >= upright.test_source.data.num_classes
    train = rotated.training_batch(0, 8, gen(0)).query_x
    assert torch.equal(train, upright.training_batch(0, 8, gen(0)).query_x)
