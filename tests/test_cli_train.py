"""`metalearner train/evaluate/presets` as a user runs them: subprocesses, exit codes, stderr."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from metalearner.runs.checkpoint import load_checkpoint

sys.path.insert(0, str(Path(__file__).parent))
from cli_runner import command
from cli_runner import run_cli as run
from omniglot_fixture import write_fake_omniglot

SINE = ["--preset", "sinusoid-k5-maml", "--set", "val_tasks=4", "--set", "meta_batch=5"]
TINY_OMNIGLOT = [
    f"--set={s}"
    for s in (
        "data.ways=3",
        "data.queries=2",
        "data.meta_train_classes=10",
        "data.val_classes=3",
        "model.width=8",
        "model.depth=2",
        "val_tasks=4",
        "meta_batch=2",
        "threads=1",
    )
]


def final_params(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "checkpoints/latest").group("params")


def test_presets_are_listed(tmp_path: Path) -> None:
    result = run("presets", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "omniglot-20w1s-protonet" in result.stdout and "sinusoid-k10-maml" in result.stdout


def test_a_copied_preset_is_the_preset_and_trains_as_edited(tmp_path: Path) -> None:
    from metalearner.config.presets import get_preset

    result = run("presets", "copy", "sinusoid-k5-maml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    copied = tmp_path / "sinusoid-k5-maml.yaml"
    assert copied.read_text() == get_preset("sinusoid-k5-maml").path.read_text()  # comments too
    again = run("presets", "copy", "sinusoid-k5-maml", cwd=tmp_path)
    assert again.returncode == 2 and "already exists" in again.stderr
    assert copied.read_text() == get_preset("sinusoid-k5-maml").path.read_text()  # untouched
    edited = re.sub(r"(?m)^steps: \d+$", "steps: 3", copied.read_text())
    copied.write_text(re.sub(r"(?m)^val_every: \d+$", "val_every: 3", edited))
    trained = run("train", str(copied), "--out", "edited", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    assert "steps: 3" in (tmp_path / "edited" / "config.yaml").read_text()


def test_train_then_evaluate_sinusoid(tmp_path: Path) -> None:
    result = run("train", *SINE, "--set", "steps=6", "--set", "val_every=3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    run_dir = tmp_path / "runs" / "sinusoid-k5-maml"
    assert "best validation mse" in result.stdout and (run_dir / "config.yaml").is_file()
    result = run("evaluate", str(run_dir), "--tasks", "8", "--steps", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "mse " in result.stdout and "(8 tasks)" in result.stdout
    assert (run_dir / "eval.json").is_file()


@pytest.mark.slow
def test_train_then_evaluate_omniglot_layout(tmp_path: Path) -> None:
    write_fake_omniglot(tmp_path / "data")
    args = ["--preset", "omniglot-5w1s-maml", "--data-dir", "data", *TINY_OMNIGLOT]
    result = run("train", *args, "--set=steps=4", "--set=val_every=2", "--out=r", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    result = run("evaluate", "r", "--tasks", "6", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "accuracy " in result.stdout and "% ± " in result.stdout and "(6 tasks)" in result.stdout
    # Resumed (here: extended by two steps) from where it found its data, with no --data-dir.
    config = tmp_path / "r/config.yaml"
    config.write_text(config.read_text().replace("steps: 4", "steps: 6"))
    result = run("train", "--resume", "--out=r", "-q", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "trained 6 steps" in result.stdout


@pytest.mark.slow
def test_a_finished_run_resumes_to_the_same_place(tmp_path: Path) -> None:
    base = ["train", *SINE, "--set=steps=4", "--set=val_every=2", "--out=r", "--seed=3"]
    assert run(*base, cwd=tmp_path).returncode == 0
    before = final_params(tmp_path / "r")
    result = run("train", "--resume", "--out=r", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "trained 4 steps" in result.stdout
    after = final_params(tmp_path / "r")
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.slow
def test_a_killed_run_resumes_bit_identical(tmp_path: Path) -> None:
    args = [*SINE, "--set=steps=400", "--set=val_every=10", "--quiet"]
    whole = run("train", *args, "--out=whole", cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr
    proc = subprocess.Popen(command("train", *args, "--out=killed"), cwd=tmp_path)
    meta = tmp_path / "killed/checkpoints/latest/meta.json"
    deadline = time.monotonic() + 120
    while not meta.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    step = load_checkpoint(tmp_path / "killed/checkpoints/latest").meta["step"]
    assert step < 400, "the run finished before it could be killed; raise steps"
    resumed = run("train", "--resume", "--out=killed", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    a, b = final_params(tmp_path / "whole"), final_params(tmp_path / "killed")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_ctrl_c_before_the_first_checkpoint_says_so_and_the_run_resumes(tmp_path: Path) -> None:
    args = [*SINE, "--set=steps=3000", "--set=val_every=100000", "--set=log_every=1", "--quiet"]
    proc = subprocess.Popen(
        command("train", *args, "--out=r"), cwd=tmp_path, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while not (tmp_path / "r/metrics.jsonl").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err.strip() == "interrupted", err
    assert not (tmp_path / "r/checkpoints/latest").exists(), "it got to a checkpoint; raise steps"
    resumed = run("train", "--resume", "--out=r", "--quiet", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "trained 3000 steps" in resumed.stdout


def test_evaluate_refuses_a_device_it_cannot_use(tmp_path: Path) -> None:
    trained = run("train", *SINE, "--set=steps=2", "--set=val_every=2", "--out=r", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    bad = run("evaluate", "r", "--device", "gpu", cwd=tmp_path)
    assert bad.returncode == 2 and "Unknown device 'gpu'" in bad.stderr
    assert "Traceback" not in bad.stderr
    if not torch.cuda.is_available():
        missing = run("evaluate", "r", "--device", "cuda", cwd=tmp_path)
        assert missing.returncode == 2 and "'cuda' is not available" in missing.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["train", "--preset", "nope"], "sinusoid-k5-maml"),
        (["train", *SINE, "--set", "data.wayz=3"], "data.wayz"),
        (["train", *SINE, "--set", "steps=lots"], "integer"),
        (["train", "missing.yaml"], "missing.yaml"),
        (["train"], "--preset"),
        (["train", "--preset", "omniglot-5w1s-maml", "--data-dir", "."], "omniglot"),
        (["train", "--resume", "--out", "."], "not a run folder"),
        (["evaluate", "."], "not a run folder"),
        (["evaluate", "nowhere"], "not a run folder"),
    ],
)
def test_errors_are_one_line_and_exit_2(tmp_path: Path, args: list[str], needle: str) -> None:
    result = run(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert needle in result.stderr
