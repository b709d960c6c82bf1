"""The non-meta baselines every result is compared with: train from scratch, pretrain jointly.

Both adapt exactly as MAML does at test time (``eval_steps`` steps of SGD with step size
``adapt_lr`` on the support set, every weight), so a comparison isolates what meta-learning
adds: MAML learns θ for adaptation, ``pretrain`` learns θ for the average task, ``scratch``
learns nothing.

References:
    Finn et al., "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks", ICML 2017,
    section 5.1 and figure 2 (the "pretrained" baseline: one network trained on all tasks
    jointly, then fine-tuned on the K examples of a new task).
    Chen et al., "A Closer Look at Few-shot Classification", ICLR 2019 (why baselines matter).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar

import torch
from torch import Tensor, nn

from metalearner import functional as fx
from metalearner.config.bounds import ADAPT_STEPS, META_BATCH
from metalearner.errors import ConfigError
from metalearner.nn.backbones import init_params
from metalearner.nn.layers import per_task_kernels
from metalearner.strategies.base import Params, Predictor, StepwiseStrategy, TaskKind
from metalearner.strategies.config import ConfigBase, check_range
from metalearner.strategies.registry import register
from metalearner.strategies.space import SearchParam, SpaceContext, int_range, log_range
from metalearner.tasks.batch import TaskBatch


@dataclass(frozen=True)
class BaselineConfig(ConfigBase):
    """Hyperparameters of the baselines; defaults are the MAML paper's sinusoid setting."""

    adapt_lr: float = 0.01  # SGD step size when fine-tuning on a new task's support set
    eval_steps: Annotated[int, ADAPT_STEPS] = 10  # fine-tuning steps on a new task
    meta_lr: float = 1e-3  # pretrain: Adam's step size (read by the training loop)
    meta_batch_size: Annotated[int, META_BATCH] = 25  # tasks per step (read by the loop)

    def __post_init__(self) -> None:
        self.check_types()
        check_range(self, "adapt_lr", low=0.0, strict=True)
        check_range(self, "meta_lr", low=0.0, strict=True)


class _FineTuner(StepwiseStrategy):
    """Shared by both baselines: the model's own parameters, adapted by plain SGD."""

    default_config: ClassVar[BaselineConfig] = BaselineConfig()
    config: BaselineConfig

    def __init__(self, model: nn.Module, config: BaselineConfig) -> None:
        super().__init__(model, config)
        self._fn = fx.functional(model)

    def init_params(self, generator: torch.Generator | int) -> Params:
        """The model's freshly initialised parameters (no other meta-parameters)."""
        return init_params(self.model, generator=generator)

    def adapt_steps(
        self, params: Params, support_x: Tensor, support_y: Tensor, *, steps: int
    ) -> list[Predictor]:
        """The predictors after 0, 1, ..., ``steps`` steps of SGD on every weight on the
        support set, from one pass."""
        theta = {k: v.detach() for k, v in params.items()}
        with per_task_kernels():  # safe: nothing here is vmapped
            path = fx.adapt_path(
                self._fn, theta, support_x, support_y, steps=steps, lr=self.config.adapt_lr
            )

        reference = self.norm_reference(support_x)  # inductive: the support's statistics
        return fx.path_predictors(self._fn, path, support_y, reference=reference)


@register("scratch")
class Scratch(_FineTuner):
    """No meta-training: each new task is learned from the random initialisation alone.

    ``meta_grads`` returns zero gradients (an optimiser step leaves θ where it started) and
    reports the query loss after adaptation, so its training curve is the floor that every
    meta-learner must beat.
    """

    meta_learns: ClassVar[bool] = False

    @classmethod
    def search_space(cls, config: BaselineConfig, context: SpaceContext) -> list[SearchParam]:
        """Nothing is trained: only adaptation, its step size and steps, can be tuned."""
        return [
            log_range("adapt_lr", "strategy_config.adapt_lr", config.adapt_lr, 0.1, 30),
            int_range("eval_steps", "strategy_config.eval_steps", 1, 50),
        ]

    def meta_grads(self, params: Params, batch: TaskBatch) -> tuple[Params, dict[str, float]]:
        """Zero gradients; metrics of adapting the initialisation to each task."""
        losses, scores = [], []
        for t in range(batch.num_tasks):
            task = batch[t]
            predict = self.adapt(params, task.support_x[0], task.support_y[0])
            out = predict(task.query_x[0])
            losses.append(fx.task_loss(out, task.query_y[0]))
            if batch.is_classification:
                scores.append(fx.accuracy(out, task.query_y[0]))
        metrics = {"loss": float(torch.stack(losses).mean())}
        if scores:
            metrics["accuracy"] = float(torch.stack(scores).mean())
        return {k: torch.zeros_like(v) for k, v in params.items()}, metrics


@register("pretrain")
class Pretrain(_FineTuner):
    """One network trained on every task's points jointly, then fine-tuned on a new task.

    The meta-gradient is the plain gradient of the loss on all support and query points of the
    meta-batch, with no adaptation: θ fits the average task. This is the MAML paper's
    "pretrained" regression baseline; classification needs the global class labels and a head
    over all training classes (the ``finetune`` baseline of Chen et al. 2019), not this.
    """

    task_kinds: ClassVar[tuple[TaskKind, ...]] = ("regression",)

    def meta_grads(self, params: Params, batch: TaskBatch) -> tuple[Params, dict[str, float]]:
        """Gradient of the mean loss over every point of every task, θ unadapted."""
        if batch.is_classification:
            raise ConfigError(
                "Strategy 'pretrain' trains regression tasks jointly; per-task labels of "
                "classification episodes mean different classes in each task, so use a "
                "meta-learning strategy (maml, protonet, ...) for classification."
            )
        x = torch.cat([batch.support_x, batch.query_x], dim=1)
        y = torch.cat([batch.support_y, batch.query_y], dim=1)

        def objective(p: Params) -> tuple[Tensor, dict[str, Tensor]]:
            return fx.task_loss(self._fn(p, x.flatten(0, 1)), y.flatten()), {}

        return fx.meta_gradient(objective, params)
