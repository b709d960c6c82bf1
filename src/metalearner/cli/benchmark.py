"""``metalearner benchmark``: the command's options; the work is :func:`run_benchmark`."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from metalearner.cli.options import DataDir, DataPath, Dataset, Overrides, Quiet, Seed, Shots, Ways
from metalearner.config.plans import interrupted


def benchmark_cmd(
    config: Annotated[
        Path | None, typer.Argument(help="A benchmark plan (YAML); options override it.")
    ] = None,
    dataset: Dataset = None,
    path: DataPath = None,
    ways: Ways = None,
    shots: Shots = None,
    queries: Annotated[int | None, typer.Option(help="Query examples per class.")] = None,
    strategies: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated, e.g. maml,protonet,reptile,finetune,baselinepp,simpleshot,rfs."
        ),
    ] = None,
    budget: Annotated[
        str | None, typer.Option(help="Per strategy: 10m, 90s, 1h (training time) or 2000steps.")
    ] = None,
    tasks: Annotated[int | None, typer.Option("--tasks", help="Test tasks (600).")] = None,
    sweep_tasks: Annotated[int | None, typer.Option(help="Tasks per sweep point (200).")] = None,
    sweep_shots: Annotated[
        str | None, typer.Option(help="K of the shots sweep, e.g. 1,5,10.")
    ] = None,
    label_noise: Annotated[
        str | None,
        typer.Option(help="Fractions of flipped support labels, e.g. 0,0.2,0.4 ('' = off)."),
    ] = None,
    quick: Annotated[
        bool | None,
        typer.Option(
            "--quick",
            help="The main table alone, on 100 test tasks (unless --tasks): no curve, no sweeps.",
        ),
    ] = None,
    cross_domain: Annotated[
        bool | None,
        typer.Option(
            "--cross-domain/--no-cross-domain",
            help="Omniglot: train on background alphabets, test within-alphabet and on Lake's "
            "runs; FewRel: also test on the PubMed relations.",
        ),
    ] = None,
    seed: Seed = None,
    workers: Annotated[
        int | None, typer.Option(help="Strategies trained at once (threads shared equally).")
    ] = None,
    overrides: Overrides = None,
    data_dir: DataDir = None,
    out: Annotated[Path, typer.Option(help="The benchmark folder.")] = Path("runs/benchmark"),
    quiet: Quiet = False,
) -> None:
    """Train strategies and baselines under one budget, score all on the same tasks, report."""
    from rich.table import Table

    from metalearner.benchmark import load_plan, run_benchmark
    from metalearner.benchmark.report import duration
    from metalearner.evaluation import Score

    plan = load_plan(
        config,
        dataset=dataset,
        path=path,
        ways=ways,
        shots=shots,
        queries=queries,
        strategies=strategies,
        budget=budget,
        tasks=tasks,
        sweep_tasks=sweep_tasks,
        sweep_shots=sweep_shots,
        label_noise=label_noise,
        quick=quick,
        cross_domain=cross_domain,
        seed=seed,
        workers=workers,
        overrides=overrides or None,
    )
    console = Console(markup=False, width=max(Console().width, 120))
    command = "metalearner " + shlex.join(sys.argv[1:])
    try:
        result = run_benchmark(
            plan, out, data_dir=data_dir, command=command, quiet=quiet,
            log=lambda line: console.print(line, soft_wrap=True),  # whole lines in a log file
        )  # fmt: skip
    except KeyboardInterrupt:
        interrupted("benchmark")
    metric = plan.metric
    table = Table(title=f"test {metric} ± 95% CI, {plan.tasks} tasks")
    for column in ("strategy", metric, "training", "adapt per task"):
        table.add_column(column)

    def shown(score: Score) -> str:
        if metric == "accuracy":
            return f"{100 * score.mean:.2f}% ± {100 * score.ci95:.2f}"
        return f"{score.mean:.4g} ± {score.ci95:.2g}"

    for r in result.results:
        trained = f"{duration(r.seconds)}, {r.steps} steps" if r.steps else "not trained"
        table.add_row(r.strategy, shown(r.score), trained, f"{r.adapt_ms:.1f} ms")
    if result.floor is not None:  # no training, the same tasks (report.md: who beats it)
        table.add_row("floor (no training)", shown(result.floor.score), "none", "-")
    console.print(table)
    console.print(f"wrote {result.report_md} and {result.report_html}")
