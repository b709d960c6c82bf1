"""The functional core: parameters as dicts, one pure inner loop, and a meta-batch runner.

A model is used as a pure function ``fn(params, x)`` (``torch.func.functional_call``): the inner
loop builds new parameter dicts and never writes into a module, so second-order MAML is the
plain derivative of the outer loss through the inner updates, and a meta-batch can be vmapped.

Inner gradients come from ``torch.func.grad``, which works both inside ``torch.func.vmap`` and
under ordinary autograd, or, in eager per-task code, from ``torch.autograd.grad`` (the same
derivative, cheaper there); the outer gradient is ``torch.autograd.grad`` of the mean query loss,
or, for a per-task loop, each task's ``backward`` into one set of leaves' ``.grad``.

References:
    Finn et al., "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks", ICML 2017.
    Li et al., "Meta-SGD: Learning to Learn Quickly for Few-Shot Learning", 2017.
    Raghu et al., "Rapid Learning or Feature Reuse? Towards Understanding the Effectiveness of
    MAML", ICLR 2020.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from metalearner.errors import ConfigError
from metalearner.functional import optim
from metalearner.nn.layers import normalise_with, per_task_eager, per_task_kernels
from metalearner.nn.pure import pure

Params = dict[str, Tensor]
ModelFn = Callable[[Params, Tensor], Tensor]
LossFn = Callable[[Tensor, Tensor], Tensor]
LearningRate = optim.LearningRate
TaskFn = Callable[..., tuple[Tensor, ...]]


def params_of(module: nn.Module) -> Params:
    """The module's parameters as a dict of detached copies (``name -> tensor``)."""
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def buffers_of(module: nn.Module) -> Params:
    """The module's buffers as a dict of detached copies."""
    return {k: v.detach().clone() for k, v in module.named_buffers()}


def functional(module: nn.Module, buffers: Params | None = None) -> ModelFn:
    """``module`` as a pure function ``fn(params, x)`` of a parameter dict.

    Any module works, stock BatchNorm and dropout layers included: where it has them, a copy
    that shares its tensors runs instead (:func:`metalearner.nn.pure.pure_copy`), in which
    BatchNorm normalises with the statistics of the batch it is given (or, inside
    :func:`metalearner.nn.layers.reference_statistics`, a reference set's) and never reads nor
    updates its running statistics, and dropout is off. ``module`` itself is left as it is.

    Example:
        >>> fn = functional(net)
        >>> logits = fn(params_of(net), x)
    """
    module = pure(module)
    fixed = buffers if buffers is not None else buffers_of(module)
    # The module stays on the host while the parameters move to the run's device; buffers the
    # forward reads (a pretrained encoder's position ids) follow the inputs, copied once per
    # device.
    on_device: dict[torch.device, Params] = {}

    def fn(params: Params, x: Tensor) -> Tensor:
        placed = on_device.get(x.device)
        if placed is None:
            placed = on_device[x.device] = {k: v.to(x.device) for k, v in fixed.items()}
        out: Tensor = functional_call(module, (params, placed), (x,), strict=True)
        return out

    return fn


def subset(params: Params, prefix: str) -> Params:
    """The entries whose name starts with ``prefix``, with the prefix removed."""
    return {k[len(prefix) :]: v for k, v in params.items() if k.startswith(prefix)}


def task_loss(output: Tensor, target: Tensor) -> Tensor:
    """Cross-entropy for integer labels, mean squared error for real targets.

    Args:
        output: ``[..., N]`` logits, or ``[..., 1]`` / ``[...]`` regression outputs.
        target: ``[...]`` labels (integer dtype) or real targets.
    """
    if target.dtype.is_floating_point:
        return F.mse_loss(_match(output, target), target)
    return F.cross_entropy(output.reshape(-1, output.shape[-1]), target.reshape(-1))


def accuracy(output: Tensor, target: Tensor) -> Tensor:
    """Fraction of correct argmax predictions (classification only)."""
    return (output.argmax(-1) == target).to(output.dtype).mean()


