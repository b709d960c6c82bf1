"""Step four: load a meta-trained model, adapt it to a user's new task, predict (Python and CLI)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import metalearner
from cli_runner import run_cli as cli
from image_classes import FOLDER_RUN, write_class
from metalearner.data.images import ImageSettings, decode_image
from metalearner.errors import DataError
from metalearner.runs.config import load_config
from metalearner.strategies import available
from metalearner.training.loop import meta_train

FOLDER = [
    *FOLDER_RUN,
    "val_tasks=4",
    "val_every=4",
    "meta_batch=2",
    "steps=8",
    "threads=1",
]


@pytest.fixture(scope="module")
def train_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 synthetic image classes of 5 drawings each, as a user's class folders."""
    root = tmp_path_factory.mktemp("adapt") / "train_data"
    for c in range(12):
        write_class(root / f"c{c:02d}", c, 5)
    return root


def train(strategy: str, data: Path, out: Path, *extra: str) -> Path:
    if strategy == "protonet":
        extra = ("strategy_config.train_ways=3", *extra)
    cfg = load_config(overrides=[*FOLDER, f"data.path={data}", f"strategy={strategy}", *extra])
    meta_train(cfg, out, quiet=True)
    return out


@pytest.fixture(scope="module")
def runs(train_data: Path) -> dict[str, Path]:
    """A ProtoNet and a MAML model meta-trained briefly on the synthetic classes."""
    return {
        name: train(name, train_data, train_data.parent / name) for name in ("protonet", "maml")
    }


@pytest.mark.parametrize("strategy", [s for s in available() if s != "pretrain"])
def test_every_classification_strategy_loads_adapts_and_predicts(
    train_data: Path, task: tuple[Path, Path], tmp_path: Path, strategy: str
) -> None:
    run = train(strategy, train_data, tmp_path / strategy, "steps=2", "val_every=2")
    support, query = task
    items, _ = files_of(query)
    prediction = metalearner.load(run).adapt(*files_of(support), steps=2).predict(items)
    assert prediction.scores.shape == (9, 3) and torch.isfinite(prediction.scores).all()
    assert set(prediction.labels) <= {"alpha", "beta", "gamma"}


@pytest.fixture
def task(tmp_path: Path) -> tuple[Path, Path]:
    """A new task: 3 unseen classes, 1 support image each (RGB), 3 labeled queries each."""
    for c, name in zip((50, 51, 52), ("alpha", "beta", "gamma"), strict=True):
        write_class(tmp_path / "support" / name, c, 1, rgb=True)
        files = write_class(tmp_path / "tmp" / name, c, 4)
        (tmp_path / "query" / name).mkdir(parents=True)
        for f in files[1:]:  # other drawings than the support's
            f.rename(tmp_path / "query" / name / f.name)
    return tmp_path / "support", tmp_path / "query"


def files_of(folder: Path) -> tuple[list[Path], list[str]]:
    files = sorted(folder.glob("*/*.png"))
    return files, [f.parent.name for f in files]


@pytest.mark.parametrize("strategy", ["protonet", "maml"])
def test_python_and_cli_give_the_same_predictions(
    runs: dict[str, Path], task: tuple[Path, Path], tmp_path: Path, strategy: str
) -> None:
    support, query = task
    learner = metalearner.load(runs[strategy])
    shots, shot_labels = files_of(support)
    items, truth = files_of(query)
    prediction = learner.adapt(shots, shot_labels).predict(items)
    assert prediction.classes == ("alpha", "beta", "gamma")
    assert prediction.scores.shape == (9, 3)
    assert torch.allclose(prediction.scores.sum(1), torch.ones(9))
    assert prediction.probabilities.tolist() == prediction.scores.max(1).values.tolist()

    result = cli("adapt", str(runs[strategy]), "--support", str(support), "--query", str(query),
                 "--output", "p.csv", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader((tmp_path / "p.csv").open()))
    by_item = {r["item"]: r for r in rows}
    for file, label, p in zip(items, prediction.labels, prediction.probabilities, strict=True):
        row = by_item[f"{file.parent.name}/{file.name}"]
        assert row["prediction"] == label and row["label"] == file.parent.name
        assert float(row["probability"]) == pytest.approx(float(p), abs=1e-4)
    accuracy = sum(p == t for p, t in zip(prediction.labels, truth, strict=True)) / len(truth)
    assert f"accuracy {100 * accuracy:.2f}%" in result.stdout
    assert "adapted" in result.stdout and "wrote p.csv" in result.stdout


