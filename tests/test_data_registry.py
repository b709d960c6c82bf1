"""The dataset registry: each entry holds the facts the code once decided from the name."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from metalearner.benchmark.plan import BenchmarkPlan
from metalearner.data.labeled import LabeledSet
from metalearner.data.registry import Dataset, LoadSettings, dataset, names, register, unregister
from metalearner.data.splits import ClassSplit, random_split
from metalearner.errors import ConfigError
from metalearner.evaluation.evaluator import evaluate
from metalearner.runs.config import load_config
from metalearner.runs.experiment import build_experiment
from metalearner.tasks.demo import load_for_demo
from metalearner.training.loop import meta_train

SRC = Path(__file__).resolve().parents[1] / "src" / "metalearner"


def test_the_shipped_datasets_are_registered_in_the_order_dataset_lists_them() -> None:
    assert names()[:4] == ("sinusoid", "omniglot", "folder", "fewrel")


@pytest.mark.parametrize(
    ("name", "metric", "kind", "backbone", "splits", "counts", "needs_path"),
    [("sinusoid", "mse", "regression", "mlp", (), (1200, 100), False),
     ("omniglot", "accuracy", "classification", "conv4", ("vinyals", "lake", "vinyals-alphabets"),
      (1200, 100), False),
     ("folder", "accuracy", "classification", "mlp", (), (1200, 100), True),
     ("fewrel", "accuracy", "classification", "textcnn", ("wiki", "pubmed", "official"), (10, 0),
      False)],
)  # fmt: skip
def test_each_entry_holds_what_the_code_used_to_hard_code(
    name: str,
    metric: str,
    kind: str,
    backbone: str,
    splits: tuple[str, ...],
    counts: tuple[int, int],
    needs_path: bool,
) -> None:
    entry = dataset(name)
    assert (entry.metric, entry.task_kind, entry.backbone(), entry.splits) == (
        metric, kind, backbone, splits)  # fmt: skip
    assert entry.class_counts(splits[0] if splits else None, None, None) == counts
    assert entry.needs_path is needs_path


def test_resolved_configs_keep_the_defaults_runs_were_written_with() -> None:
    path = ["data.path=somewhere"]
    resolved = {
        name: load_config(overrides=[f"data.dataset={name}", *path]).data
        for name in ("sinusoid", "omniglot", "folder", "fewrel")
    }
    got = {k: (d.split, d.meta_train_classes, d.val_classes) for k, d in resolved.items()}
    # Datasets without splits record Omniglot's default, as every run folder so far does.
    assert got == {
        "sinusoid": ("vinyals", 1200, 100),
        "omniglot": ("vinyals", 1200, 100),
        "folder": ("vinyals", 1200, 100),
        "fewrel": ("wiki", 10, 0),
    }
    official = load_config(overrides=["data.dataset=fewrel", "data.split=official"]).data
    assert (official.meta_train_classes, official.val_classes) == (64, 0)
    lake = load_config(overrides=["data.dataset=omniglot", "data.split=lake"]).data
    assert (lake.meta_train_classes, lake.val_classes) == (1200, 100)


def test_the_facts_behind_the_other_branches() -> None:
    omniglot, fewrel = dataset("omniglot"), dataset("fewrel")
    assert omniglot.rotations and not fewrel.rotations
    assert omniglot.counts_classes("vinyals") and not omniglot.counts_classes("lake")
    assert not dataset("sinusoid").counts_classes(None)
    assert fewrel.held_out_examples and not omniglot.held_out_examples
    assert fewrel.trains_alike("wiki", "pubmed") and fewrel.trains_alike("pubmed", "wiki")
    assert not fewrel.trains_alike("wiki", "official")
    assert not omniglot.trains_alike("vinyals", "lake")
    assert omniglot.cross_domain is not None and omniglot.cross_domain.train_split == "lake"
    assert omniglot.cross_domain.within_groups and omniglot.cross_domain.lake_runs
    assert fewrel.cross_domain is not None and fewrel.cross_domain.test_split == "pubmed"
    assert dataset("sinusoid").cross_domain is None and dataset("folder").cross_domain is None
    assert dataset("sinusoid").task_shape(5, 10) == "sinusoid regression, K = 10"
    assert omniglot.task_shape(20, 1) == "omniglot 20-way 1-shot"


def test_a_folder_s_backbone_is_told_by_its_files(tiny_images: LabeledSet) -> None:
    folder = dataset("folder")
    table = LabeledSet(torch.zeros(4, 3), torch.tensor([0, 0, 1, 1]), ("a", "b"))
    assert (folder.backbone(tiny_images), folder.backbone(table)) == ("conv4", "mlp")


@pytest.mark.parametrize("setting", [None, "data.dataset"])
def test_an_unknown_name_is_one_sentence_naming_the_known_ones(setting: str | None) -> None:
    with pytest.raises(ConfigError) as err:
        dataset("imagenet", setting=setting)
    message = str(err.value)
    # One sentence: it ends with a full stop and no other sentence starts inside it.
    assert message.endswith(".") and not re.search(r"[.?!]\s+[A-Z]", message), message
    assert "imagenet" in message and "sinusoid, omniglot, folder, fewrel" in message
    with pytest.raises(ConfigError, match=r"did you mean 'omniglot'\?"):
        dataset("omniglott")


def test_an_unknown_dataset_in_a_run_config_names_the_setting() -> None:
    with pytest.raises(ConfigError, match=r"'data.dataset' must be one of sinusoid, omniglot"):
        load_config(overrides=["data.dataset=imagenet"])


# --- a dataset registered from outside the package ----------------------------------------


def _blobs() -> LabeledSet:
    """10 classes of 6 points in 4 dimensions, each around its own centre."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(10).repeat_interleave(6)
    x = 3 * torch.randn(10, 4, generator=g)[y] + 0.1 * torch.randn(60, 4, generator=g)
    return LabeledSet(x, y, tuple(f"blob{i}" for i in range(10)), name="blobs")


