"""``metalearner train``: meta-train a strategy into a run folder (the work: :func:`meta_train`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from metalearner.cli.options import (
    BackendOption,
    DataDir,
    Overrides,
    Quiet,
    Seed,
    backend_name,
    main_rank,
    resumed_run,
)
from metalearner.errors import ConfigError


def train_cmd(
    config: Annotated[Path | None, typer.Argument(help="A run config (YAML).")] = None,
    preset: Annotated[
        str | None, typer.Option(help="A named paper setting (see `metalearner presets`).")
    ] = None,
    overrides: Overrides = None,
    data_dir: DataDir = None,
    out: Annotated[Path | None, typer.Option(help="The run folder (default runs/<name>).")] = None,
    resume: Annotated[
        bool,
        typer.Option(
            help="Continue the run in --out from its latest checkpoint; --set steps=N (or "
            "time_budget, val_every, ...) trains a finished run longer."
        ),
    ] = False,
    seed: Seed = None,
    quiet: Quiet = False,
    backend: BackendOption = "auto",
    log: Annotated[
        list[str] | None,
        typer.Option(
            "--log",
            help="Also send the metrics to a tracker: tensorboard (event files in RUN/tensorboard"
            "/); repeatable; the same as --set log=[tensorboard].",
        ),
    ] = None,
) -> None:
    """Meta-train a strategy; writes config.yaml, metrics.jsonl and checkpoints/ to the run.

    In a terminal a bar shows the progress; with stdout in a file (nohup, SLURM, CI) a line
    comes every progress_every seconds (30), at each validation and at the end. -q: neither,
    only the summary.

    Your own network: --set model.name=python --set model.factory=mymodels:make_net (found in
    the current folder or on PYTHONPATH). A new run starts from saved weights with --set
    model.weights=FILE.safetensors, or from a finished run's backbone with --set
    model.init_from=RUN (e.g. a finetune run's pretraining).

    Under `torchrun --nproc-per-node N -m metalearner train ...` each process meta-trains on its
    share of every meta-batch and rank 0 writes the run folder.
    """
    from metalearner.config.presets import get_preset
    from metalearner.runs.config import load_config
    from metalearner.training.loop import meta_train
    from metalearner.training.resume import extended_config

    console = Console(markup=False)  # paths and names print as they are, never as markup
    if log:  # a setting of the run (config.yaml), so that its resumes log there too
        overrides = [*(overrides or []), f"log={json.dumps(log)}"]
    if resume:
        # --set may change how long and how it runs (steps=N extends a finished run), never
        # what it learns: extended_config refuses that, naming what may change.
        changes = bool(config or preset or seed is not None)
        out = resumed_run(out, changes=changes, options="CONFIG, --preset and --seed")
        cfg = extended_config(out, overrides or [])
    else:
        if (config is None) == (preset is None):
            raise ConfigError(
                "Give either a CONFIG.yaml or --preset NAME (see `metalearner presets`)."
            )
        sets = [*(overrides or []), *([f"seed={seed}"] if seed is not None else [])]
        base = get_preset(preset).load() if preset else None
        cfg = load_config(config, base=base, overrides=sets)
        name = preset or (config.stem if config else "run")
        out = out or Path("runs") / name
    result = meta_train(
        cfg, out, resume=resume, data_dir=data_dir, quiet=quiet, backend=backend_name(backend)
    )
    if not main_rank():
        return
    best = result.best
    if best is not None:
        score = best["score"]
        shown = f"{100 * score:.2f}%" if result.metric == "accuracy" else f"{score:.4g}"
        console.print(f"best validation {result.metric} {shown} at step {int(best['step'])}")
    elif result.step > 0:
        from metalearner.strategies import get_strategy

        lower = get_strategy(cfg.strategy).diverging_setting
        console.print(
            f"warning: no validation {result.metric} was finite (the adaptation diverged); "
            f"lower {lower} or optimizer.lr and train again."
        )
    console.print(f"trained {result.step} steps; run folder {out}")
    console.print(f"next: metalearner evaluate {out}")
