"""Where a run's model comes from on the command line: a user's factory (``model.name: python``),
saved weights (``model.weights``) and a finished run's backbone (``model.init_from``)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).parent))
from cli_runner import command
from image_classes import FOLDER_RUN, write_class
from metalearner.errors import ConfigError
from metalearner.runs.checkpoint import load_checkpoint
from metalearner.runs.config import load_config
from metalearner.runs.experiment import build_experiment, seeded
from metalearner.training.loop import meta_train

TINY = [
    *FOLDER_RUN,
    "val_tasks=4",
    "val_every=2",
    "meta_batch=2",
    "steps=2",
    "threads=1",
]

# A user's own network: nothing of metalearner in it, its size read from the input shape.
FACTORY = """
from torch import nn


def make(input_shape, out_features):
    channels, height, width = input_shape
    return nn.Sequential(
        nn.Conv2d(channels, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(4 * (height // 2) * (width // 2), out_features),
    )


def not_a_network(out_features):
    return [out_features]
"""


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 synthetic image classes of 5 drawings each, as a user keeps them in folders."""
    root = tmp_path_factory.mktemp("sources") / "images"
    for c in range(12):
        write_class(root / f"c{c:02d}", c, 5)
    return root


@pytest.fixture
def code(tmp_path: Path) -> Iterator[Path]:
    """A folder holding the user's module ``mynets.py``, away from where commands run (and
    imported afresh by each test)."""
    folder = tmp_path / "code"
    folder.mkdir()
    (folder / "mynets.py").write_text(FACTORY)
    sys.modules.pop("mynets", None)
    yield folder
    sys.modules.pop("mynets", None)


def cli(*args: str, cwd: Path, path: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``metalearner ARGS`` run in ``cwd`` with ``path`` (only) on PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if path is not None:
        env["PYTHONPATH"] = str(path)
    return subprocess.run(
        command(*args), cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False
    )


def refused(result: subprocess.CompletedProcess[str], *words: str) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert all(w in lines[0] for w in words), lines[0]
    return lines[0]


def settings(images: Path, *extra: str) -> list[str]:
    """A user's config file (its YAML beside the images) with these settings on top."""
    config = images.parent / "run.yaml"
    config.write_text("data:\n  dataset: folder\n")
    return [str(config), *(f"--set={s}" for s in (*TINY, f"data.path={images}", *extra))]


def step0(images: Path, *extra: str) -> dict[str, torch.Tensor]:
    """The parameters a new run of these settings starts from (what the loop steps first)."""
    cfg = load_config(overrides=[*TINY, f"data.path={images}", *extra])
    return build_experiment(cfg).strategy.init_params(seeded(cfg.seed))


def sha256(file: Path) -> str:
    return hashlib.sha256(file.read_bytes()).hexdigest()


@pytest.mark.slow
def test_a_factory_on_the_path_trains_and_evaluate_and_adapt_rebuild_it(
    images: Path, code: Path, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    own = ("strategy=maml", "model.name=python", "model.factory=mynets:make")
    trained = cli("train", "-q", "--out", "run", *settings(images, *own), cwd=work, path=code)
    assert trained.returncode == 0, trained.stderr
    meta = load_checkpoint(work / "run/checkpoints/latest").meta
    assert meta["backbone"] == {"name": "python", "factory": "mynets:make", "out_features": 3}
    scored = cli("evaluate", "run", "--tasks", "4", cwd=work, path=code)
    assert scored.returncode == 0 and "accuracy" in scored.stdout, scored.stderr
    for c, name in zip((50, 51, 52), ("alpha", "beta", "gamma"), strict=True):
        write_class(work / "support" / name, c, 1)
        write_class(work / "query" / name, c, 3)
    adapted = cli("adapt", "run", "--support", "support", "--query", "query", cwd=work, path=code)
    assert adapted.returncode == 0 and "accuracy" in adapted.stdout, adapted.stderr
    # Without the module on the path the run cannot be rebuilt: said in one sentence.
    refused(cli("evaluate", "run", "--tasks", "4", cwd=work), "mynets", "PYTHONPATH")


def test_a_factory_beside_the_user_is_found_and_a_bad_one_is_one_sentence(
    images: Path, code: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(code)  # the current folder, not on sys.path: as the `metalearner` script
    assert str(code) not in sys.path
    mine = step0(images, "strategy=protonet", "model.name=python", "model.factory=mynets:make")
    assert any(v.dim() == 4 and v.shape[:2] == (4, 1) for v in mine.values())  # its conv
    for factory, words in [
        ("mynets:missing", ("mynets has no 'missing'",)),
        ("mynets:not_a_network", ("returned a list", "torch.nn.Module")),
        ("nowhere:make", ("no module 'nowhere'", "PYTHONPATH")),
    ]:
        extra = ("strategy=protonet", "model.name=python", f"model.factory={factory}")
        with pytest.raises(ConfigError, match=r"model\.factory") as err:
            step0(images, *extra)
        assert all(w in str(err.value) for w in words), err.value


def test_saved_weights_are_the_step_0_parameters(images: Path, tmp_path: Path) -> None:
    fresh = step0(images, "strategy=maml")
    g = torch.Generator().manual_seed(5)
    saved = {k: torch.randn(v.shape, generator=g) for k, v in fresh.items()}
    save_file(saved, tmp_path / "all.safetensors")
    started = step0(images, "strategy=maml", f"model.weights={tmp_path / 'all.safetensors'}")
    assert started.keys() == saved.keys()
    assert all(torch.equal(started[k], saved[k]) for k in saved)
    assert not torch.equal(fresh["head.weight"], saved["head.weight"])  # not a fresh start
    # The backbone alone: the head is a new one, of the run's ways.
    backbone = {k: v for k, v in saved.items() if k.startswith("features.")}
    save_file(backbone, tmp_path / "backbone.safetensors")
    started = step0(images, "strategy=maml", f"model.weights={tmp_path / 'backbone.safetensors'}")
    assert all(torch.equal(started[k], v) for k, v in backbone.items())
    assert started["head.weight"].shape == (3, fresh["head.weight"].shape[1])
    lacking = sorted(backbone)[0]
    save_file({k: v for k, v in backbone.items() if k != lacking}, tmp_path / "part.safetensors")
    with pytest.raises(ConfigError, match=f"lacks '{lacking}' of the backbone"):
        step0(images, "strategy=maml", f"model.weights={tmp_path / 'part.safetensors'}")


def test_model_settings_are_checked_as_they_are_read() -> None:
    for sets, words in [
        (["model.init_form=runs/x"], "did you mean 'model.init_from'"),
        (["model.factory=mynets:make"], "set model.name=python"),
        (["model.weights=w.safetensors", "model.init_from=runs/x"], "both set"),
        (["model.name=python"], "model.name=python needs model.factory"),
    ]:
        with pytest.raises(ConfigError, match=words):
            load_config(overrides=["data.dataset=sinusoid", *sets])


def test_weights_saved_from_the_users_module_load_by_its_own_names(
    images: Path, code: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(code))
    import mynets  # the user's module, as they would save its weights

    module = mynets.make(input_shape=(1, 28, 28), out_features=3)
    with torch.no_grad():
        for p in module.parameters():
            p.uniform_(-3, 3)  # far from any initialisation
    save_file(module.state_dict(), tmp_path / "mine.safetensors")
    own = ("strategy=maml", "model.name=python", "model.factory=mynets:make")
    started = step0(images, *own, f"model.weights={tmp_path / 'mine.safetensors'}")
    for name, value in module.state_dict().items():
        assert sum(torch.equal(value, p) for p in started.values()) == 1, name
    file = tmp_path / "mine.safetensors"
    save_file({**module.state_dict(), "extra.weight": torch.zeros(2)}, file)
    with pytest.raises(ConfigError, match=r"holds 'extra\.weight', which the model has no tensor"):
        step0(images, *own, f"model.weights={file}")
    save_file({**module.state_dict(), "0.weight": torch.zeros(1, 1, 3, 3)}, file)
    with pytest.raises(ConfigError, match=r"holds '0.weight' of shape \[1, 1, 3, 3\]"):
        step0(images, *own, f"model.weights={file}")


@pytest.mark.slow
def test_a_run_started_from_another_runs_backbone_resumes_from_its_own(
    images: Path, tmp_path: Path
) -> None:
    pretrain = tmp_path / "finetune"
    meta_train(load_config(overrides=[*TINY, f"data.path={images}", "strategy=finetune",
                                      "meta_batch=8"]), pretrain, quiet=True)  # fmt: skip
    source = load_checkpoint(pretrain / "checkpoints/best")
    features = {k: v for k, v in source.group("params").items() if k.startswith("features.")}
    started = step0(images, "strategy=protonet", f"model.init_from={pretrain}")
    assert started.keys() == features.keys()
    assert all(torch.equal(started[k], v) for k, v in features.items())
    fresh = step0(images, "strategy=protonet")
    assert not all(torch.equal(fresh[k], v) for k, v in features.items())
    maml = step0(images, "strategy=maml", f"model.init_from={pretrain}")
    assert maml["head.weight"].shape[0] == 3  # its own head: finetune's spans every class

    work = tmp_path / "work"
    work.mkdir()
    args = ("train", "-q", "--out", "run", *settings(images, "strategy=protonet"))
    trained = cli(*args, f"--set=model.init_from={pretrain}", cwd=work)
    assert trained.returncode == 0, trained.stderr
    start = load_checkpoint(work / "run/checkpoints/latest").meta["start"]
    assert start["init_from"] == str((pretrain / "checkpoints/best").resolve())
    assert start["sha256"] == source.meta["sha256"] and start["taken"] == "features"
    pretrain.rename(tmp_path / "moved")  # a resumed run never reads its start again
    resumed = cli("train", "--resume", "-q", "--out", "run", "--set", "steps=4", cwd=work)
    assert resumed.returncode == 0, resumed.stderr
    latest = load_checkpoint(work / "run/checkpoints/latest").meta
    assert latest["step"] == 4 and latest["start"] == start


@pytest.mark.slow
def test_a_wrong_start_is_refused_in_one_sentence(images: Path, tmp_path: Path) -> None:
    pretrain = tmp_path / "finetune"
    cfg = load_config(overrides=[*TINY, f"data.path={images}", "strategy=finetune", "steps=1"])
    meta_train(cfg, pretrain, quiet=True)
    args = ("train", "-q", "--out", "run", *settings(images, "strategy=protonet"))
    refused(
        cli(*args, "--set=model.init_from=gone", cwd=tmp_path),
        "model.init_from gone does not exist",
    )
    refused(
        cli(*args, f"--set=model.init_from={pretrain}", "--set=model.width=4", cwd=tmp_path),
        "trained conv4 (depth 2, width 8) on 1x28x28 inputs",
        "this run builds conv4 (depth 2, width 4)",
    )
    refused(
        cli(*args, "--set=model.name=python", "--set=model.factory=mynets.make", cwd=tmp_path),
        "model.factory is 'mynets.make', not package.module:function",
    )
    assert not (tmp_path / "run").exists()
    # Pretrained on another class split, the backbone has seen this run's test classes.
    with pytest.raises(ConfigError, match=r"trained on \d+ of this run's test classes"):
        step0(images, "strategy=protonet", "data.split_seed=1", f"model.init_from={pretrain}")
