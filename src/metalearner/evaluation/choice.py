"""Adaptation chosen on validation tasks: how many steps a new task gets (and a transfer head's
step size), picked from a small grid by the mean score on a run's validation tasks.

A paper fixes adaptation by its protocol (MAML on Omniglot: 3 steps); a model trained for
another budget may do better with more steps or fewer (a briefly trained MAML scored 52% after
3 steps and 73% after 10). How to adapt is a hyperparameter like any other, so it is chosen on
the validation tasks, never on the test tasks (whose score would then no longer be what a new
task gets): when a run ends, and by ``metalearner evaluate --choose`` for an older run. The
choice is a set of the strategy's settings (``eval_steps``; a transfer head's ``adapt_lr``) that
the strategy declares in :meth:`~metalearner.strategies.base.Strategy.adaptation_grid`; it is
stored in the checkpoint it was made for (``meta.json``'s ``adaptation``), and ``evaluate``,
``adapt``, ``load`` and the benchmark adapt with it. Where a run's settings are a paper's preset,
evaluation also gives the score under the paper's protocol (the configured settings), labelled
as such.

References:
    Finn, Abbeel & Levine, "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks",
    ICML 2017 (adaptation steps fixed per benchmark). Chen et al., "A Closer Look at Few-shot
    Classification", ICLR 2019 (a transfer head's steps and step size). Gulrajani & Lopez-Paz,
    "In Search of Lost Domain Generalization", ICLR 2021 (model selection on validation data
    only: choices made on test data overstate what a method does).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from metalearner.config.presets import list_presets
from metalearner.errors import ConfigError
from metalearner.evaluation.scores import Score, format_score, summarize
from metalearner.runs.checkpoint import damaged, load_checkpoint, save_checkpoint
from metalearner.runs.config import RunConfig
from metalearner.strategies import Strategy, resolve_config

STEPS = "eval_steps"
"""The setting that holds a strategy's number of adaptation steps (:attr:`Strategy.eval_steps`)."""

Curves = Callable[[Strategy, Sequence[int]], Tensor]
"""The validation tasks' scores ``[len(steps), n]`` under a strategy, after each number of steps
(:func:`metalearner.evaluation.evaluator.gathered_curves`)."""


@dataclass(frozen=True)
class Candidate:
    """One point of the grid: its settings and their mean validation score (``None``: not a
    finite number, an adaptation that diverged) with its 95% half-width."""

    settings: dict[str, float]
    mean: float | None
    ci95: float | None


@dataclass(frozen=True)
class AdaptationChoice:
    """Adaptation settings chosen on a checkpoint's validation tasks.

    Attributes:
        strategy: the strategy it was chosen for (a checkpoint shared by another strategy, as a
            benchmark's nearest-centroid reads finetune's, does not take it).
        step: the training step of the checkpoint chosen for.
        metric: ``"accuracy"`` (higher is better) or ``"mse"`` (lower is better).
        tasks: validation tasks scored.
        settings: the chosen settings, ``eval_steps`` among them.
        configured: the run's own values of the same settings.
        candidates: every point of the grid with its score.
    """

    strategy: str
    step: int
    metric: str
    tasks: int
    settings: dict[str, float]
    configured: dict[str, float]
    candidates: tuple[Candidate, ...]

    @property
    def steps(self) -> int:
        """The chosen number of adaptation steps."""
        return int(self.settings[STEPS])

    @property
    def changes(self) -> bool:
        """Whether the choice differs from the configured settings."""
        return self.settings != self.configured

    def score_of(self, settings: Mapping[str, float]) -> float | None:
        """The mean validation score of ``settings`` (``None``: not in the grid, or not finite)."""
        found = (c.mean for c in self.candidates if c.settings == dict(settings))
        return next(found, None)

    def line(self, where: str = "") -> str:
        """``adaptation chosen on 100 validation tasks: 10 steps (val 72.80%, configured 3:
        52.00%)``, ``where`` (`` for checkpoints/latest``) after ``tasks``."""
        chosen = _shown(self.metric, self.score_of(self.settings))
        was = _shown(self.metric, self.score_of(self.configured))
        configured = settings_text(self.configured, short=True)
        return (
            f"adaptation chosen on {self.tasks} validation tasks{where}: "
            f"{settings_text(self.settings)} (val {chosen}, configured {configured}: {was})"
        )

    def to_meta(self) -> dict[str, Any]:
        """JSON types, for the checkpoint's ``meta.json``."""
        return asdict(self) | {"candidates": [asdict(c) for c in self.candidates]}

    @staticmethod
    def from_meta(raw: Mapping[str, Any]) -> AdaptationChoice:
        """The inverse of :meth:`to_meta` (``raw`` checked by the checkpoint's loader)."""
        fields = dict(raw) | {"candidates": tuple(Candidate(**c) for c in raw["candidates"])}
        return AdaptationChoice(**fields)


