"""Heads fitted on the frozen pretrained features without gradient steps, on ``finetune``'s run.

Each shares ``finetune``'s pretraining (``trains_as``: a benchmark trains the backbone once) and
replaces its SGD-trained linear head with one computed from the support features:

- ``nearest-centroid``: a query goes to the class whose mean support feature is most similar
  (cosine similarity times ``scale``: on features trained for a linear head, direction carries
  the class better than distance).
- ``simpleshot``: CL2N, then the nearest class mean (Wang et al. 2019). Every feature is centred
  on the mean feature of the training examples (``feature_mean``, computed with the backbone of
  the checkpoint when it was written: ``_Transfer.statistics``) and L2-normalised; a query goes
  to the class whose mean normalised support feature is nearest in Euclidean distance.
- ``rfs``: L2-normalised features and a multinomial logistic regression with an L2 penalty,
  fitted to convergence (Tian et al. 2020, whose code fits scikit-learn's
  ``LogisticRegression(C=1.0, solver="lbfgs", max_iter=1000, multi_class="multinomial")``;
  :func:`logistic_regression` minimises the same objective, tests/test_transfer_heads.py checks
  it against scikit-learn).

``simpleshot`` and ``rfs`` take no adaptation steps (``eval_steps`` is ``None``, as ProtoNets').

References:
    Chen, Liu, Kira, Wang and Huang, "A Closer Look at Few-shot Classification", ICLR 2019.
    Wang, Chao, Weinberger and van der Maaten, "SimpleShot: Revisiting Nearest-Neighbor
    Classification for Few-Shot Learning", arXiv:1911.04623, 2019.
    Tian, Wang, Krishnan, Tenenbaum and Isola, "Rethinking Few-Shot Image Classification: a
    Good Embedding Is All You Need?", ECCV 2020.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from metalearner.strategies.base import AdaptationGrid, Params
from metalearner.strategies.protonet import prototype_logits
from metalearner.strategies.registry import register
from metalearner.strategies.space import SearchParam, SpaceContext, log_range
from metalearner.strategies.transfer import MEAN, Head, TransferConfig, _Transfer


@register("nearest-centroid")
class NearestCentroid(_Transfer):
    """The Baseline's pretrained backbone; a query goes to the most similar class mean feature."""

    trains_as: ClassVar[str | None] = "finetune"  # same pretraining: a benchmark trains it once

    def adaptation_grid(self) -> AdaptationGrid | None:
        """Nothing to choose: the class means take no steps and no step size."""
        return None

    def _heads(self, params: Params, z: Tensor, y: Tensor, ways: int, steps: int) -> list[Head]:
        """The same head for every step count (there are no adaptation steps): scaled cosine
        similarity to each class's normalised mean support feature."""
        onehot = F.one_hot(y, ways).to(z.dtype)
        centroids = F.normalize((onehot.mT @ z) / onehot.sum(-2).unsqueeze(-1), dim=-1)

        def head(features: Tensor) -> Tensor:
            return self.config.scale * F.normalize(features, dim=-1) @ centroids.mT

        return [head] * (steps + 1)


class _FittedHead(_Transfer):
    """A head computed from a task's support features, on ``finetune``'s backbone; no steps."""

    trains_as: ClassVar[str | None] = "finetune"

    @property
    def eval_steps(self) -> int | None:
        """``None``: the head is computed, not trained by steps."""
        return None

    def adaptation_grid(self) -> AdaptationGrid | None:
        """Nothing to choose on validation tasks: there are no steps and no step size."""
        return None

    @classmethod
    def search_space(cls, config: TransferConfig, context: SpaceContext) -> list[SearchParam]:
        """The outer step size only: no head is trained by steps."""
        return super(_Transfer, cls).search_space(config, context)


@register("simpleshot")
class SimpleShot(_FittedHead):
    """Wang et al.'s SimpleShot (CL2N): centred, L2-normalised features; nearest class mean."""

    def _heads(self, params: Params, z: Tensor, y: Tensor, ways: int, steps: int) -> list[Head]:
        """The same head for every step count: negative squared Euclidean distances from the
        CL2N query features to each class's mean CL2N support feature, times ``scale`` (which
        changes no prediction; unscaled, the distances of unit vectors, at most 4 apart, would
        make a soft, uninformative cross-entropy)."""
        mean = params[MEAN].detach()
        support = cl2n(z, mean)

        def head(features: Tensor) -> Tensor:
            logits = prototype_logits(support, y, cl2n(features, mean), ways)
            return self.config.scale * logits

        return [head] * (steps + 1)


