"""Adaptation chosen on validation tasks: the best of a grid, never by a test task, stored in the
checkpoint, used by evaluate, adapt, load and a benchmark's time estimate; ``--steps`` overrides
it; a checkpoint without a choice adapts as configured, and ``evaluate --choose`` makes one."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from torch import Tensor

import metalearner
from metalearner.benchmark import estimate, run_benchmark
from metalearner.benchmark.estimate import timed_model
from metalearner.benchmark.plan import BenchmarkPlan
from metalearner.config.presets import get_preset
from metalearner.errors import DataError
from metalearner.evaluation.choice import STEPS, choose_adaptation, paper_preset
from metalearner.evaluation.evaluator import evaluate, task_curves
from metalearner.runs.checkpoint import META, meta_digest
from metalearner.runs.config import load_config
from metalearner.runs.experiment import Experiment, build_experiment
from metalearner.runs.folder import BEST, LATEST, load_state, read_run_config
from metalearner.strategies import build
from metalearner.strategies.base import AdaptationGrid, Params, Predictor, StepwiseStrategy
from metalearner.tasks.batch import TaskBatch
from metalearner.testing.toys import toy_model
from metalearner.training.loop import meta_train

sys.path.insert(0, str(Path(__file__).parent))
from cli_runner import run_cli

# MAML's sinusoid preset (10 steps of 0.01 at test time), briefly trained: on its validation
# tasks fewer steps score better than the paper's 10, so the choice differs from the protocol.
SINE = ["steps=10", "val_every=5", "val_tasks=10", "test_tasks=10", "meta_batch=4"]


def sine_config(*more: str) -> Any:
    return load_config(base=get_preset("sinusoid-k10-maml").load(), overrides=[*SINE, *more])


@pytest.fixture
def no_test_tasks(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Any look at a run's test tasks fails (as in tests/test_search.py)."""
    touched: list[str] = []

    def forbidden(self: Experiment, *args: object, **kwargs: object) -> object:
        touched.append("test")
        raise AssertionError("the test tasks were touched")

    with monkeypatch.context() as m:
        m.setattr(Experiment, "test_tasks", forbidden)
        yield touched


def validation_means(run: Path, which: str, steps: list[int]) -> list[float]:
    """An independent reference: the checkpoint's mean validation MSE after each of ``steps``."""
    cfg = read_run_config(run)
    exp = build_experiment(cfg)
    state, _ = load_state(run / which)
    scores = task_curves(exp.strategy, state.params, exp.val_tasks(cfg), steps)
    return scores.mean(dim=1).tolist()


def meta_of(run: Path, which: str = BEST) -> dict[str, Any]:
    return json.loads((run / which / META).read_text())


