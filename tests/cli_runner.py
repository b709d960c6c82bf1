"""The command line as a user runs it: ``python -m metalearner`` in a subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def command(*args: str) -> list[str]:
    """The argument vector of ``metalearner ARGS`` run with this interpreter."""
    return [sys.executable, "-m", "metalearner", *args]


def run_cli(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Runs ``metalearner ARGS`` in ``cwd``; its output is captured, its exit status not checked."""
    return subprocess.run(
        command(*args), cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
