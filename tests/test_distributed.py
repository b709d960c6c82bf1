"""Meta-training split across processes (torch.distributed, gloo on loopback, launched by
torchrun): the same parameters as one process, one writer, resumable, clear errors."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from metalearner.config.presets import get_preset
from metalearner.errors import ConfigError
from metalearner.evaluation.evaluator import evaluate
from metalearner.runs.checkpoint import load_checkpoint
from metalearner.runs.config import load_config
from metalearner.runs.distributed import SINGLE, Group, from_environment
from metalearner.runs.experiment import build_experiment, seeded
from metalearner.runs.folder import read_metrics, read_run_config
from metalearner.strategies import available, get_strategy
from metalearner.tasks import SinusoidTasks
from metalearner.training.loop import meta_train
from omniglot_fixture import write_fake_omniglot

HERE = Path(__file__).resolve().parent
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
COMMON = ["meta_batch=4", "steps=4", "val_every=2", "val_tasks=5", "log_every=1", "threads=1"]
TABLE = [
    "data.dataset=folder",
    "data.ways=3",
    "data.shots=2",
    "data.queries=3",
    "data.meta_train_classes=24",
    "data.val_classes=4",
]
SINE = ["data.dataset=sinusoid", "data.shots=5", "data.queries=5"]
# Per-task BatchNorm in conv4: SGD, because Adam turns the float-rounding noise in the conv
# biases' gradients (exactly 0 in theory under BatchNorm) into full-size steps.
CONV = [
    "strategy=maml",
    "data.dataset=omniglot",
    "data.ways=3",
    "data.queries=2",
    "data.meta_train_classes=10",
    "data.val_classes=3",
    "model.width=8",
    "model.depth=2",
    "optimizer.name=sgd",
    "optimizer.lr=0.01",
    *COMMON,
]


def torchrun(
    *args: str, cwd: Path, timeout: float = 300, outputs: tuple[Path, ...] = ()
) -> subprocess.CompletedProcess[str]:
    def launch() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*TORCHRUN, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
            check=False,
        )  # fmt: skip

    done = launch()
    # Once in a few dozen launches on a loaded 2-core machine a rank dies in gloo's C++ threads
    # ("terminate called without an active exception", SIGABRT) before any of our code fails;
    # that launch is tried once more from scratch (its ``outputs`` removed). Any other failure,
    # and a second abort, still fail.
    if done.returncode != 0 and "terminate called without an active exception" in done.stderr:
        for path in outputs:
            shutil.rmtree(path, ignore_errors=True)
        done = launch()
    return done


def write_table(path: Path) -> Path:
    """30 classes x 10 rows of 6 features: a class mean plus noise."""
    g = torch.Generator().manual_seed(0)
    means = torch.randn(30, 6, generator=g) * 2
    lines = ["label," + ",".join(f"f{i}" for i in range(6))]
    for c in range(30):
        for row in means[c] + 0.5 * torch.randn(10, 6, generator=g):
            lines.append(f"c{c}," + ",".join(f"{v:.5f}" for v in row.tolist()))
    path.write_text("\n".join(lines) + "\n")
    return path


def jobs(tmp_path: Path) -> dict[str, list[str]]:
    """Overrides of a short run for every registered strategy (and conv4 with BatchNorm)."""
    table = write_table(tmp_path / "table.csv")
    out: dict[str, list[str]] = {}
    for name in available():
        kinds = get_strategy(name).task_kinds
        data = [*TABLE, f"data.path={table}"] if "classification" in kinds else SINE
        extra = ["strategy_config.train_ways=3"] if name == "protonet" else []
        out[name] = [f"strategy={name}", *data, *COMMON, *extra]
    out["conv4-maml"] = CONV
    return out


def params(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "checkpoints/latest").group("params")


def relative_error(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    diff = sum(float((a[k].double() - b[k].double()).square().sum()) for k in a)
    norm = sum(float(b[k].double().square().sum()) for k in b)
    return (diff / max(norm, 1e-30)) ** 0.5


def test_single_process_outside_torchrun() -> None:
    assert from_environment("cpu", environ={}) == SINGLE
    assert from_environment("cpu", environ={"WORLD_SIZE": "1"}) == SINGLE
    group = from_environment("cpu", environ={"WORLD_SIZE": "4", "RANK": "2", "LOCAL_RANK": "0"})
    assert (group.rank, group.world, group.backend) == (2, 4, "gloo") and not group.is_main


@pytest.mark.parametrize(
    ("backend", "device", "needle"),
    [("nccl", "cpu", "device=cuda"), ("mpi", "cpu", "Unknown backend 'mpi'")],
)
def test_an_unusable_backend_is_refused(backend: str, device: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        from_environment(device, backend, environ={"WORLD_SIZE": "2"})  # type: ignore[arg-type]


def test_a_meta_batch_must_divide_across_the_ranks() -> None:
    Group(rank=0, world=3).check_meta_batch(30)
    with pytest.raises(ConfigError, match="meta_batch 32 does not divide across 3 processes"):
        Group(rank=0, world=3).check_meta_batch(32)


def test_shares_are_contiguous_disjoint_and_cover_the_tasks() -> None:
    batch = SinusoidTasks(shots=2, queries=2).sample(6, generator=torch.Generator())
    shares = [Group(rank=r, world=3).share(batch) for r in range(3)]
    assert torch.equal(torch.cat([s.support_x for s in shares]), batch.support_x)
    fixed = SinusoidTasks(shots=2, queries=2).fixed(7, seed=3)
    parts = [Group(rank=r, world=3).tasks(fixed) for r in range(3)]
    assert [len(p) for p in parts] == [3, 2, 2]
    joined = torch.cat([p.batch(0, len(p)).support_x for p in parts])
    assert torch.equal(joined, fixed.batch(0, 7).support_x)


def test_two_processes_reach_the_parameters_of_one(tmp_path: Path) -> None:
    """Every registered strategy, and conv4 with per-task BatchNorm: 4 steps on 2 ranks."""
    write_fake_omniglot(tmp_path / "data")
    runs = jobs(tmp_path)
    spec = [
        {"overrides": o, "out": str(tmp_path / "two" / n), "data_dir": str(tmp_path / "data")}
        for n, o in runs.items()
    ]
    spec[0]["evaluate"] = 7  # test tasks split 4 + 3 and gathered
    (tmp_path / "jobs.json").write_text(json.dumps(spec))
    driver = str(HERE / "distributed_driver.py")
    done = torchrun(driver, "jobs.json", cwd=tmp_path, outputs=(tmp_path / "two",))
    assert done.returncode == 0, done.stderr[-3000:]
    for i, (name, overrides) in enumerate(runs.items()):
        one, two = tmp_path / "one" / name, tmp_path / "two" / name
        meta_train(load_config(overrides=overrides), one, quiet=True, data_dir=tmp_path / "data")
        error = relative_error(params(two), params(one))
        assert error < 1e-6, (name, error)
        if getattr(get_strategy(read_run_config(one).strategy), "meta_learns", True):
            start = initial_params(one, tmp_path / "data")
            assert relative_error(params(two), start) > 1e-4, name  # the equality is not idle
        lines_one, lines_two = read_metrics(one), read_metrics(two)
        assert [r["step"] for r in lines_two] == [1, 2, 3, 4], name  # written once per step
        for a, b in zip(lines_one, lines_two, strict=True):
            for key in ("loss", "val_accuracy", "val_mse"):
                if key in a:
                    assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-7), (name, key)
        if i == 0:
            alone = evaluate(one, num_tasks=7, steps=2, data_dir=tmp_path / "data")
            shared = json.loads((two / "eval.json").read_text())
            assert shared["score"]["mean"] == pytest.approx(alone.score.mean, abs=1e-9)
            assert [p["mean"] for p in shared["curve"]] == pytest.approx(
                [p.mean for p in alone.curve], abs=1e-9
            )


def initial_params(run: Path, data_dir: Path) -> dict[str, torch.Tensor]:
    """The parameters a run started from (its strategy's initialisation with its seed)."""
    cfg = read_run_config(run)
    return build_experiment(cfg, data_dir=data_dir).strategy.init_params(seeded(cfg.seed))


CLI_SINE = ["--preset", "sinusoid-k5-maml", "--set=meta_batch=4", "--set=val_tasks=5", "-q"]
SINGLE_SINE = ["meta_batch=4", "val_tasks=5", "steps=4", "val_every=2"]


def test_torchrun_train_and_evaluate_as_a_user_runs_them(tmp_path: Path) -> None:
    args = ["-m", "metalearner", "train", *CLI_SINE, "--set=steps=6", "--set=val_every=3"]
    done = torchrun(*args, "--set=log_every=1", "--out=r", cwd=tmp_path, outputs=(tmp_path / "r",))
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("best validation mse") == 1  # rank 0 alone reports
    assert [r["step"] for r in read_metrics(tmp_path / "r")] == [1, 2, 3, 4, 5, 6]
    saved = sorted(p.name for p in (tmp_path / "r/checkpoints").iterdir())
    assert saved == ["best", "latest"]  # no leftovers of a second writer's atomic renames
    scored = torchrun("-m", "metalearner", "evaluate", "r", "--tasks=5", cwd=tmp_path)
    assert scored.returncode == 0, scored.stderr[-3000:]
    assert scored.stdout.count("wrote r/eval.json") == 1  # rank 0 alone reports
    alone = evaluate(tmp_path / "r", num_tasks=5)
    assert json.loads((tmp_path / "r/eval.json").read_text())["line"] == alone.line()


def test_a_meta_batch_that_does_not_divide_is_one_sentence(tmp_path: Path) -> None:
    args = ["-m", "metalearner", "train", *CLI_SINE, "--set=meta_batch=5", "--out=r"]
    done = torchrun(*args, cwd=tmp_path)
    assert done.returncode != 0
    assert "meta_batch 5 does not divide across 2 processes" in done.stderr
    assert "metalearner/" not in done.stderr  # torchrun reports the failed ranks; no trace of ours
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_a_killed_torchrun_run_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    args = ["-m", "metalearner", "train", *CLI_SINE, "--set=steps=300", "--set=val_every=10"]
    whole = torchrun(*args, "--out=whole", cwd=tmp_path, outputs=(tmp_path / "whole",))
    assert whole.returncode == 0, whole.stderr[-3000:]
    launch = [*TORCHRUN, *args, "--out=killed"]
    proc = subprocess.Popen(launch, cwd=tmp_path, start_new_session=True, stderr=subprocess.DEVNULL)
    meta = tmp_path / "killed/checkpoints/latest/meta.json"
    deadline = time.monotonic() + 120
    while not meta.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both ranks, at once
    proc.wait()
    step = load_checkpoint(tmp_path / "killed/checkpoints/latest").meta["step"]
    assert step < 300, "the run finished before it could be killed; raise steps"
    resumed = torchrun("-m", "metalearner", "train", "--resume", "--out=killed", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.stdout.count("trained 300 steps") == 1
    a, b = params(tmp_path / "whole"), params(tmp_path / "killed")
    assert all(torch.equal(a[k], b[k]) for k in a)
    steps = [r["step"] for r in read_metrics(tmp_path / "killed")]
    assert steps == sorted(set(steps))


def test_two_nodes_meet_through_a_rendezvous(tmp_path: Path) -> None:
    """Two torchrun launchers (one per "machine", here both on loopback) form one run."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    node = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1"]
    node += ["--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-id=nodes"]
    train = ["-m", "metalearner", "train", *CLI_SINE, "--set=steps=4", "--set=val_every=2"]
    # On separate machines only the endpoint's machine hosts the rendezvous store. Here both
    # launchers are on that machine and would each try to host it (a race that can leave two
    # stores, each waiting for the other node), so the first is named the host.
    logs = [tmp_path / f"node{i}.err" for i in range(2)]
    launchers = []
    for i, log in enumerate(logs):
        with log.open("w") as err:  # a file, not a pipe: a full pipe would block a node
            host = f"--rdzv-conf=is_host={'true' if i == 0 else 'false'}"
            launch = [*node, host, *train, "--out=r"]
            launchers.append(subprocess.Popen(launch, cwd=tmp_path, stderr=err))
    for launcher, log in zip(launchers, logs, strict=True):
        launcher.wait(timeout=300)
        assert launcher.returncode == 0, log.read_text()[-3000:]
    alone = meta_train(
        load_config(base=get_preset("sinusoid-k5-maml").load(), overrides=SINGLE_SINE),
        tmp_path / "alone",
        quiet=True,
    )
    assert relative_error(params(tmp_path / "r"), alone.params) < 1e-6
