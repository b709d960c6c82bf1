"""Reptile: train on each task for a few steps, then move the initialisation towards the result.

References:
    Nichol, Achiam and Schulman, "On First-Order Meta-Learning Algorithms", arXiv:1803.02999,
    2018.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import grad

from metalearner import functional as fx
from metalearner.config.bounds import ADAPT_STEPS, META_BATCH, TASK_EXAMPLES
from metalearner.errors import ConfigError
from metalearner.functional import optim
from metalearner.nn.backbones import init_params
from metalearner.nn.layers import normalise_with
from metalearner.nn.stacked import stacked_call, stacks
from metalearner.strategies.base import Params, Predictor, StepwiseStrategy, resolve_batching
from metalearner.strategies.config import ConfigBase, check_range
from metalearner.strategies.registry import register
from metalearner.strategies.space import (
    SearchParam,
    SpaceContext,
    int_range,
    log_range,
    meta_batch_choices,
)
from metalearner.tasks.batch import ORDER, TaskBatch


@dataclass(frozen=True)
class ReptileConfig(ConfigBase):
    """Hyperparameters of Reptile; defaults are the paper's Omniglot (transductive) setting.

    Presets (``config.with_preset(name)``): ``miniimagenet`` (8 inner steps, eval batch 15) and
    ``sinusoid`` (SGD with step 0.02, minibatches of 10, outer step 0.1, one task per step).
    """

    inner_lr: float = 1e-3  # the inner optimiser's step size
    # k, inner steps per task while meta-training.
    inner_steps: Annotated[int, ADAPT_STEPS.at_least(1)] = 5
    inner_optimizer: Literal["sgd", "adam"] = "adam"
    # The paper's Adam has beta1 = 0: momentum hurt in the inner loop.
    adam_betas: tuple[float, float] = (0.0, 0.999)
    adam_eps: float = 1e-8
    # Examples per inner step, from the task's support + query data (None: all of them). Steps
    # take consecutive minibatches of the task's examples in a random order (the batch's
    # info["order"], drawn by the training loop), one epoch per ceil(n / size) steps.
    inner_batch_size: Annotated[int | None, TASK_EXAMPLES] = 10
    # Steps when adapting to a new task (on its support set).
    eval_steps: Annotated[int, ADAPT_STEPS] = 50
    # Examples per adaptation step (None: the support set).
    eval_batch_size: Annotated[int | None, TASK_EXAMPLES] = 5
    meta_lr: float = 1.0  # ε: outer SGD step size (annealed linearly to 0 in the paper)
    # Tasks per meta-step (read by the training loop).
    meta_batch_size: Annotated[int, META_BATCH] = 5
    batching: Literal["auto", "vmap", "loop"] = "auto"
    # With vmap: tasks per vmapped chunk, to bound memory.
    chunk_size: Annotated[int | None, META_BATCH] = None

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "omniglot": {},
        "miniimagenet": {"inner_steps": 8, "eval_batch_size": 15},
        "sinusoid": {
            "inner_optimizer": "sgd",
            "inner_lr": 0.02,
            "inner_steps": 5,
            "inner_batch_size": 10,
            "eval_steps": 32,
            "eval_batch_size": 10,
            "meta_lr": 0.1,
            "meta_batch_size": 1,
        },
    }

    def __post_init__(self) -> None:
        self.check_types()
        check_range(self, "inner_lr", low=0.0, strict=True)
        check_range(self, "adam_eps", low=0.0, strict=True)
        check_range(self, "meta_lr", low=0.0, strict=True)
        if not all(0.0 <= b < 1.0 for b in self.adam_betas):
            raise ConfigError(
                f"strategy_config.adam_betas {list(self.adam_betas)} must each lie in [0, 1)."
            )


@register("reptile")
class Reptile(StepwiseStrategy):
    """Reptile: the pseudo-gradient θ − φ̄ of k inner steps on each task's support + query data.

    ``meta_grads`` returns θ − mean_t φ_t, so an SGD step with learning rate ε gives
    θ + ε(φ̄ − θ), the paper's batched update. BatchNorm uses each minibatch's statistics (the
    paper's transductive setting); a prediction's BatchNorm takes the statistics of the queries
    predicted together, or in inductive mode the support set's (meta-training scores no query,
    so it is the same in both modes). Inner minibatches are drawn without replacement from each
    task's shuffled support + query examples, as in the paper's code; the shuffle is the batch's
    ``info["order"]`` (:meth:`TaskBatch.with_order`, drawn by ``meta_train`` every meta-step),
    so a meta-step stays a function of its arguments. The outer loop is plain SGD on the
    pseudo-gradient with a step annealed linearly to 0, as in the paper.

    References:
        Nichol, Achiam and Schulman, "On First-Order Meta-Learning Algorithms", 2018.
    """

    default_config: ClassVar[ReptileConfig] = ReptileConfig()
    config: ReptileConfig
    # Measured as for MAML.MEASURED (paper defaults: Adam, 5 steps, minibatches of 10): vmap
    # 0.28 s vs loop 0.31 s per meta-step on a 2-core CPU; CUDA: not measured yet.
    MEASURED: ClassVar[dict[str, str]] = {"cpu": "vmap", "cuda": "vmap"}
    # meta_grads reads info["order"]: the training loop draws it before the batch is shared out.
    ordered: ClassVar[bool] = True
    # ε(φ̄ − θ) is a step of SGD with step size ε on θ − φ̄; the paper anneals ε linearly.
    outer_optimizer: ClassVar[Literal["adam", "sgd"]] = "sgd"
    outer_schedule: ClassVar[Literal["constant", "cosine", "linear", "step"]] = "linear"

    def __init__(self, model: nn.Module, config: ReptileConfig) -> None:
        super().__init__(model, config)
        self._fn = fx.functional(model)

    @classmethod
    def search_space(cls, config: ReptileConfig, context: SpaceContext) -> list[SearchParam]:
        """The inner step size and steps, the outer step size and the meta-batch."""
        return [
            log_range("inner_lr", "strategy_config.inner_lr", config.inner_lr, 0.1, 10),
            int_range("inner_steps", "strategy_config.inner_steps", 1, 10),
            # The outer step is a fraction of the way from θ to φ̄: at most all of it.
            SearchParam("meta_lr", "optimizer.lr", "float", 0.1, 1.0),
            meta_batch_choices(context.meta_batch),
        ]

    def init_params(self, generator: torch.Generator | int) -> Params:
        """The model's parameters (Reptile has no other meta-parameters)."""
        return init_params(self.model, generator=generator)

    def meta_grads(self, params: Params, batch: TaskBatch) -> tuple[Params, dict[str, float]]:
        """The pseudo-gradient θ − φ̄ and the mean loss of the last inner step."""
        c = self.config
        if ORDER not in batch.info:
            # Called outside meta_train: a fixed shuffle still mixes the classes of each
            # minibatch, but only a fresh order per meta-step (with_order) makes them uniform.
            batch = batch.with_order(torch.Generator().manual_seed(0))
        x = torch.cat([batch.support_x, batch.query_x], dim=1)
        y = torch.cat([batch.support_y, batch.query_y], dim=1)
        keys = list(params)
        theta = {k: v.detach() for k, v in params.items()}

        def task(p: Params, xt: Tensor, yt: Tensor, order: Tensor) -> tuple[Tensor, ...]:
            phi, loss = self._train(
                p, xt, yt, steps=c.inner_steps, size=c.inner_batch_size, order=order
            )
            return (*(phi[k] for k in keys), loss)

        vectorize = resolve_batching(c.batching, device=x.device, measured=self.MEASURED)
        inputs = [x, y, batch.info[ORDER]]
        with torch.no_grad():  # no outer graph: Reptile never differentiates through φ
            out = fx.map_tasks(task, theta, inputs, vectorize=vectorize, chunk_size=c.chunk_size)
            grads = {k: theta[k] - phi.mean(0) for k, phi in zip(keys, out[:-1], strict=True)}
        return grads, {"loss": float(out[-1].mean())}

    def adapt_steps(
        self, params: Params, support_x: Tensor, support_y: Tensor, *, steps: int
    ) -> list[Predictor]:
        """The predictors of φ after 0, 1, ..., ``steps`` steps of the inner optimiser on the
        support set, from one pass (a step's minibatch and the optimiser's state do not depend
        on how many steps follow, so each is what adapting with that many steps gives)."""
        c = self.config
        path = [{k: v.detach() for k, v in params.items()}]
        with torch.no_grad():
            self._train(
                path[0],
                support_x,
                support_y,
                steps=steps,
                size=c.eval_batch_size,
                visit=path.append,
                eager=True,
            )

        reference = self.norm_reference(support_x)  # inductive: the support's statistics

        def predictor(phi: Params) -> Predictor:
            def forward(x: Tensor) -> Tensor:
                return self._fn(phi, x)

            def predict(x: Tensor) -> Tensor:
                with torch.no_grad():
                    return fx.predictions(normalise_with(forward, reference, x), support_y)

            return predict

        return [predictor(phi) for phi in path]

    def predict_tasks(
        self, params: Params, batch: TaskBatch, *, steps: Sequence[int] | None = None
    ) -> Tensor:
        """``[P, T, Q, N]``: :meth:`adapt_steps`' predictions for a batch of tasks at once.

        On the built-in conv4 network every task of the batch is adapted together
        (:func:`~metalearner.nn.stacked.stacked_call`: one grouped pass for all tasks, each with
        its own weights and optimiser state; a task's loss is its own mean, and the sum over
        tasks gives each task's weights the gradient it gets alone). The inner optimisers are
        elementwise, so each task takes the steps it takes alone, to float tolerance. Other
        models adapt one task at a time.
        """
        if not stacks(self.model) or batch.support_y.dtype.is_floating_point:
            return super().predict_tasks(params, batch, steps=steps)
        c = self.config
        counts = [self.eval_steps or 0] if steps is None else list(steps)
        tasks, n = batch.num_tasks, batch.support_x.shape[1]
        phi = {k: v.detach().expand(tasks, *v.shape).clone() for k, v in params.items()}
        inner = self._inner_optimizer()
        state = inner.init(phi)
        out: dict[int, Tensor] = {}
        for step in range(max(counts) + 1):
            if step in counts:
                reference = self.norm_reference(batch.support_x)  # inductive: the support's
                with torch.no_grad():
                    out[step] = normalise_with(
                        partial(stacked_call, self.model, phi), reference, batch.query_x, dim=1
                    )
            if step == max(counts):
                break
            rows = _support_slice(step, n, c.eval_batch_size)
            xb, yb = batch.support_x[:, rows], batch.support_y[:, rows]
            leaves = {k: v.requires_grad_() for k, v in phi.items()}
            with torch.enable_grad():
                logits = stacked_call(self.model, leaves, xb)
                losses = F.cross_entropy(logits.flatten(0, 1), yb.flatten(), reduction="none")
                loss = losses.view(yb.shape).mean(-1).sum()  # each task's mean, summed
                grads = torch.autograd.grad(loss, list(leaves.values()))
            with torch.no_grad():
                phi, state = inner.update(leaves, dict(zip(leaves, grads, strict=True)), state)
            phi = {k: v.detach() for k, v in phi.items()}
        return torch.stack([out[s] for s in counts])

    def _inner_optimizer(self) -> optim.Optimizer:
        """The inner loop's optimiser: SGD or the paper's Adam (β1 = 0)."""
        c = self.config
        if c.inner_optimizer == "sgd":
            return optim.sgd(c.inner_lr)
        return optim.adam(c.inner_lr, betas=c.adam_betas, eps=c.adam_eps)

    def _train(
        self,
        params: Params,
        x: Tensor,
        y: Tensor,
        *,
        steps: int,
        size: int | None,
        order: Tensor | None = None,
        visit: Callable[[Params], object] | None = None,
        eager: bool = False,
    ) -> tuple[Params, Tensor]:
        """``steps`` steps of the inner optimiser on one task; returns φ and the last loss
        (``visit`` is given φ after each step; ``eager``: never vmapped, see :func:`_eager_grad`).

        Minibatches of ``size`` examples: with ``order``, consecutive runs of it (wrapping
        round); without (adapting on a support set, which comes class by class), the strided
        slices ``x[c::chunks]``, which hold every class alike.
        """
        n = x.shape[0]
        inner = self._inner_optimizer()
        state = inner.init(params)
        loss = torch.zeros((), dtype=x.dtype if x.is_floating_point() else torch.float32)
        for step in range(steps):
            if order is not None and size is not None and size < n:
                rows = order[minibatch(step, size, n, device=x.device)]
                xb, yb = x[rows], y[rows]
            else:
                part = _support_slice(step, n, size)
                xb, yb = x[part], y[part]

            def batch_loss(p: Params, xb: Tensor = xb, yb: Tensor = yb) -> tuple[Tensor, Tensor]:
                value = fx.task_loss(self._fn(p, xb), yb)
                return value, value.detach()

            g, loss = (
                _eager_grad(batch_loss, params) if eager else grad(batch_loss, has_aux=True)(params)
            )
            params, state = inner.update(params, g, state)  # new dicts: θ is shared
            if visit is not None:
                visit(params)
        return params, loss


