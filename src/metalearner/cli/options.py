"""Options several commands share, each declared once, and the small checks that go with them."""

from __future__ import annotations

import os
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from metalearner.errors import ConfigError

if TYPE_CHECKING:
    from metalearner.runs.distributed import Backend

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Folder holding the datasets (default: $METALEARNER_DATA)."),
]
Quiet = Annotated[
    bool, typer.Option("--quiet", "-q", help="No progress bar, no progress lines in a log.")
]
Overrides = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a setting: --set key=value (dotted, repeatable)."),
]
Seed = Annotated[int | None, typer.Option(help="Seed of initialisation and tasks.")]
Dataset = Annotated[str | None, typer.Option(help="omniglot, fewrel, folder or sinusoid.")]
DataPath = Annotated[str | None, typer.Option(help="--dataset folder: class folders or a table.")]
Ways = Annotated[int | None, typer.Option(help="N, classes per test task.")]
Shots = Annotated[int | None, typer.Option(help="K, support examples per class.")]
Which = Annotated[str, typer.Option("--checkpoint", help="best or latest.")]
Norm = Annotated[
    str | None,
    typer.Option(
        help="BatchNorm mode: transductive (a task's queries normalised with their own "
        "statistics, the papers' protocol) or inductive (with the support set's, so each item "
        "is predicted on its own); default: the run's model.norm.",
        show_default=False,
    ),
]
BackendOption = Annotated[
    str,
    typer.Option(
        help="Under torchrun: the torch.distributed backend, gloo, nccl or auto (nccl for cuda)."
    ),
]


def resumed_run(out: Path | None, *, changes: bool, options: str) -> Path:
    """The run folder ``--resume`` continues; a resumed run keeps its own config.yaml.

    Args:
        out: ``--out``.
        changes: whether any option that would change the run was given.
        options: those options, for the message (e.g. ``"--set and --seed"``).
    """
    if out is None:
        raise ConfigError("--resume needs --out: the run folder to continue.")
    if changes:
        raise ConfigError(
            f"A resumed run keeps its own config.yaml; drop {options}, or start a new run with "
            "another --out."
        )
    return out


def checkpoint_name(which: str) -> str:
    """``which`` if it names a checkpoint of a run folder; otherwise one sentence."""
    if which not in ("best", "latest"):
        raise ConfigError(f"--checkpoint {which!r}: use best or latest.")
    return which


def norm_name(value: str | None) -> str | None:
    """The ``--norm`` value checked as a BatchNorm mode, before any work (``None``: the run's)."""
    if value is None:
        return None
    from metalearner.nn.layers import norm_mode  # torch: imported when a command runs

    return norm_mode(value, "--norm")


def backend_name(name: str) -> Backend:
    """The ``--backend`` value as a torch.distributed backend name, checked."""
    from metalearner.runs.distributed import BACKENDS

    if name not in BACKENDS:
        raise ConfigError(f"--backend {name!r}: use one of {', '.join(BACKENDS)}.")
    return typing.cast("Backend", name)


def main_rank() -> bool:
    """Whether this process talks to the user: under torchrun every rank runs the command."""
    return os.environ.get("RANK", "0") == "0"
