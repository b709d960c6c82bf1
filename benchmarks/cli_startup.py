"""Wall time of ``metalearner --help`` and of every command's ``--help`` (a benchmark, not a test).

A help text should come back at once: the target is under 0.5 s on the 2-core CPU (issue 28),
which leaves no room for importing torch. Each command is run as a user runs it, through the
installed entry point in a new process, ``--runs`` times; the table gives the median and the
fastest wall time, and the median CPU time, which depends less on what else the machine runs.
``--against REV`` also times the package as it was at git revision REV, in the same run, so that
both are measured on the same, shared, machine: REV's ``src/`` is extracted to a temporary
folder that goes first on ``PYTHONPATH``.

Usage:
    .venv/bin/python benchmarks/cli_startup.py [--runs 10] [--against HEAD] [--record]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

import typer.core
import typer.main

import machine  # benchmarks/machine.py
from metalearner.cli.app import app
from metalearner.runs.provenance import cpu

REPO = Path(__file__).resolve().parents[1]
ENTRY = Path(sys.executable).parent / "metalearner"
TARGET_S = 0.5
TORCH_PROBE = "import sys, metalearner.cli.app; print('torch' in sys.modules)"


def commands() -> list[tuple[str, ...]]:
    """The root and every command and sub-command of the app, as argument prefixes."""
    found: list[tuple[str, ...]] = [()]

    def walk(group: typer.core.TyperGroup, prefix: tuple[str, ...]) -> None:
        for name, command in sorted(group.commands.items()):
            found.append((*prefix, name))
            if isinstance(command, typer.core.TyperGroup):
                walk(command, (*prefix, name))

    root = typer.main.get_command(app)
    assert isinstance(root, typer.core.TyperGroup)
    walk(root, ())
    return found


def source_at(rev: str, folder: Path) -> Path:
    """``src/`` of git revision ``rev``, extracted into ``folder``."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", rev, "src"], cwd=REPO, capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    return folder / "src"


def environment(src: Path | None) -> dict[str, str]:
    """The environment of a run: ``src`` first on the import path, if given."""
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH")]))
    return env


def timed_runs(
    args: tuple[str, ...], env: dict[str, str], runs: int
) -> tuple[list[float], list[float]] | None:
    """Wall and CPU seconds of ``runs`` runs of ``metalearner ARGS --help``; ``None`` if it
    fails (a command the other tree does not have).

    CPU time (user + system) hardly depends on what else the machine runs; wall time does.
    """
    walls, cpus = [], []
    for _ in range(runs + 1):  # the first run warms the file cache and is not counted
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(
            [str(ENTRY), *args, "--help"], env=env, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, check=False,
        )  # fmt: skip
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        if done.returncode != 0:
            return None
    return walls[1:], cpus[1:]


def imports_torch(env: dict[str, str]) -> bool:
    """Whether importing the command-line app imports torch."""
    done = subprocess.run(
        [sys.executable, "-c", TORCH_PROBE], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip() == "True"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="timed runs per command")
    parser.add_argument("--against", metavar="REV", help="also time git revision REV")
    parser.add_argument("--record", action="store_true", help="record in benchmarks/RESULTS.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"this tree": environment(None)}
        if args.against:
            trees = {args.against: environment(source_at(args.against, Path(tmp))), **trees}
        head = "| command | " + " | ".join(f"{t}: wall s (fastest), CPU s" for t in trees) + " |"
        rows = [head, "|---|" + "---|" * len(trees)]
        medians: dict[str, list[float]] = {t: [] for t in trees}
        for command in commands():
            cells = []
            for tree, env in trees.items():
                timed = timed_runs(command, env, args.runs)
                if timed is None:
                    cells.append("-")
                    continue
                walls, cpus = timed
                medians[tree].append(statistics.median(walls))
                cells.append(
                    f"{medians[tree][-1]:.2f} ({min(walls):.2f}), {statistics.median(cpus):.2f}"
                )
            rows.append(f"| `metalearner {' '.join([*command, '--help'])}` | {' | '.join(cells)} |")
            print(rows[-1], flush=True)
        torch = {tree: imports_torch(env) for tree, env in trees.items()}
    load = os.getloadavg()[1]  # the machine is shared: how busy it was, over 5 minutes
    notes = [
        f"{args.runs} runs per command after one untimed run, each a new process of "
        f"`.venv/bin/metalearner`: the median wall time (the fastest run) and the median CPU "
        f"time (user + system); target < {TARGET_S} s wall; load average {load:.1f} on "
        f"{os.cpu_count()} cores over the last 5 minutes of the run.",
        "Importing `metalearner.cli.app` imports torch: "
        + ", ".join(f"{t}: {'yes' if found else 'no'}" for t, found in torch.items())
        + ".",
        "Slowest median: " + ", ".join(f"{t} {max(m):.2f} s" for t, m in medians.items()) + ".",
    ]
    body = "\n".join([*rows, "", *(f"- {note}" for note in notes)])
    print("\n" + body)
    if args.record:
        against = f" --against {args.against}" if args.against else ""
        machine.record(
            "Command-line start-up, `--help` (benchmarks/cli_startup.py)",
            f".venv/bin/python benchmarks/cli_startup.py --runs {args.runs}{against} --record",
            body,
            machine=f"{cpu()}, Python {platform.python_version()}",
        )


if __name__ == "__main__":
    main()
