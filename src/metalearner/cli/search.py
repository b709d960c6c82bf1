"""``metalearner search``: the command's options; the work is :func:`run_search`."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from metalearner.cli.options import DataDir, DataPath, Dataset, Overrides, Seed, Shots, Ways
from metalearner.config.plans import interrupted


def search_cmd(
    config: Annotated[
        Path | None, typer.Argument(help="A search plan (YAML); options override it.")
    ] = None,
    dataset: Dataset = None,
    path: DataPath = None,
    ways: Ways = None,
    shots: Shots = None,
    strategies: Annotated[
        str | None, typer.Option(help="Comma-separated, e.g. maml,fomaml,reptile,protonet.")
    ] = None,
    trials: Annotated[int | None, typer.Option(help="Finished trials in all (40).")] = None,
    val_tasks: Annotated[
        int | None, typer.Option(help="Validation tasks that score each trial (100).")
    ] = None,
    tasks: Annotated[
        int | None, typer.Option("--tasks", help="Test tasks of the winner (600).")
    ] = None,
    sampler: Annotated[
        str | None, typer.Option(help="tpe (default), gp, cmaes, nsga2 or random.")
    ] = None,
    pruner: Annotated[str | None, typer.Option(help="median (default), hyperband, none.")] = None,
    trial_budget: Annotated[
        str | None, typer.Option(help="Training per trial: 2m, 90s or 500steps.")
    ] = None,
    budget: Annotated[
        str | None, typer.Option(help="The winner's retraining budget (10m).")
    ] = None,
    workers: Annotated[int | None, typer.Option(help="Trials at once on this machine.")] = None,
    storage: Annotated[
        str | None,
        typer.Option(help="Optuna storage URL shared by several machines (default: SQLite)."),
    ] = None,
    seed: Seed = None,
    overrides: Overrides = None,
    data_dir: DataDir = None,
    out: Annotated[Path, typer.Option(help="The search folder.")] = Path("runs/search"),
) -> None:
    """Search strategies and hyperparameters (Optuna), then retrain and test the winner once."""
    from metalearner.search import load_search_plan, run_search

    plan = load_search_plan(
        config, dataset=dataset, path=path, ways=ways, shots=shots, strategies=strategies,
        trials=trials, val_tasks=val_tasks, tasks=tasks, sampler=sampler, pruner=pruner,
        trial_budget=trial_budget, budget=budget, workers=workers, storage=storage, seed=seed,
        overrides=overrides or None,
    )  # fmt: skip
    # Paths and names print as they are, never as markup; a line stays whole in a log file.
    console = Console(markup=False, soft_wrap=True)
    command = "metalearner " + shlex.join(sys.argv[1:])
    try:
        result = run_search(plan, out, data_dir=data_dir, command=command, log=console.print)
    except KeyboardInterrupt:
        interrupted("search")
    strategy = result.best.params["strategy"]
    console.print(f"best: trial {result.best.number} ({strategy}); test {result.test.line()}")
    console.print(f"wrote {out / 'best.yaml'}, {result.report}, run folder {out / 'best'}")
