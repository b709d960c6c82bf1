"""A search after a kill: the cut-off trial is failed and run again on the next start, however
soon that is, and never while its process lives; a restarted search, or a second worker on a new
study, draws new settings, reproducibly."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import time
from pathlib import Path

import optuna
import pytest

from cli_runner import command
from metalearner.runs.config import RunConfig
from metalearner.search import SearchPlan, search_trials
from metalearner.search import study as study_module
from metalearner.search.objective import trial_config
from metalearner.search.recovery import PROCESS, process_of, recover
from metalearner.search.study import open_study
from metalearner.training.loop import TrainResult

SAMPLERS = ("random", "tpe", "gp", "cmaes", "nsga2")
# A trial asked for here, outside Study.optimize, has no heartbeat thread: as intended.
no_heartbeat = pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")
RUNNING, FAIL, WAITING = (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.FAIL,
                          optuna.trial.TrialState.WAITING)  # fmt: skip


def plan(**given: object) -> SearchPlan:
    settings: dict = dict(
        dataset="sinusoid", shots=5, strategies=("maml",), trials=1, trial_budget="5steps",
        budget="5steps", val_tasks=5, tasks=5, overrides=("threads=1",),
    )  # fmt: skip
    return SearchPlan(**(settings | given))


def load(out: Path) -> optuna.Study:
    return optuna.load_study(study_name="metalearner", storage=f"sqlite:///{out / 'study.db'}")


# --- a kill -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_search_killed_and_run_again_at_once_reruns_the_cut_off_trial(tmp_path: Path) -> None:
    out = tmp_path / "s"
    args = command(
        "search", "--dataset", "sinusoid", "--shots", "5", "--strategies", "maml", "--trials",
        "1", "--trial-budget", "100steps", "--budget", "5steps", "--val-tasks", "5", "--tasks",
        "5", "--set", "threads=1", "--set", "val_every=10", "--out", str(out),
    )  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    checkpoint = out / "trials" / "0000" / "checkpoints" / "latest" / "meta.json"
    deadline = time.monotonic() + 120
    while not checkpoint.exists():  # mid-trial: it validated (and saved) at step 10
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    (cut_off,) = load(out).trials
    assert cut_off.state == RUNNING  # as the kill left it
    again = subprocess.run(args, capture_output=True, text=True, timeout=300)  # at once
    assert again.returncode == 0, again.stderr
    trials = load(out).trials
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE"]
    rerun = trials[1]
    assert rerun.params == cut_off.params
    # Resumed in its own run folder from its checkpoint, not trained anew.
    assert rerun.user_attrs["run"] == "trials/0000" and not (out / "trials" / "0001").exists()
    assert (out / "best" / "eval.json").is_file()


def workers_of(pid: int) -> list[int]:
    """The worker processes that process ``pid`` started (Linux's /proc; multiprocessing's
    resource tracker, also a child, is not one)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text, line = stat.read_text(), (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue  # ended meanwhile
        if int(text[text.rindex(")") + 2 :].split()[1]) == pid and b"spawn_main" in line:
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (an unreaped zombie has ended)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return text[text.rindex(")") + 2] not in "ZX"


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads Linux's /proc")
def test_the_workers_of_a_killed_search_end_with_it(tmp_path: Path) -> None:
    # Before, they went on with the study unseen (and unstoppable by Ctrl-C, which they ignore).
    args = command(
        "search", "--dataset", "sinusoid", "--shots", "5", "--strategies", "maml", "--trials",
        "2", "--workers", "2", "--trial-budget", "100000steps", "--budget", "5steps",
        "--val-tasks", "5", "--tasks", "5", "--set", "threads=1", "--out", str(tmp_path / "s"),
    )  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(workers := workers_of(proc.pid)) < 2:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 30
    while any(alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [w for w in workers if alive(w)]


def running(study: optuna.Study, process: dict | None) -> int:
    """A new RUNNING trial of ``study`` as ``process`` would record it; its number."""
    trial = study.ask()
    trial_config(plan(), trial, "5steps")  # draws its settings, as a worker does
    trial.set_user_attr("run", f"trials/{trial.number:04d}")
    if process is not None:
        trial.set_user_attr(PROCESS, process)
    return trial.number


@no_heartbeat
def test_a_trial_is_failed_only_when_its_process_on_this_machine_is_gone(tmp_path: Path) -> None:
    study = open_study(plan(), tmp_path)
    live = subprocess.Popen(["sleep", "60"])
    dead = subprocess.Popen(["sleep", "60"])
    try:
        me, other, gone = process_of(os.getpid()), process_of(live.pid), process_of(dead.pid)
        dead.kill()
        dead.wait()
        assert me is not None and other is not None and gone is not None
        reused = {**other, "start": other["start"] + 1}  # its pid, now another process's
        elsewhere = {**gone, "host": "another-machine.invalid"}  # for the heartbeat to judge
        numbers = [running(study, p) for p in (me, other, gone, reused, elsewhere, None)]
        assert recover(study) == [numbers[2], numbers[3]]
        assert recover(study) == []  # failed once, queued once
    finally:
        live.kill()
        live.wait()
    trials = study.get_trials()
    states = [t.state for t in trials]
    assert states == [RUNNING, RUNNING, FAIL, FAIL, RUNNING, RUNNING, WAITING, WAITING]
    for queued, failed in zip(trials[6:], trials[2:4], strict=True):
        assert queued.params == failed.params  # the same settings, in the same run folder
        assert queued.user_attrs == {"run": failed.user_attrs["run"]}


@no_heartbeat
def test_a_trial_whose_heartbeat_stopped_is_failed_and_queued_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(study_module, "HEARTBEAT", 1)
    monkeypatch.setattr(study_module, "GRACE", 1)
    study = open_study(plan(), tmp_path)
    number = running(study, {"host": "another-machine.invalid", "pid": 1, "start": 0})
    trial_id = study.trials[number]._trial_id
    study._storage.record_heartbeat(trial_id)  # what its worker did, then died
    time.sleep(2.2)  # that machine died: no heartbeat for longer than the grace
    assert recover(study) == []  # not one of this machine's
    failed, queued = study.get_trials()
    assert (failed.state, queued.state) == (FAIL, WAITING)
    assert queued.params == failed.params and queued.user_attrs == {"run": "trials/0000"}


# --- new settings after a restart, and for each worker -------------------------------------------


def quick_training(cfg: RunConfig, folder: Path, **kwargs: object) -> TrainResult:
    """Instead of training: a score that depends on the settings (the sampler needs one)."""
    score = abs(math.log10(float(cfg.strategy_config["inner_lr"])) + 2)
    return TrainResult(folder, 5, {}, {"score": score, "step": 5}, "mse")


@pytest.mark.parametrize("sampler", ["random", "tpe"])  # the others: seeded the same way
def test_a_restarted_search_draws_new_settings_as_one_session_would(
    sampler: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("metalearner.search.objective.meta_train", quick_training)
    search_trials(plan(sampler=sampler, trials=1), tmp_path / "a", log=lambda _: None)
    restarted = search_trials(plan(sampler=sampler, trials=2), tmp_path / "a", log=lambda _: None)
    first, second = (t.params for t in restarted.trials)
    assert second != first
    one_session = search_trials(plan(sampler=sampler, trials=2), tmp_path / "b", log=lambda _: None)
    assert [t.params for t in one_session.trials] == [first, second]  # reproducible


@no_heartbeat
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_two_workers_on_a_new_study_draw_different_first_trials(
    sampler: str, tmp_path: Path
) -> None:
    # Two machines (each its own --out) on one study in a shared database, starting together.
    shared = plan(sampler=sampler, trials=4, storage=f"sqlite:///{tmp_path / 'shared.db'}")
    a, b = open_study(shared, tmp_path / "a"), open_study(shared, tmp_path / "b")
    first_a, first_b = a.ask(), b.ask()
    assert trial_config(shared, first_a, "5steps") != trial_config(shared, first_b, "5steps")
    assert first_a.params != first_b.params
