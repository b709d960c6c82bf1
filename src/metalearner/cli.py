"""The ``metalearner`` command: thin wrappers that parse, call the library and report.

Every :class:`~metalearner.errors.MetalearnerError` becomes one line on stderr and exit code 2;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import logging
import os
import sys
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from metalearner.cli_adapt import adapt_cmd
from metalearner.cli_benchmark import benchmark_cmd
from metalearner.cli_rl import rl_app
from metalearner.cli_search import search_cmd
from metalearner.cli_tasks import DataDir, tasks_app
from metalearner.errors import ConfigError, MetalearnerError, file_above, file_error

if TYPE_CHECKING:
    from metalearner.distributed import Backend

app = typer.Typer(
    help="Meta-learning: generate tasks, meta-train strategies, adapt fast, evaluate.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
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


Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
BackendOption = Annotated[
    str,
    typer.Option(
        help="Under torchrun: the torch.distributed backend, gloo, nccl or auto (nccl for cuda)."
    ),
]


def _backend(name: str) -> Backend:
    from metalearner.distributed import BACKENDS

    if name not in BACKENDS:
        raise ConfigError(f"--backend {name!r}: use one of {', '.join(BACKENDS)}.")
    return typing.cast("Backend", name)


def _main_rank() -> bool:
    # Under torchrun every rank runs the command; only rank 0 talks to the user.
    return os.environ.get("RANK", "0") == "0"


@app.command("train")
def train(
    config: Annotated[Path | None, typer.Argument(help="A run config (YAML).")] = None,
    preset: Annotated[
        str | None, typer.Option(help="A named paper setting (see `metalearner presets`).")
    ] = None,
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a setting: --set key=value (dotted, repeatable)."),
    ] = None,
    data_dir: DataDir = None,
    out: Annotated[Path | None, typer.Option(help="The run folder (default runs/<name>).")] = None,
    resume: Annotated[
        bool, typer.Option(help="Continue the run in --out from its latest checkpoint.")
    ] = False,
    seed: Annotated[int | None, typer.Option(help="Seed of initialisation and tasks.")] = None,
    quiet: Quiet = False,
    backend: BackendOption = "auto",
) -> None:
    """Meta-train a strategy; writes config.yaml, metrics.jsonl and checkpoints/ to the run.

    Under `torchrun --nproc-per-node N -m metalearner train ...` each process meta-trains on its
    share of every meta-batch and rank 0 writes the run folder.
    """
    from metalearner.config import load_config
    from metalearner.presets import get_preset
    from metalearner.runs import read_run_config
    from metalearner.train import meta_train

    console = Console()
    if resume:
        if out is None:
            raise ConfigError("--resume needs --out: the run folder to continue.")
        if config or preset or overrides or seed is not None:
            raise ConfigError(
                "A resumed run keeps its own config.yaml; drop CONFIG, --preset, --set and "
                "--seed, or start a new run with another --out."
            )
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
        cfg, out, resume=resume, data_dir=data_dir, quiet=quiet, backend=_backend(backend)
    )
    if not _main_rank():
        return
    best = result.best
    if best is not None:
        score = best["score"]
        shown = f"{100 * score:.2f}%" if result.metric == "accuracy" else f"{score:.4g}"
        console.print(f"best validation {result.metric} {shown} at step {int(best['step'])}")
    elif result.step > 0:
        lower = "strategy_config.inner_lr"
        if cfg.strategy == "metasgd":  # its step sizes are learned; too many steps diverge
            lower = "strategy_config.eval_steps (to inner_steps)"
        console.print(
            f"warning: no validation {result.metric} was finite (the adaptation diverged); "
            f"lower {lower} or optimizer.lr and train again."
        )
    console.print(f"trained {result.step} steps; run folder {out}")
    console.print(f"next: metalearner evaluate {out}")


@app.command("evaluate")
def evaluate_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by `metalearner train`.")],
    tasks: Annotated[
        int | None, typer.Option("--tasks", help="Test tasks (default: the run's, 600).")
    ] = None,
    steps: Annotated[
        int | None, typer.Option(help="Adaptation steps (default: the strategy's).")
    ] = None,
    curve: Annotated[bool, typer.Option(help="Also score after 0, 1, ..., S steps.")] = True,
    checkpoint: Annotated[str, typer.Option(help="best or latest.")] = "best",
    device: Annotated[
        str | None, typer.Option(help="cpu or cuda (default: the device the run trained on).")
    ] = None,
    data_dir: DataDir = None,
    backend: BackendOption = "auto",
    split: Annotated[
        str | None,
        typer.Option(
            help="Score on another split's test classes with the same training (FewRel: pubmed "
            "for a wiki run); writes eval-SPLIT.json."
        ),
    ] = None,
    path: Annotated[
        Path | None,
        typer.Option(
            help="Where a run trained on your folder or table finds it now (its data.path is "
            "relative to where training ran)."
        ),
    ] = None,
) -> None:
    """Score a run on its fixed test tasks (mean ± 95% CI, curve over steps); write eval.json."""
    from metalearner.evaluate import evaluate

    if checkpoint not in ("best", "latest"):
        raise ConfigError(f"--checkpoint {checkpoint!r}: use best or latest.")
    if (tasks is not None and tasks < 1) or (steps is not None and steps < 0):
        raise ConfigError("--tasks must be at least 1 and --steps at least 0.")
    result = evaluate(
        run_dir,
        num_tasks=tasks,
        steps=steps,
        curve=curve,
        data_dir=data_dir,
        which=checkpoint,
        device=device,
        backend=_backend(backend),
        split=split,
        data_path=path,
    )
    if not _main_rank():
        return
    console = Console()
    console.print(result.line())
    if result.curve:
        scale = 100 if result.metric == "accuracy" else 1
        points = ", ".join(f"{p.steps}: {scale * p.mean:.4g}" for p in result.curve)
        console.print(f"{result.metric} after steps {{{points}}}")
    console.print(f"wrote {Path(run_dir) / (f'eval-{split}.json' if split else 'eval.json')}")


@app.command("presets")
def presets_cmd() -> None:
    """List the presets: the papers' settings, their sources and published scores."""
    from rich.table import Table

    from metalearner.presets import list_presets, presets_dir

    table = Table(title=f"presets (YAML files in {presets_dir()})")
    for column in ("name", "setting", "expected (published)"):
        table.add_column(column)
    for p in list_presets():
        table.add_row(p.name, p.title, p.expected)
    Console(width=160).print(table)


