"""`metalearner search` on sinusoid tasks: it improves on a bad start, never looks at the test
set before the end, survives a kill, and shares one study between worker processes."""

from __future__ import annotations

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

from metalearner.config import load_config
from metalearner.errors import ConfigError
from metalearner.experiment import Experiment
from metalearner.runs import read_run_config
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
