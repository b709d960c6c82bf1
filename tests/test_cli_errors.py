"""Bad input on the command line: one sentence on stderr, exit status 2, no traceback, no litter."""

from __future__ import annotations

import errno
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from cli_runner import run_cli as run
from metalearner.errors import file_error


def refused(result: subprocess.CompletedProcess[str], *words: str) -> str:
    """The one-line error of a refused command, checked to name ``words``."""
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in lines[0]
    return lines[0]


def image_classes(root: Path, classes: int = 3, images: int = 3) -> Path:
    for c in range(classes):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(images):
            Image.new("L", (12, 12), 30 * c + i).save(root / f"c{c}" / f"{i}.png")
    return root


# --- file-system errors: the last-resort handler -------------------------------------------------


def test_an_output_path_that_is_or_lies_under_a_file_is_one_sentence_not_a_traceback(
    tmp_path: Path,
) -> None:
    (tmp_path / "taken").write_text("a file, not a folder")
    under = ("train", "--preset", "sinusoid-k10-maml", "-q", "--set", "steps=1", "--out")
    refused(run(*under, "taken/run", cwd=tmp_path), "under taken, which is a file", "another path")
    args = (*under, "taken")
    refused(run(*args, cwd=tmp_path), "taken is a file, but a folder is needed", "another path")
    debug = run("--debug", *args, cwd=tmp_path)  # --debug still shows where it happened
    assert debug.returncode != 0 and "Traceback" in debug.stderr


@pytest.mark.parametrize(
    ("err", "words"),
    [
        (IsADirectoryError(errno.EISDIR, "dir", ".p.tmp-1", None, "out"), "out is a folder"),
        (NotADirectoryError(errno.ENOTDIR, "not dir", "f/p.csv"), "f/p.csv lies under f,"),
        (PermissionError(errno.EACCES, "denied", "/root/x"), "Permission denied for /root/x"),
        (FileNotFoundError(errno.ENOENT, "no file", "gone/x"), "gone/x does not exist"),
        (OSError(errno.ENOSPC, "no space", "big.bin"), "disk is full (writing big.bin)"),
    ],
)
def test_file_system_errors_become_one_sentence_naming_the_path(err: OSError, words: str) -> None:
    message = file_error(err)
    assert message is not None and words in message
    assert message.endswith(".") and message.count(". ") == 0 and ";" in message


def test_other_os_errors_stay_bugs() -> None:
    assert file_error(ConnectionResetError(errno.ECONNRESET, "reset")) is None
    assert file_error(OSError(errno.EIO, "I/O error")) is None


def test_quickstart_and_benchmark_refuse_a_file_as_their_folder(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("")
    refused(run("quickstart", "--out", "taken", "-q", cwd=tmp_path), "--out taken", "is a file")
    refused(run("quickstart", "--out", "taken/q", cwd=tmp_path), "taken is a file")
    assert not (tmp_path / "runs").exists()
    result = run("benchmark", "--dataset", "sinusoid", "--strategies", "maml", "--out", "taken",
                 "-q", cwd=tmp_path)  # fmt: skip
    refused(result, "taken")


# --- tasks demo --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--tasks", "0"), ("--tasks 0", "at least 1")),
        (("--shots", "-3"), ("--shots", "at least 1, got -3")),
        (("--shots", "0"), ("--shots", "at least 1, got 0")),
        (("--out", "out/pic.xyz"), ("--out out/pic.xyz", ".xyz", ".png")),
        (("--out", "taken/x.png"), ("taken", "is a file")),
        (("--out", "folder"), ("--out folder is a folder", "folder/tasks.png")),
    ],
)
def test_demo_refuses_bad_options_before_any_work(
    tmp_path: Path, args: tuple[str, ...], words: tuple[str, ...]
) -> None:
    (tmp_path / "taken").write_text("")
    (tmp_path / "folder").mkdir()
    result = run("tasks", "demo", *args, cwd=tmp_path)
    refused(result, *words)
    assert result.stdout == ""  # refused before sampling or drawing anything
    assert not (tmp_path / "out").exists()


def test_demo_refuses_negative_tasks_on_a_folder(tmp_path: Path) -> None:
    image_classes(tmp_path / "data")
    result = run("tasks", "demo", "--dataset", "folder", "--path", "data", "--ways", "2",
                 "--queries", "1", "--tasks", "-1", cwd=tmp_path)  # fmt: skip
    refused(result, "--tasks -1")


