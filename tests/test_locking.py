"""Lock first, then touch: a command that writes into a run, benchmark or search folder takes that
folder's lock before it deletes, renames or writes anything there, so a second command on a folder
in use is refused in one sentence naming the process that holds it, and changes nothing.

The holder is always another process (``flock`` locks belong to an open file, so a lock held by
this test process would prove less): :func:`held` starts one that takes the folder's lock with the
package's own :func:`run_lock`, as a command working in that folder does.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli_runner import command, run_cli
from metalearner.benchmark import run_benchmark
from metalearner.benchmark.plan import BenchmarkPlan
from metalearner.benchmark.training import train_or_resume
from metalearner.errors import ConfigError
from metalearner.evaluation.evaluator import evaluate
from metalearner.runs.config import RunConfig, load_config
from metalearner.runs.folder import append_metrics, create_run, read_run_config, run_lock
from metalearner.search import SearchPlan, run_search
from metalearner.training.loop import meta_train

HOLD = """
import sys
from pathlib import Path
from metalearner.runs.folder import run_lock
with run_lock(Path(sys.argv[1])):
    print("held", flush=True)
    sys.stdin.read()  # until the test lets go
"""


@contextlib.contextmanager
def held(folder: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding ``folder``'s lock until the block ends."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdin is not None and holder.stdout is not None
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every file (its bytes) and folder (``None``) under ``folder``, by relative path."""
    return {
        str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None
        for p in sorted(folder.rglob("*"))
    }


def names_holder(message: str, pid: int) -> None:
    """``message`` is one sentence that names process ``pid``."""
    assert re.search(rf"\b{pid}\b", message), message
    assert "another process" in message, message
    assert message.endswith(".") and ". " not in message and "\n" not in message, message


def sine(*extra: str) -> RunConfig:
    return load_config(
        overrides=["data.dataset=sinusoid", "data.shots=5", "data.queries=5", "val_tasks=4",
                   "meta_batch=4", "threads=1", "steps=3", *extra]
    )  # fmt: skip


# --- a run folder ------------------------------------------------------------------------------


def test_a_live_run_keeps_its_config_when_train_or_resume_comes_second(tmp_path: Path) -> None:
    run = tmp_path / "run"
    cfg = sine()
    create_run(run, cfg)  # a run training now, before its first checkpoint
    append_metrics(run, {"step": 1, "loss": 1.0})
    with held(run) as holder:
        before = snapshot(run)
        with pytest.raises(ConfigError) as refused:
            train_or_resume(cfg, run, quiet=True)  # what a second benchmark or search does
        assert snapshot(run) == before
    names_holder(str(refused.value), holder.pid)
    assert read_run_config(run) == cfg


def test_a_train_refused_on_a_live_run_names_the_process_holding_it(tmp_path: Path) -> None:
    run = tmp_path / "run"
    create_run(run, sine())
    with held(run) as holder:
        before = snapshot(run)
        with pytest.raises(ConfigError) as refused:
            meta_train(sine("seed=7"), run, quiet=True)
        assert snapshot(run) == before
    names_holder(str(refused.value), holder.pid)


def test_a_command_that_fails_before_writing_leaves_no_folder_and_no_lock(tmp_path: Path) -> None:
    folder = tmp_path / "new" / "run"
    with pytest.raises(ConfigError), run_lock(folder):
        raise ConfigError("refused by a check")  # before anything was written
    assert not (tmp_path / "new").exists()
    with pytest.raises(ConfigError), run_lock(folder):
        (folder / "config.yaml").write_text("")
        raise ConfigError("failed later")
    assert sorted(p.name for p in folder.iterdir()) == [".lock", "config.yaml"]
    assert (folder / ".lock").read_text() == ""  # no pid left for a later refusal to name


# --- a benchmark or search folder --------------------------------------------------------------

BENCHMARK = BenchmarkPlan(
    dataset="sinusoid", shots=5, strategies=("maml",), budget="3steps", tasks=4, sweep_tasks=4,
    sweep_shots=(5,), label_noise=(), val_tasks=4, overrides=("threads=1",),
)  # fmt: skip
SEARCH = SearchPlan(
    dataset="sinusoid", shots=5, strategies=("maml",), trials=1, trial_budget="3steps",
    budget="3steps", val_tasks=4, tasks=4, overrides=("threads=1",),
)  # fmt: skip


