"""The transfer baselines: pretraining on global classes, new heads on frozen features."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from metalearner.strategies import build
from metalearner.testing import toy_model, toy_source

NAMES = ("finetune", "baselinepp", "nearest-centroid")


@pytest.mark.parametrize("name", NAMES)
def test_pretraining_uses_the_global_classes_of_each_task(name: str) -> None:
    strategy = build(name, toy_model(), {"num_classes": 24})
    params = strategy.init_params(0)
    batch = toy_source().sample(2, generator=torch.Generator().manual_seed(0))
    grads, metrics = strategy.meta_grads(params, batch)
    assert 0 <= metrics["accuracy"] <= 1 and metrics["loss"] > 0
    # Renaming the per-task labels (0 <-> 2) while keeping each image's class changes nothing...
    perm = torch.tensor([2, 1, 0])
    renamed = dataclasses.replace(
        batch,
        support_y=perm[batch.support_y],
        query_y=perm[batch.query_y],
        classes=batch.classes[:, perm],  # perm is its own inverse
    )
    same, _ = strategy.meta_grads(params, renamed)
    assert all(torch.equal(same[k], grads[k]) for k in grads)
    # ...while the same labels pointing at other classes change the pretraining gradient.
    other, _ = strategy.meta_grads(
        params, dataclasses.replace(batch, classes=(batch.classes + 1) % 24)
    )
    assert not torch.equal(other["pretrain_head.weight"], grads["pretrain_head.weight"])
    if name != "baselinepp":  # a linear head: the rows of the batch's classes move most
        seen = set(batch.classes.flatten().tolist())
        top = grads["pretrain_head.weight"].norm(dim=1).topk(len(seen)).indices
        assert set(top.tolist()) == seen


@pytest.mark.parametrize("name", NAMES)
def test_adaptation_leaves_the_backbone_and_fits_the_support(name: str) -> None:
    strategy = build(name, toy_model(), {"num_classes": 24, "adapt_lr": 0.5, "eval_steps": 50})
    params = strategy.init_params(0)
    before = {k: v.clone() for k, v in params.items()}
    task = toy_source(ways=4).sample(1, generator=torch.Generator().manual_seed(3))
    predict = strategy.adapt(params, task.support_x[0], task.support_y[0])
    logits = predict(task.support_x[0])
    assert logits.shape == (4, 4)
    assert torch.equal(logits.argmax(1), task.support_y[0])  # the support is learned
    assert all(torch.equal(before[k], v) for k, v in params.items())


def test_the_heads_start_where_the_papers_put_them() -> None:
    task = toy_source(ways=3).sample(1, generator=torch.Generator().manual_seed(4))
    sx, sy = task.support_x[0], task.support_y[0]
    linear = build("finetune", toy_model(), {"num_classes": 24})
    zero = linear.adapt_steps(linear.init_params(0), sx, sy, steps=0)[0](task.query_x[0])
    assert torch.equal(zero, torch.zeros_like(zero))  # a zero linear head: no preference yet
    cosine = build("baselinepp", toy_model(), {"num_classes": 24})
    imprinted = cosine.adapt_steps(cosine.init_params(0), sx, sy, steps=0)[0](sx)
    assert torch.equal(imprinted.argmax(1), sy)  # imprinted class means: 1-shot support is right
    assert float(imprinted.max()) == pytest.approx(cosine.config.scale, rel=1e-5)
