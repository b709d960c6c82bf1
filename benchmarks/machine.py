"""The machine line every benchmark writes into RESULTS.md (imported by the benchmark scripts)."""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import date
from pathlib import Path

import torch


def cpu() -> str:
    """The CPU's core count and model name (``platform.processor()`` is often empty)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
        name = next(line.split(":", 1)[1].strip() for line in text.splitlines()
                    if line.startswith("model name"))  # fmt: skip
    except (OSError, StopIteration):
        name = platform.machine()
    return f"{os.cpu_count()}-core {name}"


def describe() -> str:
    """CPU, torch threads and version, and the GPU where one was used."""
    gpu = ""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        gpu = f"{torch.cuda.get_device_name(0)} with "
    return f"{gpu}{cpu()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"


def commit() -> str:
    """The checked-out commit, or METALEARNER_COMMIT where the tree is a copy (a GPU machine)."""
    if "METALEARNER_COMMIT" in os.environ:
        return os.environ["METALEARNER_COMMIT"]
    git = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent,
        check=False,
    )
    return git.stdout.strip() or "unknown"


def record(title: str, command: str, body: str) -> None:
    """Appends a section to benchmarks/RESULTS.md: title, command, machine, commit, body."""
    text = (
        f"\n## {title}\n\n- Command: `{command}`\n- Machine: {describe()}\n"
        f"- Commit: {commit()} ({date.today()})\n\n{body}\n"
    )
    with open(Path(__file__).parent / "RESULTS.md", "a") as f:
        f.write(text)
