"""What a person following `metalearner search` and `benchmark` sees (issue 28): every listed
strategy tried, `best.yaml` with each setting once, importances only where they can mean
something, a plan with an estimate before the work, progress within every stage, and a report
that states the threads the runs had and figures as wide as its page."""

from __future__ import annotations

import dataclasses
import json
import re
import struct
import sys
import threading
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml

from metalearner.errors import ConfigError
from metalearner.evaluation.evaluator import EvalResult, Score
from metalearner.runs.config import load_config
from metalearner.runs.folder import read_run_config
from metalearner.search import SearchPlan, search_trials
from metalearner.search.objective import values_of
from metalearner.search.study import open_study
from metalearner.strategies import available, get_strategy
from metalearner.training.loop import TrainResult

sys.path.insert(0, str(Path(__file__).parent))
from cli_runner import run_cli

# Each group: the spellings of one setting in a run config (the run's, then the strategy's).
SPELLINGS = (
    {"optimizer.lr", "strategy_config.meta_lr"},
    {"meta_batch", "strategy_config.meta_batch_size"},
    {"precision", "strategy_config.precision"},
    {"optimizer.decay_every", "strategy_config.lr_halve_every"},
)


def quiet(_: str) -> None:
    pass


def plan(**given: Any) -> SearchPlan:
    # Seed 2: the sampler alone draws maml in both trials (as it drew fomaml three times in
    # the issue), so only the queued first trials make the search try fomaml.
    settings: dict[str, Any] = dict(
        dataset="sinusoid", shots=5, strategies=("maml", "fomaml"), trials=2, seed=2,
        trial_budget="3steps", budget="3steps", val_tasks=4, tasks=4, overrides=("threads=1",),
    )  # fmt: skip
    return SearchPlan(**(settings | given))


def quick_training(cfg: Any, folder: Path, **kwargs: Any) -> TrainResult:
    """Training that trains nothing: a score from the inner step size alone."""
    score = abs(float(cfg.strategy_config["inner_lr"]) - 0.01)
    return TrainResult(folder, 3, {}, {"score": score, "step": 3}, "mse")


@pytest.mark.slow  # 20 s on a busy 2-core machine: a first search pays imports and warm-up
def test_a_search_over_two_strategies_with_two_trials_tries_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("metalearner.search.objective.meta_train", quick_training)
    study = search_trials(plan(), tmp_path, log=quiet)
    trials = {t.params["strategy"]: t for t in study.trials}
    assert sorted(trials) == ["fomaml", "maml"] and len(study.trials) == 2
    # Each strategy first at its paper's settings (sinusoid-k5-maml: inner 0.01, Adam 1e-3).
    assert trials["maml"].params["maml.inner_lr"] == pytest.approx(0.01)
    assert trials["maml"].params["maml.meta_lr"] == pytest.approx(0.001)
    # A continued search queues no strategy again: the sampler draws the third trial.
    study = search_trials(plan(trials=3), tmp_path, log=quiet)
    assert len(study.trials) == 3
    assert study.trials[2].state == optuna.trial.TrialState.COMPLETE


def test_commands_starting_one_study_together_queue_each_strategy_once(tmp_path: Path) -> None:
    from metalearner.search.first_trials import queue_first_trials

    p = plan(strategies=("maml", "fomaml", "reptile"), trials=6)
    tmp_path.mkdir(exist_ok=True)
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def command() -> None:
        try:
            study = open_study(p, tmp_path)
            start.wait()
            queue_first_trials(p, study)
        except BaseException as error:  # reported below, with its type
            errors.append(error)

    commands = [threading.Thread(target=command) for _ in range(4)]
    for c in commands:
        c.start()
    for c in commands:
        c.join()
    assert errors == []
    waiting = open_study(p, tmp_path).get_trials(states=(optuna.trial.TrialState.WAITING,))
    fixed = [t.system_attrs.get("fixed_params", {}).get("strategy") for t in waiting]
    assert sorted(s for s in fixed if s) == ["fomaml", "maml", "reptile"]