def predictions(output: Tensor, target_like: Tensor) -> Tensor:
    """Model output in the form of the targets: logits stay, ``[..., 1]`` regression squeezes."""
    return _match(output, target_like) if target_like.dtype.is_floating_point else output


def adapt(
    fn: ModelFn,
    params: Params,
    support_x: Tensor,
    support_y: Tensor,
    *,
    steps: int,
    lr: LearningRate,
    first_order: bool = False,
    trainable: Collection[str] | None = None,
    loss: LossFn = task_loss,
) -> Params:
    """Adapts ``params`` to one task with ``steps`` steps of gradient descent on its support set.

    A pure function: it returns new tensors and changes neither ``params`` nor any module.
    Unless ``first_order``, the result stays differentiable with respect to ``params`` (and to
    tensor learning rates) through every step, which is what second-order MAML needs. A model
    with stock BatchNorm normalises each step's support batch with its own statistics and leaves
    its running statistics as they were (see :func:`functional`).

    Args:
        fn: the model as a pure function ``fn(params, x)`` (see :func:`functional`).
        params: the starting point (θ), ``name -> tensor``.
        support_x: ``[S, ...]`` support inputs of one task.
        support_y: ``[S]`` support targets.
        steps: number of gradient steps (0 returns ``params`` unchanged).
        lr: a step size, or a dict of per-parameter step sizes (Meta-SGD), each broadcastable
            to its parameter.
        first_order: treat the inner gradients as constants (first-order MAML): the adapted
            parameters depend on θ only through the identity, and no graph is kept for them.
        trainable: names of the parameters to adapt (ANIL: the head's); the others are passed
            through unchanged but still take part in every forward. ``None`` adapts all.
        loss: ``loss(output, target)`` minimised on the support set.

    Returns:
        The adapted parameters φ, with the same keys as ``params``.

    Raises:
        ConfigError: if ``trainable`` names an unknown parameter or ``lr`` lacks one.

    Example:
        >>> fast = adapt(functional(net), params, sx, sy, steps=1, lr=0.4)
        >>> query_logits = functional(net)(fast, qx)
    """
    names = list(params) if trainable is None else [k for k in params if k in set(trainable)]
    if trainable is not None and len(names) != len(set(trainable)):
        missing = sorted(set(trainable) - set(params))
        raise ConfigError(f"Cannot adapt unknown parameter {missing[0]!r}; check the names.")
    if isinstance(lr, Mapping) and not set(names) <= set(lr):
        missing = sorted(set(names) - set(lr))
        raise ConfigError(f"No inner learning rate for parameter {missing[0]!r}.")
    fast = dict(params)
    sgd = optim.sgd(lr)
    for _ in range(steps):
        # First-order: the support pass needs no graph back to θ, not even via frozen ones.
        frozen = {k: v.detach() if first_order else v for k, v in fast.items() if k not in names}

        def support_loss(sub: Params, frozen: Params = frozen) -> Tensor:
            return loss(fn({**frozen, **sub}, support_x), support_y)

        g = _inner_grad(support_loss, {k: fast[k] for k in names}, first_order=first_order)
        fast, _ = sgd.update(fast, g, {})
    return fast


def _inner_grad(
    support_loss: Callable[[Params], Tensor], sub: Params, *, first_order: bool
) -> Params:
    """The gradient of ``support_loss`` at ``sub``; a function of ``sub`` unless ``first_order``.

    ``torch.func.grad`` works inside ``vmap`` and is traced by ``torch.compile``. In eager
    per-task code (:func:`metalearner.nn.layers.per_task_kernels`), plain ``torch.autograd.grad``
    takes the same derivative without functorch's layer around every operation, and lets the
    fused BatchNorm's custom second derivative (:mod:`metalearner.nn.norm`) run unwrapped. Both
    shorten a 20-way, five-step second-order meta-step on a CPU, together by about a fifth
    (benchmarks/second_order.py measures each).
    """
    if not per_task_eager():
        if first_order:
            # No outer graph through the support pass at all: it would be discarded anyway.
            with torch.no_grad():
                return grad(support_loss)(sub)
        return grad(support_loss)(sub)
    keep_graph = not first_order and torch.is_grad_enabled()
    with torch.enable_grad():
        leaves = {
            k: v if keep_graph and v.requires_grad else v.detach().requires_grad_()
            for k, v in sub.items()
        }
        found = torch.autograd.grad(
            support_loss(leaves), list(leaves.values()), create_graph=keep_graph,
            materialize_grads=True,
        )  # fmt: skip
    return dict(zip(leaves, found, strict=True))