@app.command("quickstart")
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

    from metalearner.quickstart import HEADER, quickstart, table_rows

    if steps < 1 or tasks < 2:
        raise ConfigError("--steps must be at least 1 and --tasks at least 2.")
    blocker = out if out.exists() and not out.is_dir() else file_above(out)
    if blocker is not None:  # found now, not after minutes of training
        raise ConfigError(f"--out {out}: {blocker} is a file, not a folder; give another path.")
    result = quickstart(out, steps=steps, test_tasks=tasks, seed=seed, quiet=quiet)
    table = Table(title=f"test MSE ± 95% CI, {tasks} sinusoids per K (lower is better)")
    for column in HEADER:
        table.add_column(column)
    for row in table_rows(result):
        table.add_row(*row)
    console = Console(width=max(Console().width, 120))  # the table must not wrap its names
    console.print(table)
    console.print(f"wrote {out / 'report.md'}, {out / 'quickstart.png'}")


app.command("adapt")(adapt_cmd)
app.command("benchmark")(benchmark_cmd)
app.command("search")(search_cmd)
app.add_typer(rl_app, name="rl")


def main() -> None:
    """Entry point: runs the app and turns user errors into one clear line."""
    try:
        app()
    except SystemExit as exit_:
        # Typer turns Ctrl-C into a silent exit 130 (a typer.Exit raised from the interrupt).
        cause = exit_.__context__
        if isinstance(cause, typer.Exit) and isinstance(cause.__cause__, KeyboardInterrupt):
            print("interrupted", file=sys.stderr)
        raise
    except MetalearnerError as err:
        if os.environ.get(_DEBUG_ENV) == "1":
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except OSError as err:  # last resort: an output path that cannot be written, a full disk
        message = file_error(err)
        if message is None or os.environ.get(_DEBUG_ENV) == "1":
            raise
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
