"""Evaluation on a fixed, seeded set of test tasks: mean ± 95% confidence interval, and a curve.

Every strategy of a comparison is scored on the same tasks (same seed), each task adapted from
its support set and scored on its query set: accuracy for classification, mean squared error
for regression. The interval is the papers' ``1.96 · sd / √n`` over tasks.

References:
    Finn et al., "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks", ICML 2017
    (600 test tasks, accuracy vs adaptation steps). Snell et al., "Prototypical Networks for
    Few-shot Learning", NeurIPS 2017 (95% confidence intervals over test episodes).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from metalearner.data.registry import dataset
from metalearner.errors import ConfigError, DataError
from metalearner.evaluation.choice import (
    STEPS,
    Adaptation,
    AdaptationChoice,
    Curves,
    adapted,
    choose_adaptation,
    describe,
    store_choice,
    stored_choice,
)
from metalearner.evaluation.floor import FloorComparison, compare_to_floor, floor_task_scores
from metalearner.evaluation.scores import Score, format_score, query_scores, summarize
from metalearner.nn.layers import norm_mode
from metalearner.runs.checkpoint_schema import check_tensors
from metalearner.runs.config import RunConfig
from metalearner.runs.devices import threads, torch_device
from metalearner.runs.distributed import Backend, Group, joined
from metalearner.runs.folder import (
    EVAL,
    check_writable,
    checkpoint_path,
    load_state,
    read_run_config,
    run_kind,
    write_atomic,
)
from metalearner.runs.lock import run_lock
from metalearner.strategies import Params, Strategy
from metalearner.tasks import TaskSet, iter_batches

__all__ = ["EvalResult", "Score", "curve_steps", "evaluate", "format_score", "query_scores",
           "summarize", "task_curves", "task_scores"]  # fmt: skip


@dataclass(frozen=True)
class EvalResult:
    """What ``metalearner evaluate`` reports and writes to ``eval.json``.

    Attributes:
        metric: ``"accuracy"`` (a fraction, higher is better) or ``"mse"`` (lower is better).
        score: after the adaptation chosen on validation tasks (else the strategy's
            ``eval_steps``; or the ``steps`` asked for).
        curve: the score after 0, 1, …, S steps; empty for strategies that take no steps.
        num_tasks: test tasks scored.
        checkpoint: which checkpoint was evaluated and its training step.
        floor: the no-training floor on the same tasks, and whether ``score`` beats it
            (:mod:`metalearner.evaluation.floor`).
        norm: the BatchNorm mode the tasks were predicted in (``"transductive"`` or
            ``"inductive"``), or ``None`` for a model without BatchNorm.
        adaptation: the adaptation settings used and why (chosen on validation tasks, as
            configured, or ``--steps``), with the score under the paper's protocol (or the
            configured settings) where they differ; ``None`` for a strategy without steps.
    """

    metric: str
    score: Score
    curve: list[Score]
    num_tasks: int
    checkpoint: dict[str, Any]
    floor: FloorComparison | None = None
    norm: str | None = None
    adaptation: Adaptation | None = None

    def line(self) -> str:
        """One line for people, e.g. ``accuracy 98.12% ± 0.31 (600 tasks), transductive
        BatchNorm`` (no mode for a model without BatchNorm)."""
        line = format_score(self.metric, self.score, self.num_tasks)
        return line if self.norm is None else f"{line}, {self.norm} BatchNorm"


def eval_file(split: str | None = None, norm: str | None = None) -> str:
    """Where :func:`evaluate` writes a score: ``eval.json``, or ``eval-<split>-<norm>.json``
    with the parts asked for (another split's test classes, a BatchNorm mode given)."""
    if split is None and norm is None:
        return EVAL
    return "-".join(part for part in ("eval", split, norm) if part) + ".json"


def task_scores(
    strategy: Strategy,
    params: Params,
    tasks: TaskSet,
    *,
    steps: int | None = None,
    device: torch.device | str = "cpu",
    batch_size: int = 50,
) -> Tensor:
    """``[n]`` score of each task after adapting on its support set (``steps`` overrides).

    Each task's query set is predicted in one call, BatchNorm in the strategy's mode.
    """
    wanted = None if steps is None else [steps]
    return _scored(strategy, params, tasks, wanted, device, batch_size)[0]


def task_curves(
    strategy: Strategy,
    params: Params,
    tasks: TaskSet,
    steps: list[int],
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 50,
) -> Tensor:
    """``[len(steps), n]``: each task's score after each number of adaptation steps.

    Each task is adapted once where adaptation goes through every number of steps on its way
    (``StepwiseStrategy``), else afresh for each.
    """
    return _scored(strategy, params, tasks, steps, device, batch_size)


def _scored(
    strategy: Strategy,
    params: Params,
    tasks: TaskSet,
    steps: list[int] | None,
    device: torch.device | str,
    batch_size: int,
) -> Tensor:
    """``[P, n]`` scores, ``batch_size`` tasks at a time through ``strategy.predict_tasks``
    (which adapts a batch together where that is faster)."""
    out = [
        query_scores(strategy.predict_tasks(params, batch, steps=steps), batch.query_y)
        for batch in (b.to(device) for b in iter_batches(tasks, batch_size))
    ]
    if not out:  # an empty share of a task set split across processes
        return torch.zeros(1 if steps is None else len(steps), 0, dtype=torch.float64)
    return torch.cat(out, dim=1).cpu().double()


def gathered_curves(
    params: Params, tasks: TaskSet, *, group: Group, device: torch.device
) -> Curves:
    """``tasks``' scores ``[len(steps), n]`` under a strategy after each number of steps (each
    rank scores its share under torchrun, every rank gets them all): what a choice of adaptation
    on validation tasks reads (:func:`~metalearner.evaluation.choice.choose_adaptation`)."""
    mine = group.tasks(tasks)

    def curves(strategy: Strategy, steps: Sequence[int]) -> Tensor:
        scores = task_curves(strategy, params, mine, list(steps), device=device)
        return group.gather(scores, len(tasks))

    return curves


def curve_steps(max_steps: int) -> list[int]:
    """0, 1, …, S for S ≤ 10; beyond that a roughly geometric subset ending at S (a strategy
    without ``adapt_steps`` pays S² steps for a full curve)."""
    if max_steps <= 10:
        return list(range(max_steps + 1))
    points = {0, 1, 2, 3, 5, 10, max_steps}
    points |= {s for s in (20, 50, 100, 200, 500) if s < max_steps}
    return sorted(points)


def evaluate(
    run_dir: Path | str,
    *,
    num_tasks: int | None = None,
    steps: int | None = None,
    curve: bool = True,
    data_dir: Path | None = None,
    which: str = "best",
    device: str | None = None,
    backend: Backend = "auto",
    split: str | None = None,
    data_path: Path | None = None,
    norm: str | None = None,
    choose: bool = False,
) -> EvalResult:
    """Scores a run's checkpoint on its fixed test tasks and writes ``eval.json`` into the run.

    The test tasks are adapted as chosen on the run's validation tasks (stored in the checkpoint
    when the run ended, :mod:`metalearner.evaluation.choice`), or as configured where the
    checkpoint holds no choice; ``steps`` overrides both.

    Args:
        run_dir: a folder written by :func:`metalearner.training.loop.meta_train`.
        num_tasks: test tasks (default: the run's ``test_tasks``, 600).
        steps: adaptation steps (default: those chosen on validation tasks, else the
            strategy's ``eval_steps``).
        curve: also score after 0, 1, …, ``steps`` steps.
        data_dir: where the dataset is (default: where training found it).
        which: ``"best"`` (falls back to ``"latest"``) or ``"latest"``.
        device: ``"cpu"`` or ``"cuda"`` (default: the run's), e.g. to score a GPU-trained run on
            a machine without one.
        backend: under torchrun, the ``torch.distributed`` backend; each rank scores its share
            of the tasks, every rank gets the whole result and rank 0 writes ``eval.json``.
        split: score on the test classes of another split of the run's data with the same
            meta-training classes (FewRel: ``pubmed`` for a ``wiki`` run, a cross-domain test);
            the result goes to ``eval-<split>.json`` and ``eval.json`` is left as it is.
        data_path: where a run trained on a user's folder or table finds it now (its
            ``data.path`` is as training gave it: relative to the folder training ran in).
        norm: BatchNorm's mode, ``"transductive"`` or ``"inductive"``, instead of the run's
            ``model.norm``; the result goes to ``eval-<norm>.json`` (see :func:`eval_file`).
        choose: (re)choose the adaptation on the run's validation tasks first, under the run's
            lock, and store it in the checkpoint (an older run's has none); never with
            ``split`` or ``norm``, whose choice would not be the run's.

    Raises:
        DataError: ``run_dir`` is not a run folder (or is an RL run), has no checkpoint, or its
            data is missing.
        ConfigError: ``split`` is not a split of the run's dataset, or trains on other classes;
            ``data_path`` is given for a run not trained on a folder or table; ``norm`` is not a
            BatchNorm mode; ``choose`` with ``split`` or ``norm``.

    Example:
        >>> result = evaluate("runs/sinusoid-maml-k10", num_tasks=600)
        >>> print(result.line())
        mse 0.0123 ± 0.0021 (600 tasks)
    """
    if run_kind(Path(run_dir)) == "rl":
        raise DataError(f"{run_dir} is an RL run; use `metalearner rl evaluate {run_dir}`.")
    mode = norm_mode(norm, "norm") if norm is not None else None
    if choose and (split is not None or norm is not None):
        raise ConfigError(
            "--choose chooses the adaptation on the run's own validation tasks; run `metalearner "
            "evaluate RUN --choose` without --split and --norm first, then with them."
        )
    cfg = _with_data_path(read_run_config(Path(run_dir)), data_path)
    check_writable(Path(run_dir))  # before the scoring: its result goes into the run
    other = None
    if split is not None and split != cfg.data.split:
        cfg, other = _other_split(cfg, split), split
    if mode is not None:
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, norm=mode))
    out = eval_file(other, mode)
    if device is not None:
        cfg = dataclasses.replace(cfg, device=torch_device(device).type)  # type: ignore[arg-type]
    with threads(cfg.threads), joined(cfg.device, backend) as group, ExitStack() as hold:
        if choose and group.is_main:  # it rewrites a checkpoint: never beside training
            hold.enter_context(run_lock(Path(run_dir)))
        return _evaluate(
            cfg, Path(run_dir), num_tasks, steps, curve, data_dir, which, group, out, choose
        )