def adapt_path(
    fn: ModelFn,
    params: Params,
    support_x: Tensor,
    support_y: Tensor,
    *,
    steps: int,
    lr: LearningRate,
    trainable: Collection[str] | None = None,
) -> list[Params]:
    """The parameters after 0, 1, ..., ``steps`` first-order steps of :func:`adapt`.

    One pass gives a whole adaptation curve: scoring after every step costs ``steps`` updates
    instead of the ``steps²/2`` of adapting from scratch for each point.
    """
    path = [dict(params)]
    for _ in range(steps):
        path.append(
            adapt(fn, path[-1], support_x, support_y, steps=1, lr=lr, first_order=True,
                  trainable=trainable)
        )  # fmt: skip
    return path


def path_predictors(
    fn: ModelFn,
    path: Sequence[Params],
    support_y: Tensor,
    embed: Callable[[Tensor], Tensor] | None = None,
    *,
    reference: Tensor | None = None,
) -> list[Callable[[Tensor], Tensor]]:
    """One predictor ``x -> fn(fast, embed(x))`` per parameter set of an adaptation path.

    Predictions come in the form of ``support_y`` (logits, or squeezed regression outputs) and
    are computed without a graph. BatchNorm in ``fn`` normalises with the statistics of the
    batch a predictor is given (transductive), or, given a ``reference`` (the support set,
    inductive), with the reference's under each ``fast``
    (:func:`metalearner.nn.layers.normalise_with`).
    """

    def predictor(fast: Params) -> Callable[[Tensor], Tensor]:
        def forward(v: Tensor) -> Tensor:
            return fn(fast, v)

        def predict(x: Tensor) -> Tensor:
            with torch.no_grad(), per_task_kernels():  # safe: prediction is never vmapped
                inputs = x if embed is None else embed(x)
                return predictions(normalise_with(forward, reference, inputs), support_y)

        return predict

    return [predictor(fast) for fast in path]


def map_tasks(
    task_fn: TaskFn,
    params: Params,
    inputs: Sequence[Tensor],
    *,
    vectorize: bool,
    chunk_size: int | None = None,
) -> tuple[Tensor, ...]:
    """Runs ``task_fn(params, *task_inputs)`` for each task and stacks its outputs.

    Args:
        task_fn: a function of the shared parameters and one task's tensors, returning a tuple
            of tensors (e.g. query loss and accuracy).
        params: shared by every task.
        inputs: tensors with a leading task dimension ``T``.
        vectorize: ``torch.func.vmap`` over the tasks (one batched computation) instead of a
            Python loop over them (the reference path, which may use fused BatchNorm kernels,
            so ``task_fn`` must not vmap).
        chunk_size: with ``vectorize``, vmap this many tasks at a time to bound memory.

    Returns:
        Each output of ``task_fn`` stacked along a new leading task dimension.
    """
    if vectorize:
        in_dims = (None, *([0] * len(inputs)))
        out: tuple[Tensor, ...] = vmap(task_fn, in_dims=in_dims, chunk_size=chunk_size)(
            params, *inputs
        )
        return tuple(out)
    with per_task_kernels():  # safe: nothing in this loop is vmapped
        per_task = [task_fn(params, *(x[t] for x in inputs)) for t in range(inputs[0].shape[0])]
    return tuple(torch.stack(outs) for outs in zip(*per_task, strict=True))


