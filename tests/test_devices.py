"""Device preparation: the CPU allocator keeps freed memory for reuse."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from metalearner.errors import ConfigError
from metalearner.runs.devices import threads, torch_device

# Ten times over, holds two 60 MB tensors (the size of a 20-way task's first conv4 activation;
# glibc always maps blocks over 32 MB afresh) and frees them; prints the minor page faults that
# took, with or without retain_freed_memory().
FAULTS = """
import resource, sys, torch
from metalearner.runs.devices import retain_freed_memory
applied = retain_freed_memory() if sys.argv[1] == "retain" else None
def task():
    held = [torch.empty(300 * 64 * 28 * 28).fill_(1.0) for _ in range(2)]
for _ in range(3):  # the first rounds fault the pages in either way
    task()
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
    # Each block is ~14,700 pages: glibc's default faults all twenty in again (~294,000
    # faults). Retained, 0 or one block's worth in repeated runs alone, two under CI's load: a
    # few blocks once, not every block every time.
    assert default > 20 * 14_000
    assert retained < default / 4


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_missing_cuda_names_no_option_a_command_may_lack() -> None:
    # train takes --set device=cpu, evaluate and adapt take --device: the message fits both.
    with pytest.raises(ConfigError, match="'cuda' is not available") as err:
        torch_device("cuda")
    assert "--set" not in str(err.value) and "choose device cpu" in str(err.value)


def test_thread_counts_below_one_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="'threads' must be at least 1"), threads(0):
        pass
    before = torch.get_num_threads()
    with threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
