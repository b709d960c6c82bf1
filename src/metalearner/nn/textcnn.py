"""The CNN sentence encoder of the FewRel baselines, a :class:`~metalearner.nn.backbones.Network`.

A sentence arrives as ``int64 [3, L]`` (token ids and the two relative-position rows of
:mod:`metalearner.data.text`). Each token becomes its word embedding (50-d) joined with two
position embeddings (5-d each); a convolution of 230 filters over windows of 3 tokens, a ReLU
and a max over the sentence give a 230-d feature vector, which the usual linear ``head`` reads.

There is no normalisation layer, so a sentence's features never depend on the other sentences
of its batch. Padding (id 0) is left out of the max: the FewRel code pooled over it too, which
lets the sentence length leak into the features. All of it is plain tensor code with any number
of leading dimensions (``[S, 3, L]`` or ``[T, S, 3, L]``), so it runs under
``torch.func.functional_call``, ``vmap`` and second-order MAML like conv4.

References:
    Zeng et al., "Relation Classification via Convolutional Deep Neural Network", COLING 2014
    (the CNN with position features). Han et al., "FewRel: A Large-Scale Supervised Few-Shot
    Relation Classification Dataset with State-of-the-Art Evaluation", EMNLP 2018 (its CNN
    encoder: 50-d words, 5-d positions, 230 filters of width 3, max-pooling).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metalearner.errors import ConfigError

WORD_DIM, POSITION_DIM, FILTERS, WINDOW = 50, 5, 230, 3


class TextCNN(nn.Module):
    """Sentences ``[..., 3, L]`` (int64) to features ``[..., filters]``.

    Args:
        vocab_size: rows of the word embedding (the vocabulary, ``<pad>`` and ``<unk>`` included).
        max_length: L; position ids run over ``0..2L-1``.
        word_dim: word embedding size.
        position_dim: size of each of the two position embeddings.
        filters: convolution filters, the feature size.
        window: tokens per convolution window (odd: the output keeps the sentence's length).
    """

    def __init__(
        self,
        vocab_size: int,
        max_length: int,
        *,
        word_dim: int = WORD_DIM,
        position_dim: int = POSITION_DIM,
        filters: int = FILTERS,
        window: int = WINDOW,
    ) -> None:
        super().__init__()
        self.max_length = max_length
        # padding_idx: the padding rows get no gradient, so they stay the zeros they start at.
        self.word = nn.Embedding(vocab_size, word_dim, padding_idx=0)
        self.head_position = nn.Embedding(2 * max_length, position_dim, padding_idx=0)
        self.tail_position = nn.Embedding(2 * max_length, position_dim, padding_idx=0)
        self.conv = nn.Conv1d(word_dim + 2 * position_dim, filters, window, padding=window // 2)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() < 2 or x.shape[-2] != 3 or x.shape[-1] != self.max_length:
            raise ValueError(
                f"textcnn expects [..., 3, {self.max_length}] token/position ids, "
                f"got shape {list(x.shape)}"
            )
        lead = x.shape[:-2]
        ids = x.reshape(-1, 3, self.max_length)
        tokens = ids[:, 0]
        joined = [self.word(tokens), self.head_position(ids[:, 1]), self.tail_position(ids[:, 2])]
        h = F.relu(self.conv(torch.cat(joined, dim=-1).transpose(1, 2)))  # [B, filters, L]
        # After the ReLU every value is >= 0, so zeroing the padding drops it from the max.
        h = h * (tokens != 0).unsqueeze(1).to(h.dtype)
        return h.amax(dim=-1).reshape(*lead, -1)


def textcnn_size(input_shape: tuple[int, ...], options: dict[str, int]) -> tuple[int, int]:
    """``(vocab_size, max_length)`` from a ``(3, L)`` input shape and the model options.

    Raises:
        ConfigError: inputs that are not sentences, or no vocabulary size.
    """
    if len(input_shape) != 2 or input_shape[0] != 3 or input_shape[1] < 1:
        raise ConfigError(
            f"Model 'textcnn' takes sentences encoded as [3, L] ids, got shape "
            f"{tuple(input_shape)}; use it with text data (data.dataset fewrel)."
        )
    vocab = options.get("vocab_size")
    if vocab is None or vocab < 2:
        raise ConfigError("Model 'textcnn' needs vocab_size (the vocabulary's size, at least 2).")
    return int(vocab), int(input_shape[1])
