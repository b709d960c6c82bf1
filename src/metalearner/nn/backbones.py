"""Backbones used as pure functions of a parameter dict (``torch.func.functional_call``).

Every model here is a :class:`Network`: a ``features`` backbone and a linear ``head``, so that
parameter names start with ``"features."`` or ``"head."`` and a strategy can split them (ANIL
adapts only the head; Prototypical Networks use only the features).

Inputs carry an optional leading *task* dimension: ``[S, ...]`` is one task's batch and
``[T, S, ...]`` is ``T`` tasks run in one call with shared parameters. BatchNorm keeps no
running statistics: it normalises with the statistics of each task's own batch (transductive,
the setting the MAML and Reptile papers used: a prediction depends on the other examples of the
batch it is computed with), or, inside :func:`metalearner.nn.layers.reference_statistics`, with
those of a reference set, a task's support set (inductive).

References:
    Finn et al., "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks", ICML 2017
    (conv4 and the 40-40 MLP). Vinyals et al., "Matching Networks for One Shot Learning",
    NeurIPS 2016 (the conv4 embedding). Nichol et al., "On First-Order Meta-Learning
    Algorithms", 2018 (transductive BatchNorm, section 6). Han et al., "FewRel", EMNLP 2018
    (textcnn, in :mod:`metalearner.nn.textcnn`). Lee et al., "Meta-Learning with
    Differentiable Convex Optimization", CVPR 2019, and Tian et al., "Rethinking Few-Shot Image
    Classification", ECCV 2020 (resnet12, in :mod:`metalearner.nn.resnet12`).
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import torch
from torch import Tensor, nn

from metalearner.errors import ConfigError
from metalearner.nn.hf import POOLINGS, pretrained_features
from metalearner.nn.layers import ChannelNorm, ConvBlock, Normalize, TaskBatchNorm2d
from metalearner.nn.resnet12 import FanOutConv2d, resnet12_features
from metalearner.nn.textcnn import TextCNN, textcnn_size

MODELS = ("conv4", "resnet12", "mlp", "textcnn", "hf")
FEATURES, HEAD = "features.", "head."
"""The prefixes of a :class:`Network`'s parameter names: its backbone's and its head's."""


class Conv4(nn.Module):
    """``depth`` conv blocks of ``width`` channels, then flatten: ``[..., C, H, W] -> [..., F]``.

    With the defaults, 28x28 inputs give 64 features and 84x84 inputs give 1600.
    """

    def __init__(
        self,
        in_channels: int = 1,
        *,
        width: int = 64,
        depth: int = 4,
        normalize: Normalize | None = None,
    ) -> None:
        super().__init__()
        # The dataset's per-channel mean and deviation, taken first (the colour benchmarks').
        self.normalize = ChannelNorm(*normalize) if normalize else None
        chans = [in_channels] + [width] * depth
        self.blocks = nn.Sequential(*(ConvBlock(a, b) for a, b in itertools.pairwise(chans)))

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() < 4:
            raise ValueError(f"conv4 expects [..., S, C, H, W] inputs, got shape {list(x.shape)}")
        if self.normalize is not None:
            x = self.normalize(x)
        return self.blocks(x).flatten(-3)


class Network(nn.Module):
    """A backbone (``features``) followed by a linear ``head``.

    Attributes:
        features: maps inputs ``[..., *input_shape]`` to ``[..., feature_dim]``.
        head: ``nn.Linear(feature_dim, out_features)``: class logits, or the regression output.
        feature_dim: size of the feature vector.
    """

    def __init__(self, features: nn.Module, feature_dim: int, out_features: int) -> None:
        super().__init__()
        self.features = features
        self.head = nn.Linear(feature_dim, out_features)
        self.feature_dim = feature_dim

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def conv4(
    in_channels: int,
    image_size: tuple[int, int],
    out_features: int,
    *,
    width: int = 64,
    depth: int = 4,
    normalize: Normalize | None = None,
) -> Network:
    """The conv4 backbone of MAML and Matching Networks with a linear head.

    Args:
        in_channels: image channels (1 for Omniglot, 3 for mini-ImageNet).
        image_size: ``(H, W)``; each block halves it (floor), so it must stay >= 1.
        out_features: number of ways N.
        width: channels per block (64 in the papers; MAML used 32 on mini-ImageNet).
        depth: number of blocks (4 in the papers; fewer for tests).
        normalize: per-channel ``(mean, std)`` subtracted and divided first (the dataset's).
    """
    h, w = image_size
    for _ in range(depth):
        h, w = h // 2, w // 2
    if h < 1 or w < 1:
        raise ConfigError(
            f"{image_size[0]}x{image_size[1]} images are too small for {depth} pooling blocks; "
            "use larger images or a smaller depth."
        )
    features = Conv4(in_channels, width=width, depth=depth, normalize=normalize)
    return Network(features, width * h * w, out_features)


