"""Workers on several machines share one study in PostgreSQL (``--storage postgresql://…``): two
``metalearner search`` processes, each with its own ``--out``, on a real server; one is killed
mid-trial, the other finishes the study, reruns the cut-off trial and trains the winner.

The server is named by METALEARNER_TEST_POSTGRES (``.ci/run`` starts Debian's on loopback);
without it the test is skipped, unless METALEARNER_REQUIRE_POSTGRES=1 (CI), where it fails.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
import yaml

from cli_runner import command
from metalearner.errors import MetalearnerError, MissingExtraError

TRIALS = 4


@pytest.fixture
def postgres() -> str:
    """The test server's URL; skips (fails in CI) when there is none or it does not answer."""
    url = os.environ.get("METALEARNER_TEST_POSTGRES")
    reason = "no PostgreSQL server to test with (set METALEARNER_TEST_POSTGRES=postgresql://...)"
    if url:
        try:
            from metalearner.search.study import check_storage

            check_storage(url)
            return url
        except MetalearnerError as error:
            reason = f"METALEARNER_TEST_POSTGRES: {error}"
    if os.environ.get("METALEARNER_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"METALEARNER_REQUIRE_POSTGRES=1, but {reason}")
    pytest.skip(reason)


def psycopg(url: str) -> str:
    """``url`` as a user's own Optuna script would give it: psycopg 3 named."""
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def study_of(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=psycopg(url))


def running_in(study: optuna.Study, pid: int, out: Path) -> optuna.trial.FrozenTrial | None:
    """A trial process ``pid`` is training, past its first checkpoint (well into it)."""
    for trial in study.get_trials(states=(optuna.trial.TrialState.RUNNING,)):
        run = trial.user_attrs.get("run")
        if (
            trial.user_attrs.get("worker") == pid
            and run is not None
            and (out / run / "checkpoints" / "latest" / "meta.json").exists()
        ):
            return trial
    return None


def test_a_postgresql_url_without_its_driver_names_the_extra_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from metalearner.search.study import check_storage

    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if not installed
    with pytest.raises(MissingExtraError) as missing:
        check_storage("postgresql://user:secret@db.example:5432/study")
    assert str(missing.value) == (
        "metalearner's postgres part needs psycopg, which is not installed; install it with: "
        "pip install 'metalearner[postgres]'."
    )


@pytest.mark.slow
def test_a_worker_killed_mid_trial_loses_nothing_of_a_study_in_postgresql(
    postgres: str, tmp_path: Path
) -> None:
    name = f"test-{uuid.uuid4().hex[:12]}"  # a study of its own on a server that outlives tests
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump({
        "dataset": "sinusoid", "shots": 5, "strategies": ["maml"], "trials": TRIALS,
        "trial_budget": "100steps", "budget": "5steps", "val_tasks": 5, "tasks": 5,
        "sampler": "random", "pruner": "none", "storage": postgres, "study_name": name,
        "overrides": ["threads=1", "val_every=10"],
    }))  # fmt: skip
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, "text": True}
    killed = subprocess.Popen(command("search", str(plan), "--out", "a"), cwd=tmp_path, **quiet)
    other = subprocess.Popen(command("search", str(plan), "--out", "b"), cwd=tmp_path, **quiet)
    try:
        deadline, cut_off = time.monotonic() + 120, None
        while cut_off is None:
            assert time.monotonic() < deadline, "the worker to kill started no trial"
            assert killed.poll() is None, killed.communicate()[1]
            time.sleep(0.1)
            try:
                cut_off = running_in(study_of(postgres, name), killed.pid, tmp_path / "a")
            except KeyError:
                continue  # the workers have not made the study yet
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait()
        _, err = other.communicate(timeout=300)
        assert other.returncode == 0, err
        study = study_of(postgres, name)
        trials = study.get_trials()
        by_state = {s: [t for t in trials if t.state == s] for s in optuna.trial.TrialState}
        assert len(by_state[optuna.trial.TrialState.COMPLETE]) == TRIALS
        assert [t.number for t in by_state[optuna.trial.TrialState.FAIL]] == [cut_off.number]
        assert not by_state[optuna.trial.TrialState.RUNNING]
        (rerun,) = [t for t in trials if t.system_attrs.get("metalearner:reruns")]
        assert rerun.state == optuna.trial.TrialState.COMPLETE and rerun.params == cut_off.params
        assert rerun.user_attrs["worker"] == other.pid
        for trial in by_state[optuna.trial.TrialState.COMPLETE]:  # each one's run is kept
            out = tmp_path / ("a" if trial.user_attrs["worker"] == killed.pid else "b")
            assert (out / trial.user_attrs["run"] / "config.yaml").is_file()
        assert (tmp_path / "b" / "best" / "eval.json").is_file()
        assert (tmp_path / "b" / "best.yaml").is_file()
    finally:
        for proc in (killed, other):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        with contextlib.suppress(KeyError):  # KeyError: never made
            optuna.delete_study(study_name=name, storage=psycopg(postgres))