# plan(), as a user runs it.
SEARCH = ("search", "--dataset", "sinusoid", "--shots", "5", "--strategies", "maml,fomaml",
          "--trials", "2", "--trial-budget", "3steps", "--budget", "3steps", "--val-tasks", "4",
          "--tasks", "4", "--seed", "2", "--set", "threads=1", "--out", "s")  # fmt: skip


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """The search of :func:`plan` as a user runs it: its folder and the lines it printed."""
    root = tmp_path_factory.mktemp("search")
    done = run_cli(*SEARCH, cwd=root)
    assert done.returncode == 0, done.stderr
    return root / "s", done.stdout.splitlines()


def flat(raw: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, dict) and value:
            out |= flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


@pytest.mark.slow
def test_best_yaml_states_each_setting_once_the_one_that_applies(
    searched: tuple[Path, list[str]],
) -> None:
    out, _ = searched
    settings = flat(yaml.safe_load((out / "best.yaml").read_text()))
    for spellings in SPELLINGS:
        assert len(spellings & set(settings)) <= 1, sorted(spellings & set(settings))
    best = open_study(plan(), out).best_trial
    strategy, values = values_of(best)
    assert settings["strategy"] == strategy
    assert settings["optimizer.lr"] == pytest.approx(values["meta_lr"])
    assert settings["meta_batch"] == values["meta_batch"]
    # best.yaml is the very run best/ was trained with.
    assert load_config(out / "best.yaml") == read_run_config(out / "best")


@pytest.mark.parametrize("name", available())
def test_every_strategy_setting_that_gives_a_run_setting_its_default_is_declared(
    name: str,
) -> None:
    kind = get_strategy(name)
    config, declared = kind.default_config, kind.run_settings
    base = kind.outer_loop(config)
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        try:
            changed = dataclasses.replace(config, **{f.name: type(value)(value * 2 + 1)})
        except ConfigError:
            continue
        reads = kind.outer_loop(changed) != base
        assert reads == (f.name in declared), f"{name}.{f.name}"


def synthetic_study(trials: int) -> optuna.Study:
    study = optuna.create_study(direction="minimize")
    lr = optuna.distributions.FloatDistribution(0.001, 0.1, log=True)
    steps = optuna.distributions.IntDistribution(1, 5)
    strategy = optuna.distributions.CategoricalDistribution(["maml"])
    for i in range(trials):
        params = {
            "strategy": "maml",
            "maml.inner_lr": 0.001 * 1.5**i,
            "maml.inner_steps": 1 + i % 5,
        }
        study.add_trial(optuna.trial.create_trial(
            params=params, value=1.0 / (1 + i),
            distributions={"strategy": strategy, "maml.inner_lr": lr, "maml.inner_steps": steps},
        ))  # fmt: skip
    return study


@pytest.mark.parametrize("trials", [5, 12])
def test_importances_come_from_ten_finished_trials_up_with_their_count(
    tmp_path: Path, trials: int
) -> None:
    from metalearner.search.report import write_search_report

    study = synthetic_study(trials)
    test = EvalResult("mse", Score(1, 0.5, 0.1), [], 4, {})
    p = plan(strategies=("maml",))
    md = write_search_report(p, study, study.best_trial, test, tmp_path, command="c").read_text()
    importance = md.split("## Hyperparameter importance")[1]
    if trials < 10:
        assert "importance.png" not in importance
        assert "from 10 finished maml trials up" in importance
        assert f"this search has {trials};" in importance
    else:
        assert "importance.png" in importance
        assert f"from {trials} finished maml trials" in importance


@pytest.mark.slow
def test_too_few_trials_for_importances_say_why(searched: tuple[Path, list[str]]) -> None:
    out, _ = searched
    md = (out / "search_report.md").read_text()
    importance = md.split("## Hyperparameter importance")[1]
    assert "importance.png" not in importance
    assert "finished" in importance and "10" in importance