def mlp(in_features: int, out_features: int, *, hidden: tuple[int, ...] = (40, 40)) -> Network:
    """The ReLU MLP of MAML's sinusoid experiment (two hidden layers of 40) with a linear head."""
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise((in_features, *hidden)):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return Network(nn.Sequential(*layers), hidden[-1] if hidden else in_features, out_features)


def build_model(
    name: str,
    input_shape: tuple[int, ...],
    out_features: int,
    *,
    generator: torch.Generator | int = 0,
    dtype: torch.dtype = torch.float32,
    **options: Any,
) -> Network:
    """Builds a backbone by name with deterministically initialised parameters.

    The module is created on the ``meta`` device and then initialised from ``generator`` only,
    so building a model never touches the global RNG.

    Args:
        name: ``"conv4"`` or ``"resnet12"`` (``input_shape`` is ``(C, H, W)``; ResNet-12:
            :mod:`metalearner.nn.resnet12`), ``"mlp"`` (``(D,)``),
            ``"textcnn"`` (``(3, L)`` token and position ids) or ``"hf"`` (``(3, L)`` a
            pretrained encoder's token ids, mask and entity marks: :mod:`metalearner.nn.hf`).
        input_shape: shape of one example.
        out_features: ways N for classification, 1 for scalar regression.
        generator: a ``torch.Generator`` or an integer seed.
        dtype: parameter dtype.
        **options: ``width``/``depth`` for conv4; ``width`` for resnet12 (64: the papers'
            64-160-320-640 channels; others scale them); ``normalize`` for both: a dataset's
            per-channel ``(mean, std)``; ``vocab_size`` (required) and
            ``word_dim``/``position_dim``/``filters`` for textcnn; ``path`` (required) and
            ``pooling`` for hf, whose encoder keeps its pretrained weights (only the head is
            drawn from ``generator``); ``hidden`` is not accepted here (use :func:`mlp`
            directly for other widths).

    Raises:
        ConfigError: for an unknown name, a wrong input shape or an unknown option.

    Example:
        >>> net = build_model("conv4", (1, 28, 28), 5, generator=0)
        >>> net(torch.zeros(10, 1, 28, 28)).shape
        torch.Size([10, 5])
    """
    allowed = {
        "conv4": {"width", "depth", "normalize"},
        "resnet12": {"width", "normalize"},
        "mlp": set(),
        "textcnn": {"vocab_size", "word_dim", "position_dim", "filters"},
        "hf": {"path", "pooling"},
    }
    if name not in allowed:
        raise ConfigError(f"Unknown model {name!r}; use one of {', '.join(MODELS)}.")
    unknown = set(options) - allowed[name]
    if unknown:
        raise ConfigError(f"Model {name!r} has no option {sorted(unknown)[0]!r}.")
    if out_features < 1:
        raise ConfigError(f"out_features={out_features}: a model needs at least one output.")
    if name == "hf":  # pretrained: loaded, not built on the meta device; only the head is new
        pooling = str(options.get("pooling", POOLINGS[0]))
        encoder = pretrained_features(str(options.get("path")), input_shape, pooling=pooling)
        hf = Network(keep_weights(encoder), encoder.out_features, out_features)
        reset_parameters(hf, generator=generator)  # the head only
        return hf.to(dtype)
    want = {"conv4": 3, "resnet12": 3, "mlp": 1, "textcnn": 2}[name]
    if name == "textcnn":
        vocab, length = textcnn_size(input_shape, options)
    elif len(input_shape) != want or min(input_shape) < 1:
        raise ConfigError(
            f"Model {name!r} takes inputs of {want} dimension(s), got shape {tuple(input_shape)}; "
            "set model.name=auto (conv4 for images, textcnn for sentences, mlp for vectors) or a "
            "model that fits this data."
        )
    with torch.device("meta"):
        if name == "conv4":
            net = conv4(input_shape[0], (input_shape[1], input_shape[2]), out_features, **options)
        elif name == "resnet12":
            body = resnet12_features(input_shape[0], (input_shape[1], input_shape[2]), **options)
            net = Network(body, body.feature_dim, out_features)
        elif name == "textcnn":
            sizes = {k: v for k, v in options.items() if k != "vocab_size"}
            text = TextCNN(vocab, length, **sizes)
            net = Network(text, text.conv.out_channels, out_features)
        else:
            net = mlp(input_shape[0], out_features)
    net = net.to_empty(device="cpu").to(dtype)
    reset_parameters(net, generator=generator)
    return net


