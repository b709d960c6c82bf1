"""The command line as a user runs it: a subprocess of the installed ``metalearner`` entry."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from cli_runner import run_cli as run


def test_demo_on_the_builtin_default_writes_a_picture(tmp_path: Path) -> None:
    result = run("tasks", "demo", "--tasks", "2", "--out", "pic.png", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "amplitude" in result.stdout and "wrote pic.png" in result.stdout
    with Image.open(tmp_path / "pic.png") as image:
        assert image.width > 200 and image.height > 100


def test_demo_on_a_folder_of_classes(tmp_path: Path) -> None:
    for c, name in enumerate(["cat", "dog", "fox"]):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (20 + i, 30), (40 * c, 10 * i, 0)).save(
                tmp_path / "data" / name / f"{i}.png"
            )
    result = run(
        "tasks",
        "demo",
        "--dataset",
        "folder",
        "--path",
        "data",
        "--ways",
        "3",
        "--shots",
        "1",
        "--queries",
        "2",
        "--tasks",
        "2",
        "--out",
        "f.png",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "cat" in result.stdout and "dog" in result.stdout and "fox" in result.stdout
    assert (tmp_path / "f.png").is_file()


def test_bad_input_is_one_line_and_a_nonzero_exit(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = run("tasks", "demo", "--dataset", "folder", "--path", "empty", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "empty" in result.stderr
    result = run("tasks", "demo", "--dataset", "imagenet", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "sinusoid" in result.stderr  # names the datasets it knows
    result = run(
        "tasks", "demo", "--dataset", "omniglot", "--data-dir", str(tmp_path), cwd=tmp_path
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "omniglot" in result.stderr.lower()
