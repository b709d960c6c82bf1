"""A run's curves and trackers: curves.png however a run ends, `metalearner plot`, TensorBoard."""

from __future__ import annotations

import dataclasses
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

import metalearner.training.loop as train_module
from metalearner.errors import DataError, MissingExtraError
from metalearner.runs.config import RunConfig, load_config
from metalearner.runs.folder import create_run, read_metrics
from metalearner.training.loop import TrainingDivergedError, meta_train

sys.path.insert(0, str(Path(__file__).parent))
from cli_runner import command
from cli_runner import run_cli as run

# A short sinusoid run, on the command line and in the library.
SINE_CLI = ["--preset", "sinusoid-k5-maml", "--set=val_tasks=4", "--set=meta_batch=5",
            "--set=threads=1"]  # fmt: skip
SINE = ["data.dataset=sinusoid", "data.shots=5", "data.queries=5", "val_tasks=4", "meta_batch=4",
        "threads=1", "strategy_config.inner_lr=0.01"]  # fmt: skip


def sine(*extra: str) -> RunConfig:
    return load_config(overrides=[*SINE, *extra])


def assert_picture(file: Path) -> None:
    """``file`` is a whole PNG of a figure's size (four panels at 100 dpi)."""
    assert file.is_file(), f"{file} was not written"
    with Image.open(file) as picture:
        picture.load()  # decodes every pixel: a truncated file fails here
        assert picture.format == "PNG"
        assert picture.width >= 600 and picture.height >= 400, picture.size


def test_a_finished_run_draws_its_curves(tmp_path: Path) -> None:
    trained = run("train", *SINE_CLI, "--set=steps=6", "--set=val_every=3", "--out=r", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    assert "WARNING" not in trained.stderr  # drawing worked
    assert_picture(tmp_path / "r" / "curves.png")


def test_an_interrupted_run_still_draws_its_curves(tmp_path: Path) -> None:
    args = [*SINE_CLI, "--set=steps=3000", "--set=val_every=100000", "--set=log_every=1"]
    proc = subprocess.Popen(
        command("train", *args, "--out=r", "--quiet"), cwd=tmp_path, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not (tmp_path / "r/metrics.jsonl").exists() and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1]  # it failed before its first line
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err.strip() == "interrupted", err
    assert_picture(tmp_path / "r" / "curves.png")


def test_a_run_stopped_by_its_time_budget_or_diverging_draws_its_curves(tmp_path: Path) -> None:
    result = meta_train(sine("steps=1000000", "val_every=100000", "time_budget=0.3"),
                        tmp_path / "budget", quiet=True)  # fmt: skip
    assert 0 < result.step < 1_000_000
    assert_picture(tmp_path / "budget" / "curves.png")
    # Adam's first step of size 1e30 sends the parameters to infinity: step 2 diverges.
    with pytest.raises(TrainingDivergedError):
        meta_train(sine("steps=20", "log_every=1", "optimizer.lr=1e30"), tmp_path / "nan",
                   quiet=True)  # fmt: skip
    assert_picture(tmp_path / "nan" / "curves.png")


def test_a_failure_to_draw_is_a_warning_and_the_run_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import metalearner.runs.trackers as trackers

    def broken(*args: Any, **kwargs: Any) -> None:
        raise ValueError("no font")

    monkeypatch.setattr(trackers, "draw_curves", broken)
    with caplog.at_level(logging.WARNING):
        result = meta_train(sine("steps=4", "val_every=2"), tmp_path / "r", quiet=True)
    assert result.step == 4 and (tmp_path / "r/checkpoints/latest/meta.json").is_file()
    assert not (tmp_path / "r/curves.png").exists()
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "curves.png" in warned[0] and "no font" in warned[0], warned
    # A run that fails has its own one-sentence error to tell: the picture's failure is no
    # second message (a full disk fails both), only an info that -v shows.
    caplog.clear()
    with caplog.at_level(logging.INFO), pytest.raises(TrainingDivergedError):
        meta_train(sine("steps=20", "log_every=1", "optimizer.lr=1e30"), tmp_path / "nan",
                   quiet=True)  # fmt: skip
    told = [(r.levelno, r.getMessage()) for r in caplog.records if "curves.png" in r.getMessage()]
    assert [level for level, _ in told] == [logging.INFO], told


def test_plot_overlays_runs(tmp_path: Path) -> None:
    # Folder names are the user's strings: never mathtext, and a leading _ still in the legend.
    names = ["a", "_b $\\nosuchsymbol$"]
    for i, name in enumerate(names):
        meta_train(sine("steps=4", "val_every=2", "log_every=1", f"seed={i}"), tmp_path / name,
                   quiet=True)  # fmt: skip
    (tmp_path / "figures").mkdir()  # --out a folder: the picture is its curves.png
    plotted = run("plot", *names, "--out", "figures", cwd=tmp_path)
    assert plotted.returncode == 0, plotted.stderr
    assert plotted.stdout.strip() == "wrote figures/curves.png"
    assert_picture(tmp_path / "figures" / "curves.png")


def test_plot_refuses_bad_input_in_one_sentence(tmp_path: Path) -> None:
    from metalearner.runs.curves import read_curves

    meta_train(sine("steps=2", "val_every=2"), tmp_path / "ok", quiet=True)
    (tmp_path / "a-file").write_text("")
    cases = {
        ("nowhere",): "nowhere is not a run folder",
        ("ok", "--out", "a-file/x.png"): "lies under a-file, which is a file",
    }
    for args, expected in cases.items():
        refused = run("plot", *args, cwd=tmp_path)
        assert refused.returncode == 2, (args, refused.stderr)
        assert refused.stderr.count("\n") == 1 and expected in refused.stderr, refused.stderr
    create_run(tmp_path / "empty", sine("steps=4"))  # a run that logged nothing yet
    with pytest.raises(DataError, match=r"empty has no metrics yet"):
        read_curves(tmp_path / "empty")


def tensorboard_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of the event files in ``folder``, read by TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})  # 0: keep every point
    events.Reload()
    return {t: [(e.step, e.value) for e in events.Scalars(t)] for t in events.Tags()["scalars"]}