def test_a_benchmark_folder_in_use_is_refused_before_anything_is_touched(tmp_path: Path) -> None:
    out = tmp_path / "b"
    out.mkdir()
    # An attempt that did nothing yet: a new plan would replace this file.
    (out / "benchmark.yaml").write_text("dataset: sinusoid\nbudget: 99steps\n")
    with held(out) as holder:
        before = snapshot(out)
        with pytest.raises(ConfigError) as refused:
            run_benchmark(BENCHMARK, out, quiet=True, log=lambda _: None)
        assert snapshot(out) == before
    names_holder(str(refused.value), holder.pid)


def test_a_search_folder_in_use_is_refused_before_anything_is_touched(tmp_path: Path) -> None:
    out = tmp_path / "s"
    out.mkdir()
    with held(out) as holder:
        before = snapshot(out)
        with pytest.raises(ConfigError) as refused:
            run_search(SEARCH, out, log=lambda _: None)
        assert snapshot(out) == before
    names_holder(str(refused.value), holder.pid)


# --- two commands started together, many times -------------------------------------------------


def together(args: list[str], cwd: Path) -> list[tuple[int, int, str]]:
    """Runs ``metalearner ARGS`` twice at once; each one's (pid, exit status, stderr)."""
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, "text": True}
    runs = [subprocess.Popen(command(*args), cwd=cwd, **quiet) for _ in range(2)]
    return [(p.pid, p.wait(timeout=300), p.stderr.read() if p.stderr else "") for p in runs]


def check_pair(pair: list[tuple[int, int, str]]) -> None:
    """Both ran to the end, or one was refused in one sentence naming the other."""
    for (_, status, stderr), (other, _, _) in (pair, pair[::-1]):
        if status != 0:
            assert status == 2 and stderr.startswith("error: "), stderr
            names_holder(stderr.removeprefix("error: ").strip(), other)


def run_folders(out: Path) -> list[Path]:
    """The run folders under a benchmark or search folder (those with checkpoints)."""
    return sorted(p.parent for p in out.rglob("checkpoints") if p.is_dir())


def check_afterwards(args: list[str], out: Path, cwd: Path) -> None:
    """Every run folder evaluates, and the same command run again completes."""
    folders = run_folders(out)
    assert folders, f"no run folder under {out}"
    for folder in folders:
        # What `metalearner evaluate RUN` runs, here in-process: a CLI each costs seconds.
        assert evaluate(folder, num_tasks=4).num_tasks == 4
    again = run_cli(*args, cwd=cwd)
    assert again.returncode == 0, again.stderr


@pytest.mark.slow
def test_two_benchmarks_started_together_on_one_folder_lose_nothing(tmp_path: Path) -> None:
    # A time budget keeps a run before its first checkpoint for a while: the old window in
    # which the second command deleted the first one's config.yaml.
    for attempt in range(3):
        out = f"b{attempt}"
        args = ["benchmark", "--dataset", "sinusoid", "--shots", "5", "--strategies", "maml",
                "--budget", "1s", "--tasks", "4", "--sweep-tasks", "4", "--sweep-shots", "5",
                "--label-noise", "", "--set", "threads=1", "--set", "val_tasks=20", "-q",
                "--out", out]  # fmt: skip
        pair = together(args, tmp_path)
        check_afterwards(args, tmp_path / out, tmp_path)
        check_pair(pair)


@pytest.mark.slow
def test_two_searches_started_together_on_one_folder_lose_nothing(tmp_path: Path) -> None:
    for attempt in range(2):
        out = f"s{attempt}"
        args = ["search", "--dataset", "sinusoid", "--shots", "5", "--strategies", "maml",
                "--trials", "1", "--trial-budget", "5steps", "--budget", "1s", "--val-tasks",
                "20", "--tasks", "4", "--set", "threads=1", "--out", out]  # fmt: skip
        pair = together(args, tmp_path)
        assert (tmp_path / out / "best" / "eval.json").is_file()  # the winner, trained once
        check_afterwards(args, tmp_path / out, tmp_path)
        check_pair(pair)
