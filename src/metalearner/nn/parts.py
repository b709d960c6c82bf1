"""A module's parts as metalearner needs to know them: its head, its output size, and whether
it takes a leading task dimension. :mod:`metalearner.nn.user` builds networks from them.
"""

from __future__ import annotations

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

from metalearner.errors import ConfigError
from metalearner.nn.backbones import Conv4, Network
from metalearner.nn.layers import ConvBlock, TaskBatchNorm2d
from metalearner.nn.textcnn import TextCNN

HEAD_NAMES = frozenset({"fc", "head", "heads", "classifier", "linear", "last_linear", "out",
                        "output", "logits"})  # fmt: skip
"""Attribute names that mark a module's final linear layer as its head (torchvision's ``fc`` and
``classifier``, timm's ``head``)."""

# metalearner's backbones map [T, S, ...] to [T, S, ...] task by task; these torch layers act on
# the last dimension only, so they do too.
_NATIVE = (Conv4, ConvBlock, TaskBatchNorm2d, TextCNN)
_LAST_DIM = (nn.Sequential, nn.Linear, nn.Identity, nn.ReLU, nn.GELU, nn.Tanh, nn.Sigmoid,
             nn.LayerNorm)  # fmt: skip


def find_head(module: nn.Module) -> str | None:
    """The dotted name of ``module``'s head where it is unambiguous, else ``None``.

    The head is the last layer with parameters (in the order the module registers them), if
    that is an ``nn.Linear`` reached from the module through attributes named like a head
    (:data:`HEAD_NAMES`) or as the last layer of an ``nn.Sequential``: torchvision's ``fc`` and
    ``classifier.6``, a ``Sequential``'s last layer.
    """
    layers = [
        (n, m)
        for n, m in module.named_modules()
        if next(m.parameters(recurse=False), None) is not None
    ]
    if not layers or not isinstance(layers[-1][1], nn.Linear):
        return None
    name, parent = layers[-1][0], module
    for part in name.split("."):
        last_of_sequence = isinstance(parent, nn.Sequential) and part == list(parent._modules)[-1]
        if not (last_of_sequence or part in HEAD_NAMES):
            return None
        parent = parent.get_submodule(part)
    return name


def output_size(module: nn.Module) -> int:
    """The output size of ``module``'s last layer with a size (linear, convolution, embedding,
    norm), 0 if it has none: its output size where nothing reshapes after it."""
    size = 0
    for m in module.modules():
        if isinstance(m, nn.Linear):
            size = m.out_features
        elif isinstance(m, _ConvNd):
            size = m.out_channels
        elif isinstance(m, nn.Embedding):
            size = m.embedding_dim
        elif isinstance(m, _BatchNorm):
            size = m.num_features
        elif isinstance(m, nn.GroupNorm):
            size = m.num_channels
        elif isinstance(m, nn.LayerNorm) and m.normalized_shape:
            size = m.normalized_shape[-1]
    return size


def takes_tasks(module: nn.Module) -> bool:
    """Whether ``module`` maps inputs with a leading task dimension ``[T, S, ...]`` task by task
    (metalearner's backbones, layers on the last dimension); a user's module is given one
    task's ``[S, ...]`` at a time (vmapped)."""
    if isinstance(module, _NATIVE):
        return True
    if type(module) in (*_LAST_DIM, Network):
        return all(takes_tasks(child) for child in module.children())
    return False


def named_head(module: nn.Module, name: str) -> str:
    """``name``, checked to be an ``nn.Linear`` of ``module`` (a head the user named).

    Raises:
        ConfigError: ``module`` has no such layer, or it is not an ``nn.Linear``.
    """
    try:
        module.get_submodule(name)
    except AttributeError:
        raise ConfigError(
            f"{type(module).__name__} has no layer {name!r}; name its final nn.Linear, one of "
            f"{[n for n, m in module.named_modules() if isinstance(m, nn.Linear)]}."
        ) from None
    linear_layer(module, name)
    return name


def linear_layer(module: nn.Module, name: str) -> nn.Linear:
    """The layer ``name`` of ``module``, which a head must be: an ``nn.Linear``.

    Raises:
        ConfigError: it is another kind of layer.
    """
    layer = module.get_submodule(name)
    if not isinstance(layer, nn.Linear):
        raise ConfigError(
            f"The head {name!r} of {type(module).__name__} is a {type(layer).__name__}, not an "
            "nn.Linear; name its final linear layer, or pass out_features=N for a new head."
        )
    return layer
