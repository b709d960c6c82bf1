"""``metalearner adapt``: the command's options; the work is :func:`adapt_files`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from metalearner.cli.options import Norm, Which, checkpoint_name, norm_name
from metalearner.config.bounds import ADAPT_STEPS, check_value


def adapt_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A run folder or a checkpoint folder.")],
    support: Annotated[
        Path,
        typer.Option(
            help="Class sub-folders of images, or a CSV with a label column (text models: a CSV "
            "with sentence, head, tail and label columns, or FewRel-like JSON lines)."
        ),
    ],
    more: Annotated[
        list[Path] | None,
        typer.Argument(
            help="More query image files (so that --query q/*.png works).", show_default=False
        ),
    ] = None,
    query: Annotated[
        list[Path] | None,
        typer.Option(
            help="A folder, image files, or a CSV (text: CSV or JSON lines); labeled: accuracy "
            "is printed."
        ),
    ] = None,
    steps: Annotated[
        int | None,
        typer.Option(
            help="Adaptation steps (default: those chosen on validation tasks when the run "
            "ended, else the strategy's)."
        ),
    ] = None,
    output: Annotated[Path, typer.Option(help="Where to write the predictions.")] = Path(
        "predictions.csv"
    ),
    label: Annotated[str, typer.Option(help="The label column of a CSV.")] = "label",
    checkpoint: Which = "best",
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    norm: Norm = None,
) -> None:
    """Adapt a meta-trained model to a new task's few labeled examples and predict its queries."""
    from metalearner.errors import ConfigError
    from metalearner.inference.predictions import adapt_files

    check_value(steps, ADAPT_STEPS, "--steps")  # a strategy's eval_steps' bound, before any work
    mode = norm_name(norm)
    queries = [*(query or []), *(more or [])]
    if not queries:
        raise ConfigError("Give the query items with --query (a folder, image files or a CSV).")
    report = adapt_files(
        run_dir,
        support,
        queries,
        output=output,
        steps=steps,
        label=label,
        which=checkpoint_name(checkpoint),
        device=device,
        norm=mode,
    )
    for line in report.summary():
        typer.echo(line)  # plain lines: scripts parse them, and rich would wrap long ones
    if mode is not None and report.norm is None:
        typer.echo("note: this model has no BatchNorm, so --norm changes nothing")
