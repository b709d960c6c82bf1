"""Lake et al.'s one-shot runs: a fixed 20-way 1-shot task set, checked against its label files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from metalearner.data import omniglot
from metalearner.errors import DataError
from metalearner.tasks import FixedTasks
from metalearner.tasks.lake import load_lake_runs
from omniglot_fixture import runs_files, write_fake_runs, zip_tree


def test_runs_become_one_fixed_task_set(tmp_path: Path) -> None:
    answers = write_fake_runs(tmp_path, runs=3, ways=5)
    runs = load_lake_runs(tmp_path)
    assert isinstance(runs, FixedTasks) and len(runs) == 3
    b = runs.batch(0, 3)
    assert b.support_x.shape == (3, 5, 1, 28, 28) and b.query_x.shape == (3, 5, 1, 28, 28)
    assert b.support_x.dtype == torch.float32
    assert float(b.support_x.min()) >= 0.0 and float(b.support_x.max()) == 1.0
    assert float(b.support_x[:, :, 0, 0, 0].max()) == 0.0  # inverted: paper is 0
    assert torch.equal(b.support_y, torch.arange(5).expand(3, 5))
    assert torch.equal(b.query_y, torch.arange(5).expand(3, 5))
    assert b.classes is not None and b.classes.unique().numel() == 15
    assert b.info["run"].tolist() == [1, 2, 3]
    for t in range(3):
        for j in range(5):
            item = int(b.info["query_item"][t, j]) + 1
            assert answers[t + 1, item] == j + 1  # the label file's answer is label j
            # the fake's test item is a copy of its class's training drawing
            assert torch.equal(b.query_x[t, j], b.support_x[t, j])


def test_extracted_folder_gives_the_same_tasks(tmp_path: Path) -> None:
    write_fake_runs(tmp_path / "a", runs=2, ways=4)
    write_fake_runs(tmp_path / "b", runs=2, ways=4, form="folder")
    a, b = load_lake_runs(tmp_path / "a").tasks, load_lake_runs(tmp_path / "b").tasks
    assert torch.equal(a.support_x, b.support_x) and torch.equal(a.query_x, b.query_x)
    assert torch.equal(a.info["query_item"], b.info["query_item"])


def test_missing_runs_say_where_to_put_them(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        load_lake_runs(tmp_path)
    message = str(err.value)
    assert str(tmp_path / "omniglot") in message and "all_runs.zip" in message
    assert "--data-dir" in message and "--download" not in message  # no command has it
    assert "https://" in message and message.rstrip(".").endswith("all_runs.zip")


def _write(tmp_path: Path, files: dict[str, bytes]) -> Path:
    zip_tree(tmp_path / "omniglot" / "all_runs.zip", files)
    return tmp_path


def test_malformed_label_line_is_named(tmp_path: Path) -> None:
    files, _ = runs_files(1, 3)
    files["run01/class_labels.txt"] += b"just-one-path.png\n"
    with pytest.raises(DataError, match=r"run01/class_labels\.txt line 4 is 'just-one-path"):
        load_lake_runs(_write(tmp_path, files))


def test_label_naming_a_missing_image_is_named(tmp_path: Path) -> None:
    files, _ = runs_files(1, 3)
    del files["run01/test/item02.png"]
    with pytest.raises(DataError, match=r"line 2 names run01/test/item02\.png, which is not in"):
        load_lake_runs(_write(tmp_path, files))


def test_class_answered_twice_is_refused(tmp_path: Path) -> None:
    files, _ = runs_files(1, 3)
    lines = files["run01/class_labels.txt"].decode().splitlines()
    lines[1] = lines[1].split()[0] + " " + lines[0].split()[1]
    files["run01/class_labels.txt"] = "\n".join(lines).encode()
    with pytest.raises(DataError, match="exactly one test item"):
        load_lake_runs(_write(tmp_path, files))


def test_runs_of_different_sizes_are_refused(tmp_path: Path) -> None:
    files, _ = runs_files(2, 3)
    other, _ = runs_files(3, 4)
    files.update({k: v for k, v in other.items() if k.startswith("run03/")})
    with pytest.raises(DataError, match=r"different numbers of classes \(\[3, 4\]\)"):
        load_lake_runs(_write(tmp_path, files))


def test_unreadable_run_image_is_named(tmp_path: Path) -> None:
    files, _ = runs_files(1, 3)
    files["run01/training/class02.png"] = b"\x89PNG\r\n\x1a\n broken"
    with pytest.raises(DataError, match=r"Cannot read image .*run01/training/class02\.png"):
        load_lake_runs(_write(tmp_path, files))


def test_download_fetches_all_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A file:// URL exercises the same md5-checked, atomic path as the loopback HTTP test.
    write_fake_runs(tmp_path / "upstream", runs=1, ways=3)
    source = tmp_path / "upstream" / "omniglot" / "all_runs.zip"
    monkeypatch.setitem(omniglot.URLS, "all_runs.zip", source.as_uri())
    monkeypatch.setitem(omniglot.MD5, "all_runs.zip", hashlib.md5(source.read_bytes()).hexdigest())
    runs = load_lake_runs(tmp_path / "fresh", download=True)
    assert len(runs) == 1 and (tmp_path / "fresh" / "omniglot" / "all_runs.zip").is_file()


@pytest.mark.data
def test_real_runs_are_20_tasks_of_20_ways_with_consistent_answers(data_dir: Path) -> None:
    runs = load_lake_runs(data_dir)
    assert len(runs) == 20
    b = runs.batch(0, 20)
    assert b.support_x.shape == (20, 20, 1, 28, 28) and b.query_x.shape == (20, 20, 1, 28, 28)
    assert b.info["run"].tolist() == list(range(1, 21))
    # Every query's answer is one of the 20 classes, and each class is answered once.
    assert int(b.query_y.min()) == 0 and int(b.query_y.max()) == 19
    for t in range(20):
        assert sorted(b.query_y[t].tolist()) == list(range(20))
        assert sorted(b.info["query_item"][t].tolist()) == list(range(20))
    # The answers are right, not just well-formed: nearest-neighbour on raw pixels is far above
    # chance (5%) only if queries are paired with their true classes (Lake et al. report ~26%
    # for a pixel baseline); a shuffled answer key scores near chance.
    distances = torch.cdist(b.query_x.flatten(2), b.support_x.flatten(2))
    accuracy = (distances.argmin(-1) == b.query_y).float().mean()
    assert accuracy > 0.12, f"1-NN accuracy {accuracy:.2f}"
    shuffled = b.query_y[:, torch.randperm(20, generator=torch.Generator().manual_seed(0))]
    assert (distances.argmin(-1) == shuffled).float().mean() < accuracy / 2