@register("rfs")
class RFS(_FittedHead):
    """Tian et al.'s RFS: L2-normalised features, a logistic regression fitted per task."""

    @classmethod
    def search_space(cls, config: TransferConfig, context: SpaceContext) -> list[SearchParam]:
        """The outer step size and the logistic regression's inverse penalty ``C``."""
        c = log_range("logistic_c", "strategy_config.logistic_c", config.logistic_c, 0.1, 10)
        return [*super().search_space(config, context), c]

    def _heads(self, params: Params, z: Tensor, y: Tensor, ways: int, steps: int) -> list[Head]:
        """The same head for every step count: the penalised multinomial logistic regression
        of the support's L2-normalised features (one per task of ``[T, S, F]``)."""
        weight, bias = logistic_regression(
            F.normalize(z, dim=-1), y, ways, c=self.config.logistic_c
        )

        def head(features: Tensor) -> Tensor:
            return self._head(F.normalize(features, dim=-1), weight, bias)

        return [head] * (steps + 1)


def cl2n(features: Tensor, mean: Tensor) -> Tensor:
    """SimpleShot's CL2N: ``(z - mean) / ‖z - mean‖₂`` for each feature ``[..., F]``.

    Example:
        >>> cl2n(torch.tensor([[3.0, 4.0]]), torch.tensor([0.0, 4.0]))
        tensor([[1., 0.]])
    """
    return F.normalize(features - mean, dim=-1)


def logistic_regression(
    z: Tensor, y: Tensor, ways: int, *, c: float, max_iter: int = 1000
) -> tuple[Tensor, Tensor]:
    """Multinomial logistic regression with an L2 penalty on the weights, fitted per task.

    Minimises ``Σ_i −log softmax(W z_i + b)[y_i] + ‖W‖² / (2C)`` over ``W`` ``[N, F]`` and the
    unpenalised ``b`` ``[N]``: scikit-learn's ``LogisticRegression(C=c)`` objective,
    multinomial. The loss is strictly convex in ``W``, so the weights are unique; ``b`` is unique
    up to a constant, and is returned centred (summing to 0), as scikit-learn's L-BFGS leaves it.

    The weights lie in the span of the task's features (the penalty removes any part outside),
    so the fit runs on the features' coordinates in an orthonormal basis of that span (a QR
    decomposition): ``min(S, F)`` coordinates instead of ``F``. L-BFGS (``torch.optim.LBFGS``,
    strong Wolfe line search, float64) fits all tasks at once, as one problem whose loss is the
    sum of theirs, with the gradient in closed form; it runs until the gradient vanishes or no
    step lowers the loss (about 20 iterations on 5-way tasks), at most ``max_iter`` iterations.

    Args:
        z: ``[..., S, F]`` features of one task's support set, or of several tasks'.
        y: ``[..., S]`` labels ``0..ways-1``.
        ways: N.
        c: the inverse of the penalty's strength (scikit-learn's ``C``).
        max_iter: L-BFGS iterations at most (scikit-learn's ``max_iter``; Tian et al.: 1000).

    Returns:
        ``(weight [..., N, F], bias [..., N])`` in ``z``'s dtype.

    References:
        Tian et al., "Rethinking Few-Shot Image Classification: a Good Embedding Is All You
        Need?", ECCV 2020. Liu and Nocedal, "On the limited memory BFGS method for large scale
        optimization", Mathematical Programming 45, 1989.
    """
    lead, (size, width) = z.shape[:-2], z.shape[-2:]
    feats = z.reshape(-1, size, width).to(torch.float64)
    tasks = feats.shape[0]
    basis, _ = torch.linalg.qr(feats.mT)  # [T, F, r]: orthonormal, spans each task's features
    x = feats @ basis  # [T, S, r]: the features' coordinates
    rank = x.shape[-1]
    onehot = F.one_hot(y.reshape(tasks, size), ways).to(torch.float64)
    split = tasks * ways * rank
    theta = torch.zeros(split + tasks * ways, dtype=torch.float64, device=z.device)
    theta.requires_grad_()  # a leaf for the optimiser; its gradient is set in closed form

    def unpack(flat: Tensor) -> tuple[Tensor, Tensor]:
        return flat[:split].view(tasks, ways, rank), flat[split:].view(tasks, ways)

    def closure() -> Tensor:
        a, b = unpack(theta.detach())
        log_p = (x @ a.mT + b.unsqueeze(-2)).log_softmax(-1)
        loss = -(onehot * log_p).sum() + a.square().sum() / (2 * c)
        residual = log_p.exp() - onehot  # d loss / d logits
        grad_a = residual.mT @ x + a / c
        theta.grad = torch.cat([grad_a.flatten(), residual.sum(-2).flatten()])
        return loss

    lbfgs = torch.optim.LBFGS(
        [theta], lr=1, max_iter=max_iter, tolerance_grad=1e-10, tolerance_change=0,
        line_search_fn="strong_wolfe",
    )  # fmt: skip
    lbfgs.step(closure)
    a, b = unpack(theta.detach())
    weight = (a @ basis.mT).reshape(*lead, ways, width)
    bias = (b - b.mean(-1, keepdim=True)).reshape(*lead, ways)
    return weight.to(z.dtype), bias.to(z.dtype)