def _load_blobs(
    d: LoadSettings, data_dir: Path | None, *, meta_train: int, val: int, download: bool
) -> tuple[LabeledSet, ClassSplit]:
    data = _blobs()
    return data, random_split(data.num_classes, train=meta_train - val, val=val, seed=d.split_seed)


@pytest.fixture
def blobs() -> Iterator[Dataset]:
    entry = register(
        Dataset(name="test-blobs", kind="table", meta_train_classes=7, val_classes=3,
                loader=_load_blobs)
    )  # fmt: skip
    try:
        yield entry
    finally:
        unregister(entry.name)


def test_a_registered_dataset_is_found_and_trains_with_no_other_change(
    blobs: Dataset, tmp_path: Path
) -> None:
    assert dataset("test-blobs") is blobs and "test-blobs" in names()
    with pytest.raises(ConfigError, match="registered already"):
        register(blobs)
    cfg = load_config(
        overrides=["data.dataset=test-blobs", "data.ways=3", "data.queries=2", "strategy=protonet",
                   "steps=2", "val_every=2", "val_tasks=2", "test_tasks=2", "threads=1"]
    )  # fmt: skip
    assert (cfg.data.meta_train_classes, cfg.data.val_classes) == (7, 3)
    assert cfg.strategy_config["train_ways"] == 4  # all the training classes, not ProtoNets' 60
    exp = build_experiment(cfg)
    assert exp.meta["backbone"]["name"] == "mlp" and exp.meta["input_shape"] == [4]
    result = meta_train(cfg, tmp_path / "run", quiet=True)
    assert result.metric == "accuracy"
    assert evaluate(tmp_path / "run", num_tasks=2).metric == "accuracy"
    # The benchmark's plan and the demo's episodes ask the same entry.
    plan = BenchmarkPlan(dataset="test-blobs", ways=3, strategies=("protonet",), budget="2steps")
    assert plan.metric == "accuracy" and plan.run_config("protonet").data.dataset == "test-blobs"
    data, sampler = load_for_demo("test-blobs", data_dir=None, path=None, ways=3, shots=1,
                                  queries=2)  # fmt: skip
    batch = sampler.sample(1, generator=torch.Generator().manual_seed(0))
    assert data.name == "blobs" and batch.query_x.shape == (1, 6, 4)


def test_no_module_outside_data_compares_a_dataset_name() -> None:
    compared = re.compile(
        r"""(==|!=|in \(|in \[|in \{)[^#]*["'](omniglot|fewrel|sinusoid|folder|table)["']"""
        r"""|["'](omniglot|fewrel|sinusoid|folder)["'] *(==|!=|in)"""
    )
    found = [
        f"{path.relative_to(SRC)}:{i}: {line.strip()}"
        for path in sorted(SRC.rglob("*.py"))
        if path.relative_to(SRC).parts[0] != "data"
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if compared.search(line)
    ]
    assert not found, "\n".join(found)