def test_a_run_chooses_on_validation_at_its_end_without_a_test_task(
    tmp_path: Path, no_test_tasks: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    meta_train(sine_config("progress_every=1000"), run)
    assert no_test_tasks == []  # chosen with the test tasks out of reach
    printed = capsys.readouterr().out
    assert "adaptation chosen on 10 validation tasks: " in printed
    choice = meta_of(run)["adaptation"]
    assert choice["step"] == meta_of(run)["step"] and choice["configured"] == {STEPS: 10}
    grid = [c["settings"][STEPS] for c in choice["candidates"]]
    assert grid == [0, 1, 2, 3, 5, 10, 20]  # up to twice the configured 10
    means = validation_means(run, BEST, grid)
    chosen = choice["settings"][STEPS]
    assert chosen == grid[min(range(len(grid)), key=means.__getitem__)]  # the lowest MSE
    assert chosen != 10, "the brief run should prefer another number of steps than the paper's"
    latest = meta_of(run, LATEST)  # its own choice, for its own step (made once if best's)
    assert latest["adaptation"]["step"] == latest["step"] == 10
    if meta_of(run)["step"] == 10:
        assert latest["adaptation"] == choice and printed.count("adaptation chosen") == 1
    else:
        assert "validation tasks for checkpoints/latest: " in printed


def test_a_best_of_an_earlier_step_gets_a_choice_of_its_own_made_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    # A large outer step: the best validation comes before the end (at step 6).
    meta_train(sine_config("val_every=2", "optimizer.lr=0.1", "progress_every=1000"), run)
    best, latest = meta_of(run), meta_of(run, LATEST)
    assert best["step"] < latest["step"] == 10
    for meta, which in ((best, BEST), (latest, LATEST)):
        assert meta["adaptation"]["step"] == meta["step"]
        grid = [c["settings"][STEPS] for c in meta["adaptation"]["candidates"]]
        means = validation_means(run, which, grid)
        assert meta["adaptation"]["settings"][STEPS] == grid[means.index(min(means))]
    assert "validation tasks for checkpoints/latest: " in capsys.readouterr().out
    # Resumed with nothing left to do: the choices it holds stand, nothing is rewritten.
    meta_train(read_run_config(run), run, resume=True)
    assert "adaptation chosen" not in capsys.readouterr().out
    assert meta_of(run) == best and meta_of(run, LATEST) == latest


def test_evaluate_adapt_and_steps_use_the_stored_choice(tmp_path: Path) -> None:
    run = tmp_path / "run"
    meta_train(sine_config(), run, quiet=True)
    chosen = meta_of(run)["adaptation"]["settings"][STEPS]
    result = evaluate(run)
    assert result.score.steps == chosen and result.curve[-1].steps == chosen
    adaptation = result.adaptation
    assert adaptation is not None and adaptation.chosen_on == "validation"
    assert adaptation.protocol == "paper's protocol (sinusoid-k10-maml preset: 10 steps)"
    assert adaptation.protocol_score is not None and adaptation.protocol_score.steps == 10
    saved = json.loads((run / "eval.json").read_text())["adaptation"]
    assert saved["settings"] == {STEPS: chosen} and saved["chosen_on"] == "validation"
    alone = evaluate(run, steps=10, curve=False)  # the paper's protocol, asked for by --steps
    assert adaptation.protocol_score.mean == pytest.approx(alone.score.mean, abs=1e-12)
    # load() and adapt: the chosen steps unless told otherwise.
    learner = metalearner.load(run)
    assert learner.strategy.eval_steps == chosen
    x = torch.linspace(-4, 4, 10)[:, None]
    y = torch.sin(x[:, 0]).tolist()
    query = torch.linspace(-3, 3, 7)[:, None]
    got = learner.adapt(x, y).predict(query).scores
    state, _ = load_state(run / BEST)
    configured = build_experiment(read_run_config(run)).strategy
    for steps, same in ((chosen, True), (10, False)):
        want = configured.adapt(state.params, x, torch.tensor(y), steps=steps)(query)
        assert torch.allclose(got, want.reshape(-1), atol=1e-6) is same, steps
    given = learner.adapt(x, y, steps=10).predict(query).scores
    want = configured.adapt(state.params, x, torch.tensor(y), steps=10)(query).reshape(-1)
    assert torch.allclose(given, want, atol=1e-6)


def test_a_benchmark_times_a_trained_run_as_it_will_score_it(tmp_path: Path) -> None:
    # A run trained already is only scored: its estimate adapts the best checkpoint with the
    # chosen steps, as scoring does, not the initialisation with the configured ones (a
    # transfer head's 100 configured steps where validation chose 5, say).
    run = tmp_path / "run"
    cfg = sine_config()
    meta_train(cfg, run, quiet=True)
    chosen = meta_of(run)["adaptation"]["settings"][STEPS]
    configured = build_experiment(cfg).strategy
    assert configured.eval_steps == 10 != chosen
    state, _ = load_state(run / BEST)
    strategy, params = timed_model(cfg, configured, run)
    assert strategy.eval_steps == chosen
    assert params.keys() == state.params.keys()
    assert all(torch.equal(params[k], state.params[k]) for k in params)
    untrained, initial = timed_model(cfg, configured, None)  # a run still to train
    assert untrained.eval_steps == 10
    assert not all(torch.equal(initial[k], state.params[k]) for k in initial)


def test_a_resumed_benchmark_times_its_trained_runs_with_their_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    timed: list[tuple[str, Path | None]] = []
    measure = estimate.measure

    def recorded(cfg: Any, data_dir: Path | None, trained: Path | None = None) -> Any:
        timed.append((cfg.strategy, trained))
        return measure(cfg, data_dir, trained)

    monkeypatch.setattr(estimate, "measure", recorded)
    plan = BenchmarkPlan(
        dataset="sinusoid", shots=5, strategies=("maml",), budget="3steps", tasks=4, val_tasks=4,
        sweep_tasks=4, sweep_shots=(5,), label_noise=(), overrides=("meta_batch=4", "threads=1"),
    )  # fmt: skip
    out = tmp_path / "bench"
    run_benchmark(plan, out, quiet=True, log=lambda _: None)
    assert timed == [("maml", None)]  # still to train: timed from its initialisation
    (out / "results" / "maml.json").unlink()  # to be scored again, not trained again
    timed.clear()
    run_benchmark(plan, out, quiet=True, log=lambda _: None)
    assert timed == [("maml", out / "maml")]


def test_steps_overrides_the_choice_on_the_command_line(tmp_path: Path) -> None:
    meta_train(sine_config(), tmp_path / "run", quiet=True)
    done = run_cli("evaluate", "run", "--steps", "2", "--no-curve", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "adapted with 2 steps (--steps)" in done.stdout
    assert json.loads((tmp_path / "run/eval.json").read_text())["score"]["steps"] == 2


def test_a_checkpoint_without_a_choice_adapts_as_configured_and_choose_makes_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    # Stopped before its end, as if killed: no choice, as in a run trained before choices.
    meta_train(sine_config("steps=20"), run, quiet=True, stop_at=10)
    assert "adaptation" not in meta_of(run) and "adaptation" not in meta_of(run, LATEST)
    old = evaluate(run, curve=False)
    assert old.score.steps == 10 and old.adaptation is not None
    assert old.adaptation.chosen_on == "configured"
    assert metalearner.load(run).strategy.eval_steps == 10

    def forbidden(self: Experiment, *args: object, **kwargs: object) -> object:
        raise AssertionError("the test tasks were touched")

    with monkeypatch.context() as m:  # the choice is made and stored before any test task
        m.setattr(Experiment, "test_tasks", forbidden)
        with pytest.raises(AssertionError, match="test tasks were touched"):
            evaluate(run, choose=True)
    choice = meta_of(run)["adaptation"]
    grid = [c["settings"][STEPS] for c in choice["candidates"]]
    means = validation_means(run, BEST, grid)
    assert choice["settings"][STEPS] == grid[min(range(len(grid)), key=means.__getitem__)]
    done = run_cli("evaluate", "run", "--choose", "--no-curve", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    chosen = choice["settings"][STEPS]
    assert f"adapted with {chosen} steps, chosen on 10 validation tasks (val mse " in done.stdout
    assert "paper's protocol (sinusoid-k10-maml preset: 10 steps): mse " in done.stdout
    again = json.loads((run / "eval.json").read_text())
    assert again["adaptation"]["chosen_on"] == "validation"
    assert again["score"]["steps"] == choice["settings"][STEPS]


def test_a_resigned_choice_out_of_bounds_is_refused(tmp_path: Path) -> None:
    run = tmp_path / "run"
    meta_train(sine_config(), run, quiet=True)
    file = run / BEST / META
    meta = json.loads(file.read_text())
    meta["adaptation"]["settings"][STEPS] = -3
    meta["meta_sha256"] = meta_digest(meta)
    file.write_text(json.dumps(meta))
    with pytest.raises(
        DataError, match=r"damaged or replaced \(adaptation\.settings\.eval_steps is -3"
    ):
        metalearner.load(run)


# A strategy whose validation curve is known: after s steps with gain g its predictor answers
# every query rightly (accuracy 1), half of them (a constant guess between two classes: 0.5) or
# none (0), as CURVE[g][s] says (0 where it says nothing).
CURVE = {1.0: {1: 0.5, 2: 0.5, 3: 0.5, 5: 1.0, 10: 1.0, 20: 0.5}, 2.0: {2: 1.0, 3: 0.5}}


@dataclass(frozen=True)
class KnownConfig:
    eval_steps: int = 3
    gain: float = 1.0
    gains: tuple[float, ...] = (1.0,)  # the gains the grid tries


class Known(StepwiseStrategy):
    default_config: ClassVar[KnownConfig] = KnownConfig()
    config: KnownConfig

    def init_params(self, generator: torch.Generator | int) -> Params:
        return {}

    def meta_grads(self, params: Params, batch: TaskBatch) -> tuple[Params, dict[str, float]]:
        return {}, {"loss": 0.0}

    def adaptation_grid(self) -> AdaptationGrid | None:
        grid = super().adaptation_grid()
        gains = {"gain": self.config.gains}
        return None if grid is None else dataclasses.replace(grid, settings=gains)

    def adapt_steps(
        self, params: Params, support_x: Tensor, support_y: Tensor, *, steps: int
    ) -> list[Predictor]:
        def predictor(s: int) -> Predictor:
            sign = {1.0: 1.0, 0.5: 0.0, 0.0: -1.0}[CURVE[self.config.gain].get(s, 0.0)]
            return lambda x: sign * x + (1 - abs(sign)) * torch.tensor([1.0, 0.0])

        return [predictor(s) for s in range(steps + 1)]


class OneHotTasks:
    """Four two-way tasks whose query inputs are their labels one-hot (a query per class)."""

    def __len__(self) -> int:
        return 4

    def batch(self, start: int, stop: int) -> TaskBatch:
        n, eye = stop - start, torch.eye(2)
        y = torch.tensor([0, 1]).repeat(n, 1)
        return TaskBatch(eye.repeat(n, 1, 1), y, eye.repeat(n, 1, 1), y.clone())


def known_curves(strategy: Any, steps: Any) -> Tensor:
    return task_curves(strategy, {}, OneHotTasks(), list(steps))


@pytest.mark.parametrize(
    ("configured", "gains", "metric", "want"),
    [(3, (1.0,), "accuracy", (5, 1.0)),  # 5 and 10 tie at 1.0: the fewer steps
     (10, (1.0,), "accuracy", (10, 1.0)),  # a tie with the configured value keeps it
     (3, (1.0, 2.0), "accuracy", (2, 2.0)),  # gain 2 scores 1.0 after 2 steps: fewer yet
     (3, (1.0, 2.0), "mse", (0, 1.0))],  # lower is better: 0 at 0 steps, first in the grid
)  # fmt: skip
def test_the_choice_is_the_best_validation_score_of_the_grid(
    configured: int, gains: tuple[float, ...], metric: str, want: tuple[int, float]
) -> None:
    strategy = Known(torch.nn.Identity(), KnownConfig(eval_steps=configured, gains=gains))
    choice = choose_adaptation(strategy, known_curves, name="known", step=7, metric=metric)
    assert choice is not None and (choice.tasks, choice.step, choice.strategy) == (4, 7, "known")
    scores = {(c.settings[STEPS], c.settings["gain"]): c.mean for c in choice.candidates}
    for gain in gains:  # every point of the grid scored as its known curve says
        assert all(scores[(s, gain)] == CURVE[gain].get(s, 0.0) for s in (0, 1, 2, 3, 5, 10, 20))
    assert (choice.settings[STEPS], choice.settings["gain"]) == want
    assert choice.configured == {STEPS: configured, "gain": 1.0}


def test_what_each_strategy_chooses_is_declared_on_its_class() -> None:
    model = toy_model()
    maml = build("maml", model, {"eval_steps": 3})
    assert maml.adaptation_grid() == AdaptationGrid((0, 1, 2, 3, 5, 10, 20))
    reptile = build("reptile", model, {"eval_steps": 50})
    assert reptile.adaptation_grid() == AdaptationGrid((0, 1, 2, 3, 5, 10, 20, 50, 100))
    finetune = build("finetune", model, {"num_classes": 6, "adapt_lr": 0.01})
    grid = finetune.adaptation_grid()
    assert grid is not None and grid.settings == {"adapt_lr": (0.003, 0.01, 0.03)}
    assert 100 in grid.steps and max(grid.steps) == 200
    assert finetune.with_settings({"adapt_lr": 0.03}).config.adapt_lr == 0.03
    assert finetune.with_settings({"adapt_lr": 0.01}) is finetune  # nothing changes
    assert build("protonet", model).adaptation_grid() is None  # no steps to take
    assert build("nearest-centroid", model, {"num_classes": 6}).adaptation_grid() is None


def test_the_papers_protocol_is_named_where_a_preset_names_a_paper() -> None:
    cfg = sine_config()
    assert paper_preset(cfg, {STEPS: 10}) == "sinusoid-k10-maml"
    assert paper_preset(cfg, {STEPS: 3}) is None  # not the paper's protocol
    assert paper_preset(load_config(overrides=["data.dataset=sinusoid"]), {STEPS: 10}) is None
