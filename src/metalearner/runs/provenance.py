"""Where a result came from: the machine, the versions and the commit, for reports to state."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

from metalearner.runs.checkpoint import versions


def cpu() -> str:
    """The CPU's core count and model name (``platform.processor()`` is often empty)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
        name = next(line.split(":", 1)[1].strip() for line in text.splitlines()
                    if line.startswith("model name"))  # fmt: skip
    except (OSError, StopIteration):
        name = platform.machine()
    return f"{os.cpu_count()}-core {name}"


def commit() -> str:
    """The checked-out commit (``+changes`` when tracked files differ from it), or
    ``METALEARNER_COMMIT`` where the tree is a copy (a GPU machine), or ``unknown``."""
    if "METALEARNER_COMMIT" in os.environ:
        return os.environ["METALEARNER_COMMIT"]

    def git(*args: str) -> str:
        try:
            done = subprocess.run(
                ["git", *args], capture_output=True, text=True, cwd=Path(__file__).parent,
                check=False, timeout=10,
            )  # fmt: skip
        except (OSError, subprocess.SubprocessError):
            return ""
        return done.stdout.strip() if done.returncode == 0 else ""

    head = git("rev-parse", "--short", "HEAD")
    if not head:
        return "unknown"
    return head + ("+changes" if git("status", "--porcelain", "--untracked-files=no") else "")


def provenance() -> dict[str, str]:
    """Versions, commit and machine, as a report states them."""
    return versions() | {"commit": commit(), "machine": cpu()}