def _support_slice(step: int, n: int, size: int | None) -> slice:
    """The examples of adaptation step ``step`` among a support set's ``n`` (which comes class
    by class): all of them, or with minibatches of ``size`` the strided slice ``[c::chunks]``,
    which holds every class alike."""
    chunks = 1 if size is None or size >= n else -(-n // size)
    return slice(step % chunks, None, chunks)


def _eager_grad(
    loss: Callable[[Params], tuple[Tensor, Tensor]], params: Params
) -> tuple[Params, Tensor]:
    """``torch.func.grad(loss, has_aux=True)(params)`` for code that is never vmapped.

    Plain ``torch.autograd`` takes the same derivative, bitwise, without functorch's layer
    around every operation: adapting to a 5-way 1-shot Omniglot task for 50 steps takes 0.74 s
    on one CPU core instead of 1.02 s.
    """
    leaves = {k: v.detach().requires_grad_() for k, v in params.items()}
    with torch.enable_grad():
        value, aux = loss(leaves)
        found = torch.autograd.grad(value, list(leaves.values()), materialize_grads=True)
    return dict(zip(leaves, found, strict=True)), aux


def minibatch(step: int, size: int, n: int, *, device: torch.device | None = None) -> Tensor:
    """Positions of minibatch ``step`` in an order of ``n`` examples: ``size`` consecutive ones,
    wrapping round at the end, so that ``ceil(n / size)`` steps see every example."""
    return (torch.arange(size, device=device) + step * size) % n
