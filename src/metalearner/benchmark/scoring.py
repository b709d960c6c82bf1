"""Scoring one trained strategy on every task set of the suite, and keeping the numbers.

The main table keeps each task's score (not only the mean), so two strategies can be compared
task by task (:mod:`.stats`). Adaptation time is measured on the main tasks: adapting on the
support set and predicting the query set, per task, on the threads of this process. Each
strategy scores a batch of tasks its fastest way (``Strategy.predict_tasks``), every score the
same as adapting to the task alone.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

from metalearner.evaluation.choice import adapted, settings_text, stored_choice
from metalearner.evaluation.evaluator import Score, curve_steps, summarize, task_curves, task_scores
from metalearner.evaluation.floor import floor_task_scores
from metalearner.runs.config import RunConfig
from metalearner.runs.experiment import build_experiment, seeded
from metalearner.runs.folder import checkpoint_path, load_state, read_metrics
from metalearner.strategies import Params, Strategy
from metalearner.tasks.batch import TaskSet, fingerprint

from .suite import TaskSuite
from .training import Trained


@dataclass
class StrategyResult:
    """Everything the report says about one strategy.

    Attributes:
        strategy: its name.
        scores: the main table's score of each test task, in task order.
        score: their mean and 95% CI.
        adapt_ms: milliseconds to adapt to a task and predict its queries, mean over the test
            tasks as scored: in batches of tasks, which some strategies adapt together (the
            transfer heads), so one task alone may take longer.
        parameters: number of meta-parameters (weights, learned step sizes, pretraining head).
        steps: outer steps trained; ``seconds``: training seconds; ``threads``: CPU threads.
        val_curve: ``[training seconds, validation score]`` at each validation.
        step_curve: test score after 0, 1, … adaptation steps (empty: no steps to take).
        shots: K → score; noise: p → score; cross: section → score (``None``: n/a).
        notes: why a section has no score for this strategy.
        settings: its run settings in one line (strategy, optimiser, meta-batch, model).
        tasks: the digest of the test tasks behind ``scores`` (:func:`fingerprint`), the same
            for every strategy of a benchmark: the paired comparisons rest on it.
        scoring_seconds: wall seconds this strategy's scoring took, every section included
            (its training's are its run's metrics.jsonl ``wall``).
        norm: the BatchNorm mode it was trained and scored in (``None``: its model has none).
    """

    strategy: str
    scores: list[float]
    score: Score
    adapt_ms: float
    parameters: int
    steps: int
    seconds: float
    threads: int
    val_curve: list[list[float]] = field(default_factory=list)
    step_curve: list[Score] = field(default_factory=list)
    shots: dict[int, Score] = field(default_factory=dict)
    noise: dict[float, Score] = field(default_factory=dict)
    cross: dict[str, Score | None] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    settings: str = ""
    tasks: str = ""
    scoring_seconds: float = 0.0
    norm: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types (dict keys become strings)."""
        return dataclasses.asdict(self)

    @staticmethod
    def from_json(raw: dict[str, Any]) -> StrategyResult:
        """The inverse of :meth:`to_json`."""

        def score(s: dict[str, Any] | None) -> Score | None:
            return None if s is None else Score(**s)

        out = dict(raw)
        out["score"] = Score(**raw["score"])
        out["step_curve"] = [Score(**s) for s in raw["step_curve"]]
        out["shots"] = {int(k): Score(**s) for k, s in raw["shots"].items()}
        out["noise"] = {float(k): Score(**s) for k, s in raw["noise"].items()}
        out["cross"] = {k: score(s) for k, s in raw["cross"].items()}
        return StrategyResult(**out)


def score_strategy(
    trained: Trained, suite: TaskSuite, *, metric: str, data_dir: Path | None
) -> StrategyResult:
    """Adapts ``trained``'s best checkpoint (or its initialisation) to every task of ``suite``.

    A task set found in two sections is scored once: the label-noise sweep at p = 0 holds the
    score-vs-steps curve's tasks (the same seed, queries and support), whose score after the
    strategy's adaptation steps is the curve's last point.
    """
    began = time.perf_counter()
    exp = build_experiment(trained.cfg, data_dir=data_dir)
    params, strategy, chosen = trained_state(trained, exp.strategy)
    steps = strategy.eval_steps
    started = time.perf_counter()
    scores = task_scores(strategy, params, suite.test)
    adapt_ms = 1000 * (time.perf_counter() - started) / len(suite.test)
    result = StrategyResult(
        strategy=trained.strategy,
        scores=scores.tolist(),
        score=summarize(scores, steps),
        adapt_ms=adapt_ms,
        parameters=sum(int(v.numel()) for v in params.values()),
        steps=trained.steps,
        seconds=trained.seconds,
        threads=trained.threads,
        val_curve=_val_curve(trained.folder, metric),
        settings=describe_settings(
            trained.cfg, exp.meta["backbone"], episodes=not exp.strategy.labeled_batches
        ),
        tasks=fingerprint(suite.test),
        norm=strategy.effective_norm,
    )
    if chosen:
        result.notes.append(chosen)
    known = {result.tasks: scores}  # a task set's digest: its scores after the default steps

    def scores_of(tasks: TaskSet) -> Tensor:
        digest = fingerprint(tasks)
        if digest not in known:
            known[digest] = task_scores(strategy, params, tasks)
        return known[digest]

    if steps is not None and len(suite.sweep):
        wanted = curve_steps(steps)  # ends at ``steps``: its last row is the default's score
        curve = task_curves(strategy, params, suite.sweep, wanted)
        result.step_curve = [summarize(row, s) for row, s in zip(curve, wanted, strict=True)]
        known[fingerprint(suite.sweep)] = curve[-1]
    for k, tasks in suite.shots.items():
        result.shots[k] = summarize(scores_of(tasks), steps)
    for p, tasks in suite.noise.items():
        result.noise[p] = summarize(scores_of(tasks), steps)
    head = params.get("head.weight")
    for name, tasks in suite.cross.items():
        ways = int(tasks.batch(0, 1).support_y.max()) + 1
        if head is not None and head.shape[0] < ways:
            result.cross[name] = None
            result.notes.append(
                f"{name}: n/a, a {head.shape[0]}-way head cannot answer {ways}-way tasks"
            )
            continue
        result.cross[name] = summarize(scores_of(tasks), steps)
    result.scoring_seconds = time.perf_counter() - began
    return result


