"""``metalearner quickstart``: the main job on the built-in default (sinusoid MAML vs baselines)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from metalearner.cli.options import Quiet
from metalearner.errors import ConfigError, file_above


def quickstart_cmd(
    out: Annotated[Path, typer.Option(help="The quickstart folder.")] = Path("runs/quickstart"),
    steps: Annotated[int, typer.Option(help="Outer steps for MAML and the pretrained model.")] = (
        20000
    ),
    tasks: Annotated[int, typer.Option("--tasks", help="Fixed test sinusoids per K.")] = 600,
    seed: Annotated[int, typer.Option(help="Seed of initialisation and training tasks.")] = 0,
    quiet: Quiet = False,
) -> None:
    """MAML vs pretrained vs from-scratch on sinusoids (MAML paper, fig. 2): table, plot, report."""
    from rich.table import Table

    from metalearner.benchmark.quickstart import HEADER, quickstart, table_rows
    from metalearner.config.bounds import STEPS, TASKS, check_value

    if steps < 1 or tasks < 2:
        raise ConfigError("--steps must be at least 1 and --tasks at least 2.")
    check_value(steps, STEPS, "--steps")
    check_value(tasks, TASKS, "--tasks")
    blocker = out if out.exists() and not out.is_dir() else file_above(out)
    if blocker is not None:  # found now, not after minutes of training
        raise ConfigError(f"--out {out}: {blocker} is a file, not a folder; give another path.")
    result = quickstart(out, steps=steps, test_tasks=tasks, seed=seed, quiet=quiet)
    table = Table(title=f"test MSE ± 95% CI, {tasks} sinusoids per K (lower is better)")
    for column in HEADER:
        table.add_column(column)
    for row in table_rows(result):
        table.add_row(*row)
    # The table must not wrap its names; paths print as they are, never as markup.
    console = Console(markup=False, width=max(Console().width, 120))
    console.print(table)
    console.print(f"wrote {out / 'report.md'}, {out / 'quickstart.png'}")
