"""Faults of the machine are one sentence and lose nothing: every writing command on a read-only
folder, training and a benchmark on a full disk, running out of memory, and a benchmark's worker
process killed as the system's out-of-memory killer kills one.

A read-only folder and a full disk are real ones: tmpfs mounts (``mount -t tmpfs -o ro`` and
``-o size=…``, then ``remount`` with room) and read-only bind mounts of finished runs. Mounting
needs root, as in CI (``.ci/run`` runs as root); elsewhere these tests skip with that reason.
(``chmod`` would not do: root writes through a mode of 0o555.)
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import resource
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cli_runner import command, run_cli
from metalearner.errors import fault_message

pytestmark = pytest.mark.slow

SINE = ["--set", "val_tasks=4", "--set", "meta_batch=4", "--set", "threads=1"]
RL = ["--set", "iterations=1", "--set", "meta_batch=2", "--set", "trajectories=2",
      "--set", "test_tasks=2"]  # fmt: skip
BENCHMARK = ["--dataset", "sinusoid", "--shots", "5", "--strategies", "maml", "--budget", "3steps",
             "--tasks", "4", "--sweep-tasks", "4", "--sweep-shots", "5", "--label-noise", "",
             "--set", "threads=1", "--set", "val_tasks=4", "-q"]  # fmt: skip


def mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"mounting needs root and mount(8): {done.stderr.strip()}")


class Mounts:
    """The mounts a test made, undone in reverse when it ends (the temporary folder's cleanup
    cannot delete through a read-only mount)."""

    def __init__(self) -> None:
        self.points: list[Path] = []

    def tmpfs(self, point: Path, options: str) -> Path:
        point.mkdir(parents=True)
        mount("-t", "tmpfs", "-o", options, "tmpfs", str(point))
        self.points.append(point)
        return point

    def read_only(self, folder: Path, point: Path) -> Path:
        """``folder`` seen read-only at ``point``."""
        point.mkdir(parents=True)
        mount("--bind", str(folder), str(point))
        self.points.append(point)
        mount("-o", "remount,bind,ro", str(point))
        return point

    def remount(self, point: Path, options: str) -> None:
        mount("-o", f"remount,{options}", str(point))

    def undo(self) -> None:
        for point in reversed(self.points):
            subprocess.run(["umount", "-l", str(point)], check=False)


def _mounts() -> Iterator[Mounts]:
    if os.geteuid() != 0:
        pytest.skip("mounting a read-only or full file system needs root (CI runs as root)")
    made = Mounts()
    try:
        yield made
    finally:
        made.undo()


@pytest.fixture
def mounts() -> Iterator[Mounts]:
    yield from _mounts()


@pytest.fixture(scope="module")
def module_mounts() -> Iterator[Mounts]:
    yield from _mounts()


def one_sentence(result: subprocess.CompletedProcess[str], *words: str) -> str:
    """The command failed with exit 2 and one line ``error: …`` containing ``words``."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, module_mounts: Mounts) -> dict[str, Path]:
    """A supervised and an RL run, trained where they can be written, and a read-only view of
    each; a support and a query file for ``adapt``."""
    root = tmp_path_factory.mktemp("finished")
    run = run_cli("train", "--preset", "sinusoid-k5-maml", "--set", "steps=3", *SINE,
                  "--out", "run", "-q", cwd=root)  # fmt: skip
    assert run.returncode == 0, run.stderr
    rl = run_cli("rl", "train", "--env", "navigation2d", *RL, "--out", "rl", "-q", cwd=root)
    assert rl.returncode == 0, rl.stderr
    (root / "support.csv").write_text("x,label\n" + "".join(f"{x},{x / 2}\n" for x in range(6)))
    (root / "query.csv").write_text("x\n0.5\n1.5\n")
    return {
        "root": root,
        "run": module_mounts.read_only(root / "run", root / "ro-run"),
        "rl": module_mounts.read_only(root / "rl", root / "ro-rl"),
        "ro": module_mounts.tmpfs(root / "ro", "ro,size=1m"),
    }