def init_params(module: nn.Module, *, generator: torch.Generator | int) -> dict[str, Tensor]:
    """Fresh parameters for ``module`` as a dict (the module itself is left unchanged).

    Layers without an initialisation rule here keep a copy of the module's current values.
    """
    fresh = {k: v.detach().clone() for k, v in module.named_parameters()}
    _initialise(module, fresh, _as_generator(generator))
    return fresh


def reset_parameters(module: nn.Module, *, generator: torch.Generator | int) -> None:
    """Re-initialises ``module``'s parameters in place from ``generator`` (not the global RNG)."""
    with torch.no_grad():
        _initialise(module, dict(module.named_parameters()), _as_generator(generator))


KEEPS_WEIGHTS = "_metalearner_keeps_weights"
"""The attribute :func:`keep_weights` sets on a module (a private name, so no user's clashes)."""


def keep_weights(module: nn.Module) -> nn.Module:
    """Marks ``module`` so that initialisation leaves its weights (and all its submodules') as
    they are: a pretrained encoder, or a user's module whose current weights are the start.

    :func:`init_params` and :func:`reset_parameters` (what every strategy's ``init_params``
    calls) then copy its values and initialise only the rest, such as a new head.

    Returns:
        ``module`` itself, marked.
    """
    setattr(module, KEEPS_WEIGHTS, True)
    return module


def _initialise(module: nn.Module, params: dict[str, Tensor], g: torch.Generator) -> None:
    # Conv weights: Glorot uniform, biases zero (MAML's reference code), but ResNet-12's Kaiming
    # normal over the fan-out, as RFS and MetaOptNet draw them; linear layers: PyTorch's
    # default U(-1/sqrt(fan_in), 1/sqrt(fan_in)); norms: identity; embeddings: PyTorch's N(0, 1)
    # with the padding row zero.
    kept = [f"{n}." if n else "" for n, m in module.named_modules() if getattr(m, KEEPS_WEIGHTS, 0)]
    with torch.no_grad():
        for prefix, layer in module.named_modules():
            p = f"{prefix}." if prefix else ""
            if any(p.startswith(k) for k in kept):
                continue
            if isinstance(layer, nn.Embedding):
                nn.init.normal_(params[p + "weight"], generator=g)
                if layer.padding_idx is not None:
                    params[p + "weight"][layer.padding_idx].zero_()
            elif isinstance(layer, FanOutConv2d):
                nn.init.kaiming_normal_(params[p + "weight"], mode="fan_out", generator=g)
            elif isinstance(layer, nn.Conv1d | nn.Conv2d):
                nn.init.xavier_uniform_(params[p + "weight"], generator=g)
                if layer.bias is not None:
                    params[p + "bias"].zero_()
            elif isinstance(layer, nn.Linear):
                bound = 1.0 / math.sqrt(layer.in_features)
                nn.init.uniform_(params[p + "weight"], -bound, bound, generator=g)
                if layer.bias is not None:
                    nn.init.uniform_(params[p + "bias"], -bound, bound, generator=g)
            elif isinstance(layer, TaskBatchNorm2d):
                params[p + "weight"].fill_(1.0)
                params[p + "bias"].zero_()


def _as_generator(generator: torch.Generator | int) -> torch.Generator:
    if isinstance(generator, torch.Generator):
        return generator
    return torch.Generator().manual_seed(int(generator))
