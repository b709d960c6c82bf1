"""The search report: the winner, the best trials, how the search went, what mattered.

``search_report.md`` and ``search_report.html`` (figures embedded), written with the
benchmark's document model, so both files say the same.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display needed
import matplotlib.pyplot as plt
import optuna
from matplotlib.ticker import MaxNLocator

from metalearner.benchmark.document import (
    FIGURE_DPI,
    FIGURE_WIDTH,
    Bullets,
    Document,
    Heading,
    Image,
    Paragraph,
    Table,
)
from metalearner.benchmark.plan import parse_budget
from metalearner.data.registry import dataset
from metalearner.evaluation.evaluator import EvalResult
from metalearner.runs.provenance import provenance

from .objective import values_of
from .plan import SearchPlan

TOP = 10  # trials in the best-trials table
# Finished trials of the winner's strategy that fANOVA's importances are drawn from, at least
# (complete ones: a pruned trial has no final score): its random forest, fitted to fewer, gives
# most of the weight to whichever setting chance favoured.
IMPORTANCE_TRIALS = 10


def write_search_report(
    plan: SearchPlan,
    study: optuna.Study,
    best: optuna.trial.FrozenTrial,
    test: EvalResult,
    out: Path,
    *,
    command: str,
) -> Path:
    """Draws the figures and writes ``search_report.md`` and ``.html``; returns the Markdown."""
    figures = out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    maximise = plan.metric == "accuracy"
    scale = 100.0 if maximise else 1.0
    strategy, values = values_of(best)
    counts = {s.name.lower(): sum(t.state == s for t in trials) for s in optuna.trial.TrialState}
    val_tasks = plan.base_config(plan.strategies[0], plan.trial_budget).val_tasks
    doc = Document(f"Search: {_shape(plan)}")
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    doc.add(
        Paragraph(
            f"**{strategy}** won: validation {plan.metric} {_fmt(best.value, scale)} in trial "
            f"{best.number}; retrained with {parse_budget(plan.budget).describe()} and scored "
            f"once on {test.num_tasks} test tasks: **{test.line()}**. Made {when}."
        ),
        Heading("Setup"),
        Bullets(
            (
                f"Command: `{command}`",
                f"Trials: {len(trials)} ({', '.join(f'{v} {k}' for k, v in counts.items() if v)}); "
                f"sampler {plan.sampler}, pruner {plan.pruner}, {plan.workers} worker(s)",
                f"Each trial: {parse_budget(plan.trial_budget).describe()}, scored on "
                f"{val_tasks} fixed validation tasks (the test tasks are used once, by the winner)",
                f"Strategies: {', '.join(plan.strategies)}; seed {plan.seed}",
                *(f"{k}: {v}" for k, v in provenance().items()),
            )
        ),
        Heading("The winning configuration"),
        Paragraph(
            "`best.yaml` holds the whole run config (train it again with `metalearner train "
            "best.yaml`); the searched values:"
        ),
        Table(("setting", "value"), tuple((k, _value(v)) for k, v in values.items())),
        Heading("Best trials"),
        _best_table(done, maximise, scale),
    )
    history = _history(trials, maximise, scale, plan.metric, figures / "history.png")
    doc.add(Heading("Optimisation history"), Image(history, "Validation score of each trial."))
    doc.add(Heading("Hyperparameter importance"))
    mine = [t for t in done if t.params.get("strategy") == strategy]
    importance = _importance(study, mine, strategy, figures / "importance.png")
    if len(mine) < IMPORTANCE_TRIALS:
        doc.add(Paragraph(
            f"None: importances are drawn from {IMPORTANCE_TRIALS} finished {strategy} trials "
            f"up, and this search has {len(mine)}; fewer say more about chance than about the "
            "settings."
        ))  # fmt: skip
    elif importance is None:
        doc.add(Paragraph(f"None: the {len(mine)} finished {strategy} trials share settings."))
    else:
        doc.add(Image(
            importance,
            f"fANOVA importance of {strategy}'s settings, from {len(mine)} finished {strategy} "
            "trials.",
        ))  # fmt: skip
    md = out / "search_report.md"
    md.write_text(doc.markdown(out))
    (out / "search_report.html").write_text(doc.html())
    return md


def _shape(plan: SearchPlan) -> str:
    return dataset(plan.dataset).task_shape(plan.ways, plan.shots)


def _fmt(value: float | None, scale: float) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{scale * value:.2f}%" if scale == 100.0 else f"{value:.4g}"


def _value(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _best_table(done: list[optuna.trial.FrozenTrial], maximise: bool, scale: float) -> Table:
    ranked = sorted(done, key=lambda t: t.value or 0.0, reverse=maximise)[:TOP]
    rows = []
    for t in ranked:
        strategy, values = values_of(t)
        settings = ", ".join(f"{k}={_value(v)}" for k, v in values.items())
        rows.append((str(t.number), strategy, _fmt(t.value, scale), settings))
    return Table(("trial", "strategy", "validation", "settings"), tuple(rows))


def _history(
    trials: list[optuna.trial.FrozenTrial], maximise: bool, scale: float, metric: str, file: Path
) -> Path:
    fig, ax = plt.subplots(figsize=(FIGURE_WIDTH, 4.2))
    names = sorted({str(t.params.get("strategy")) for t in trials if t.params})
    for i, name in enumerate(names):
        mine = [
            t
            for t in trials
            if t.params.get("strategy") == name
            and t.state == optuna.trial.TrialState.COMPLETE
            and t.value is not None
        ]
        ax.scatter([t.number for t in mine], [scale * (t.value or 0) for t in mine], s=18,
                   color=f"C{i}", label=name)  # fmt: skip
        pruned = [
            t
            for t in trials
            if t.params.get("strategy") == name
            and t.state == optuna.trial.TrialState.PRUNED
            and t.intermediate_values
        ]
        last = [scale * t.intermediate_values[max(t.intermediate_values)] for t in pruned]
        ax.scatter([t.number for t in pruned], last, s=18, color=f"C{i}", marker="x")
    running, xs, ys = None, [], []
    for t in trials:
        if t.state == optuna.trial.TrialState.COMPLETE and t.value is not None:
            better = running is None or (t.value > running if maximise else t.value < running)
            running = t.value if better else running
        if running is not None:
            xs.append(t.number)
            ys.append(scale * running)
    ax.step(xs, ys, where="post", color="k", lw=1, label="best so far")
    ax.set(xlabel="trial", ylabel=f"validation {metric}" + (" (%)" if scale == 100 else ""),
           title="optimisation history (x: pruned, at its last validation)")  # fmt: skip
    if not maximise:
        ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(file, dpi=FIGURE_DPI)
    plt.close(fig)
    return file


def _importance(
    study: optuna.Study, mine: list[optuna.trial.FrozenTrial], strategy: str, file: Path
) -> Path | None:
    names = sorted({k for t in mine for k in t.params if k.startswith(f"{strategy}.")})
    varied = [n for n in names if len({t.params.get(n) for t in mine}) > 1]
    if len(mine) < IMPORTANCE_TRIALS or not varied:
        return None
    # Importance over the winner's own trials, where all of its parameters exist.
    sub = optuna.create_study(direction=study.direction)
    sub.add_trials(mine)
    scores = optuna.importance.get_param_importances(sub, params=varied)
    fig, ax = plt.subplots(figsize=(FIGURE_WIDTH, 0.5 * len(scores) + 1.5))
    labels = [k.split(".", 1)[1] for k in scores]
    ax.barh(labels[::-1], list(scores.values())[::-1], color="C0")
    ax.set(xlabel="importance (fANOVA, sums to 1)", title=f"what mattered for {strategy}")
    fig.tight_layout()
    fig.savefig(file, dpi=FIGURE_DPI)
    plt.close(fig)
    return file
