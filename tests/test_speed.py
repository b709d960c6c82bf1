"""Opt-in speed paths: MAML's compiled task and CUDA graph, ProtoNets' compiled episodes,
bfloat16 autocast (MAML, ProtoNets).

The CUDA graph itself is checked on a GPU (tests/test_cuda.py); here, that what it records
reads no value from the device, and that a CPU is refused.
"""

from __future__ import annotations

import pytest
import torch

from metalearner import functional as fx
from metalearner.errors import ConfigError
from metalearner.strategies import build
from metalearner.strategies.protonet import prototype_logits
from metalearner.testing import image_batch, rel_error, tiny_conv


def test_bfloat16_precision_is_autocast_and_close() -> None:
    net, batch = tiny_conv(dtype=torch.float32), image_batch(tasks=2, dtype=torch.float32)
    params = build("maml", net).init_params(0)
    full, _ = build("maml", net, {"batching": "loop"}).meta_grads(params, batch)
    half, metrics = build("maml", net, {"precision": "bfloat16"}).meta_grads(params, batch)
    assert all(g.dtype == torch.float32 for g in half.values())
    assert 0 < rel_error(half, full) < 0.2  # bfloat16 keeps ~3 significant digits
    assert torch.isfinite(torch.tensor(metrics["loss"]))


def test_bfloat16_protonet_keeps_prototypes_and_distances_in_float32() -> None:
    """Only the backbone runs in bfloat16: distances of a few hundred in bfloat16 would be
    rounded by whole units, and the loss would learn from the rounding."""
    net = tiny_conv(dtype=torch.float32)
    batch = image_batch(tasks=1, shots=3, dtype=torch.float32)
    proto = build("protonet", net)
    feats = fx.subset(proto.init_params(0), "features.")
    sx, sy, qx = batch.support_x[0], batch.support_y[0], batch.query_x[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z = fx.functional(net.features)(feats, torch.cat([sx, qx]))
        logits = proto.logits(feats, sx, sy, qx, 3)
    z = z.double()
    expected = prototype_logits(z[: len(sx)], sy, z[len(sx) :], 3)
    assert logits.dtype == torch.float32
    assert torch.allclose(logits.double(), expected, rtol=1e-6, atol=1e-6)


def test_unknown_precision_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="precision must be one of"):
        build("maml", tiny_conv(), {"precision": "float16"})


@pytest.mark.slow  # compiling takes tens of seconds on a CPU
@pytest.mark.parametrize("name", ["maml", "fomaml", "metasgd", "anil"])
def test_compiled_task_gives_the_loops_meta_gradient(name: str) -> None:
    net, batch = tiny_conv(), image_batch(tasks=3)
    settings = {"inner_steps": 2}
    params = build(name, net, settings).init_params(0)
    loop, _ = build(name, net, {**settings, "batching": "loop"}).meta_grads(params, batch)
    compiled = build(name, net, {**settings, "batching": "compiled"})
    for _ in range(2):  # compiles, then reuses the compiled kernels
        grads, _ = compiled.meta_grads(params, batch)
        assert rel_error(grads, loop) < 1e-10


@pytest.mark.slow  # compiling takes tens of seconds on a CPU
def test_compiled_protonet_episodes_give_the_loops_meta_gradient() -> None:
    net, batch = tiny_conv(), image_batch(tasks=2, shots=2)
    loop = build("protonet", net, {"batching": "loop"})
    params = loop.init_params(0)
    expected, expected_metrics = loop.meta_grads(params, batch)
    compiled = build("protonet", net, {"batching": "compiled"})
    for _ in range(2):  # compiles, then reuses the compiled kernels
        grads, metrics = compiled.meta_grads(params, batch)
        assert rel_error(grads, expected) < 1e-10
        assert metrics == pytest.approx(expected_metrics, rel=1e-12)


def test_compiled_protonet_episodes_are_refused_with_inductive_batchnorm() -> None:
    compiled = build("protonet", tiny_conv(), {"batching": "compiled"}, norm="inductive")
    with pytest.raises(ConfigError, match=r"transductively only; with model\.norm=inductive"):
        compiled.meta_grads(compiled.init_params(0), image_batch(tasks=1))


def test_a_cuda_graph_is_refused_on_a_cpu_in_one_sentence() -> None:
    net, batch = tiny_conv(), image_batch(tasks=2)
    graphed = build("maml", net, {"cuda_graph": True})
    with pytest.raises(ConfigError, match=r"needs device 'cuda'; set strategy_config.cuda_graph"):
        graphed.meta_grads(graphed.init_params(0), batch)


@pytest.mark.parametrize("batching", ["loop", "vmap"])
@pytest.mark.parametrize("name", ["maml", "fomaml", "metasgd", "anil"])
def test_the_meta_step_a_cuda_graph_records_reads_no_value_from_the_device(
    name: str, batching: str
) -> None:
    # A CUDA graph cannot record a step that waits for a value (.item(), float(t), a branch on
    # a tensor); on the "meta" device, which has shapes but no values, each of these raises.
    strategy = build(name, tiny_conv(dtype=torch.float32), {"batching": batching})
    params = {k: v.to("meta") for k, v in strategy.init_params(0).items()}
    batch = image_batch(tasks=3, dtype=torch.float32).to("meta")
    tensors = batch.support_x, batch.support_y, batch.query_x, batch.query_y
    grads, metrics = strategy._meta_grads(params, *tensors)  # what cuda_graph records
    assert grads.keys() == params.keys() and metrics.keys() == {"loss", "accuracy"}
    assert all(g.shape == params[k].shape for k, g in grads.items())
    with pytest.raises(RuntimeError, match="meta tensors"):
        float(metrics["loss"])  # the check has teeth: reading a value does raise here


def test_loop_metrics_are_the_mean_over_tasks_and_equal_vmaps() -> None:
    # The loop keeps metrics on the device until the end of the meta-batch (one wait for a GPU,
    # not one per task); they must still be the mean of every task's own, accuracy included.
    net, batch = tiny_conv(), image_batch(tasks=3)
    loop = build("maml", net, {"batching": "loop"})
    params = loop.init_params(0)
    _, metrics = loop.meta_grads(params, batch)
    _, vmapped = build("maml", net, {"batching": "vmap"}).meta_grads(params, batch)
    alone = [loop.meta_grads(params, batch[t : t + 1])[1] for t in range(3)]
    assert metrics.keys() == vmapped.keys() == {"loss", "accuracy"}
    for k in metrics:
        assert metrics[k] == pytest.approx(sum(m[k] for m in alone) / 3, rel=1e-12)
        assert metrics[k] == pytest.approx(vmapped[k], rel=1e-12)