@dataclass(frozen=True)
class FloorResult:
    """The no-training floor (:mod:`metalearner.evaluation.floor`) on the suite's task sets:
    a row of every table, beside the strategies scored on the same tasks.

    Attributes:
        scores: its score of each main test task, in task order (paired with a strategy's).
        score: their mean and 95% CI.
        shots, noise, cross: as :class:`StrategyResult`'s, on the same sweep tasks.
    """

    scores: list[float]
    score: Score
    shots: dict[int, Score]
    noise: dict[float, Score]
    cross: dict[str, Score | None]


def score_floor(suite: TaskSuite) -> FloorResult:
    """The floor on every task set of ``suite`` (no training: seconds, so never kept)."""

    def score(tasks: TaskSet) -> Score:
        return summarize(floor_task_scores(tasks))

    main = floor_task_scores(suite.test)
    return FloorResult(
        scores=main.tolist(),
        score=summarize(main),
        shots={k: score(tasks) for k, tasks in suite.shots.items()},
        noise={p: score(tasks) for p, tasks in suite.noise.items()},
        cross={name: score(tasks) for name, tasks in suite.cross.items()},
    )


def describe_settings(cfg: RunConfig, backbone: Mapping[str, Any], *, episodes: bool = True) -> str:
    """``inner_lr=0.4, …; adam lr 0.001 (constant), meta-batch 32, 1 training queries per
    class; model conv4 64×4``.

    ``backbone`` is the model as built (the experiment's ``meta["backbone"]``), not as set: an
    ``auto`` model is the dataset's, and only conv4 has a width and depth. ``episodes``: the
    strategy trains on episodes, whose queries (and groups) the line states; a transfer
    baseline's mini-batches have none.
    """
    # meta_lr and meta_batch_size are shown as the effective optimiser step and meta-batch.
    own = ", ".join(
        f"{k}={v}"
        for k, v in cfg.strategy_config.items()
        if v is not None and k not in ("meta_lr", "meta_batch_size")
    )
    opt = cfg.optimizer
    sized = "width" in backbone and "depth" in backbone
    model = backbone["name"] + (f" {backbone['width']}×{backbone['depth']}" if sized else "")
    data, trained_on = cfg.data, ""
    if episodes:
        trained_on = f", {data.train_queries or data.queries} training queries per class"
        trained_on += " within one group" if data.train_within_groups else ""
    if data.train_on_val:
        trained_on += ", validation classes trained on too"
    elif data.val_within_groups:
        trained_on += ", validated within one group"
    return (
        f"{own}; {opt.name} lr {opt.lr:g} ({opt.schedule}), meta-batch {cfg.meta_batch}"
        f"{trained_on}; model {model}"
    )


def trained_state(trained: Trained, strategy: Strategy) -> tuple[Params, Strategy, str]:
    """The parameters of ``trained``'s best checkpoint (its initialisation where it was not
    trained), its strategy adapting as chosen on validation tasks when the run ended, and a
    note saying so where that differs from the configured adaptation."""
    if trained.folder is None:  # not trained: the initialisation is the model
        return strategy.init_params(seeded(trained.cfg.seed)), strategy, ""
    path = checkpoint_path(trained.folder)
    state, ckpt = load_state(path)
    choice = stored_choice(ckpt.meta, trained.cfg.strategy)
    note = ""
    if choice is not None and choice.changes:
        note = (
            f"adapted with {settings_text(choice.settings)}, chosen on {choice.tasks} "
            f"validation tasks (configured: {settings_text(choice.configured)})"
        )
    return state.params, adapted(strategy, choice, path), note


def _val_curve(folder: Path | None, metric: str) -> list[list[float]]:
    if folder is None:
        return []
    key = f"val_{metric}"
    return [[float(r["time"]), float(r[key])] for r in read_metrics(folder) if key in r]


def load_result(file: Path, key: dict[str, Any]) -> StrategyResult | None:
    """The result saved in ``file`` if it was made with the same ``key``, else ``None``."""
    if not file.is_file():
        return None
    try:
        raw = json.loads(file.read_text())
        return StrategyResult.from_json(raw["result"]) if raw.get("key") == key else None
    except (ValueError, KeyError, TypeError):
        return None  # damaged or from another version: score again


def save_result(file: Path, key: dict[str, Any], result: StrategyResult) -> None:
    """Writes ``result`` atomically (a kill never leaves half a file)."""
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_suffix(".tmp")
    tmp.write_text(json.dumps({"key": key, "result": result.to_json()}, indent=1) + "\n")
    tmp.replace(file)
