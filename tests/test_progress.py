"""Long runs a person can follow: progress lines in a log, honest ETAs, resumes that say from
where they continue, and finished runs trained longer (issue 28)."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from metalearner.errors import ConfigError
from metalearner.runs.checkpoint import load_checkpoint
from metalearner.runs.config import RunConfig, load_config
from metalearner.runs.folder import create_run, read_metrics, read_run_config
from metalearner.training.loop import meta_train
from metalearner.training.optimizer import lr_factor
from metalearner.training.progress import Horizon, TrainingProgress, forecast
from metalearner.training.resume import extended_config

sys.path.insert(0, str(Path(__file__).parent))
from cli_runner import command
from cli_runner import run_cli as run

SINE = ["data.dataset=sinusoid", "data.shots=5", "data.queries=5", "val_tasks=4", "meta_batch=4",
        "threads=1", "strategy_config.inner_lr=0.01"]  # fmt: skip
CLI_SINE = ["--preset", "sinusoid-k5-maml", "--set=val_tasks=4", "--set=meta_batch=5"]
LINE = re.compile(
    r"step (\d+)/(\d+) .*elapsed \d+:\d\d:\d\d, loss \S+, val \S+.*, [\d.]+ steps/s "
    r"\([\d.]+ tasks/s\), ETA (\d+):(\d\d):(\d\d) by (steps|time_budget)"
)


def sine(*extra: str) -> RunConfig:
    return load_config(overrides=[*SINE, *extra])


def eta_seconds(match: re.Match[str]) -> int:
    hours, minutes, seconds = (int(match[i]) for i in (3, 4, 5))
    return 3600 * hours + 60 * minutes + seconds


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_eta_comes_from_whichever_of_steps_and_time_budget_ends_the_run_first() -> None:
    # 20 steps in 2 s: 20,000 steps would take 33 minutes, but an 8-second budget ends it first.
    budgeted = forecast(Horizon(20_000, 8.0), 20, 2.0, start_step=0, start_elapsed=0.0, wall=2.0)
    assert budgeted.ends_by == "time_budget" and budgeted.eta == pytest.approx(6.0)
    assert budgeted.fraction == pytest.approx(0.25) and budgeted.steps_per_s == pytest.approx(10)
    by_steps = forecast(Horizon(100, 3600.0), 20, 2.0, start_step=0, start_elapsed=0.0, wall=2.0)
    assert by_steps.ends_by == "steps" and by_steps.eta == pytest.approx(8.0)
    assert by_steps.fraction == pytest.approx(0.2)
    # Wall time the budget does not count (validation, checkpoints) stretches the ETA alike.
    slowed = forecast(Horizon(20_000, 8.0), 20, 2.0, start_step=0, start_elapsed=0.0, wall=4.0)
    assert slowed.eta == pytest.approx(12.0) and slowed.steps_per_s == pytest.approx(5)
    # A resumed run's pace is this session's: 10 steps in 2 s, 40 steps left.
    resumed = forecast(Horizon(100), 60, 7.0, start_step=50, start_elapsed=5.0, wall=2.0)
    assert resumed.eta == pytest.approx(8.0) and resumed.fraction == pytest.approx(0.6)
    fresh = forecast(Horizon(100, 8.0), 0, 0.0, start_step=0, start_elapsed=0.0, wall=0.0)
    assert fresh.eta is None and fresh.steps_per_s is None  # no pace to go by yet
    spent = forecast(Horizon(100, 8.0), 30, 8.2, start_step=0, start_elapsed=0.0, wall=9.0)
    assert spent.eta == 0.0 and spent.fraction == 1.0


def test_a_log_gets_a_line_each_interval_each_validation_and_at_the_end() -> None:
    log, clock = io.StringIO(), Clock()
    with TrainingProgress(Horizon(100), "sine", start=0, tasks_per_step=4, every=30.0,
                          quiet=False, log=log, clock=clock) as progress:  # fmt: skip
        for step in range(1, 11):  # 5 s a step: a line once 30 s have passed, at step 6
            clock.now += 5.0
            progress.update(step, step * 5.0, loss=float(step))
        clock.now += 5.0
        progress.update(11, 55.0, loss=11.0, val="val mse 0.25", validated=True)
    lines = log.getvalue().splitlines()
    assert len(lines) == 3, lines
    assert lines[0] == (
        "sine: step 6/100 (6%), elapsed 0:00:30, loss 3.5, val -, 0.2 steps/s (0.8 tasks/s), "
        "ETA 0:07:50 by steps"
    )  # the loss: the mean over the steps since the last line
    assert lines[1].startswith("sine: step 11/100 (11%), elapsed 0:00:55, loss 9, val mse 0.25")
    assert lines[2].startswith("sine: done at step 11/100, elapsed 0:00:55")
    for quiet, stream in ((True, io.StringIO()), (False, Terminal())):  # -q; or a terminal
        with TrainingProgress(Horizon(100), "sine", start=0, every=1.0, quiet=quiet, log=stream,
                              clock=clock) as progress:  # fmt: skip
            clock.now += 5.0
            progress.update(1, 1.0, loss=1.0, val="val mse 0.25", validated=True)
        assert stream.getvalue() == ""


def test_the_bar_counts_to_what_ends_the_run() -> None:
    screen, clock = Terminal(), Clock()
    from rich.console import Console

    console = Console(file=screen, force_terminal=True, width=200)
    with TrainingProgress(Horizon(20_000, 8.0), "sine", start=0, every=30.0, quiet=False,
                          console=console, log=io.StringIO(), clock=clock) as progress:  # fmt: skip
        clock.now = 2.0
        progress.update(20, 2.0, loss=1.0)
        assert progress.fraction == pytest.approx(0.25)  # of the budget, not of 20,000 steps
    assert "ETA 0:00:06 by time_budget" in screen.getvalue()


def test_a_finished_run_is_extended_to_more_steps_as_if_trained_so_from_the_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    meta_train(sine("steps=6", "val_every=3", "log_every=3"), run_dir, quiet=True)
    cfg = extended_config(run_dir, ["steps=9"])
    assert cfg == sine("steps=9", "val_every=3", "log_every=3")
    capsys.readouterr()
    extended = meta_train(cfg, run_dir, resume=True)
    said = capsys.readouterr().out
    assert said.count("resuming") == 1
    assert re.search(rf"resuming {re.escape(str(run_dir))} from step 6 of 9 \(best val mse "
                     r"\S+ at step \d\)", said), said  # fmt: skip
    assert extended.step == 9 and [r["step"] for r in read_metrics(run_dir)] == [3, 6, 9]
    assert load_checkpoint(run_dir / "checkpoints/latest").meta["step"] == 9
    assert read_run_config(run_dir).steps == 9  # config.yaml states what the run now is
    # A constant step size is a function of the step alone: the same as 9 steps at once.
    whole = meta_train(sine("steps=9", "val_every=3", "log_every=3"), tmp_path / "w", quiet=True)
    assert all(torch.equal(v, extended.params[k]) for k, v in whole.params.items())
    # Resumed again with nothing left to do, it says so and how to go on.
    meta_train(read_run_config(run_dir), run_dir, resume=True)
    assert "has done its 9 steps" in capsys.readouterr().out


def test_a_run_stopped_before_its_first_checkpoint_is_extended_too(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    create_run(run_dir, sine("steps=4", "val_every=2"))  # what a kill before step 2 leaves
    meta_train(extended_config(run_dir, ["steps=6"]), run_dir, resume=True, quiet=True)
    assert read_run_config(run_dir).steps == 6
    again = meta_train(read_run_config(run_dir), run_dir, resume=True, quiet=True)
    assert again.step == 6


def test_an_extended_schedule_spans_the_new_steps_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    cfg = sine("steps=6", "val_every=3", "log_every=1", "optimizer.schedule=cosine")
    meta_train(cfg, run_dir, quiet=True)
    capsys.readouterr()
    meta_train(extended_config(run_dir, ["steps=12"]), run_dir, resume=True)
    note = capsys.readouterr().out
    assert "optimizer.schedule cosine spans steps" in note
    assert "from 0 to 0.5 × optimizer.lr at step 6" in note, note
    lr = cfg.optimizer.lr or 0.0
    for record in read_metrics(run_dir):  # each line's lr: the one its last step took
        total = 6 if record["step"] <= 6 else 12
        assert record["lr"] == pytest.approx(lr * lr_factor(cfg.optimizer, record["step"] - 1,
                                                            total))  # fmt: skip


def test_a_resume_refuses_a_change_to_what_is_learned_and_says_what_may_change(
    tmp_path: Path,
) -> None:
    run_dir = tmp_path / "run"
    meta_train(sine("steps=4", "val_every=2"), run_dir, quiet=True)
    for change, name in (("data.shots=3", "data.shots"), ("optimizer.lr=0.1", "optimizer.lr")):
        with pytest.raises(ConfigError) as err:
            extended_config(run_dir, [change])
        message = str(err.value)
        assert f"not {name}" in message and "another --out" in message
        for allowed in ("steps", "time_budget", "val_every", "log_every", "progress_every"):
            assert allowed in message
    settings = ["time_budget=60", "val_every=5", "val_every_seconds=2", "log_every=3",
                "progress_every=5", "threads=2"]  # fmt: skip
    assert extended_config(run_dir, settings).progress_every == 5
    with pytest.raises(ConfigError, match="has done 4 steps already; give steps 4 or more"):
        meta_train(extended_config(run_dir, ["steps=3"]), run_dir, resume=True, quiet=True)
    with pytest.raises(ConfigError, match="progress_every"):
        sine("progress_every=0")


@pytest.mark.slow
def test_train_logged_to_a_file_prints_a_line_within_its_interval_and_a_final_line(
    tmp_path: Path,
) -> None:
    args = [*CLI_SINE, "--set=steps=1000000", "--set=time_budget=4", "--set=val_every=100000",
            "--set=progress_every=1", "--out=r"]  # fmt: skip
    log = tmp_path / "log.txt"
    with open(log, "w") as out, open(tmp_path / "err.txt", "w") as err:
        proc = subprocess.Popen(command("train", *args), cwd=tmp_path, stdout=out, stderr=err)
        deadline = time.monotonic() + 120
        while (
            proc.poll() is None and time.monotonic() < deadline and not LINE.search(log.read_text())
        ):
            time.sleep(0.05)
        assert proc.poll() is None, "no progress line while it trained: " + log.read_text()
        assert proc.wait(timeout=120) == 0, (tmp_path / "err.txt").read_text()
    text = log.read_text()
    lines = [m for m in map(LINE.search, text.splitlines()) if m]
    assert len(lines) >= 3, text  # one a second of a 4-second budget
    for line in lines:
        assert int(line[2]) == 1_000_000 and line[6] == "time_budget", line[0]
        assert eta_seconds(line) <= 4 * 1.5, line[0]  # not 1,000,000 steps' worth
    assert re.search(r"r: done at step \d+/1000000, .*time_budget 4 s spent", text), text
    assert "best validation mse" in text.splitlines()[-3]  # then the command's summary


@pytest.mark.slow
def test_train_resume_says_from_where_extends_with_set_and_refuses_learned_changes(
    tmp_path: Path,
) -> None:
    meta_train(sine("steps=4", "val_every=2"), tmp_path / "r", quiet=True)  # a finished run
    refused = run("train", "--resume", "--out=r", "--set=data.shots=3", cwd=tmp_path)
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert "not data.shots" in refused.stderr and "steps, " in refused.stderr, refused.stderr
    extended = run("train", "--resume", "--out=r", "--set=steps=6", cwd=tmp_path)
    assert extended.returncode == 0, extended.stderr
    assert "resuming r from step 4 of 6 (best val mse" in extended.stdout, extended.stdout
    assert "trained 6 steps" in extended.stdout
    assert load_checkpoint(tmp_path / "r/checkpoints/latest").meta["step"] == 6
