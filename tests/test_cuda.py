"""The GPU path: every meta-gradient on CUDA; a run trained, resumed and scored there.

Marked ``gpu`` and skipped where no CUDA device is present (CI has none); run them on a GPU
machine with ``pytest -m gpu``. Float32 on the GPU is compared with float64 on the CPU, with
TF32 switched off so that float32 means float32.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from metalearner.evaluation.evaluator import evaluate
from metalearner.runs.checkpoint import load_checkpoint
from metalearner.runs.config import load_config
from metalearner.runs.folder import read_run_config
from metalearner.strategies import available, build, get_strategy
from metalearner.testing import TOY_SETTINGS, image_batch, rel_error, tiny_conv
from metalearner.training.loop import meta_train

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
]
CUDA = torch.device("cuda")
SINE = ["data.dataset=sinusoid", "data.shots=5", "data.queries=5", "val_tasks=4", "meta_batch=4"]
SINE += ["strategy_config.inner_lr=0.01"]


@pytest.fixture(autouse=True)
def _true_float32() -> Iterator[None]:
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _batchings(name: str) -> tuple[str, ...]:
    """Both meta-batch paths where the strategy has them; the baselines have one ("own")."""
    return ("vmap", "loop") if "batching" in vars(get_strategy(name).default_config) else ("own",)


def _learns_image_classes(name: str) -> bool:
    """Has a meta-gradient on images: not regression-only (pretrain), not scratch's zeros."""
    kind = get_strategy(name)
    return "classification" in kind.task_kinds and kind.meta_learns


# Every strategy vmapped and looped (the baselines on their one path); the MAML family's
# compiled task (one graph per task, differentiated by AOTAutograd; Triton kernels on a GPU)
# once, for second-order MAML; the meta-step recorded as a CUDA graph ("+ graph") for every
# member of the family with the loop, and for MAML with vmap and with the compiled loop.
CASES = [(n, b) for n in available() if _learns_image_classes(n) for b in _batchings(n)]
CASES += [("maml", "compiled")]
CASES += [(n, "loop + graph") for n in ("maml", "fomaml", "metasgd", "anil")]
CASES += [("maml", "vmap + graph"), ("maml", "compiled + graph")]


@pytest.mark.parametrize(("name", "batching"), CASES)
def test_meta_gradients_on_cuda_equal_the_cpu_float64_reference(name: str, batching: str) -> None:
    # Reptile's paper default (Adam on tiny gradients) is sign-like, so rounding flips updates:
    # the toy settings (full-batch SGD) compare float32 with float64 meaningfully.
    settings = dict(TOY_SETTINGS.get(name, {}))
    if batching != "own":
        settings["batching"] = batching.removesuffix(" + graph")
    reference = build(name, tiny_conv(), settings)  # on the CPU: never with a CUDA graph
    if batching.endswith(" + graph"):
        settings["cuda_graph"] = True
    params64 = reference.init_params(0)
    batch64 = image_batch(tasks=4)
    expected, _ = reference.meta_grads(params64, batch64)

    on_gpu = build(name, tiny_conv(dtype=torch.float32), settings)
    params = {k: v.float().to(CUDA) for k, v in params64.items()}
    batch = dataclasses.replace(
        batch64, support_x=batch64.support_x.float(), query_x=batch64.query_x.float()
    ).to(CUDA)
    grads, metrics = on_gpu.meta_grads(params, batch)

    assert all(g.device.type == "cuda" for g in grads.values())
    assert torch.isfinite(torch.tensor(metrics["loss"]))
    # One relative error over all parameters: the conv biases' true gradient is 0 under
    # BatchNorm, so their own relative error is rounding over rounding.
    want = torch.cat([g.flatten() for g in expected.values()])
    got = torch.cat([grads[k].cpu().double().flatten() for k in expected])
    assert float((got - want).norm() / want.norm()) < 1e-4


@pytest.mark.parametrize(
    ("batching", "precision", "batch_on"),
    [
        ("loop", "float32", "cuda"),
        ("loop", "float32", "cpu"),  # what a run hands over (MAML.host_batches)
        ("loop", "bfloat16", "cpu"),
        ("vmap", "float32", "cpu"),
    ],
)
def test_cuda_graph_replays_give_each_call_its_own_meta_gradient(
    batching: str, precision: str, batch_on: str
) -> None:
    # The CUDA graph is recorded on the first call with each parameter set (read in place);
    # later calls copy new tasks into its inputs (from the host where they are on the CPU).
    # Each result must be that call's own (the eager path's, same kernels), and an earlier
    # result must survive the next replay, which overwrites the graph's outputs.
    net = tiny_conv(dtype=torch.float32)
    settings = {"inner_steps": 2, "precision": precision, "batching": batching}
    loop = build("maml", net, settings)
    graphed = build("maml", net, {**settings, "cuda_graph": True})
    assert graphed.host_batches and not loop.host_batches
    first = {k: v.to(CUDA) for k, v in loop.init_params(0).items()}
    second = {k: v + 0.05 * torch.randn_like(v) for k, v in first.items()}
    batches = [image_batch(tasks=4, dtype=torch.float32, seed=s).to(batch_on) for s in (0, 1)]
    calls = [(first, batches[0]), (first, batches[1]), (second, batches[0]), (second, batches[1])]
    results = [graphed.meta_grads(p, b) for p, b in calls]
    # The same kernels; only reductions that use atomics may add in another order, which
    # bfloat16 rounds coarsely. Another call's result would be off by ~1.
    tol = 1e-5 if precision == "float32" else 2e-2
    for (p, b), (grads, metrics) in zip(calls, results, strict=True):
        want, want_metrics = loop.meta_grads(p, b.to(CUDA))
        assert rel_error(grads, want) < tol
        assert metrics["loss"] == pytest.approx(want_metrics["loss"], rel=tol)
    assert rel_error(results[0][0], results[1][0]) > 0.1  # the tasks did change


