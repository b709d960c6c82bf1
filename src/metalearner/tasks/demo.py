"""``metalearner tasks demo``: sample a few tasks, describe them, and draw them.

The README's main command starts here, so a fresh install does something real without data.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: the demo must run on machines without a display
import matplotlib.pyplot as plt
import torch
from matplotlib.backend_bases import FigureCanvasBase
from rich.console import Console
from rich.table import Table
from rich.text import Text

from metalearner.data.config import DataConfig, resolve_data
from metalearner.data.labeled import LabeledSet
from metalearner.data.registry import dataset
from metalearner.errors import ConfigError, file_above
from metalearner.tasks.batch import TaskBatch
from metalearner.tasks.episodes import EpisodeSampler
from metalearner.tasks.pictures import episode_figure
from metalearner.tasks.regression import SinusoidTasks

DEMO_FOLDER = Path("runs/demo")
"""Where ``tasks demo`` draws, relative to the current folder, unless ``--out`` says otherwise."""


def sinusoid_demo(
    tasks: SinusoidTasks, *, num_tasks: int, seed: int, out: Path, console: Console
) -> Path:
    """Samples sinusoid tasks, prints their parameters and plots function, support and query."""
    batch = tasks.sample(num_tasks, generator=torch.Generator().manual_seed(seed))
    table = Table(
        title=f"{num_tasks} sinusoid tasks (K={tasks.shots} support, "
        f"Q={tasks.queries} query points, seed {seed})"
    )
    for column in ("task", "amplitude", "phase", "support x (first 4)"):
        table.add_column(column)
    for t in range(num_tasks):
        xs = ", ".join(f"{v:+.2f}" for v in batch.support_x[t, :4, 0].tolist())
        table.add_row(
            str(t),
            f"{float(batch.info['amplitude'][t]):.2f}",
            f"{float(batch.info['phase'][t]):.2f}",
            xs,
        )
    console.print(table)
    grid = torch.linspace(*tasks.x_range, 200).view(1, -1, 1).expand(num_tasks, -1, -1)
    curves = SinusoidTasks.curve(batch.info, grid)
    fig, axes = plt.subplots(1, num_tasks, figsize=(3 * num_tasks, 2.6), squeeze=False)
    for t, ax in enumerate(axes[0]):
        ax.plot(grid[t, :, 0], curves[t], color="0.6", label="true function")
        ax.scatter(batch.query_x[t, :, 0], batch.query_y[t], s=10, color="tab:blue", label="query")
        ax.scatter(
            batch.support_x[t, :, 0],
            batch.support_y[t],
            s=30,
            marker="^",
            color="tab:red",
            label="support",
        )
        ax.set_title(f"task {t}")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, out)


def episode_demo(data: LabeledSet, batch: TaskBatch, *, out: Path, console: Console) -> Path:
    """Prints each episode's classes and draws each class's support and query examples (see
    :func:`~metalearner.tasks.pictures.episode_figure`)."""
    assert batch.classes is not None
    shots = batch.support_x.shape[1] // batch.classes.shape[1]
    # Class names and the path are a user's strings: Text, never parsed as rich markup (a
    # name like "[link=...]" would become a hyperlink, "[/bold]" an error).
    table = Table(
        title=Text(
            f"{batch.num_tasks} episodes from {data.name}: {batch.ways}-way "
            f"{shots}-shot, {batch.query_x.shape[1]} queries, "
            f"inputs {tuple(batch.support_x.shape[2:])}"
        )
    )
    table.add_column("task")
    table.add_column("classes (label: name)")
    for t in range(batch.num_tasks):
        names = [f"{j}: {data.class_names[c]}" for j, c in enumerate(batch.classes[t].tolist())]
        table.add_row(str(t), Text(", ".join(names)))
    console.print(table)
    return _save(episode_figure(data, batch), out)


def default_picture(dataset: str) -> Path:
    """Where ``tasks demo`` draws ``dataset``'s tasks unless ``--out`` says otherwise: a file
    per dataset, so that a demo of one does not overwrite another's."""
    return DEMO_FOLDER / f"{dataset}-tasks.png"


def picture_path(out: Path) -> Path:
    """The file written for ``--out``: ``out`` itself, or ``out.png`` when it has no ending (as
    matplotlib does), checked before any work so that a bad path fails at once.

    Raises:
        ConfigError: ``out`` is a folder, has an ending matplotlib cannot write, or lies under
            a file.
    """
    out = Path(out)
    if not out.suffix and not out.is_dir():
        out = out.with_name(out.name + ".png")
    if out.is_dir():
        raise ConfigError(f"--out {out} is a folder; give a file name such as {out / 'tasks.png'}.")
    kinds = FigureCanvasBase.get_supported_filetypes()
    if out.suffix[1:].lower() not in kinds:
        raise ConfigError(
            f"--out {out}: matplotlib cannot write {out.suffix} files; end the name with one of "
            f"{', '.join('.' + k for k in sorted(kinds))}."
        )
    blocker = file_above(out)
    if blocker is not None:
        raise ConfigError(f"--out {out} lies under {blocker}, which is a file; give another path.")
    return out


def _save(fig: plt.Figure, out: Path) -> Path:
    out = picture_path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def load_for_demo(
    name: str,
    *,
    data_dir: Path | None,
    path: Path | None,
    ways: int,
    shots: int,
    queries: int,
    download: bool = False,
) -> tuple[LabeledSet, EpisodeSampler]:
    """The labeled set and an episode sampler for ``metalearner tasks demo``.

    Omniglot and FewRel episodes come from their meta-test classes (their default splits), a
    user's data from all of its classes.

    Raises:
        ConfigError: an unknown dataset, a regression dataset (it has no episodes), or a
            dataset of the user's files without ``path``.
    """
    entry = dataset(name)
    if entry.reader is not None:  # the user's own files: every class is one to look at
        if path is None:
            raise ConfigError(f"--dataset {name} needs --path: {entry.path_is}.")
        data = entry.reader(path, DataConfig(dataset=name, path=str(path)))
        classes = torch.arange(data.num_classes)
    elif entry.regression:
        raise ConfigError(f"--dataset {name} makes regression tasks, not episodes of classes.")
    else:
        settings = resolve_data(DataConfig(dataset=name, ways=ways, shots=shots, queries=queries))
        data, split = entry.load(settings, data_dir, download=download)
        classes = split.test
    return data, EpisodeSampler(data, classes, ways=ways, shots=shots, queries=queries)