def logged_scalars(run_dir: Path, after: int = 0) -> dict[str, list[tuple[int, Any]]]:
    """metrics.jsonl's numbers as TensorBoard scalars: a tag per key, a point per line."""
    out: dict[str, list[tuple[int, Any]]] = {}
    for line in read_metrics(run_dir):
        if line["step"] > after:
            for key, value in line.items():
                if key != "step":  # values as float32, as TensorBoard keeps them
                    out.setdefault(key, []).append((line["step"], pytest.approx(value, rel=1e-6)))
    return out


def test_log_tensorboard_writes_every_metrics_line_as_scalars(tmp_path: Path) -> None:
    args = ["--set=steps=6", "--set=val_every=3", "--set=log_every=2", "--log", "tensorboard"]
    trained = run("train", *SINE_CLI, *args, "--out=r", "--quiet", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    assert "log:\n- tensorboard" in (tmp_path / "r/config.yaml").read_text()  # a resume keeps it
    scalars = tensorboard_scalars(tmp_path / "r" / "tensorboard")
    assert {"loss", "lr", "grad_norm", "val_mse", "val_ci95", "time"} <= set(scalars)
    assert scalars == logged_scalars(tmp_path / "r")
    assert [step for step, _ in scalars["val_mse"]] == [3, 6]
    assert [step for step, _ in scalars["loss"]] == [2, 3, 4, 6]


def test_tensorboard_is_switched_on_at_a_resume_and_a_killed_session_leaves_no_stale_points(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg, folder = sine("steps=12", "val_every=4", "log_every=1"), tmp_path / "r"
    meta_train(cfg, folder, quiet=True, stop_at=4)  # first session: no tracker
    logging_cfg = dataclasses.replace(cfg, log=("tensorboard",))
    real = train_module._outer_step

    def killed_at_10(run: Any) -> Any:
        if run.step == 10:  # steps 9 and 10 were logged; the last checkpoint is step 8's
            raise KeyboardInterrupt
        return real(run)

    monkeypatch.setattr(train_module, "_outer_step", killed_at_10)
    with pytest.raises(KeyboardInterrupt):
        meta_train(logging_cfg, folder, resume=True, quiet=True)  # log may change on resume
    monkeypatch.setattr(train_module, "_outer_step", real)
    meta_train(logging_cfg, folder, resume=True, quiet=True)
    scalars = tensorboard_scalars(folder / "tensorboard")
    assert scalars == logged_scalars(folder, after=4)  # steps 9 and 10 once, from the resume
    assert [step for step, _ in scalars["loss"]] == list(range(5, 13))


def test_a_missing_tensorboard_is_one_sentence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard fails
    with pytest.raises(MissingExtraError, match=r"pip install 'metalearner\[tensorboard\]'"):
        meta_train(sine("steps=2", "log=[tensorboard]"), tmp_path / "r", quiet=True)
