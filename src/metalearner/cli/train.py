"""``metalearner train``: meta-train a strategy into a run folder (the work: :func:`meta_train`)."""

from __future__ import annotations

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
        bool, typer.Option(help="Continue the run in --out from its latest checkpoint.")
    ] = False,
    seed: Seed = None,
    quiet: Quiet = False,
    backend: BackendOption = "auto",
) -> None:
    """Meta-train a strategy; writes config.yaml, metrics.jsonl and checkpoints/ to the run.

    Under `torchrun --nproc-per-node N -m metalearner train ...` each process meta-trains on its
    share of every meta-batch and rank 0 writes the run folder.
    """
    from metalearner.config.presets import get_preset
    from metalearner.runs.config import load_config
    from metalearner.runs.folder import read_run_config
    from metalearner.training.loop import meta_train

    console = Console(markup=False)  # paths and names print as they are, never as markup
    if resume:
        changes = bool(config or preset or overrides or seed is not None)
        out = resumed_run(out, changes=changes, options="CONFIG, --preset, --set and --seed")
        cfg = read_run_config(out)
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
