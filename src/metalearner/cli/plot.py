"""``metalearner plot``: overlay runs' learning curves (the work: :func:`draw_curves`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console


def plot_cmd(
    runs: Annotated[list[Path], typer.Argument(help="Run folders written by `metalearner train`.")],
    out: Annotated[
        Path,
        typer.Option(help="The picture (.png, .pdf, .svg, ...), or a folder to hold curves.png."),
    ] = Path("curves.png"),
) -> None:
    """Overlay runs' training loss and validation score against steps and training time."""
    from metalearner.runs.curves import CURVES, draw_curves, read_curves
    from metalearner.tasks.demo import picture_path

    file = picture_path(out / CURVES if out.is_dir() else out)  # checked before reading runs
    curves = [read_curves(run, name=str(run)) for run in runs]  # named as the user wrote them
    file.parent.mkdir(parents=True, exist_ok=True)
    draw_curves(curves, file)
    Console(markup=False).print(f"wrote {file}")  # paths print as they are, never as markup
