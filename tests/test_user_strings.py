"""A user's files and strings are data: never formulas, markup, loops or overwritten inputs."""

from __future__ import annotations

import csv
import logging
import shutil
from pathlib import Path

import pytest
import torch

from cli_runner import run_cli as cli
from image_classes import FOLDER_RUN, write_class
from metalearner.data.config import DataConfig, resolve_data
from metalearner.data.folder import load_image_folder
from metalearner.data.registry import dataset
from metalearner.errors import DataError
from metalearner.runs.config import load_config
from metalearner.training.loop import meta_train

TRAIN = [
    *FOLDER_RUN,
    "val_tasks=2",
    "val_every=2",
    "meta_batch=2",
    "steps=2",
    "threads=1",
    "strategy=protonet",
    "strategy_config.train_ways=3",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ProtoNet meta-trained for two steps on 12 synthetic image classes."""
    root = tmp_path_factory.mktemp("strings")
    for c in range(12):
        write_class(root / "train" / f"c{c:02d}", c, 4)
    meta_train(load_config(overrides=[*TRAIN, f"data.path={root / 'train'}"]), root / "run",
               quiet=True)  # fmt: skip
    return root / "run"


def _task(root: Path, names: tuple[str, ...]) -> tuple[Path, Path]:
    for c, name in enumerate(names):
        write_class(root / "support" / name, 70 + c, 1)
        files = write_class(root / "tmp" / name, 70 + c, 3)
        (root / "query" / name).mkdir(parents=True)
        for f in files[1:]:
            f.rename(root / "query" / name / f.name)
    return root / "support", root / "query"


# --- 1. CSV injection ---------------------------------------------------------------------------

FORMULA = ("=", "+", "-", "@", "\t", "\r")


def test_predictions_csv_cells_from_user_strings_are_not_formulas(
    run: Path, tmp_path: Path
) -> None:
    support, query = _task(tmp_path, ("=1+1", "@SUM(A1)", "-2+3"))
    result = cli("adapt", str(run), "--support", str(support), "--query", str(query),
                 "--output", "p.csv", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader((tmp_path / "p.csv").open(newline="")))
    assert len(rows) == 6
    for row in rows:
        for key in ("item", "prediction", "label"):
            assert not row[key].startswith(FORMULA), row
            assert row[key].startswith("'"), row
        assert row["correct"] == str(row["prediction"] == row["label"]).lower()
        float(row["probability"])  # numbers stay numbers
    assert {r["label"] for r in rows} == {"'=1+1", "'@SUM(A1)", "'-2+3"}
    # A query file given by name, its name starting with @.
    shutil.copy(next((query / "=1+1").iterdir()), tmp_path / "@HYPERLINK(x).png")
    result = cli("adapt", str(run), "--support", str(support), "--query", "@HYPERLINK(x).png",
                 "--output", "q.csv", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader((tmp_path / "q.csv").open(newline="")))
    assert rows[0]["item"] == "'@HYPERLINK(x).png"


def test_neutralise_leaves_numbers_and_plain_text_alone() -> None:
    from metalearner.inference.predictions import neutralise

    assert neutralise("cat") == "cat" and neutralise("-0.84") == "-0.84"
    assert neutralise("1e-3") == "1e-3" and neutralise("+2") == "+2"
    for bad in ("=1+1", "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx", '=HYPERLINK("a")'):
        assert neutralise(bad) == "'" + bad


# --- 2. an output that is an input --------------------------------------------------------------


def test_an_output_that_is_an_input_is_refused_and_the_input_kept(
    run: Path, tmp_path: Path
) -> None:
    support, query = _task(tmp_path, ("alpha", "beta", "gamma"))
    lines = ["image,label"] + [f"support/{p.parent.name}/{p.name},{p.parent.name}"
                               for p in sorted(support.glob("*/*.png"))]  # fmt: skip
    (tmp_path / "support.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "link.csv").symlink_to(tmp_path / "support.csv")
    png = next((query / "alpha").iterdir())
    for output, args in [
        ("support.csv", ["--support", "support.csv", "--query", "query"]),
        ("link.csv", ["--support", "support.csv", "--query", "query"]),
        (str(png), ["--support", "support", "--query", "query"]),
        ("support/beta/00.png", ["--support", "support.csv", "--query", "query"]),
    ]:
        target = (tmp_path / output).resolve()
        before = target.read_bytes()
        result = cli("adapt", str(run), *args, "--output", output, cwd=tmp_path)
        assert result.returncode == 2, (output, result.stderr)
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "is one of the inputs" in result.stderr
        assert target.read_bytes() == before
        assert (tmp_path / output).exists()
    assert not list(tmp_path.rglob(".*.tmp-*"))


# --- 3. symlinks in a class folder --------------------------------------------------------------


def test_a_link_looping_back_into_the_folder_is_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "data"
    for c in range(3):
        write_class(root / f"c{c:02d}", c, 2)
    (root / "c00" / "loop").symlink_to("..")
    (root / "c01" / "more").symlink_to(root / "c02")
    (root / "c03").symlink_to(root / "c00")
    outside = tmp_path / "elsewhere"
    write_class(outside / "x", 9, 2)
    (root / "c02" / "away").symlink_to(outside)
    with caplog.at_level(logging.WARNING):
        data = load_image_folder(root, use_cache=False)
    assert data.class_names == ("c00", "c01", "c02")
    assert data.x.shape[0] == 6 and torch.bincount(data.y).tolist() == [2, 2, 2]
    for link in ("c00/loop", "c01/more", "c03", "c02/away"):
        assert any(link in r.getMessage() for r in caplog.records), link


def test_adapt_reads_a_looping_class_folder_once(run: Path, tmp_path: Path) -> None:
    support, query = _task(tmp_path, ("alpha", "beta", "gamma"))
    (query / "alpha" / "loop").symlink_to("..")
    result = cli("adapt", str(run), "--support", str(support), "--query", str(query),
                 "--output", "p.csv", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader((tmp_path / "p.csv").open(newline="")))
    assert len(rows) == 6 and "alpha/loop" in result.stderr


# --- 4. data.image_size for a folder ------------------------------------------------------------


def test_image_size_applies_to_folder_data(tmp_path: Path) -> None:
    for c in range(6):
        write_class(tmp_path / "data" / f"c{c}", c, 2)
    settings = resolve_data(
        DataConfig(
            dataset="folder",
            path=str(tmp_path / "data"),
            ways=2,
            image_size=16,
            meta_train_classes=4,
            val_classes=2,
        )
    )
    data, _ = dataset("folder").load(settings, None)
    assert tuple(data.x.shape[1:]) == (1, 16, 16)
    assert data.preprocessing["size"] == [16, 16]


# --- 5. names on a terminal ---------------------------------------------------------------------


def test_demo_prints_class_names_literally(tmp_path: Path) -> None:
    names = ["[link=http://x]a[/link]", "[/bold]", "[red]c"]
    rows = ["f1,f2,label"] + [f"{i},{i % 3},{names[i % 3]}" for i in range(12)]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    result = cli("tasks", "demo", "--dataset", "folder", "--path", "t.csv", "--ways", "3",
                 "--shots", "1", "--queries", "1", "--tasks", "1", "--out", "d.png",
                 cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    for name in names:
        assert name in result.stdout, result.stdout
    assert "\x1b]8;" not in result.stdout  # no terminal hyperlink


# --- 6. predictions that are not numbers --------------------------------------------------------


def test_damaged_parameters_are_an_error_not_nan(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from metalearner.inference import predictions

    support, query = _task(tmp_path, ("alpha", "beta", "gamma"))
    real = predictions.load

    def damaged(*args: object, **kwargs: object) -> object:
        learner = real(*args, **kwargs)  # type: ignore[arg-type]
        learner.params = {k: torch.full_like(v, float("nan")) for k, v in learner.params.items()}
        return learner

    monkeypatch.setattr(predictions, "load", damaged)
    out = tmp_path / "p.csv"
    with pytest.raises(DataError, match="damaged"):
        predictions.adapt_files(run, support, [query], output=out)
    assert not out.exists()


def test_out_of_range_inputs_are_an_error_not_nan(tmp_path: Path) -> None:
    cfg = load_config(overrides=["data.dataset=sinusoid", "data.shots=5", "data.queries=5",
                                 "steps=2", "val_tasks=2", "threads=1"])  # fmt: skip
    meta_train(cfg, tmp_path / "run", quiet=True)
    lines = ["x,label", *(f"{x},{x / 10}" for x in range(-4, 5))]
    (tmp_path / "support.csv").write_text("\n".join(lines) + "\n")
    for value in ("1e300", "-1e39"):  # beyond float32: the model computes inf - inf = nan
        (tmp_path / "query.csv").write_text(f"x\n0.5\n{value}\n")
        result = cli("adapt", "run", "--support", "support.csv", "--query", "query.csv",
                     cwd=tmp_path)  # fmt: skip
        assert result.returncode == 2, (value, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr and "out of range" in result.stderr
        assert not (tmp_path / "predictions.csv").exists()


def test_a_query_too_large_for_a_table_model_is_an_error_not_nan(tmp_path: Path) -> None:
    rows = ["f1,f2,label"] + [f"{c + i / 10},{-c},k{c}" for c in range(12) for i in range(4)]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    overrides = [*TRAIN, f"data.path={tmp_path / 't.csv'}"]
    meta_train(load_config(overrides=overrides), tmp_path / "run", quiet=True)
    (tmp_path / "support.csv").write_text("f1,f2,label\n1,1,a\n-1,-1,b\n")
    (tmp_path / "query.csv").write_text("f1,f2\n0.9,1\n1e38,-1e38\n")
    result = cli("adapt", "run", "--support", "support.csv", "--query", "query.csv",
                 cwd=tmp_path)  # fmt: skip
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and "out of range" in result.stderr
    assert not (tmp_path / "predictions.csv").exists()


def test_a_path_printed_by_a_command_is_not_markup(tmp_path: Path) -> None:
    result = cli("tasks", "demo", "--tasks", "1", "--out", "[red]x.png", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "wrote [red]x.png" in result.stdout and (tmp_path / "[red]x.png").is_file()
