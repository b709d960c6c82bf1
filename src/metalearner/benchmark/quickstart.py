"""``metalearner quickstart``: the MAML paper's sinusoid experiment, end to end, in minutes.

Three models meet on the same fixed test sinusoids: MAML, a network pretrained on all tasks
jointly and then fine-tuned, and a network trained from scratch on each task's K points. Each
adapts with the same plain gradient steps (step size 0.01), and the score after 0, 1, ..., 10
steps is the mean squared error on the task's query points, with a 95% confidence interval.

References:
    Finn et al., "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks", ICML 2017,
    section 5.1 and figures 2-3.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed
import matplotlib.pyplot as plt

from metalearner.config.presets import get_preset
from metalearner.errors import ConfigError
from metalearner.evaluation.evaluator import Score, summarize, task_curves
from metalearner.runs.config import RunConfig, load_config, resolve
from metalearner.runs.devices import threads
from metalearner.runs.experiment import build_experiment
from metalearner.runs.folder import checkpoint_path, load_state, read_run_config
from metalearner.strategies.base import Params, Strategy
from metalearner.tasks import SinusoidTasks
from metalearner.training.loop import meta_train

SHOTS = (5, 10)  # K at test time, as in the paper's figure
STEPS = 10  # adaptation steps on the curve
ADAPT_LR = 0.01  # the paper's step size, for every model
NAMES = {"maml": "MAML", "pretrain": "pretrained, fine-tuned", "scratch": "from scratch"}
COLORS = {"maml": "tab:blue", "pretrain": "tab:orange", "scratch": "tab:green"}


@dataclass(frozen=True)
class QuickstartResult:
    """Curves ``curves[strategy][K]``: one :class:`Score` per adaptation step 0..10."""

    out: Path
    curves: dict[str, dict[int, list[Score]]]
    steps_trained: int


def quickstart(
    out: Path, *, steps: int = 20000, test_tasks: int = 600, seed: int = 0, quiet: bool = False
) -> QuickstartResult:
    """Meta-trains MAML and the pretrained baseline on sinusoids, evaluates, plots, reports.

    Runs already in ``out`` (from an interrupted quickstart) are resumed, not repeated.

    Args:
        out: the quickstart folder; ``maml/`` and ``pretrain/`` in it are normal run folders.
        steps: outer steps for each trained model.
        test_tasks: fixed test sinusoids per K.
        seed: initialisation and training-task seed.
        quiet: no progress bars.
    """
    out.mkdir(parents=True, exist_ok=True)
    base = load_config(base=get_preset("sinusoid-k10-maml").load(), settings={
        "steps": steps, "val_every": max(steps // 8, 1), "seed": seed, "val_tasks": 200,
        "log_every": 50,
    })  # fmt: skip
    configs = {
        "maml": dataclasses.replace(base, strategy_config={**base.strategy_config,
                                                           "eval_steps": STEPS}),
        "pretrain": dataclasses.replace(
            base, strategy="pretrain",
            strategy_config={"adapt_lr": ADAPT_LR, "eval_steps": STEPS},
        ),
        "scratch": dataclasses.replace(
            base, strategy="scratch",
            strategy_config={"adapt_lr": ADAPT_LR, "eval_steps": STEPS},
        ),
    }  # fmt: skip
    models: dict[str, tuple[Strategy, Params]] = {}
    for name, cfg in ((n, resolve(c)) for n, c in configs.items()):
        models[name] = _trained(name, cfg, out / name, quiet=quiet)
    curves: dict[str, dict[int, list[Score]]] = {name: {} for name in models}
    with threads(base.threads):
        for k in SHOTS:
            tasks = SinusoidTasks(shots=k, queries=10).fixed(test_tasks, seed=base.test_seed)
            for name, (strategy, params) in models.items():
                scores = task_curves(strategy, params, tasks, list(range(STEPS + 1)))
                curves[name][k] = [summarize(row, s) for s, row in enumerate(scores)]
        # The example panel shows a clearly visible sinusoid: the largest of a few test draws.
        examples = SinusoidTasks(shots=max(SHOTS), queries=100).fixed(8, seed=base.test_seed + 1)
        pick = int(examples.tasks.info["amplitude"].argmax())
        _plot(out / "quickstart.png", curves, models, examples.batch(pick, pick + 1))
    result = QuickstartResult(out=out, curves=curves, steps_trained=steps)
    _report(result, test_tasks)
    return result


def _trained(name: str, cfg: RunConfig, folder: Path, *, quiet: bool) -> tuple[Strategy, Params]:
    """The best model (by validation) of training ``cfg`` into ``folder`` (resumed if it is
    there already)."""
    exp = build_experiment(cfg)
    if not exp.strategy.meta_learns:  # the initialisation is the model
        return exp.strategy, exp.strategy.init_params(cfg.seed)
    resume = (folder / "config.yaml").is_file()
    if resume and read_run_config(folder) != cfg:
        raise ConfigError(
            f"{folder} holds a run with other settings (--steps or --seed changed); "
            "choose another --out or delete that folder."
        )
    meta_train(cfg, folder, resume=resume, quiet=quiet)
    # The best checkpoint by validation, as `metalearner evaluate` scores it.
    state, _ = load_state(checkpoint_path(folder))
    return exp.strategy, state.params


def table_rows(result: QuickstartResult) -> list[list[str]]:
    """Rows of the headline table: MSE after 1 and 10 steps for each K and model."""
    rows = []
    for name, by_k in result.curves.items():
        row = [NAMES[name]]
        for k in SHOTS:
            for s in (1, STEPS):
                score = by_k[k][s]
                row.append(f"{score.mean:.3f} ± {score.ci95:.3f}")
        rows.append(row)
    return rows


HEADER = ["model"] + [f"K={k}, {s} step{'s' if s > 1 else ''}" for k in SHOTS for s in (1, STEPS)]


def _plot(
    file: Path,
    curves: dict[str, dict[int, list[Score]]],
    models: dict[str, tuple[Strategy, Params]],
    example: object,
) -> None:
    fig, axes = plt.subplots(1, len(SHOTS) + 1, figsize=(5 * (len(SHOTS) + 1), 3.8))
    for ax, k in zip(axes, SHOTS, strict=False):
        for name, by_k in curves.items():
            means = [s.mean for s in by_k[k]]
            cis = [s.ci95 for s in by_k[k]]
            xs = range(len(means))
            ax.plot(xs, means, marker="o", ms=3, label=NAMES[name])
            ax.fill_between(
                xs,
                [m - c for m, c in zip(means, cis, strict=True)],
                [m + c for m, c in zip(means, cis, strict=True)],
                alpha=0.2,
            )
        ax.set(
            title=f"K = {k}: test MSE vs adaptation steps",
            xlabel="gradient steps",
            ylabel="mean squared error",
            yscale="log",
        )
        ax.legend(fontsize=8)
    ax = axes[-1]
    batch = example  # a TaskBatch of one task with many query points
    from metalearner.tasks import TaskBatch

    assert isinstance(batch, TaskBatch)
    order = batch.query_x[0, :, 0].argsort()
    qx = batch.query_x[0][order]
    ax.plot(qx[:, 0], batch.query_y[0][order], color="k", lw=2, label="true function")
    sx, sy = batch.support_x[0], batch.support_y[0]
    ax.scatter(sx[:, 0], sy, color="k", marker="^", zorder=5, label=f"{len(sy)} support points")
    for name, steps in (("maml", 1), ("maml", STEPS), ("pretrain", STEPS)):
        strategy, params = models[name]
        pred = strategy.adapt(params, sx, sy, steps=steps)(qx)
        ax.plot(
            qx[:, 0],
            pred.detach(),
            ls=":" if steps == 1 else "--",
            color=COLORS[name],
            label=f"{NAMES[name]}, {steps} step{'s' if steps > 1 else ''}",
        )
    ax.set(title="one test task", xlabel="x", ylabel="y")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(file, dpi=100)
    plt.close(fig)


def _report(result: QuickstartResult, test_tasks: int) -> None:
    lines = [
        "# Quickstart: sinusoid regression (MAML paper, section 5.1)",
        "",
        f"{test_tasks} fixed test sinusoids per K (amplitude U[0.1, 5], phase U[0, π], "
        "x U[-5, 5]), 10 query points each; every model adapts with plain gradient steps of "
        f"size {ADAPT_LR} on all weights. MAML and the pretrained network were trained for "
        f"{result.steps_trained} outer steps (meta-batch 25, Adam 1e-3, K = 10); the paper used "
        "70,000. Scores: mean squared error ± 95% confidence interval over the test tasks.",
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "---|" * len(HEADER),
        *("| " + " | ".join(row) + " |" for row in table_rows(result)),
        "",
        "![test MSE vs adaptation steps](quickstart.png)",
        "",
        "Runs: `maml/` and `pretrain/` are ordinary run folders (`metalearner evaluate DIR`).",
    ]
    (result.out / "report.md").write_text("\n".join(lines) + "\n")
    curves = {
        name: {str(k): [dataclasses.asdict(s) for s in scores] for k, scores in by_k.items()}
        for name, by_k in result.curves.items()
    }
    (result.out / "quickstart.json").write_text(json.dumps(curves, indent=2) + "\n")


__all__ = ["HEADER", "QuickstartResult", "quickstart", "table_rows"]