BENCHMARK = ("benchmark", "--dataset", "sinusoid", "--shots", "5", "--strategies", "maml,fomaml",
             "--budget", "3steps", "--tasks", "4", "--sweep-tasks", "4", "--sweep-shots", "5",
             "--label-noise", "", "--set", "val_tasks=4", "-q", "--out", "b")  # fmt: skip


@pytest.fixture(scope="module")
def benchmarked(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A tiny benchmark run as a user runs it (the sinusoid preset trains on 1 thread)."""
    root = tmp_path_factory.mktemp("bench")
    done = run_cli(*BENCHMARK, cwd=root)
    assert done.returncode == 0, done.stderr
    return root / "b", done.stdout.splitlines()


def first(lines: list[str], pattern: str) -> int:
    return next(i for i, line in enumerate(lines) if re.search(pattern, line))


@pytest.mark.slow
def test_a_benchmark_prints_its_plan_with_an_estimate_before_training(
    benchmarked: tuple[Path, list[str]],
) -> None:
    _, lines = benchmarked
    plan_line, estimate = first(lines, r"^plan: 2 strategies"), first(lines, r"^estimate: about ")
    assert plan_line < estimate < first(lines, r"maml: training")
    assert re.search(r"training about .+, scoring about ", lines[estimate]), lines[estimate]


@pytest.mark.slow
def test_a_benchmark_shows_each_stage_start_and_end_with_elapsed_and_remaining(
    benchmarked: tuple[Path, list[str]],
) -> None:
    _, lines = benchmarked
    for name in ("maml", "fomaml"):
        for doing, done in (("training", "trained"), ("scoring", "scored")):
            start = first(lines, rf"^\[\d/4\] {name}: {doing} .*about .* left")
            end = first(lines, rf"^\[\d/4\] {name}: {done} in .*; .* elapsed, about .* left")
            assert start < end


def png_width(file: Path) -> int:
    return int(struct.unpack(">I", file.read_bytes()[16:20])[0])


@pytest.mark.slow
def test_the_report_states_the_runs_threads_and_its_figures_fill_the_page(
    benchmarked: tuple[Path, list[str]],
) -> None:
    out, _ = benchmarked
    for name in ("maml", "fomaml"):
        assert json.loads((out / "results" / f"{name}.json").read_text())["result"]["threads"] == 1
    md = (out / "report.md").read_text()
    assert "at a time on 1 CPU thread(s) each" in md
    figures = sorted((out / "figures").glob("*.png"))
    assert figures and all(png_width(f) >= 900 for f in figures), [
        (f.name, png_width(f)) for f in figures
    ]
    assert re.search(r"figure img \{[^}]*width: 100%", (out / "report.html").read_text())


@pytest.mark.slow
def test_a_search_prints_its_plan_with_an_estimate_and_each_stage(
    searched: tuple[Path, list[str]],
) -> None:
    _, lines = searched
    estimate = first(lines, r"^estimate: about .*trials about .*retraining about .*test about ")
    assert first(lines, r"^plan: 2 trials") < estimate < first(lines, r"^trial \d")
    for number in (0, 1):
        start = first(lines, rf"^trial {number} \((maml|fomaml)\): training .*about .* left")
        end = first(lines, rf"^trial {number} \(\w+\): validation mse .* in .*about .* left")
        assert start < end
    winner = r"trial \d \(\w+\)"
    stages = [rf"^\[1/2\] {winner}: retraining with 3 outer steps into .*about .* left",
              rf"^\[1/2\] {winner}: retrained in .*; .* elapsed, about .* left",
              rf"^\[2/2\] {winner}: testing on 4 tasks \(about .* left",
              rf"^\[2/2\] {winner}: tested in .*; .* elapsed, about .* left"]  # fmt: skip
    assert [first(lines, stage) for stage in stages] == sorted(first(lines, s) for s in stages)
    assert lines[-2].startswith("best: trial ")
