"""``metalearner evaluate``: score a run on its fixed test tasks; the work is :func:`evaluate`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from metalearner.cli.options import (
    BackendOption,
    DataDir,
    Norm,
    Which,
    backend_name,
    checkpoint_name,
    main_rank,
    norm_name,
)
from metalearner.config.bounds import ADAPT_STEPS, TASKS, check_value


def evaluate_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by `metalearner train`.")],
    tasks: Annotated[
        int | None, typer.Option("--tasks", help="Test tasks (default: the run's, 600).")
    ] = None,
    steps: Annotated[
        int | None,
        typer.Option(
            help="Adaptation steps (default: those chosen on validation tasks when the run "
            "ended, else the strategy's)."
        ),
    ] = None,
    curve: Annotated[bool, typer.Option(help="Also score after 0, 1, ..., S steps.")] = True,
    checkpoint: Which = "best",
    device: Annotated[
        str | None, typer.Option(help="cpu or cuda (default: the device the run trained on).")
    ] = None,
    data_dir: DataDir = None,
    backend: BackendOption = "auto",
    split: Annotated[
        str | None,
        typer.Option(
            help="Score on another split's test classes with the same training (FewRel: pubmed "
            "for a wiki run); writes eval-SPLIT.json."
        ),
    ] = None,
    path: Annotated[
        Path | None,
        typer.Option(
            help="Where a run trained on your folder or table finds it now (its data.path is "
            "relative to where training ran)."
        ),
    ] = None,
    norm: Norm = None,
    choose: Annotated[
        bool,
        typer.Option(
            "--choose",
            help="Choose the adaptation steps on the run's validation tasks first and store "
            "them in the checkpoint (for a run trained before they were chosen).",
        ),
    ] = False,
) -> None:
    """Score a run on its fixed test tasks (mean ± 95% CI, curve over steps); write eval.json."""
    from metalearner.evaluation.evaluator import eval_file, evaluate

    # The bounds of the run's test_tasks and of a strategy's eval_steps, before any work.
    check_value(tasks, TASKS, "--tasks")
    check_value(steps, ADAPT_STEPS, "--steps")
    mode = norm_name(norm)
    result = evaluate(
        run_dir,
        num_tasks=tasks,
        steps=steps,
        curve=curve,
        data_dir=data_dir,
        which=checkpoint_name(checkpoint),
        device=device,
        backend=backend_name(backend),
        split=split,
        data_path=path,
        norm=mode,
        choose=choose,
    )
    if not main_rank():
        return
    console = Console(markup=False)  # paths and names print as they are, never as markup
    console.print(result.line())
    if result.adaptation is not None:  # which steps, and whether validation chose them
        for line in result.adaptation.lines(result.metric, result.num_tasks):
            console.print(line, soft_wrap=True)
    elif choose:
        console.print("note: this strategy adapts without steps, so --choose has nothing to choose")
    if mode is not None and result.norm is None:
        console.print("note: this model has no BatchNorm, so --norm changes nothing")
    if result.floor is not None:  # what no training scores on the same tasks, and the verdict
        for line in result.floor.lines(result.metric, result.num_tasks):
            console.print(line, soft_wrap=True)  # one line each, however narrow the terminal
    if result.curve:
        scale = 100 if result.metric == "accuracy" else 1
        points = ", ".join(f"{p.steps}: {scale * p.mean:.4g}" for p in result.curve)
        console.print(f"{result.metric} after steps {{{points}}}")
    console.print(f"wrote {Path(run_dir) / eval_file(split, mode)}")
