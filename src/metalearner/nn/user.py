"""Your own ``nn.Module`` as the model of every strategy, and the trained weights back into it.

A strategy runs a model as a pure function of a parameter dict. A module of yours is run as a
copy that shares its tensors (:func:`~metalearner.nn.pure.pure_copy`: BatchNorm on batch
statistics, dropout off, your module left as it is), its current weights the starting point
(``init="module"``; ``init="seed"`` initialises afresh from the strategy's seed):

- :func:`as_model`: the whole module, its own parameter names (MAML, Reptile).
- :func:`as_embedding`: the whole module as the ``features`` of a :class:`Network`, no head.
  ProtoNets and the transfer baselines embed with a module's output, or, where its final
  linear layer is found, with what feeds that layer (:func:`as_backbone`).
- :func:`as_network`: ``features`` and a linear ``head`` (ANIL adapts the head): the module's
  final ``nn.Linear``, found or named, or a new head on an embedding.

Strategies call these themselves on a module that is not a :class:`Network` (one with a
``.features`` attribute runs as it did, as a network); :func:`load_into` writes trained
parameters back into your module.

Example:
    >>> net = as_network(resnet)  # finds resnet.fc
    >>> sorted(net.state_dict())[-2:]
    ['head.bias', 'head.weight']
    >>> load_into(resnet, trained)  # resnet now holds the trained weights
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, Literal, Self

import torch
from torch import Tensor, nn

from metalearner.errors import ConfigError
from metalearner.nn.backbones import FEATURES, HEAD, Network, keep_weights
from metalearner.nn.parts import find_head, linear_layer, named_head, output_size
from metalearner.nn.pure import PURE, pure_copy

Init = Literal["module", "seed"]


class UserNetwork(Network):
    """A :class:`Network` made of a user's module (:func:`as_network`, :func:`as_embedding`).

    Attributes:
        features: the module, copied with its tensors shared, its head (if any) replaced by
            ``nn.Identity``.
        head: the module's own head, a new ``nn.Linear``, or ``nn.Identity`` (no head).
        feature_dim: the size of a feature vector (0 where unknown: no head needs it).
        head_name: the name of the module's head that :attr:`head` is (``None``: a new head,
            or none).
    """

    def __init__(
        self, features: nn.Module, head: nn.Module, feature_dim: int, head_name: str | None
    ) -> None:
        nn.Module.__init__(self)  # not Network's: the head is given, not made
        self.features, self.feature_dim, self.head_name = features, feature_dim, head_name
        self.add_module("head", head)  # any module here: an nn.Identity where there is none
        self.eval()

    def train(self, mode: bool = True) -> Self:
        """Stays in eval mode (dropout off; BatchNorm always takes batch statistics)."""
        return super().train(False)


def as_network(
    module: nn.Module,
    *,
    head: str | None = None,
    out_features: int | None = None,
    init: Init = "module",
    feature_dim: int | None = None,
) -> Network:
    """``module`` as a :class:`Network`: parameter names ``features.*`` and ``head.*``, the
    module's own tensors (shared, not copied).

    The head is the module's final ``nn.Linear``. With ``head=None`` it is found where that is
    unambiguous: the last layer with parameters is an ``nn.Linear`` reached from the module
    through attributes named like a head (``fc``, ``head``, ``classifier``, ...) or as the last
    layer of an ``nn.Sequential``. It must be the last operation of the module's forward. With
    ``out_features`` the network ends in that many outputs: the head found if it has them,
    a new linear head in its place if it was named (``head="fc"``) and has other sizes, and
    otherwise a new head on top of the whole module, an embedding.

    Args:
        module: any ``nn.Module``; a :class:`Network` is returned as it is.
        head: the dotted name of the module's head (``"fc"``, ``"classifier.6"``).
        out_features: the outputs the network must have (the ways), if the module has no head
            of that size.
        init: ``"module"``: the module's weights are the starting point (a new head is
            initialised from the strategy's seed); ``"seed"``: every weight initialised afresh.
        feature_dim: the size of the module's output, for a new head on it; by default that of
            its last layer with parameters (checked when the network first runs).

    Raises:
        ConfigError: the head cannot be found or is not an ``nn.Linear``, or a bad ``init``.

    Example:
        >>> net = as_network(resnet, out_features=5)  # resnet.fc has 5 outputs: the head
    """
    _check_module(module)
    if isinstance(module, Network):
        return module
    _check_init(init)
    name = _head_of(module, head, out_features)
    features = pure_copy(module)
    if name is None:
        dim = feature_dim or output_size(module)
        if dim < 1:
            raise ConfigError(
                f"Cannot tell the output size of {_name(module)}; pass feature_dim=F."
            )
        network = UserNetwork(features, _new_head(module, dim, out_features), dim, None)
    else:
        taken = linear_layer(features, name)
        parent, _, last = name.rpartition(".")
        features.get_submodule(parent).register_module(last, nn.Identity())
        dim, kept = taken.in_features, out_features in (None, taken.out_features)
        if kept and init == "module":
            keep_weights(taken)
        head_layer = taken if kept else _new_head(module, dim, out_features)
        network = UserNetwork(features, head_layer, dim, name if kept else None)
    if init == "module":
        keep_weights(features)
    features.register_forward_hook(functools.partial(_check_output, _name(module), dim, False))
    return network


def as_embedding(
    module: nn.Module, *, init: Init = "module", feature_dim: int | None = None
) -> Network:
    """``module`` whole as the ``features`` of a :class:`Network` with no head (``nn.Identity``):
    what ProtoNets and the transfer baselines embed with. Parameter names are ``features.*``.

    Args:
        module: maps inputs ``[N, ...]`` to one vector per example ``[N, F]``; a
            :class:`Network` is returned as it is.
        init: as for :func:`as_network`.
        feature_dim: ``F``, where a strategy puts a head of its own on the features; by
            default the size of the module's last layer with parameters (checked by the strategy).
    """
    _check_module(module)
    if isinstance(module, Network):
        return module
    _check_init(init)
    features = pure_copy(module)
    if init == "module":
        keep_weights(features)
    features.register_forward_hook(functools.partial(_check_output, _name(module), None, True))
    return UserNetwork(features, nn.Identity(), feature_dim or output_size(module), None)


def as_backbone(module: nn.Module) -> nn.Module:
    """``module`` as a strategy that embeds runs it (ProtoNets, the transfer baselines): a
    network (``.features``) as it is; otherwise the module without the head :func:`find_head`
    finds (what feeds it embeds), or, with none found, the whole module (:func:`as_embedding`).
    """
    _check_module(module)
    if with_features(module):
        return as_model(module)
    return as_network(module) if find_head(module) is not None else as_embedding(module)


def as_model(module: nn.Module, *, init: Init = "module") -> nn.Module:
    """``module`` whole, as MAML and Reptile run it: a :func:`~metalearner.nn.pure.pure_copy`
    with the module's own parameter names (a :class:`Network` or a copy is returned as it is)."""
    _check_module(module)
    if isinstance(module, Network) or getattr(module, PURE, False):
        return module
    _check_init(init)
    twin = pure_copy(module)
    return keep_weights(twin) if init == "module" else twin


