"""``metalearner rl``: meta-reinforcement learning commands; the work is in :mod:`metalearner.rl`.

Errors a user can cause are :class:`~metalearner.errors.MetalearnerError`s, which the root
command turns into one line on stderr and exit status 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from metalearner.cli.options import Overrides, Quiet, Seed, resumed_run
from metalearner.errors import ConfigError

rl_app = typer.Typer(
    help="Meta-RL: MAML with policy gradients on 2D navigation and MuJoCo HalfCheetah.",
    no_args_is_help=True,
)


@rl_app.command("train")
def rl_train(
    env: Annotated[
        str | None,
        typer.Option(help="navigation2d, halfcheetah-vel or halfcheetah-dir (not with --resume)."),
    ] = None,
    overrides: Overrides = None,
    out: Annotated[
        Path | None, typer.Option(help="The run folder (default runs/rl-<env>).")
    ] = None,
    resume: Annotated[
        bool, typer.Option(help="Continue the run in --out from its latest checkpoint.")
    ] = False,
    seed: Seed = None,
    baselines: Annotated[
        bool,
        typer.Option(
            "--baselines",
            help="Then train the pretrained baseline (same budget) into OUT/pretrain.",
        ),
    ] = False,
    quiet: Quiet = False,
) -> None:
    """Meta-train a policy (MAML-TRPO by default); write config.yaml, metrics.jsonl, checkpoints."""
    from metalearner.rl.config import load_rl_config, read_config
    from metalearner.rl.train import train_rl
    from metalearner.runs.folder import CONFIG

    if resume:
        changes = bool(env or overrides or seed is not None or baselines)
        out = resumed_run(out, changes=changes, options="--env, --set, --seed and --baselines")
        cfg = read_config(out / CONFIG)
    else:
        if env is None:
            raise ConfigError("Give --env: navigation2d, halfcheetah-vel or halfcheetah-dir.")
        sets = [*(overrides or []), *(["baselines=true"] if baselines else [])]
        cfg = load_rl_config(env, sets, seed)
        out = out or Path("runs") / f"rl-{env}"
    result = train_rl(cfg, out, resume=resume, quiet=quiet)
    console = Console(markup=False)  # paths and names print as they are, never as markup
    m = result.metrics
    if m:
        after = f", after adaptation {m['return_after']:.1f}" if "return_after" in m else ""
        console.print(f"last iteration: return {m['return_before']:.1f}{after}")
    console.print(f"trained {result.iteration} iterations; run folder {out}")
    console.print(f"next: metalearner rl evaluate {out}")


@rl_app.command("evaluate")
def rl_evaluate(
    run_dir: Annotated[
        Path, typer.Argument(help="A run folder written by `metalearner rl train`.")
    ],
    tasks: Annotated[
        int | None, typer.Option("--tasks", help="Test tasks (default: the run's, 40).")
    ] = None,
    steps: Annotated[
        int | None, typer.Option(help="Adaptation steps (default: the run's, 3).")
    ] = None,
) -> None:
    """Average return before and after 1..S adaptation steps (95% CI) vs the baselines."""
    from metalearner.config.bounds import ADAPT_STEPS, TASKS, check_value
    from metalearner.rl.evaluate import evaluate_rl

    if not run_dir.is_dir():
        what = "is a file, not a run folder" if run_dir.exists() else "does not exist"
        raise ConfigError(f"{run_dir} {what}; give a folder written by `metalearner rl train`.")
    check_value(tasks, TASKS, "--tasks")
    check_value(steps, ADAPT_STEPS, "--steps")
    result = evaluate_rl(run_dir, num_tasks=tasks, steps=steps)
    steps_done = len(result.curves[0].mean)
    table = Table(
        title=f"{result.env}: average return, {result.num_tasks} test tasks × "
        f"{result.trajectories} trajectories (mean ± 95% CI)"
    )
    table.add_column("policy")
    for s in range(steps_done):
        table.add_column("before" if s == 0 else f"after {s} step{'s' if s > 1 else ''}")
    for row in result.table():
        table.add_row(*row)
    console = Console(markup=False, width=max(Console().width, 110))
    console.print(table)
    console.print(f"published: {result.published}")
    for name in result.missing:
        console.print(f"no {name} baseline: train the run with --baselines to include it")
    console.print(f"wrote {run_dir / 'eval.json'}" + "".join(f", {f}" for f in result.figures))
