"""`metalearner search` on sinusoid tasks: it improves on a bad start, never looks at the test
set before the end, survives a kill, and shares one study between worker processes."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy.exc

from metalearner.errors import ConfigError
from metalearner.runs.checkpoint import load_checkpoint
from metalearner.runs.config import load_config
from metalearner.runs.experiment import Experiment
from metalearner.runs.folder import read_run_config
from metalearner.search import SearchPlan, finish, load_search_plan, search_trials
from metalearner.search.space import default_space, narrow
from metalearner.search.study import open_study

# The lowest step sizes and meta-batch of MAML's sinusoid ranges: a deliberately bad start.
BAD = {"strategy": "maml", "inner_lr": 0.001, "inner_steps": 1, "meta_lr": 0.0001,
       "meta_batch": 6}  # fmt: skip
TINY = ("threads=1", "val_tasks=50")


def plan(**given: object) -> SearchPlan:
    settings: dict = dict(
        dataset="sinusoid", shots=10, strategies=("maml",), trials=6, sampler="tpe",
        trial_budget="200steps", budget="200steps", val_tasks=50, tasks=50, overrides=TINY,
    )  # fmt: skip
    return SearchPlan(**(settings | given))


def finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return study.get_trials(states=states)


def test_search_beats_a_bad_start_and_touches_the_test_set_only_at_the_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = plan(start=(BAD,))
    calls: list[str] = []

    def forbidden(self: Experiment, *args: object, **kwargs: object) -> object:
        calls.append("test")
        raise AssertionError("the search looked at the test tasks")

    with monkeypatch.context() as m:
        m.setattr(Experiment, "test_tasks", forbidden)
        study = search_trials(p, tmp_path / "s", log=lambda _: None)
    assert calls == []
    trials = finished(study)
    assert len(trials) == 6
    start = trials[0]
    assert start.params["maml.inner_lr"] == 0.001 and start.params["maml.meta_lr"] == 0.0001
    assert study.best_value < 0.7 * start.value  # MSE: clearly better than the bad start
    result = finish(p, tmp_path / "s", log=lambda _: None)  # now, and only now, the test set
    assert result.best.number == study.best_trial.number
    assert (tmp_path / "s" / "best" / "eval.json").is_file()
    assert result.test.num_tasks == 50 and result.test.metric == "mse"
    # best.yaml is the winner's run config, ready to train.
    cfg = load_config(tmp_path / "s" / "best.yaml")
    assert cfg == read_run_config(tmp_path / "s" / "best")
    assert cfg.strategy_config["inner_lr"] == pytest.approx(result.best.params["maml.inner_lr"])
    assert cfg.steps == 200
    md = (tmp_path / "s" / "search_report.md").read_text()
    for needle in ("## The winning configuration", "## Best trials", "history.png",
                   "## Hyperparameter importance", "inner_lr"):  # fmt: skip
        assert needle in md
    assert 'src="data:image/png;base64,' in (tmp_path / "s" / "search_report.html").read_text()


def test_space_is_conditional_narrowable_and_checked() -> None:
    cfg = plan().base_config("maml", "40steps")
    space = {p.name: p for p in default_space("maml", cfg)}
    assert space["inner_lr"].low == pytest.approx(0.001)  # a tenth of the paper's 0.01
    assert space["meta_batch"].choices == (6, 12, 25, 50)
    given = {"inner_lr": [0.005, 0.02], "inner_steps": 2}
    narrowed = {p.name: p for p in narrow(list(space.values()), given, "maml")}
    assert (narrowed["inner_lr"].low, narrowed["inner_lr"].high) == (0.005, 0.02)
    assert narrowed["inner_steps"].value == 2  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="not a searched setting"):
        narrow(list(space.values()), {"colour": 1}, "maml")
    assert "inner_lr" not in {p.name for p in default_space("metasgd", cfg)}  # learned instead


@pytest.mark.parametrize(
    ("given", "message"),
    [({"sampler": "magic"}, "Unknown sampler"), ({"pruner": "x"}, "Unknown pruner"),
     ({"trial_budget": "soon"}, "write e.g."), ({"space": {"reptile": {}}}, "not among"),
     ({"start": ({"strategy": "protonet"},)}, "not searched"), ({"colour": 1}, "Unknown search")],
)  # fmt: skip
def test_bad_search_plans_are_refused(given: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_search_plan(None, dataset="sinusoid", strategies="maml", **given)


@pytest.mark.parametrize(
    ("space", "message"),
    [({"inner_lr": [0.01, 0.001]}, r"from high to low; write it \[low, high\], as \[0.001, 0.01\]"),
     ({"inner_lr": [-0.01, 0.1]}, "log scale, so its range needs bounds above 0"),
     ({"inner_lr": [0, 0.1]}, "log scale, so its range needs bounds above 0"),
     ({"inner_steps": [1.5, 3]}, "takes whole numbers"),
     ({"inner_steps": [0, 3]}, r"space.maml.inner_steps = 0: .*inner_steps must be >= 1"),
     ({"inner_lr": "fast"}, r"space.maml.inner_lr = 'fast': .*must be a number"),
     ({"meta_batch": [4, "x", 8]}, r"space.maml.meta_batch = 'x'"),
     ({"colour": 1}, "space.maml.colour is not a searched setting of maml")],
)  # fmt: skip
def test_a_bad_space_is_refused_before_any_trial(space: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_search_plan(None, dataset="sinusoid", strategies="maml", space={"maml": space})


@pytest.mark.parametrize(
    ("given", "message"),
    [({"overrides": ["stepz=1"]}, "Unknown setting 'stepz'"),
     ({"dataset": "mnist"}, "must be one of sinusoid"),
     ({"start": [{"strategy": "maml", "inner_rate": 1}]}, "sets 'inner_rate', which is not"),
     ({"start": [{"strategy": "maml", "inner_lr": -1}]}, "start trial inner_lr = -1: ")],
)  # fmt: skip
def test_bad_run_settings_are_refused_before_any_trial(given: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_search_plan(None, **({"dataset": "sinusoid", "strategies": "maml"} | given))


def search_cli(out: str, *extra: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    args = ["search", "--dataset", "sinusoid", "--shots", "5", "--strategies", "maml",
            "--trials", "1", "--trial-budget", "10steps", "--budget", "10steps", "--set",
            "threads=1", "--out", out, *extra]  # fmt: skip
    return subprocess.run([sys.executable, "-m", "metalearner", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600)  # fmt: skip


def one_line(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr


def test_the_command_sets_how_many_tasks_score_the_trials_and_test_the_winner(
    tmp_path: Path,
) -> None:
    result = search_cli("s", "--val-tasks", "3", "--tasks", "7", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "(7 tasks)" in result.stdout
    assert json.loads((tmp_path / "s/best/eval.json").read_text())["num_tasks"] == 7
    assert read_run_config(tmp_path / "s/trials/0000").val_tasks == 3


def test_what_no_trial_could_run_fails_at_once_in_one_line_writing_nothing(
    tmp_path: Path,
) -> None:
    for extra, message in [
        (("--set", "stepz=1"), "Unknown setting 'stepz'"),
        (("--strategies", "protonet"), "its tasks need integer class labels"),
        (("--budget", "10"), "Budget '10' has no unit"),
        (("--storage", "notaurl"), "'notaurl' is not a database URL; write e.g. sqlite:///"),
        (("--storage", "sqlite:////no/such/folder/s.db"), "Cannot reach the database"),
        (("search.yaml",), "Plan file search.yaml does not exist; give a search plan"),
    ]:
        one_line(search_cli("s", *extra, cwd=tmp_path), message)
        assert not (tmp_path / "s").exists()
    driver = search_cli("s", "--storage", "postgresql://user:secret@nohost:1/db", cwd=tmp_path)
    assert driver.returncode == 2 and driver.stderr.count("\n") == 1, driver.stderr
    assert "secret" not in driver.stderr
    # Without the driver: the package to install; with it: no server there.
    assert "pip install 'psycopg[binary]'" in driver.stderr or "Cannot reach" in driver.stderr


def test_an_error_in_a_trial_ends_the_search_in_one_line_and_a_diverged_one_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from metalearner.errors import DataError
    from metalearner.training.loop import TrainingDivergedError, TrainResult

    def logged() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name.startswith("optuna")]

    def fails(*args: object, **kwargs: object) -> object:
        raise DataError("The data went away; put it back.")

    p = plan(trials=1, trial_budget="10steps", budget="10steps")
    monkeypatch.setattr("metalearner.search.objective.meta_train", fails)
    with pytest.raises(DataError, match="went away"):
        search_trials(p, tmp_path / "a", log=lambda _: None)
    assert logged() == []  # the command line says it, once, without a traceback

    def diverges(*args: object, **kwargs: object) -> object:
        raise TrainingDivergedError("Training diverged at step 3; lower the step size.")

    monkeypatch.setattr("metalearner.search.objective.meta_train", diverges)
    study = search_trials(p, tmp_path / "b", log=lambda _: None)  # the search goes on
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.FAIL]
    (record,) = logged()
    assert "Trial 0 failed" in record.getMessage() and "diverged at step 3" in record.getMessage()
    assert record.exc_info is None  # no traceback

    def no_finite_validation(cfg: object, folder: Path, **kwargs: object) -> TrainResult:
        return TrainResult(folder, 10, {}, None, "mse")  # every validation was nan

    caplog.clear()
    monkeypatch.setattr("metalearner.search.objective.meta_train", no_finite_validation)
    study = search_trials(p, tmp_path / "c", log=lambda _: None)  # a failed trial, no crash
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.FAIL]
    (record,) = logged()
    assert "no validation score was finite" in record.getMessage() and record.exc_info is None


@pytest.mark.slow
def test_ctrl_c_stops_the_search_in_one_line_and_the_cut_off_trial_runs_again(
    tmp_path: Path,
) -> None:
    out = tmp_path / "s"
    args = command(out, 2)
    args[args.index("--trial-budget") + 1] = "1000steps"  # some seconds: time to interrupt
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    run = out / "trials" / "0000"
    deadline = time.monotonic() + 120
    while not (run / "checkpoints" / "latest" / "meta.json").exists():  # validated at step 20
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert (
        err == "interrupted; run the same command again to continue the search where it stopped.\n"
    )
    trials = load(out).get_trials()
    # Trial 1: fomaml's first trial, queued at the start; trial 2: trial 0 queued to run again.
    assert [t.state.name for t in trials] == ["FAIL", "WAITING", "WAITING"]
    saved = load_checkpoint(run / "checkpoints" / "latest").meta["step"]
    again = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    cut_off = load(out).trials[2]
    assert cut_off.state.name == "COMPLETE" and cut_off.params == trials[0].params
    # Resumed in its own folder from its checkpoint, not trained anew: one unbroken log.
    assert cut_off.user_attrs["run"] == "trials/0000" and not (out / "trials" / "0002").exists()
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 1000 and saved >= 20


def test_a_folder_with_only_the_plan_of_an_attempt_that_ran_no_trial_takes_a_new_plan(
    tmp_path: Path,
) -> None:
    out = tmp_path / "s"
    out.mkdir()
    (out / "search.yaml").write_text("dataset: omniglot\nstrategies: [protonet]\n")
    optuna.create_study(storage=f"sqlite:///{out / 'study.db'}", study_name="metalearner",
                        direction="maximize")  # fmt: skip
    p = plan(trials=1, trial_budget="10steps", budget="10steps")
    study = search_trials(p, out, log=lambda _: None)
    assert study.direction == optuna.study.StudyDirection.MINIMIZE  # made afresh for MSE
    assert len(finished(study)) == 1
    changed = plan(trials=1, trial_budget="20steps", budget="10steps")
    with pytest.raises(ConfigError, match="another plan \\(trial_budget: '10steps' there"):
        search_trials(changed, out, log=lambda _: None)
    # A study of another name has no trials yet, but the folder's trial runs are work.
    renamed = plan(trials=1, trial_budget="10steps", budget="10steps", study_name="other")
    with pytest.raises(ConfigError, match="another plan \\(study_name: 'metalearner' there"):
        search_trials(renamed, out, log=lambda _: None)


def command(out: Path, trials: int, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "metalearner", "search", "--dataset", "sinusoid", "--shots", "10",
        "--strategies", "maml,fomaml", "--trials", str(trials), "--trial-budget", "60steps",
        "--budget", "60steps", "--set", "threads=1", "--set", "val_every=20", "--out", str(out),
        *extra,
    ]  # fmt: skip


def load(out: Path) -> optuna.Study:
    return optuna.load_study(study_name="metalearner", storage=f"sqlite:///{out / 'study.db'}")


@pytest.mark.slow
def test_a_killed_search_continues_with_its_finished_trials_intact(tmp_path: Path) -> None:
    out = tmp_path / "s"
    proc = subprocess.Popen(command(out, 6), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        time.sleep(0.5)
        if not (out / "study.db").exists():
            continue
        try:
            if len(finished(load(out))) >= 2:
                break
        except (KeyError, sqlalchemy.exc.DBAPIError):
            # The database exists a moment before its tables and the study's record do, and
            # Optuna creates missing tables on loading: it races the search (which retries).
            continue
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {t.number: (t.params, t.value) for t in finished(load(out))}
    assert len(before) >= 2
    again = subprocess.run(command(out, 6), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    after = finished(load(out))
    assert len(after) >= 6
    for t in after:  # every trial finished before the kill is still there, unchanged
        if t.number in before:
            assert (t.params, t.value) == before.pop(t.number)
    assert before == {}
    assert (out / "best" / "eval.json").is_file()


@pytest.mark.slow
def test_two_workers_share_one_study_without_losing_or_repeating_trials(tmp_path: Path) -> None:
    out = tmp_path / "s"
    done = subprocess.run(command(out, 6, "--workers", "2"), capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr
    study = load(out)
    trials = study.get_trials()
    numbers = [t.number for t in trials]
    assert sorted(numbers) == list(range(len(trials)))  # one record per trial, none repeated
    assert 6 <= len(finished(study)) <= 7  # MaxTrialsCallback may let one extra finish
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both processes ran trials
    for t in finished(study):
        assert (out / t.user_attrs["run"] / "config.yaml").is_file()


def open_together(plan: SearchPlan, out: Path, workers: int) -> list[object]:
    """``open_study`` from ``workers`` threads released at one moment: studies or errors."""
    start = threading.Barrier(workers)
    results: list[object] = []

    def worker(number: int) -> None:
        start.wait()
        try:
            results.append(open_study(plan, out, worker=number))
        except BaseException as error:  # reported by the test, with its type
            results.append(error)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_workers_started_together_on_a_new_database_open_one_study(tmp_path: Path) -> None:
    """Optuna creates a new database's tables without a lock (optuna/optuna#1092).

    Six workers opening one new SQLite study at the same moment: without the retry in
    ``open_study``, five of six failed ("table studies already exists") in 10 of 10 tries.
    """
    plan = load_search_plan(None, dataset="sinusoid", strategies="maml")
    for attempt in range(3):
        out = tmp_path / str(attempt)
        out.mkdir()
        results = open_together(plan, out, 6)
        assert all(isinstance(r, optuna.Study) for r in results), results
        assert len(results) == 6
        assert optuna.get_all_study_names(f"sqlite:///{out / 'study.db'}") == [plan.study_name]
