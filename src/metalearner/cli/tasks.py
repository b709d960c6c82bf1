"""``metalearner tasks``: sample tasks and draw them; the work is :mod:`metalearner.tasks.demo`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from metalearner.cli.options import DataDir
from metalearner.errors import ConfigError

tasks_app = typer.Typer(help="Task generators: sample and look at tasks.", no_args_is_help=True)


@tasks_app.command("demo")
def tasks_demo(
    dataset: Annotated[
        str, typer.Option(help="sinusoid, omniglot, fewrel, or folder (with --path).")
    ] = ("sinusoid"),
    data_dir: DataDir = None,
    path: Annotated[
        Path | None,
        typer.Option(
            help="A folder of class sub-folders, or a CSV/.npz table, for --dataset folder."
        ),
    ] = None,
    ways: Annotated[int, typer.Option(help="N, classes per task.")] = 5,
    shots: Annotated[
        int | None,
        typer.Option(help="K, support examples per class (or points; default 1, sinusoid 10)."),
    ] = None,
    queries: Annotated[int, typer.Option(help="Q, query examples per class (or points).")] = 15,
    download: Annotated[
        bool,
        typer.Option(
            help="Fetch missing files from the dataset's official host, md5-checked (Omniglot, "
            "CIFAR-FS/FC100's CIFAR-100, CUB)."
        ),
    ] = False,
    num_tasks: Annotated[int, typer.Option("--tasks", help="How many tasks to sample.")] = 3,
    seed: Annotated[int, typer.Option(help="Seed of the task generator.")] = 0,
    out: Annotated[
        Path | None,
        typer.Option(help="Where to write the picture (default: runs/demo/DATASET-tasks.png)."),
    ] = None,
) -> None:
    """Sample a few tasks, print what they are made of, and draw them to a PNG."""
    import torch

    from metalearner.config.bounds import EXAMPLES, TASKS, WAYS, check_value
    from metalearner.data.registry import dataset as entry_of
    from metalearner.tasks.demo import default_picture, episode_demo, picture_path, sinusoid_demo
    from metalearner.tasks.regression import SinusoidTasks

    if num_tasks < 1:
        raise ConfigError(f"--tasks {num_tasks}: sample at least 1 task.")
    for option, value, bound in [
        ("--tasks", num_tasks, TASKS),
        ("--ways", ways, WAYS),
        ("--shots", shots, EXAMPLES),
        ("--queries", queries, EXAMPLES),
    ]:
        check_value(value, bound, option)  # fmt: skip
    # Before any work: a path that cannot be written fails at once.
    out = picture_path(default_picture(dataset) if out is None else out)
    console = Console(markup=False)  # paths and names print as they are, never as markup
    if entry_of(dataset).regression:
        # Sinusoids, the regression family. One point does not show a sinusoid: K=10 unless
        # asked otherwise.
        tasks = SinusoidTasks(shots=10 if shots is None else shots, queries=queries)
        written = sinusoid_demo(tasks, num_tasks=num_tasks, seed=seed, out=out, console=console)
    else:
        from metalearner.tasks.demo import load_for_demo

        data, sampler = load_for_demo(
            dataset,
            data_dir=data_dir,
            path=path,
            ways=ways,
            shots=1 if shots is None else shots,
            queries=queries,
            download=download,
        )
        batch = sampler.sample(num_tasks, generator=torch.Generator().manual_seed(seed))
        written = episode_demo(data, batch, out=out, console=console)
    console.print(f"wrote {written}")
