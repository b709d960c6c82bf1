"""Your own learning strategy: a subclass, a name, the shipped contract, then train it by name.

The strategy is cosine prototypes with a learned temperature: a query's logit for class k is
``s · cos(f(x), c_k)`` with ``c_k`` the class's mean embedding, and the scale ``s`` learned with
the backbone (as Baseline++ and later metric-learning papers do). It declares what it learns
(classification only), checks itself against ``metalearner.testing``'s contract, and is then
meta-trained and scored by the package's own training loop, as any built-in strategy is.

Run: ``python examples/your_own_strategy.py [--steps 300]``

References:
    Snell et al., "Prototypical Networks for Few-shot Learning", NeurIPS 2017.
    Chen et al., "A Closer Look at Few-shot Classification", ICLR 2019 (cosine logits).
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metalearner import ConfigError
from metalearner import functional as fx
from metalearner.evaluation import evaluate
from metalearner.nn import init_params
from metalearner.runs import load_config
from metalearner.strategies import Params, Predictor, Strategy, TaskKind, register
from metalearner.tasks import TaskBatch
from metalearner.testing import check_strategy
from metalearner.training import meta_train


@dataclass(frozen=True)
class CosineConfig:
    """Its settings; ``meta_lr`` and ``meta_batch_size`` are read as every strategy's."""

    scale: float = 10.0  # the temperature's starting value
    meta_lr: float = 1e-3
    meta_batch_size: int = 4


@register("cosine-prototypes")
class CosinePrototypes(Strategy):
    """Prototypes compared by cosine similarity, scaled by a learned temperature."""

    default_config: ClassVar[CosineConfig] = CosineConfig()
    task_kinds: ClassVar[tuple[TaskKind, ...]] = ("classification",)
    config: CosineConfig

    def __init__(self, model: nn.Module, config: CosineConfig) -> None:
        super().__init__(model, config)
        self._embed = fx.functional(model.features)  # the backbone, without the head

    def init_params(self, generator: torch.Generator | int) -> Params:
        params = init_params(self.model, generator=generator)
        params = {k: v for k, v in params.items() if k.startswith("features.")}
        like = next(iter(params.values()))
        return params | {"log_scale": torch.tensor(self.config.scale, dtype=like.dtype).log()}

    def meta_grads(self, params: Params, batch: TaskBatch) -> tuple[Params, dict[str, float]]:
        if batch.ways is None:
            raise ConfigError("cosine-prototypes classifies: give it tasks with class labels.")
        ways = batch.ways

        def objective(p: Params) -> tuple[Tensor, dict[str, Tensor]]:
            logits = torch.stack([
                self._logits(p, batch.support_x[t], batch.support_y[t], batch.query_x[t], ways)
                for t in range(batch.num_tasks)
            ])  # fmt: skip
            return fx.task_loss(logits, batch.query_y), {
                "accuracy": fx.accuracy(logits, batch.query_y)
            }

        return fx.meta_gradient(objective, params)

    def adapt(
        self, params: Params, support_x: Tensor, support_y: Tensor, *, steps: int | None = None
    ) -> Predictor:
        theta = {k: v.detach() for k, v in params.items()}
        ways = int(support_y.max()) + 1

        def predict(x: Tensor) -> Tensor:
            with torch.no_grad():
                return self._logits(theta, support_x, support_y, x, ways)

        return predict

    def _logits(self, p: Params, sx: Tensor, sy: Tensor, qx: Tensor, ways: int) -> Tensor:
        z = self._embed(fx.subset(p, "features."), torch.cat([sx, qx]))  # one BatchNorm batch
        onehot = F.one_hot(sy, ways).to(z.dtype)
        prototypes = (onehot.T @ z[: len(sy)]) / onehot.sum(0)[:, None]
        cosine = F.normalize(z[len(sy) :], dim=-1) @ F.normalize(prototypes, dim=-1).T
        return p["log_scale"].exp() * cosine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="meta-training steps")
    steps = parser.parse_args().steps

    failed = check_strategy("cosine-prototypes")  # the contract every built-in strategy passes
    print("contract:", "passed" if not failed else f"failed: {failed}")
    if failed:
        raise SystemExit(1)

    # 5-way 1-shot tasks from a folder of images drawn here (your own folder in practice).
    with tempfile.TemporaryDirectory() as tmp:
        images = Path(tmp) / "images"
        _draw(images)
        cfg = load_config(
            overrides=[
                "strategy=cosine-prototypes", "data.dataset=folder", f"data.path={images}",
                "data.ways=5", "data.shots=1", "data.queries=3", "data.meta_train_classes=14",
                "data.val_classes=5", f"steps={steps}", "val_every=100", "val_tasks=20",
                "test_tasks=100", "model.width=16",
            ]
        )  # fmt: skip
        run = Path(tmp) / "run"
        meta_train(cfg, run, quiet=True)
        result = evaluate(run, curve=False)
        print(f"5-way 1-shot on held-out classes: {result.line()}")


def _draw(folder: Path, classes: int = 20, per_class: int = 6) -> None:
    """Class ``c``: a noisy 12x12 pattern of its own, scaled up to 28x28 grey PNGs."""
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    for c in range(classes):
        base = torch.rand(12, 12, generator=g) > 0.6
        (folder / f"c{c:02d}").mkdir(parents=True)
        for i in range(per_class):
            flip = torch.rand(12, 12, generator=g) < 0.08
            pixels = ((base ^ flip).to(torch.uint8) * 255).numpy()
            Image.fromarray(pixels).resize((28, 28)).save(folder / f"c{c:02d}" / f"{i}.png")


if __name__ == "__main__":
    main()
