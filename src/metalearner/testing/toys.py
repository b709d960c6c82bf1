"""Tiny models, tiny task batches and the toy problems that the strategy contract runs on.

The contract (:mod:`.contract`) holds every strategy to ``toy_source()`` (images), every
classifier also to ``toy_text_source()`` (FewRel-style sentences), and a strategy that only
regresses to ``toy_regression_source()`` (sinusoids). A built-in strategy whose paper defaults
do not suit the toy problem has its settings in ``TOY_SETTINGS``; a user's strategy gives its
own in its :class:`~metalearner.testing.contract.ContractCase`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from metalearner.data.text import Sentence, Vocabulary, encode, text_preprocessing
from metalearner.nn.backbones import Network, build_model
from metalearner.tasks import EpisodeSampler, LabeledSet, SinusoidTasks, TaskBatch

TEXT_LENGTH = 12  # tokens per toy sentence

# Small adaptation budgets keep the contract fast; Reptile's paper defaults (Adam with a tiny
# step on minibatches) barely move in 30 meta-steps, so the toy run uses full-batch SGD.
TOY_SETTINGS: dict[str, dict[str, Any]] = {
    "maml": {"eval_steps": 3},
    "fomaml": {"eval_steps": 3},
    "metasgd": {"eval_steps": 3},
    "anil": {"eval_steps": 3},
    # The toy family has 24 classes; adaptation is shortened and sped up for the contract.
    **{
        name: {"num_classes": 24, "eval_steps": 10, "adapt_lr": 0.1}
        for name in ("finetune", "baselinepp", "nearest-centroid", "simpleshot")
    },
    # RFS's C = 1 on unit features gives soft probabilities whose query loss barely moves in 30
    # steps on 3-way toy tasks: a weaker penalty lets the loss show what pretraining learned.
    "rfs": {"num_classes": 24, "logistic_c": 10.0},
    "reptile": {
        "inner_optimizer": "sgd",
        "inner_lr": 0.1,
        "eval_steps": 5,
        "inner_batch_size": None,
        "eval_batch_size": None,
    },
}


def tiny_conv(ways: int = 3, *, dtype: torch.dtype = torch.float64, seed: int = 0) -> Network:
    """conv4 cut to 2 blocks of 3 channels on 6x6 images: 3 features, ~140 parameters."""
    return build_model("conv4", (1, 6, 6), ways, generator=seed, dtype=dtype, depth=2, width=3)


def image_batch(
    tasks: int = 3,
    ways: int = 3,
    shots: int = 2,
    queries: int = 2,
    *,
    size: int = 6,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
) -> TaskBatch:
    """Random images with class labels: enough to check gradients, not to learn anything."""
    g = torch.Generator().manual_seed(seed)

    def labels(k: int) -> Tensor:
        return torch.arange(ways).repeat_interleave(k).expand(tasks, -1).contiguous()

    return TaskBatch(
        support_x=torch.randn(tasks, ways * shots, 1, size, size, generator=g, dtype=dtype),
        support_y=labels(shots),
        query_x=torch.randn(tasks, ways * queries, 1, size, size, generator=g, dtype=dtype),
        query_y=labels(queries),
        classes=torch.arange(ways).expand(tasks, -1).contiguous(),
    )


def regression_batch(
    tasks: int = 3, shots: int = 5, queries: int = 4, *, dim: int = 2, seed: int = 0
) -> TaskBatch:
    """Random linear-regression tasks in float64."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(tasks, dim, generator=g, dtype=torch.float64)
    sx = torch.randn(tasks, shots, dim, generator=g, dtype=torch.float64)
    qx = torch.randn(tasks, queries, dim, generator=g, dtype=torch.float64)
    return TaskBatch(sx, torch.einsum("tsd,td->ts", sx, w), qx, torch.einsum("tqd,td->tq", qx, w))


