"""Device preparation: the CPU allocator keeps freed memory for reuse."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Ten times over, holds four 15 MB tensors (the size of one task's first conv4 activation, as a
# task's forward pass holds several) and frees them; prints the minor page faults that took,
# with or without retain_freed_memory().
FAULTS = """
import resource, sys, torch
from metalearner.devices import retain_freed_memory
applied = retain_freed_memory() if sys.argv[1] == "retain" else None
def task():
    held = [torch.empty(75 * 64 * 28 * 28).fill_(1.0) for _ in range(4)]
task()  # the first time faults the pages in either way
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    task()
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(mode: str) -> tuple[str, int]:
    run = subprocess.run(
        [sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, check=True
    )
    applied, faults = run.stdout.split()
    return applied, int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_retained_memory_is_reused_without_page_faults() -> None:
    _, default = page_faults("default")
    applied, retained = page_faults("retain")
    assert applied == "True"
    # Each block is ~3,700 pages. glibc's default gives blocks back and faults fresh pages in
    # again, for all 40 blocks in most processes (~147,000 faults) and for a few in others (its
    # mmap threshold adapts to the history of frees); retained, no more than one block's
    # worth in all ten rounds.
    assert retained < 4_000 < default