def _with_data_path(cfg: RunConfig, data_path: Path | None) -> RunConfig:
    """``cfg`` reading its folder or table from ``data_path``; or, without it, checked that its
    ``data.path`` is found from here."""
    d = cfg.data
    entry = dataset(d.dataset, setting="data.dataset")
    if data_path is not None:
        if not entry.needs_path:
            raise ConfigError(
                f"--path is for runs trained on a folder or table, not on {d.dataset}; drop it "
                "(--data-dir says where Omniglot or FewRel is)."
            )
        return dataclasses.replace(cfg, data=dataclasses.replace(d, path=str(data_path)))
    if entry.needs_path and d.path and not Path(d.path).expanduser().exists():
        if Path(d.path).expanduser().is_absolute():
            raise DataError(
                f"The run's data {d.path} no longer exists; pass --path with its new location."
            )
        raise DataError(
            f"The run's data.path {d.path} is relative to the folder training ran in and is not "
            "found from here; run evaluate from that folder, or pass --path with its location."
        )
    return cfg


def _other_split(cfg: RunConfig, split: str) -> RunConfig:
    from metalearner.data.config import resolve_data

    d = cfg.data
    entry = dataset(d.dataset, setting="data.dataset")
    if not entry.splits:
        raise ConfigError(
            f"A {d.dataset} run has no splits, so it cannot be scored on split {split!r}; drop "
            "--split (it scores a FewRel run on other test relations: pubmed for a wiki run)."
        )
    data = resolve_data(dataclasses.replace(d, split=split))
    # Only splits that keep the run's meta-training classes (and so its vocabulary), changing
    # the test classes alone, score a model trained on another without retraining.
    if not entry.trains_alike(d.split, split):
        raise ConfigError(
            f"A {d.dataset} run trained on split {d.split!r} cannot be scored on split "
            f"{split!r}, which meta-trains on other classes; train a run on {split!r} instead."
        )
    return dataclasses.replace(cfg, data=data)