def choose_adaptation(
    strategy: Strategy, curves: Curves, *, name: str, step: int, metric: str
) -> AdaptationChoice | None:
    """Scores every point of the strategy's grid on the validation tasks and picks the best.

    Each combination of the grid's other settings (a transfer head's step sizes) is one pass
    over the tasks, giving the scores after every number of steps at once where adaptation goes
    through them on its way. The best mean wins (highest accuracy, lowest MSE); on a tie, the
    configured settings, then fewer steps.

    Args:
        strategy: the run's strategy, with its configured settings.
        curves: the validation tasks' scores under a strategy (see :data:`Curves`).
        name: the strategy's registered name, recorded with the choice.
        step: the training step of the parameters scored.
        metric: ``"accuracy"`` or ``"mse"``.

    Returns:
        The choice, or ``None`` where there is nothing to choose (no grid: a strategy without
        adaptation steps) or no point of the grid scored a finite number.
    """
    grid = strategy.adaptation_grid()
    if grid is None or strategy.eval_steps is None:
        return None
    configured = {STEPS: strategy.eval_steps} | {
        k: getattr(strategy.config, k) for k in grid.settings
    }
    steps = sorted(set(grid.steps) | {strategy.eval_steps})
    candidates: list[Candidate] = []
    tasks = 0
    for values in itertools.product(*grid.settings.values()):
        others = dict(zip(grid.settings, values, strict=True))
        scores = curves(strategy.with_settings(others), steps)
        tasks = scores.shape[1]
        for count, row in zip(steps, scores, strict=True):
            summary = summarize(row, count)
            finite = math.isfinite(summary.mean) and math.isfinite(summary.ci95)
            mean, ci95 = (summary.mean, summary.ci95) if finite else (None, None)
            candidates.append(Candidate({STEPS: count} | others, mean, ci95))
    scored = [c for c in candidates if c.mean is not None]
    if not scored or tasks == 0:
        return None
    sign = 1.0 if metric == "accuracy" else -1.0

    def rank(c: Candidate) -> tuple[float, bool, float]:
        return sign * (c.mean or 0.0), c.settings == configured, -c.settings[STEPS]

    best = max(scored, key=rank)
    return AdaptationChoice(name, step, metric, tasks, best.settings, configured, tuple(candidates))


def stored_choice(meta: Mapping[str, Any], name: str) -> AdaptationChoice | None:
    """The choice a checkpoint's metadata holds for strategy ``name``; ``None`` where it has
    none (written before adaptation was chosen, or by a run that never ended) or one made for
    another strategy."""
    raw = meta.get("adaptation")
    if not isinstance(raw, Mapping) or raw.get("strategy") != name:
        return None
    return AdaptationChoice.from_meta(raw)


def store_choice(path: Path, choice: AdaptationChoice) -> bool:
    """Writes ``choice`` into the checkpoint at ``path``, atomically, as every checkpoint is
    written; the caller holds the run's lock. Returns ``False``, writing nothing, where the
    checkpoint there is no longer of the step chosen for."""
    ckpt = load_checkpoint(path)
    if ckpt.meta.get("step") != choice.step:
        return False
    kept = {k: v for k, v in ckpt.meta.items() if k not in ("format", "sha256", "meta_sha256")}
    save_checkpoint(path, ckpt.tensors, kept | {"adaptation": choice.to_meta()})
    return True


def adapted(strategy: Strategy, choice: AdaptationChoice | None, path: Path) -> Strategy:
    """``strategy`` adapting as ``choice`` says (as configured without one).

    Raises:
        DataError: the choice names a setting the strategy lacks or a value out of its range
            (the checkpoint at ``path`` is "damaged or replaced").
    """
    if choice is None:
        return strategy
    try:
        return strategy.with_settings(choice.settings)
    except (ConfigError, TypeError) as err:
        raise damaged(path, f"its adaptation.settings do not fit the strategy: {err}") from None