def meta_gradient(
    objective: Callable[[Params], tuple[Tensor, dict[str, Tensor]]], params: Params
) -> tuple[Params, dict[str, float]]:
    """Gradient of a scalar ``objective(params)`` with respect to every parameter.

    The parameters are detached into fresh leaves first, so the caller's tensors are never
    given ``.grad`` and gradients flow even under ``torch.no_grad``. A parameter the objective
    does not use gets a zero gradient, so the result always has the keys and shapes of
    ``params``.

    Args:
        objective: returns ``(loss, metrics)``; metrics are scalar tensors.
        params: where to take the gradient.

    Returns:
        ``(grads, metrics)`` with metrics converted to floats (``"loss"`` among them).
    """
    grads, metrics = meta_gradient_tensors(objective, params)
    return grads, floats(metrics)


def meta_gradient_tensors(
    objective: Callable[[Params], tuple[Tensor, dict[str, Tensor]]], params: Params
) -> tuple[Params, dict[str, Tensor]]:
    """:func:`meta_gradient` with the metrics left as detached scalar tensors.

    Nothing here waits for the device, so a GPU runs ahead of Python, and the call can be
    recorded as a CUDA graph (:class:`metalearner.functional.compiled.CapturedFunction`).
    """
    with torch.enable_grad():
        leaves = _leaves(params)
        differentiable = [k for k, v in leaves.items() if v.requires_grad]
        loss, metrics = objective(leaves)
        found = torch.autograd.grad(loss, [leaves[k] for k in differentiable], allow_unused=True)
    grads = {k: torch.zeros_like(v) for k, v in params.items()}
    grads.update({k: g for k, g in zip(differentiable, found, strict=True) if g is not None})
    return grads, {"loss": loss.detach(), **{k: v.detach() for k, v in metrics.items()}}


def summed_meta_gradient(
    objectives: Sequence[Callable[[Params], tuple[Tensor, dict[str, Tensor]]]], params: Params
) -> tuple[Params, dict[str, Tensor]]:
    """:func:`meta_gradient_tensors` of the mean of several objectives, one graph at a time.

    Each objective's graph is freed before the next is built, so peak memory is that of one
    (e.g. one task of a meta-batch); the result equals the gradient of the mean objective.
    Metrics stay tensors (see :func:`floats`): one wait for the device per meta-batch, not one
    per objective.
    """
    summed: dict[str, Tensor] = {}
    with torch.enable_grad():
        leaves = _leaves(params)
        differentiable = [v for v in leaves.values() if v.requires_grad]
        for objective in objectives:
            loss, metrics = objective(leaves)
            # backward adds each task's gradient into .grad as it goes, as the libraries'
            # loss.backward() does; taking it whole from autograd.grad and then adding it to a
            # sum held one more gradient, the size of the parameters, at the peak.
            loss.backward(inputs=differentiable)
            for k, v in {"loss": loss, **metrics}.items():  # summed in float64, as floats would be
                wide = v.detach().to(torch.float64)
                summed[k] = summed[k] + wide if k in summed else wide
    n = len(objectives)
    grads = {
        k: torch.zeros_like(params[k]) if v.grad is None else v.grad.div_(n)
        for k, v in leaves.items()
    }
    return grads, {k: v / n for k, v in summed.items()}


def floats(metrics: Mapping[str, Tensor]) -> dict[str, float]:
    """Scalar metric tensors as floats, in one transfer from the device."""
    if not metrics:
        return {}
    values = torch.stack([v.detach().to(torch.float64) for v in metrics.values()]).tolist()
    return dict(zip(metrics, values, strict=True))


def _leaves(params: Params) -> Params:
    """Detached aliases of ``params`` to differentiate against (the floating-point ones)."""
    return {k: v.detach().requires_grad_(v.is_floating_point()) for k, v in params.items()}


def _match(output: Tensor, target: Tensor) -> Tensor:
    # A regression model emits [..., 1]; MSE against [...] would silently broadcast to [..., ...].
    if output.dim() == target.dim() + 1 and output.shape[-1] == 1:
        return output.squeeze(-1)
    if output.shape != target.shape:
        raise ValueError(f"Output shape {list(output.shape)} does not match {list(target.shape)}")
    return output
