"""Sinusoid tasks (MAML paper, section 5.1) and the TaskBatch container."""

from __future__ import annotations

import math

import pytest
import torch

from metalearner.errors import ConfigError
from metalearner.tasks import SinusoidTasks, TaskBatch, concat


def test_sinusoid_shapes_ranges_and_function() -> None:
    tasks = SinusoidTasks(shots=5, queries=7)
    b = tasks.sample(2000, generator=torch.Generator().manual_seed(0))
    assert b.support_x.shape == (2000, 5, 1) and b.support_y.shape == (2000, 5)
    assert b.query_x.shape == (2000, 7, 1) and b.query_y.shape == (2000, 7)
    assert b.classes is None and not b.is_classification
    amp, phase = b.info["amplitude"], b.info["phase"]
    assert float(amp.min()) >= 0.1 and float(amp.max()) <= 5.0
    assert float(phase.min()) >= 0.0 and float(phase.max()) <= math.pi
    assert float(b.support_x.min()) >= -5.0 and float(b.query_x.max()) <= 5.0
    # The ranges are covered, not a corner of them.
    assert float(amp.min()) < 0.2 and float(amp.max()) > 4.9
    assert float(phase.max()) > 3.0 and float(b.query_x.min()) < -4.9
    expected = amp[:, None] * torch.sin(b.support_x[..., 0] - phase[:, None])
    assert torch.allclose(b.support_y, expected)
    assert torch.allclose(SinusoidTasks.curve(b.info, b.query_x), b.query_y)


def test_sinusoid_determinism_and_fixed_sets() -> None:
    tasks = SinusoidTasks(shots=10, queries=10)
    a = tasks.sample(3, generator=torch.Generator().manual_seed(1))
    b = tasks.sample(3, generator=torch.Generator().manual_seed(1))
    c = tasks.sample(3, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a.support_y, b.support_y)
    assert not torch.equal(a.support_y, c.support_y)
    fixed = tasks.fixed(10, seed=3)
    assert len(fixed) == 10
    assert torch.equal(fixed.batch(2, 5).query_y, tasks.fixed(10, seed=3).tasks.query_y[2:5])


def test_sinusoid_rejects_bad_settings() -> None:
    with pytest.raises(ConfigError, match="shots >= 1"):
        SinusoidTasks(shots=0)
    with pytest.raises(ConfigError, match="amplitude range"):
        SinusoidTasks(amplitude=(5.0, 0.1))


def test_taskbatch_checks_slices_and_concatenates() -> None:
    b = SinusoidTasks(shots=3, queries=4).sample(5, generator=torch.Generator().manual_seed(0))
    one = b[2]
    assert one.num_tasks == 1 and torch.equal(one.query_y[0], b.query_y[2])
    assert b[-1].num_tasks == 1 and torch.equal(b[-1].query_y[0], b.query_y[4])
    joined = concat([b[:2], b[2:]])
    assert torch.equal(joined.support_x, b.support_x)
    assert torch.equal(joined.info["phase"], b.info["phase"])
    with pytest.raises(ValueError, match="support_y has 4 tasks"):
        TaskBatch(b.support_x, b.support_y[:4], b.query_x, b.query_y)
    with pytest.raises(ValueError, match="support size"):
        TaskBatch(b.support_x, b.support_y[:, :2], b.query_x, b.query_y)