def _evaluate(
    cfg: RunConfig,
    folder: Path,
    num_tasks: int | None,
    steps: int | None,
    curve: bool,
    data_dir: Path | None,
    which: str,
    group: Group,
    out: str = EVAL,
    choose: bool = False,
) -> EvalResult:
    from metalearner.runs.experiment import build_experiment

    path = checkpoint_path(folder, which)
    state, ckpt = load_state(path)
    recorded = ckpt.meta.get("data_dir")
    where = data_dir or (Path(recorded) if recorded else None)
    exp = build_experiment(cfg, data_dir=where, start=False)  # the checkpoint's parameters
    device = group.device(torch_device(cfg.device).type)
    saved = exp.strategy.completed(state.params)
    check_tensors(path, "params", saved, exp.strategy.init_params(0))
    params = {k: v.to(device) for k, v in saved.items()}
    metric = dataset(cfg.data.dataset).metric
    # Chosen on the validation tasks, and stored, before a test task is drawn.
    if choose:
        curves = gathered_curves(params, exp.val_tasks(cfg), group=group, device=device)
        choice = choose_adaptation(
            exp.strategy, curves, name=cfg.strategy, step=state.step, metric=metric
        )
        if choice is not None and group.is_main:
            store_choice(path, choice)
    else:
        choice = stored_choice(ckpt.meta, cfg.strategy)
    strategy = adapted(exp.strategy, choice, path)
    tasks = exp.test_tasks(cfg, num_tasks)
    mine = group.tasks(tasks)
    default_steps = strategy.eval_steps
    max_steps = steps if steps is not None else default_steps
    points: list[Score] = []
    if curve and default_steps is not None and max_steps is not None:
        wanted = curve_steps(max_steps)
        scores = task_curves(strategy, params, mine, wanted, device=device)
        scores = group.gather(scores, len(tasks))
        points = [summarize(row, s) for row, s in zip(scores, wanted, strict=True)]
    score = next((p for p in points if p.steps == max_steps), None)
    if score is None:
        scores = task_scores(strategy, params, mine, steps=max_steps, device=device)
        scores = group.gather(scores, len(tasks))[None]
        score = summarize(scores[0], max_steps)
    protocol = None
    if steps is None:  # the configured settings' score where the choice differs from them
        protocol = _protocol_score(exp.strategy, choice, points, params, mine, group, len(tasks))
    # Beside the score, what no training scores on the same tasks (the curve ends at max_steps).
    floor = group.gather(floor_task_scores(mine), len(tasks))
    result = EvalResult(
        metric=metric,
        score=score,
        curve=points,
        num_tasks=len(tasks),
        checkpoint={"path": str(path.relative_to(folder)), "step": state.step},
        floor=compare_to_floor(scores[-1], floor, metric=metric),
        norm=exp.strategy.effective_norm,
        adaptation=describe(choice, exp.strategy, steps=steps, cfg=cfg, protocol_score=protocol),
    )
    payload = asdict(result) | {"line": result.line(), "test_seed": cfg.test_seed}
    payload |= {"device": cfg.device, "precision": cfg.precision}
    if group.is_main:
        write_atomic(folder / out, json.dumps(payload, indent=2) + "\n")
    return result


def _protocol_score(
    configured: Strategy,
    choice: AdaptationChoice | None,
    points: list[Score],
    params: Params,
    mine: TaskSet,
    group: Group,
    total: int,
) -> Score | None:
    """The test score under the configured settings, where the choice differs from them: the
    curve's point where only the number of steps differs, else one more pass."""
    if choice is None or not choice.changes or configured.eval_steps is None:
        return None
    steps = configured.eval_steps
    others = {k: v for k, v in choice.settings.items() if k != STEPS}
    if all(choice.configured.get(k) == v for k, v in others.items()):
        found = next((p for p in points if p.steps == steps), None)
        if found is not None:
            return found
    device = next(iter(params.values())).device
    scores = task_scores(configured, params, mine, steps=steps, device=device)
    return summarize(group.gather(scores, total), steps)