@dataclass(frozen=True)
class Adaptation:
    """How the test tasks were adapted, and why with those settings (``eval.json``).

    Attributes:
        settings: as used (``eval_steps``, and any other setting chosen).
        chosen_on: ``"validation"`` (stored in the checkpoint, or ``--choose``), ``"configured"``
            (the checkpoint holds no choice) or ``"--steps"`` (given).
        configured: the run's own settings.
        validation: the choice's validation tasks and scores, where it was chosen.
        protocol: what the configured settings are, where they differ from those used: the
            paper's protocol (the preset that names it) or the run's configuration.
        protocol_score: the test score under the configured settings, where they differ.
    """

    settings: dict[str, float]
    chosen_on: str
    configured: dict[str, float]
    validation: dict[str, Any] | None = None
    protocol: str | None = None
    protocol_score: Score | None = None

    def lines(self, metric: str, num_tasks: int) -> list[str]:
        """What ``metalearner evaluate`` prints about adaptation, under the score."""
        used = settings_text(self.settings)
        if self.chosen_on == "--steps":
            return [f"adapted with {used} (--steps)"]
        if self.validation is None:
            return [f"adapted with {used} as configured (`metalearner evaluate --choose` "
                    "chooses them on validation tasks)"]  # fmt: skip
        tasks, val = self.validation["tasks"], _shown(metric, self.validation["score"])
        first = f"adapted with {used}, chosen on {tasks} validation tasks (val {val})"
        if self.protocol is None or self.protocol_score is None:
            return [first + ", as configured"]
        return [first, f"{self.protocol}: {format_score(metric, self.protocol_score, num_tasks)}"]


def describe(
    choice: AdaptationChoice | None,
    strategy: Strategy,
    *,
    steps: int | None,
    cfg: RunConfig,
    protocol_score: Score | None,
) -> Adaptation | None:
    """How ``strategy`` (the run's, as configured) adapted the test tasks; ``None`` for a
    strategy that takes no steps."""
    if strategy.eval_steps is None:
        return None
    configured: dict[str, float] = (
        choice.configured if choice is not None else {STEPS: strategy.eval_steps}
    )
    if steps is not None:
        return Adaptation({STEPS: steps}, "--steps", configured)
    if choice is None:
        return Adaptation(configured, "configured", configured)
    validation = {
        "tasks": choice.tasks,
        "score": choice.score_of(choice.settings),
        "configured_score": choice.score_of(choice.configured),
        "step": choice.step,
    }
    label = None
    if choice.changes:
        paper = paper_preset(cfg, choice.configured)
        what = settings_text(choice.configured)
        label = f"paper's protocol ({paper} preset: {what})" if paper else f"configured ({what})"
    return Adaptation(choice.settings, "validation", configured, validation, label, protocol_score)


def paper_preset(cfg: RunConfig, configured: Mapping[str, float]) -> str | None:
    """The preset naming a paper whose task (strategy, dataset, ways, shots) is the run's and
    whose adaptation is ``configured``: then ``configured`` is that paper's protocol."""
    for preset in list_presets():
        if not preset.source:
            continue
        raw = preset.load()
        data = raw.get("data") or {}
        if raw.get("strategy") != cfg.strategy or any(
            k in data and data[k] != getattr(cfg.data, k) for k in ("dataset", "ways", "shots")
        ):
            continue
        try:
            settings = resolve_config(cfg.strategy, raw.get("strategy_config") or {})
        except ConfigError:
            continue
        if all(getattr(settings, k, None) == v for k, v in configured.items()):
            return preset.name
    return None


def settings_text(settings: Mapping[str, float], *, short: bool = False) -> str:
    """``10 steps``, ``50 steps, adapt_lr 0.03``; ``short``: a bare ``10`` for steps alone."""
    steps = int(settings[STEPS])
    if short and len(settings) == 1:
        return str(steps)
    others = (f"{k} {v:g}" for k, v in settings.items() if k != STEPS)
    return ", ".join([f"{steps} step{'s' if steps != 1 else ''}", *others])


def _shown(metric: str, value: float | None) -> str:
    if value is None:
        return "not finite"
    return f"{100 * value:.2f}%" if metric == "accuracy" else f"{metric} {value:.4g}"
