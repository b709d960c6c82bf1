"""The ``metalearner`` command: thin wrappers that parse, call the library and report.

Every :class:`~metalearner.errors.MetalearnerError` becomes one line on stderr and exit code 2;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import torch
import typer
from rich.console import Console

from metalearner.errors import MetalearnerError

app = typer.Typer(
    help="Meta-learning: generate tasks, meta-train strategies, adapt fast, evaluate.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
tasks_app = typer.Typer(help="Task generators: sample and look at tasks.", no_args_is_help=True)
app.add_typer(tasks_app, name="tasks")

_DEBUG_ENV = "METALEARNER_DEBUG"


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log more.")] = False,
) -> None:
    if debug:
        os.environ[_DEBUG_ENV] = "1"
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Folder holding the datasets (default: $METALEARNER_DATA)."),
]


@tasks_app.command("demo")
def tasks_demo(
    dataset: Annotated[str, typer.Option(help="sinusoid, omniglot, or folder (with --path).")] = (
        "sinusoid"
    ),
    data_dir: DataDir = None,
    path: Annotated[
        Path | None,
        typer.Option(
            help="A folder of class sub-folders, or a CSV/.npz table, for --dataset folder."
        ),
    ] = None,
    ways: Annotated[int, typer.Option(help="N, classes per task.")] = 5,
    shots: Annotated[int, typer.Option(help="K, support examples per class (or points).")] = 1,
    queries: Annotated[int, typer.Option(help="Q, query examples per class (or points).")] = 15,
    download: Annotated[
        bool, typer.Option(help="Fetch Omniglot from its canonical source if it is missing.")
    ] = False,
    num_tasks: Annotated[int, typer.Option("--tasks", help="How many tasks to sample.")] = 3,
    seed: Annotated[int, typer.Option(help="Seed of the task generator.")] = 0,
    out: Annotated[Path, typer.Option(help="Where to write the picture.")] = Path(
        "runs/demo/tasks.png"
    ),
) -> None:
    """Sample a few tasks, print what they are made of, and draw them to a PNG."""
    from metalearner.tasks.demo import episode_demo, sinusoid_demo
    from metalearner.tasks.regression import SinusoidTasks

    console = Console()
    if dataset == "sinusoid":
        shots_ = shots if shots > 1 else 10  # one point does not show a sinusoid
        tasks = SinusoidTasks(shots=shots_, queries=queries)
        written = sinusoid_demo(tasks, num_tasks=num_tasks, seed=seed, out=out, console=console)
    else:
        from metalearner.tasks.datasets.registry import load_for_demo

        data, sampler = load_for_demo(
            dataset,
            data_dir=data_dir,
            path=path,
            ways=ways,
            shots=shots,
            queries=queries,
            download=download,
        )
        batch = sampler.sample(num_tasks, generator=torch.Generator().manual_seed(seed))
        written = episode_demo(data, batch, out=out, console=console)
    console.print(f"wrote {written}")


def main() -> None:
    """Entry point: runs the app and turns user errors into one clear line."""
    try:
        app()
    except MetalearnerError as err:
        if os.environ.get(_DEBUG_ENV) == "1":
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