def test_pil_images_arrays_and_files_are_preprocessed_alike(
    runs: dict[str, Path], task: tuple[Path, Path]
) -> None:
    support, query = task
    learner = metalearner.load(runs["protonet"])
    shots, labels = files_of(support)
    items, _ = files_of(query)
    from_files = learner.adapt(shots, labels).predict(items)
    pil = [Image.open(f) for f in items]
    assert torch.equal(learner.adapt(shots, labels).predict(pil).scores, from_files.scores)
    settings = ImageSettings.of(28)  # what the training folder was stored as
    arrays = np.stack([decode_image(f, settings) for f in items])
    assert torch.equal(learner.adapt(shots, labels).predict(arrays).scores, from_files.scores)
    with pytest.raises(DataError, match=r"takes a non-empty batch of 1x28x28"):
        learner.adapt(shots, labels).predict(np.zeros((2, 3, 10, 10), dtype=np.uint8))


def test_protonet_takes_any_number_of_ways_and_maml_says_what_to_do(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    for c in range(5):
        write_class(tmp_path / "five" / f"k{c}", 60 + c, 2)
    files, labels = files_of(tmp_path / "five")
    prediction = metalearner.load(runs["protonet"]).adapt(files, labels).predict(files)
    assert prediction.scores.shape == (10, 5)
    result = cli("adapt", str(runs["maml"]), "--support", "five", "--query", "five", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "5 classes" in result.stderr and "3-way head" in result.stderr
    assert "data.ways=5" in result.stderr


def test_fewer_ways_than_the_head_use_only_the_classes_given(
    runs: dict[str, Path], task: tuple[Path, Path]
) -> None:
    support, query = task
    shots, labels = files_of(support)
    two = [i for i, label in enumerate(labels) if label != "gamma"]
    task_model = metalearner.load(runs["maml"]).adapt([shots[i] for i in two], ["alpha", "beta"])
    prediction = task_model.predict(files_of(query)[0])
    assert prediction.scores.shape == (9, 2) and set(prediction.labels) <= {"alpha", "beta"}


def test_a_tampered_or_foreign_checkpoint_is_refused(
    runs: dict[str, Path], task: tuple[Path, Path], tmp_path: Path
) -> None:
    import shutil

    support, query = task
    copy = tmp_path / "copy"
    shutil.copytree(runs["protonet"] / "checkpoints/best", copy)
    tensors = copy / "model.safetensors"
    data = bytearray(tensors.read_bytes())
    data[-1] ^= 0xFF
    tensors.write_bytes(bytes(data))
    args = ["--support", str(support), "--query", str(query)]
    result = cli("adapt", str(copy), *args, cwd=tmp_path)
    assert result.returncode == 2 and "does not match the checksum" in result.stderr
    shutil.rmtree(copy)
    shutil.copytree(runs["protonet"] / "checkpoints/best", copy)
    meta = json.loads((copy / "meta.json").read_text())
    (copy / "meta.json").write_text(json.dumps({**meta, "format": 99}))
    result = cli("adapt", str(copy), *args, cwd=tmp_path)
    assert result.returncode == 2 and "format 99" in result.stderr
    result = cli("adapt", str(tmp_path), *args, cwd=tmp_path)
    assert result.returncode == 2 and "neither a run folder nor a checkpoint" in result.stderr


def test_bad_support_and_query_files_are_named(
    runs: dict[str, Path], task: tuple[Path, Path], tmp_path: Path
) -> None:
    support, query = task
    run = str(runs["protonet"])
    (support / "delta").mkdir()
    result = cli("adapt", run, "--support", str(support), "--query", str(query), cwd=tmp_path)
    assert result.returncode == 2 and "delta has no images" in result.stderr
    (support / "delta").rmdir()
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    image = next(query.glob("alpha/*.png"))
    result = cli("adapt", run, "--support", str(support), "--query", str(image), str(notes),
                 cwd=tmp_path)  # fmt: skip
    assert result.returncode == 2 and "notes.txt" in result.stderr
    assert "Traceback" not in result.stderr
    # A glob after --query: the extra files are queries too, unlabeled.
    glob = sorted(str(p) for p in query.glob("alpha/*.png"))
    result = cli("adapt", run, "--support", str(support), "--query", *glob, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "predicted 3 items" in result.stdout and "accuracy" not in result.stdout


def test_a_bad_output_path_is_refused_before_any_work_and_leaves_nothing(
    runs: dict[str, Path], task: tuple[Path, Path], tmp_path: Path
) -> None:
    support, query = task
    run = str(runs["protonet"])
    (tmp_path / "taken").write_text("a file")
    for output, words in [
        ("query", "is a folder; give a file name such as query/predictions.csv"),
        ("taken/p.csv", "lies under taken, which is a file"),
    ]:
        result = cli("adapt", run, "--support", str(support), "--query", str(query),
                     "--output", output, cwd=tmp_path)  # fmt: skip
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and words in result.stderr
    assert not [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_a_failed_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    from metalearner.inference.predictions import _write_csv

    (tmp_path / "out").mkdir()
    with pytest.raises(IsADirectoryError):
        _write_csv(tmp_path / "out", [["item", "prediction"]])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_support_set_of_one_class_is_refused(
    runs: dict[str, Path], task: tuple[Path, Path], tmp_path: Path
) -> None:
    support, query = task
    for other in ("beta", "gamma"):
        for f in (support / other).iterdir():
            f.unlink()
        (support / other).rmdir()
    result = cli("adapt", str(runs["protonet"]), "--support", str(support), "--query",
                 str(query / "alpha"), cwd=tmp_path)  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "has only class 'alpha'" in result.stderr and "at least 2 classes" in result.stderr
    assert not (tmp_path / "predictions.csv").exists()


@pytest.fixture(scope="module")
def table_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLP meta-trained on a CSV of 12 classes of 4 features."""
    root = tmp_path_factory.mktemp("table")
    g = np.random.default_rng(0)
    rows = ["f1,f2,f3,f4,label"]
    for c in range(12):
        center = g.normal(0, 3, 4)
        for _ in range(5):
            values = center + g.normal(0, 0.3, 4)
            rows.append(",".join(f"{v:.4f}" for v in values) + f",class{c}")
    (root / "table.csv").write_text("\n".join(rows) + "\n")
    overrides = [*FOLDER, f"data.path={root / 'table.csv'}", "strategy=protonet"]
    cfg = load_config(overrides=[*overrides, "strategy_config.train_ways=3"])
    meta_train(cfg, root / "run", quiet=True)
    return root / "run"


def test_a_table_model_adapts_from_csv_and_checks_the_columns(
    table_run: Path, tmp_path: Path
) -> None:
    (tmp_path / "support.csv").write_text("f4,f3,f2,f1,label\n1,1,1,1,a\n-1,-1,-1,-1,b\n")
    (tmp_path / "query.csv").write_text("f1,f2,f3,f4\n0.9,1.1,1,1\n-1,-0.9,-1,-1.2\n")
    result = cli("adapt", str(table_run), "--support", "support.csv", "--query", "query.csv",
                 cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader((tmp_path / "predictions.csv").open()))
    assert [r["prediction"] for r in rows] == ["a", "b"]
    assert [r["item"] for r in rows] == ["query.csv:2", "query.csv:3"]
    (tmp_path / "bad.csv").write_text("f1,f2,size\n1,2,3\n")
    result = cli("adapt", str(table_run), "--support", "support.csv", "--query", "bad.csv",
                 cwd=tmp_path)  # fmt: skip
    assert result.returncode == 2 and "feature columns f1, f2, size" in result.stderr
    assert "f1, f2, f3, f4" in result.stderr


def test_a_regression_model_adapts_from_csv(tmp_path: Path) -> None:
    cfg = load_config(overrides=["data.dataset=sinusoid", "data.shots=5", "data.queries=5",
                                 "steps=4", "val_tasks=4", "threads=1",
                                 "strategy_config.inner_lr=0.01"])  # fmt: skip
    meta_train(cfg, tmp_path / "run", quiet=True)
    xs = np.linspace(-5, 5, 10).round(3)
    lines = ["x,label", *(f"{x:.3f},{np.sin(x):.4f}" for x in xs)]
    (tmp_path / "support.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "query.csv").write_text("x\n0.5\n1.5\n")
    result = cli("adapt", "run", "--support", "support.csv", "--query", "query.csv",
                 cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader((tmp_path / "predictions.csv").open()))
    learner = metalearner.load(tmp_path / "run")
    expected = learner.adapt(torch.tensor(xs, dtype=torch.float32), np.sin(xs).round(4).tolist())
    values = expected.predict([[0.5], [1.5]]).scores
    assert [float(r["prediction"]) for r in rows] == pytest.approx(values.tolist(), rel=1e-4)
