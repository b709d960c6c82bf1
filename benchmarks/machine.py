"""The machine line every benchmark writes into RESULTS.md (imported by the benchmark scripts)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import torch

from metalearner.provenance import commit, cpu


def describe() -> str:
    """CPU, torch threads and version, and the GPU where one was used."""
    gpu = ""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        gpu = f"{torch.cuda.get_device_name(0)} with "
    return f"{gpu}{cpu()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"


def record(title: str, command: str, body: str) -> None:
    """Appends a section to benchmarks/RESULTS.md: title, command, machine, commit, body."""
    text = (
        f"\n## {title}\n\n- Command: `{command}`\n- Machine: {describe()}\n"
        f"- Commit: {commit()} ({date.today()})\n\n{body}\n"
    )
    with open(Path(__file__).parent / "RESULTS.md", "a") as f:
        f.write(text)
