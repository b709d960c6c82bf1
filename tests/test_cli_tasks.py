"""The command line as a user runs it: a subprocess of the installed ``metalearner`` entry."""

from __future__ import annotations

import dataclasses
import io
import re
from pathlib import Path

import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.text import Text as MplText
from PIL import Image

from cli_runner import run_cli as run
from fewrel_fixture import write_fake_fewrel
from metalearner.data.fewrel import load_fewrel
from metalearner.tasks import EpisodeSampler, LabeledSet
from metalearner.tasks.pictures import QUERY_ROWS, episode_figure


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


def test_demos_of_two_datasets_write_two_pictures(tmp_path: Path) -> None:
    for c in range(3):
        (tmp_path / "data" / f"c{c}").mkdir(parents=True)
        for i in range(3):
            Image.new("L", (12, 12), 40 * c + i).save(tmp_path / "data" / f"c{c}" / f"{i}.png")
    first = run("tasks", "demo", "--tasks", "1", cwd=tmp_path)
    second = run("tasks", "demo", "--dataset", "folder", "--path", "data", "--ways", "2",
                 "--queries", "1", "--tasks", "1", cwd=tmp_path)  # fmt: skip
    for result, name in [(first, "sinusoid"), (second, "folder")]:
        assert result.returncode == 0, result.stderr
        written = Path("runs") / "demo" / f"{name}-tasks.png"
        assert result.stdout.strip().splitlines()[-1] == f"wrote {written}"
        with Image.open(tmp_path / written) as image:
            assert image.width > 100


def texts(figure: Figure) -> list[str]:
    return [t.get_text() for t in figure.findobj(MplText) if t.get_text()]


def test_an_episode_picture_shows_support_and_query_rows_with_class_names(
    tiny_images: LabeledSet,
) -> None:
    data = dataclasses.replace(tiny_images, class_names=tuple(
        f"$\\frac$ [bold]{i}" if i == 3 else f"class{i:02d}" for i in range(12)))  # fmt: skip
    sampler = EpisodeSampler(data, torch.arange(12), ways=3, shots=2, queries=4)
    batch = sampler.sample(2, generator=torch.Generator().manual_seed(0))
    figure = episode_figure(data, batch)
    shown = texts(figure)
    for t in range(2):
        assert f"task {t}" in shown
        for c in batch.classes[t].tolist():  # every class by its name, as written
            assert any(data.class_names[c] in text for text in shown), data.class_names[c]
    assert shown.count("support") == 2 * 2 and shown.count("query") == 2 * QUERY_ROWS
    pictures = [ax for ax in figure.findobj(Axes) if ax.images]
    assert len(pictures) == 2 * 3 * (2 + QUERY_ROWS)  # tasks x ways x (shots + query rows)
    figure.savefig(io.BytesIO(), format="png")  # a name that looks like TeX draws as it is


def test_a_text_task_is_drawn_as_sentences_with_their_relations(tmp_path: Path) -> None:
    data, split = load_fewrel(write_fake_fewrel(tmp_path))
    sampler = EpisodeSampler(data, split.test, ways=3, shots=1, queries=2)
    batch = sampler.sample(1, generator=torch.Generator().manual_seed(0))
    shown = "\n".join(texts(episode_figure(data, batch)))
    for c in batch.classes[0].tolist():
        assert data.class_names[c] in shown
    assert "support" in shown and "query" in shown
    assert re.search(r"\[H name\d+\]", shown) and "city" in shown  # words, not token ids
    assert not re.search(r"\b\d+, \d+, \d+\b", shown)