def test_a_cuda_graph_reads_the_parameters_where_they_are_after_an_in_place_step() -> None:
    # The recording reads the parameters in place (no copy of them on the GPU): an in-place
    # update between calls, as an optimizer makes, must show in the next replay's result.
    net = tiny_conv(dtype=torch.float32)
    loop = build("maml", net, {"batching": "loop"})
    graphed = build("maml", net, {"batching": "loop", "cuda_graph": True})
    params = {k: v.to(CUDA) for k, v in loop.init_params(0).items()}
    batch = image_batch(tasks=3, dtype=torch.float32)
    before, _ = graphed.meta_grads(params, batch)
    with torch.no_grad():
        for k, g in before.items():
            params[k].sub_(0.5 * g)
    after, _ = graphed.meta_grads(params, batch)
    want, _ = loop.meta_grads(params, batch.to(CUDA))
    assert rel_error(after, want) < 1e-5
    assert rel_error(after, before) > 1e-3  # the step did change the meta-gradient
    assert graphed._graphed is not None and len(graphed._graphed._recorded) == 1  # replayed


def test_a_run_with_a_cuda_graph_trains_to_the_parameters_of_one_without(tmp_path: Path) -> None:
    # In a run the graph is recorded at the first meta-step and replayed after it, reading the
    # parameters the optimizer stepped in place and each step's new tasks copied in. Plain
    # SGD: its step is proportional to the gradient, so one taken at stale parameters would
    # show (Adam's near-sign-sized steps could hide it).
    runs = {}
    for graph in ("false", "true"):
        overrides = [*SINE, "steps=6", "val_every=3", "device=cuda"]
        overrides += ["optimizer.name=sgd", "optimizer.lr=0.01"]
        overrides += ["strategy_config.batching=loop", f"strategy_config.cuda_graph={graph}"]
        cfg = load_config(overrides=overrides)
        runs[graph] = meta_train(cfg, tmp_path / graph, quiet=True).params
    for k, v in runs["false"].items():
        assert torch.allclose(runs["true"][k], v, rtol=1e-4, atol=1e-6), k


def test_a_run_trains_stops_resumes_and_scores_on_cuda(tmp_path: Path) -> None:
    cfg = load_config(overrides=[*SINE, "steps=9", "val_every=3", "device=cuda"])
    whole = meta_train(cfg, tmp_path / "whole", quiet=True)
    meta_train(cfg, tmp_path / "part", quiet=True, stop_at=5)
    resumed = meta_train(read_run_config(tmp_path / "part"), tmp_path / "part", resume=True)
    assert resumed.step == 9
    for k, v in whole.params.items():
        assert torch.equal(v, resumed.params[k]), k  # deterministic kernels, restored RNGs
    assert load_checkpoint(tmp_path / "whole/checkpoints/latest").meta["device"] == "cuda"

    on_gpu = evaluate(tmp_path / "whole", num_tasks=20, curve=False)
    on_cpu = evaluate(tmp_path / "whole", num_tasks=20, curve=False, device="cpu")
    assert on_gpu.score.mean == pytest.approx(on_cpu.score.mean, rel=1e-4)


def test_bfloat16_on_cuda_trains_to_a_finite_loss(tmp_path: Path) -> None:
    overrides = [*SINE, "steps=6", "val_every=3", "device=cuda", "precision=bfloat16"]
    cfg = load_config(overrides=overrides)
    result = meta_train(cfg, tmp_path / "run", quiet=True)
    assert result.best is not None and result.best["score"] < float("inf")


def test_the_cli_trains_on_cuda_and_scores_the_run_on_the_cpu(tmp_path: Path) -> None:
    args = ["--preset", "sinusoid-k5-maml", "--set=steps=4", "--set=val_every=2"]
    args += ["--set=val_tasks=4", "--set=device=cuda", "--out=r"]
    train = subprocess.run(
        [sys.executable, "-m", "metalearner", "train", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert train.returncode == 0, train.stderr
    scored = subprocess.run(
        [sys.executable, "-m", "metalearner", "evaluate", "r", "--tasks=8", "--device=cpu"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert scored.returncode == 0, scored.stderr
    assert "(8 tasks)" in scored.stdout