# What each of the ten writing commands is given to write into the read-only places.
WRITING = {
    "train": ["train", "--preset", "sinusoid-k5-maml", "--set", "steps=3", *SINE,
              "--out", "ro/run", "-q"],
    "train --resume": ["train", "--resume", "--out", "ro-run", "-q"],
    "evaluate": ["evaluate", "ro-run", "--tasks", "4"],
    "adapt": ["adapt", "run", "--support", "support.csv", "--query", "query.csv",
              "--output", "ro/predictions.csv"],
    "quickstart": ["quickstart", "--out", "ro/quickstart", "--steps", "3", "--tasks", "4", "-q"],
    "benchmark": ["benchmark", *BENCHMARK, "--out", "ro/benchmark"],
    "search": ["search", "--dataset", "sinusoid", "--shots", "5", "--strategies", "maml",
               "--trials", "1", "--trial-budget", "3steps", "--budget", "3steps",
               "--val-tasks", "4", "--tasks", "4", "--set", "threads=1", "--out", "ro/search"],
    "tasks demo": ["tasks", "demo", "--dataset", "sinusoid", "--out", "ro/demo.png"],
    "presets copy": ["presets", "copy", "sinusoid-k5-maml", "ro/sinusoid.yaml"],
    "rl train": ["rl", "train", "--env", "navigation2d", *RL, "--out", "ro/rl", "-q"],
    "rl evaluate": ["rl", "evaluate", "ro-rl"],
}  # fmt: skip


@pytest.mark.parametrize("name", list(WRITING))
def test_every_writing_command_on_a_read_only_folder_says_so_in_one_sentence(
    finished: dict[str, Path], name: str
) -> None:
    root = finished["root"]
    before = {p: p.read_bytes() for p in (root / "run").rglob("*") if p.is_file()}
    result = run_cli(*WRITING[name], cwd=root, timeout=300)
    one_sentence(result, "read-only", "ro")
    # Nothing a read-only view shows was changed, and the writable original is untouched too.
    assert {p: p.read_bytes() for p in (root / "run").rglob("*") if p.is_file()} == before


def tensors(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "checkpoints" / "latest" / "model.safetensors")