def with_features(module: nn.Module) -> bool:
    """Whether ``module`` is shaped as a :class:`Network`: a ``features`` module (and a head),
    so a strategy takes its parts as they are."""
    return isinstance(getattr(module, "features", None), nn.Module)


def load_into(
    module: nn.Module, params: Mapping[str, Tensor], *, head: str | None = None
) -> nn.Module:
    """Writes a strategy's parameters into the user's ``module``: trained weights back home.

    Names are the module's own (:func:`as_model`), or ``features.*`` (the module's names after
    the prefix) and ``head.*`` (its head: ``head``, or the one :func:`find_head` finds).
    Entries that are not the module's are left out: a strategy's own (Meta-SGD's step sizes, a
    pretraining head) and a new head that has no place in the module.

    Returns:
        ``module``, holding the parameters.

    Raises:
        ConfigError: a backbone parameter of another shape, or none of the module's at all.

    Example:
        >>> params = maml.init_params(0)  # ... trained
        >>> load_into(model, params)
    """
    own = dict(module.named_parameters())
    head = head if head is not None else find_head(module)
    written = 0
    with torch.no_grad():
        for key, value in params.items():
            name = key if key in own else key.removeprefix(FEATURES)
            if key.startswith(HEAD) and key not in own:
                name = f"{head}.{key.removeprefix(HEAD)}" if head else ""
                if name not in own or own[name].shape != value.shape:
                    continue  # a new head, of other sizes than the module's
            if name not in own:
                continue
            if own[name].shape != value.shape:
                raise ConfigError(
                    f"{key!r} has shape {list(value.shape)}, the module's {name!r} has "
                    f"{list(own[name].shape)}; load parameters trained from this module."
                )
            own[name].copy_(value)
            written += 1
    if not written:
        raise ConfigError(
            f"None of these parameters is one of {type(module).__name__}'s; load parameters "
            "trained from this module."
        )
    return module


def _head_of(module: nn.Module, head: str | None, out_features: int | None) -> str | None:
    """The name of the head :func:`as_network` takes from ``module``; ``None``: a new head."""
    if head is not None:
        return named_head(module, head)
    name = find_head(module)
    if name is not None and out_features not in (None, linear_layer(module, name).out_features):
        return None  # its last layer has other outputs: the module is an embedding
    if name is None and out_features is None:
        raise ConfigError(
            f"Cannot tell which layer of {_name(module)} is its head; pass head='name' (its "
            "final nn.Linear), or out_features=N to put a new head on it as an embedding."
        )
    return name


def _new_head(module: nn.Module, dim: int, out_features: int | None) -> nn.Linear:
    like = next(module.parameters(), torch.empty(0))
    return nn.Linear(dim, int(out_features or 1), dtype=like.dtype, device=like.device)


def _check_module(module: object) -> None:
    if not isinstance(module, nn.Module):
        raise ConfigError(
            f"The model is a {type(module).__name__}, not a torch.nn.Module; wrap your function "
            "in an nn.Module whose submodules hold its parameters, so that they are learned."
        )


def _check_init(init: str) -> None:
    if init not in ("module", "seed"):
        raise ConfigError(
            f"init={init!r}: use 'module' (start from the module's weights) or 'seed' "
            "(initialise afresh)."
        )


def _name(module: nn.Module) -> str:
    return type(module).__name__


def _check_output(
    name: str, width: int | None, vectors: bool, _: nn.Module, args: Any, out: Any
) -> None:
    """A forward hook on the features: one vector per example, of the head's width."""
    if not isinstance(out, Tensor):
        raise ConfigError(
            f"{name} returns a {type(out).__name__}, not a tensor; return the features [N, F]."
        )
    if vectors and out.dim() > 2:
        raise ConfigError(
            f"{name} returns {out.dim()}-dimensional outputs per batch, not one vector per "
            "example; flatten or pool them at the end of its forward (e.g. x.flatten(1))."
        )
    if width is not None and out.shape[-1] != width:
        raise ConfigError(
            f"{name} returns {out.shape[-1]} features per example, not the {width} its head "
            f"takes; pass feature_dim={out.shape[-1]}."
        )
