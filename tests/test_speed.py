"""The opt-in speed paths of the MAML family: a compiled task and bfloat16 autocast."""

from __future__ import annotations

import pytest
import torch

from metalearner.errors import ConfigError
from metalearner.strategies import build
from strategy_contract import image_batch, rel_error, tiny_conv


def test_bfloat16_precision_is_autocast_and_close() -> None:
    net, batch = tiny_conv(dtype=torch.float32), image_batch(tasks=2, dtype=torch.float32)
    params = build("maml", net).init_params(0)
    full, _ = build("maml", net, {"batching": "loop"}).meta_grads(params, batch)
    half, metrics = build("maml", net, {"precision": "bfloat16"}).meta_grads(params, batch)
    assert all(g.dtype == torch.float32 for g in half.values())
    assert 0 < rel_error(half, full) < 0.2  # bfloat16 keeps ~3 significant digits
    assert torch.isfinite(torch.tensor(metrics["loss"]))


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
