"""The ``metalearner`` command: one module per command, registered here; thin wrappers that parse,
call the library and report.

Every :class:`~metalearner.errors.MetalearnerError` becomes one line on stderr and exit code 2;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import inspect
import logging
import os
import sys
from typing import Annotated

import typer

from metalearner._version import __version__
from metalearner.cli.adapt import adapt_cmd
from metalearner.cli.benchmark import benchmark_cmd
from metalearner.cli.evaluate import evaluate_cmd
from metalearner.cli.plot import plot_cmd
from metalearner.cli.presets import presets_app
from metalearner.cli.quickstart import quickstart_cmd
from metalearner.cli.rl import rl_app
from metalearner.cli.search import search_cmd
from metalearner.cli.tasks import tasks_app
from metalearner.cli.train import train_cmd
from metalearner.errors import MetalearnerError, fault_message

app = typer.Typer(
    help="Meta-learning: generate tasks, meta-train strategies, adapt fast, evaluate.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,  # --install-completion, --show-completion
)
app.add_typer(tasks_app, name="tasks")

_DEBUG_ENV = "METALEARNER_DEBUG"


def _print_version(asked: bool) -> None:
    if asked:
        typer.echo(f"metalearner {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log more.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version, exit."
        ),
    ] = False,
) -> None:
    if debug:
        os.environ[_DEBUG_ENV] = "1"
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


app.command("train")(train_cmd)
app.command("evaluate")(evaluate_cmd)
app.command("plot")(plot_cmd)
app.command("adapt")(adapt_cmd)
app.add_typer(presets_app, name="presets")
app.command("quickstart")(quickstart_cmd)
app.command("benchmark")(benchmark_cmd)
app.command("search")(search_cmd)
app.add_typer(rl_app, name="rl")


def _flow_help(group: typer.Typer) -> None:
    """Puts each paragraph of each command's help on one line, for the terminal to wrap.

    Typer's help keeps a docstring's line breaks, so a docstring wrapped at 100 columns came
    out ragged in an 80-column terminal (a line of three words, then a full one).
    """
    for command in group.registered_commands:
        doc = inspect.cleandoc(command.help or getattr(command.callback, "__doc__", None) or "")
        command.help = "\n\n".join(" ".join(p.splitlines()) for p in doc.split("\n\n"))
    for sub in group.registered_groups:
        if sub.typer_instance is not None:
            _flow_help(sub.typer_instance)


_flow_help(app)


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
    # A read-only or full disk, no memory, a killed worker (a pool's BrokenProcessPool).
    except (OSError, MemoryError, RuntimeError) as err:
        message = fault_message(err)
        if message is None or os.environ.get(_DEBUG_ENV) == "1":
            raise
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