def test_a_full_disk_stops_training_in_one_sentence_and_the_resume_with_room_ends_as_if_not(
    tmp_path: Path, mounts: Mounts
) -> None:
    steps = [*SINE, "--set", "steps=40", "--set", "val_every=5"]
    train = ["train", "--preset", "sinusoid-k5-maml", *steps, "-q", "--out"]
    assert run_cli(*train, "whole", cwd=tmp_path).returncode == 0
    # Room for the first checkpoints (best and latest, ~40 kB each), not for a third copy.
    disk = mounts.tmpfs(tmp_path / "disk", "size=120k")
    one_sentence(run_cli(*train, "disk/run", cwd=tmp_path), "disk is full", "disk/run")
    left = sorted(p.name for p in (disk / "run" / "checkpoints").iterdir())
    assert left == ["best", "latest"]  # the half-written one was removed, not left to fill it
    stopped = json.loads((disk / "run" / "checkpoints" / "latest" / "meta.json").read_text())
    assert 0 < stopped["step"] < 40

    mounts.remount(disk, "size=10m")
    resumed = run_cli("train", "--resume", "--out", "disk/run", "-q", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    whole, after = tensors(tmp_path / "whole"), tensors(disk / "run")
    assert whole.keys() == after.keys()
    assert all(torch.equal(whole[k], after[k]) for k in whole)  # params, Adam, generators
    lines = (disk / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [
        json.loads(line)["step"] for line in (tmp_path / "whole" / "metrics.jsonl").open()
    ]


def test_a_benchmark_on_a_full_disk_says_so_and_completes_when_run_again_with_room(
    tmp_path: Path, mounts: Mounts
) -> None:
    disk = mounts.tmpfs(tmp_path / "disk", "size=64k")
    one_sentence(run_cli("benchmark", *BENCHMARK, "--out", "disk/b", cwd=tmp_path), "disk is full")
    mounts.remount(disk, "size=10m")
    again = run_cli("benchmark", *BENCHMARK, "--out", "disk/b", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    whole = run_cli("benchmark", *BENCHMARK, "--out", "whole", cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr
    score = json.loads((disk / "b" / "results" / "maml.json").read_text())["result"]["score"]
    expected = json.loads((tmp_path / "whole" / "results" / "maml.json").read_text())
    assert score == expected["result"]["score"]


# --- memory ------------------------------------------------------------------------------------


def test_the_allocators_failures_are_one_sentence_and_other_errors_stay_bugs() -> None:
    with pytest.raises(RuntimeError) as cpu:
        torch.empty(10**13)  # 40 TB: PyTorch's own "can't allocate memory"
    message = fault_message(cpu.value)
    assert message is not None and message.startswith("Out of memory (one allocation of")
    assert "meta_batch" in message
    with pytest.raises(MemoryError) as python:
        bytearray(2**60)
    assert fault_message(python.value) is not None
    assert fault_message(RuntimeError("mat1 and mat2 shapes cannot be multiplied")) is None
    assert fault_message(ValueError("out of memory")) is None
    assert fault_message(OSError(errno.EROFS, "Read-only file system", "x")) is not None


def limited_memory() -> None:
    # Address space for Python, PyTorch and a small run, not for the model asked for below.
    resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, 3 * 2**30))


def test_a_run_too_large_for_memory_stops_in_one_sentence(tmp_path: Path) -> None:
    result = subprocess.run(
        command("train", "--preset", "sinusoid-k5-maml", "--set", "steps=2", *SINE,
                "--set", "meta_batch=100000", "--out", "run", "-q"),
        cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
        preexec_fn=limited_memory,
    )  # fmt: skip
    one_sentence(result, "Out of memory")


def pool_workers(parent: int) -> list[int]:
    """The worker processes ``parent`` has spawned (a pool's: not its resource tracker)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:  # not a process, or it ended
            continue
        if f"\nPPid:\t{parent}\n" in status and b"spawn_main" in cmdline:
            found.append(int(entry.name))
    return found


def test_a_killed_worker_is_one_sentence_and_a_workers_bug_stays_a_bug() -> None:
    from concurrent.futures.process import BrokenProcessPool

    killed = BrokenProcessPool("A process in the process pool was terminated abruptly")
    message = fault_message(killed)
    assert message is not None and message.startswith("A worker process was killed")
    bug = BrokenProcessPool("A result has failed to un-pickle")
    bug.__cause__ = RuntimeError("the worker's traceback")  # as the pool sets it
    assert fault_message(bug) is None


def test_a_benchmark_worker_killed_by_the_system_is_said_in_one_sentence(tmp_path: Path) -> None:
    # The kernel's out-of-memory killer sends SIGKILL, which a process cannot catch: the command
    # that started it must say what happened (it printed a BrokenProcessPool traceback).
    args = ["--dataset", "sinusoid", "--shots", "5", "--strategies", "maml,fomaml", "--budget",
            "10m", "--workers", "2", "--tasks", "4", "--sweep-tasks", "4", "--sweep-shots", "5",
            "--label-noise", "", "--set", "threads=1", "--set", "val_tasks=4", "-q"]  # fmt: skip
    process = subprocess.Popen(
        command("benchmark", *args, "--out", "b"), cwd=tmp_path, text=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (workers := pool_workers(process.pid)) and time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()[1]
            time.sleep(0.2)
        assert workers, "no worker process started within 2 minutes"
        os.kill(workers[0], signal.SIGKILL)
        _, stderr = process.communicate(timeout=120)
    finally:  # the whole group: a worker left behind would train for 10 minutes
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    one_sentence(
        subprocess.CompletedProcess(process.args, process.returncode, "", stderr),
        "A worker process was killed",
    )
    assert "--workers" in stderr and "run the same command again" in stderr