@pytest.mark.parametrize(("out", "written"), [("out", "out.png"), ("sub/pic", "sub/pic.png")])
def test_demo_says_the_file_it_really_wrote(tmp_path: Path, out: str, written: str) -> None:
    result = run("tasks", "demo", "--tasks", "1", "--out", out, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == f"wrote {written}"
    assert (tmp_path / written).is_file()


def test_demo_on_sinusoids_keeps_the_shots_asked_for(tmp_path: Path) -> None:
    result = run("tasks", "demo", "--tasks", "1", "--shots", "3", "--out", "s.png", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "K=3 support" in result.stdout.replace("\n", " ")
    result = run("tasks", "demo", "--tasks", "1", "--out", "d.png", cwd=tmp_path)
    assert "K=10 support" in result.stdout.replace("\n", " ")  # the default shows a sinusoid


def test_a_dangling_link_in_a_class_folder_is_named(tmp_path: Path) -> None:
    image_classes(tmp_path / "data")
    (tmp_path / "data" / "c0" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    result = run("tasks", "demo", "--dataset", "folder", "--path", "data", "--ways", "2",
                 "--queries", "1", "--out", "d.png", cwd=tmp_path)  # fmt: skip
    refused(result, "data/c0/gone.png", "nowhere.png", "does not exist")


def test_demo_table_errors_say_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("a,b\n1,2\n3,4\n")
    message = refused(run("tasks", "demo", "--dataset", "folder", "--path", "t.csv", cwd=tmp_path))
    assert "rename the column that holds the class labels to 'label'" in message
    assert "pass its name" not in message
    (tmp_path / "fake.npz").write_text("hello")
    result = run("tasks", "demo", "--dataset", "folder", "--path", "fake.npz", cwd=tmp_path)
    message = refused(result, "fake.npz is not a valid .npz file")
    assert "pickle" not in message


# --- evaluate and rl evaluate --------------------------------------------------------------------


def fake_run(folder: Path, config: str) -> Path:
    """A run folder holding only ``config.yaml``: enough to be told apart."""
    folder.mkdir()
    (folder / "config.yaml").write_text(config)
    return folder


SUPERVISED = "strategy: maml\ndata:\n  dataset: sinusoid\n"
RL = "env: navigation2d\nmethod: maml\n"


def test_each_evaluate_command_names_the_other_for_the_other_kind_of_run(tmp_path: Path) -> None:
    fake_run(tmp_path / "sup", SUPERVISED)
    fake_run(tmp_path / "rl", RL)
    refused(run("rl", "evaluate", "sup", cwd=tmp_path), "sup is a supervised run",
            "metalearner evaluate sup")  # fmt: skip
    refused(run("evaluate", "rl", cwd=tmp_path), "rl is an RL run", "metalearner rl evaluate rl")


def test_rl_evaluate_of_a_file_says_it_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("")
    refused(run("rl", "evaluate", "notes.txt", cwd=tmp_path), "is a file, not a run folder")
    refused(run("rl", "evaluate", "absent", cwd=tmp_path), "absent does not exist")


def test_a_split_is_refused_for_a_dataset_without_splits(tmp_path: Path) -> None:
    fake_run(tmp_path / "sine", SUPERVISED)
    message = refused(run("evaluate", "sine", "--split", "pubmed", cwd=tmp_path), "no splits")
    assert "vinyals" not in message  # the old message listed Omniglot's splits


def test_a_moved_relative_data_path_says_where_it_is_relative_to(tmp_path: Path) -> None:
    fake_run(tmp_path / "run", "strategy: protonet\ndata:\n  dataset: folder\n  path: ds/good\n")
    (tmp_path / "elsewhere").mkdir()
    result = run("evaluate", "../run", cwd=tmp_path / "elsewhere")
    refused(result, "ds/good", "relative to the folder training ran in", "--path")


@pytest.mark.parametrize(
    ("blocked", "argv", "extra"),
    [
        ("optuna", ["search", "--dataset", "sinusoid", "--trials", "1"], "search"),
        ("mujoco", ["rl", "train", "--env", "navigation2d"], "rl"),
    ],
)
def test_a_command_whose_extra_is_missing_names_the_pip_install(
    tmp_path: Path, blocked: str, argv: list[str], extra: str
) -> None:
    # As if the package were installed without the extra: importing the module fails.
    code = (
        f"import sys; sys.modules[{blocked!r}] = None; sys.argv = ['metalearner', *{argv!r}]; "
        "from metalearner.cli import main; main()"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and blocked in lines[0], result.stderr
    assert f"pip install 'metalearner[{extra}]'" in lines[0]
