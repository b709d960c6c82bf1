"""The colour benchmarks' registry entries: their fixed splits, sides, channels and the input
normalisation their backbones take first."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from metalearner.data.config import DataConfig, resolve_data
from metalearner.data.image_benchmarks import CIFAR_PIXELS, IMAGENET_PIXELS
from metalearner.data.registry import dataset, names
from metalearner.data.splits import split_list
from metalearner.errors import ConfigError
from metalearner.nn import build_model
from metalearner.runs.checkpoint import load_checkpoint

sys.path.insert(0, str(Path(__file__).parent))
from cli_runner import run_cli
from imagenet_fixture import write_fake_mini

SIDES = {"mini-imagenet": 84, "tiered-imagenet": 84, "cifar-fs": 32, "fc100": 32, "cub": 84}
SPLITS = {"mini-imagenet": "ravi", "tiered-imagenet": "ren", "cifar-fs": "bertinetto",
          "fc100": "oreshkin", "cub": "chen"}  # fmt: skip


@pytest.mark.parametrize("name", sorted(SIDES))
def test_each_benchmark_resolves_to_its_papers_side_split_and_colour(name: str) -> None:
    assert name in names()
    d = resolve_data(DataConfig(dataset=name))
    assert d.image_size == SIDES[name] and d.split == SPLITS[name]
    entry = dataset(name)
    assert entry.channels == 3 and not entry.counts_classes(d.split)  # the source's split
    size, words = entry.example_size(d)
    side = SIDES[name]
    assert size == 4 * 3 * side * side and f"3×{side}×{side}" in words
    # data.image_size still chooses the stored side; other splits are refused.
    assert resolve_data(DataConfig(dataset=name, image_size=40)).image_size == 40
    with pytest.raises(ConfigError, match="is not a split of"):
        resolve_data(DataConfig(dataset=name, split="vinyals"))


def test_omniglot_and_folders_keep_their_28_pixel_grey_images() -> None:
    d = resolve_data(DataConfig(dataset="omniglot"))
    assert d.image_size == 28 and dataset("omniglot").example_size(d)[0] == 4 * 28 * 28


@pytest.mark.parametrize("model", ["conv4", "resnet12"])
@pytest.mark.parametrize("stats", [IMAGENET_PIXELS, CIFAR_PIXELS])
def test_a_backbone_normalises_each_channel_first(
    model: str, stats: tuple[tuple[float, ...], tuple[float, ...]]
) -> None:
    # The same weights with and without `normalize` agree once the inputs are normalised by
    # hand: (x - mean) / std per channel, nothing else.
    small = {"width": 4} if model == "resnet12" else {"width": 4, "depth": 2}
    plain = build_model(model, (3, 16, 16), 5, generator=0, **small)
    normed = build_model(model, (3, 16, 16), 5, generator=0, normalize=stats, **small)
    x = torch.rand(2, 6, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    mean, std = (torch.tensor(v)[:, None, None] for v in stats)
    torch.testing.assert_close(normed(x), plain((x - mean) / std))
    assert not torch.allclose(normed(x), plain(x))
    assert dict(normed.named_parameters()).keys() == dict(plain.named_parameters()).keys()


def test_normalize_with_the_wrong_channels_is_one_sentence() -> None:
    with pytest.raises(ConfigError, match="one positive deviation per channel"):
        build_model("conv4", (3, 16, 16), 5, normalize=((0.5, 0.5), (0.2,)), depth=2)


def test_a_benchmark_on_mini_imagenet_starts_from_its_papers_presets() -> None:
    from metalearner.benchmark.plan import BenchmarkPlan

    plan = BenchmarkPlan(dataset="mini-imagenet", strategies=("maml", "protonet", "finetune"))
    assert plan.preset_name("maml") == "mini-5w1s-maml"
    maml, finetune = plan.run_config("maml"), plan.run_config("finetune")
    # MAML's own preset (conv4 of 32 filters, Finn et al.); the baseline takes its data and model.
    assert maml.model.width == 32 and maml.strategy_config["inner_lr"] == 0.01
    assert finetune.model == maml.model and finetune.data.dataset == "mini-imagenet"
    fives = BenchmarkPlan(dataset="cifar-fs", strategies=("maml",))
    assert fives.preset_name("maml") == "cifarfs-5w1s-maml"


@pytest.mark.slow  # ~15 s: a ResNet-12 on 84x84 colour images in a subprocess
def test_train_a_mini_imagenet_preset_as_a_user_does(tmp_path: Path) -> None:
    # mini-ImageNet's pickled caches with 6/5/5 of Ravi's classes, 16 pictures each; the
    # issue's command, made small by settings a user would give on a laptop too.
    classes = {s: split_list(f"mini_imagenet_{s}")[:n] for s, n in (("train", 6), ("val", 5),
                                                                    ("test", 5))}  # fmt: skip
    write_fake_mini(tmp_path / "data", form="cache", classes=classes, per_class=16)
    small = ["model.width=4", "meta_batch=2", "val_tasks=2", "test_tasks=3"]
    result = run_cli(
        "train", "--preset", "mini-5w1s-protonet-resnet12", "--data-dir", str(tmp_path / "data"),
        "--set", "steps=5", *(a for s in small for a in ("--set", s)), "--out", "run",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    config = (tmp_path / "run" / "config.yaml").read_text()
    assert "dataset: mini-imagenet" in config and "name: resnet12" in config
    assert "augment: true" in config and "norm: inductive" in config
    backbone = load_checkpoint(tmp_path / "run" / "checkpoints" / "best").meta["backbone"]
    assert backbone["name"] == "resnet12"
    assert backbone["normalize"] == [list(IMAGENET_PIXELS[0]), list(IMAGENET_PIXELS[1])]
    scored = run_cli("evaluate", "run", "--tasks", "3", cwd=tmp_path)
    assert scored.returncode == 0, scored.stderr
    assert "inductive" in scored.stdout and "%" in scored.stdout


def test_presets_list_the_colour_benchmarks_with_their_published_numbers(tmp_path: Path) -> None:
    result = run_cli("presets", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    shown = " ".join(result.stdout.split())
    for name, number in (("mini-5w1s-protonet-resnet12", "59.25"), ("mini-5w1s-maml", "48.70"),
                         ("mini-5w5s-protonet", "68.20")):  # fmt: skip
        assert name in shown and number in shown