def toy_source(ways: int = 3) -> EpisodeSampler:
    """24 classes of noisy 8x8 patterns: a family of easy 3-way 1-shot tasks."""
    g = torch.Generator().manual_seed(0)
    classes, per_class = 24, 8
    y = torch.arange(classes).repeat_interleave(per_class)
    base = torch.rand(classes, 1, 8, 8, generator=g)
    x = (base[y] + 0.3 * torch.randn(classes * per_class, 1, 8, 8, generator=g)).clamp(0, 1)
    data = LabeledSet((x * 255).to(torch.uint8), y, tuple(f"c{i}" for i in range(classes)))
    return EpisodeSampler(data, torch.arange(classes), ways=ways, shots=1, queries=3)


def toy_text_source(ways: int = 3) -> EpisodeSampler:
    """24 relations of 8 short sentences each, told apart by a cue word next to each entity.

    Sentences are encoded as FewRel's are (``[3, L]`` token and position ids, L = 12), so every
    strategy meets ``int64`` inputs and the text encoder.
    """
    g = torch.Generator().manual_seed(0)
    classes, per_class, length = 24, 8, TEXT_LENGTH
    sentences, labels = [], []
    for c in range(classes):
        for _ in range(per_class):
            words = [f"w{i}" for i in torch.randint(0, 4, (length,), generator=g).tolist()]
            head = int(torch.randint(0, 4, (), generator=g))
            tail = head + 3 + int(torch.randint(0, length - head - 4, (), generator=g))
            words[head + 1] = words[tail - 1] = f"key{c}"  # the relation's cue, twice
            sentences.append(Sentence(tuple(words), (head, head + 1), (tail, tail + 1)))
            labels.append(c)
    vocab = Vocabulary.build((s.tokens for s in sentences), min_count=1)
    data = LabeledSet(
        encode(sentences, vocab, length), torch.tensor(labels),
        tuple(f"r{i}" for i in range(classes)), preprocessing=text_preprocessing(vocab, length),
    )  # fmt: skip
    return EpisodeSampler(data, torch.arange(classes), ways=ways, shots=1, queries=3)


def toy_text_model(ways: int = 3, *, dtype: torch.dtype = torch.float32) -> Network:
    """textcnn cut to 16-d words, 2-d positions and 32 filters for the toy sentences."""
    vocab = len(toy_text_source().data.preprocessing["vocabulary"])  # type: ignore[arg-type]
    return build_model(
        "textcnn", (3, TEXT_LENGTH), ways, generator=0, dtype=dtype, vocab_size=vocab,
        word_dim=16, position_dim=2, filters=32,
    )  # fmt: skip


def toy_regression_source() -> SinusoidTasks:
    """Sinusoids with 5 support and 5 query points: the toy family of regression strategies."""
    return SinusoidTasks(shots=5, queries=5)


def toy_regression_model(*, dtype: torch.dtype = torch.float32) -> Network:
    """The 40-40 MLP of the MAML paper's sinusoid experiment."""
    return build_model("mlp", (1,), 1, generator=0, dtype=dtype)


def toy_model(ways: int = 3, *, dtype: torch.dtype = torch.float32) -> Network:
    """conv4 with 2 blocks of 8 channels for the 8x8 toy images."""
    return build_model("conv4", (1, 8, 8), ways, generator=0, dtype=dtype, depth=2, width=8)


def rel_error(a: dict[str, Tensor], b: dict[str, Tensor]) -> float:
    """‖a − b‖ / ‖b‖ over all entries of two dicts with the same keys."""
    assert a.keys() == b.keys()
    num = sum(float((a[k] - b[k]).detach().double().square().sum()) for k in b)
    den = sum(float(b[k].detach().double().square().sum()) for k in b)
    return (num / den) ** 0.5


def conv_biases(params: dict[str, Tensor]) -> list[str]:
    """Names of the conv biases that feed a BatchNorm (their true meta-gradient is 0)."""
    return [k for k in params if k.endswith(".conv.bias")]
