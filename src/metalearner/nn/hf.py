"""A pretrained Hugging Face encoder as a :class:`~metalearner.nn.backbones.Network`'s features.

``model.name: hf`` with ``model.path`` (a local model folder, read with no network, or a Hub id)
loads the encoder with ``transformers.AutoModel`` and its tokenizer with ``AutoTokenizer``
(the ``metalearner[text]`` extra). The encoder is the ``features`` of a :class:`Network` whose
``head`` is a fresh linear layer; it is marked with
:func:`~metalearner.nn.backbones.keep_weights`, so every strategy's ``init_params`` starts from
the pretrained weights and initialises only the head.

A sentence arrives as ``int64 [3, L]`` (:mod:`metalearner.data.subwords`): the tokenizer's ids,
the attention mask, and the entity marks (1 on the token opening the head entity's marker, 2
on the one opening the tail's). It is pooled into one vector by ``pooling``:

- ``entity-start``: the hidden states at the head's and the tail's opening markers,
  concatenated (``2 × hidden``): Baldini Soares et al.'s best relation representation;
- ``mean``: the mean of the hidden states over the attention mask, special tokens included
  (sentence-transformers' pooling, what all-MiniLM-L6-v2 was trained with);
- ``cls``: the first token's hidden state (BERT's ``[CLS]``);
- ``entity-mean``: the two entity starts and the mean, concatenated (``3 × hidden``): the
  relation as marked, beside the sentence as the encoder was pretrained to pool it.

Dropout is off, in training too: the encoder stays in evaluation mode whatever ``train()`` is
called with. Dropout would draw from the global RNG (runs are reproducible from their seed
alone: docs/design.md, rule 3) and cannot run under ``torch.func.vmap`` with its default
randomness. Attention is the plain ("eager") implementation, whose second derivative exists
(second-order MAML; PyTorch's fused CPU attention has none), and the padding mask is passed
already expanded, so the model runs under ``vmap`` too. Outside ``vmap`` a batch is cut to its
longest sentence first: padding costs nothing.

References:
    Devlin et al., "BERT: Pre-training of Deep Bidirectional Transformers for Language
    Understanding", NAACL 2019 (the [CLS] token). Baldini Soares et al., "Matching the Blanks:
    Distributional Similarity for Relation Learning", ACL 2019 (entity markers, entity-start
    pooling). Reimers & Gurevych, "Sentence-BERT", EMNLP 2019 (mean pooling). Wolf et al.,
    "Transformers: State-of-the-Art Natural Language Processing", EMNLP 2020 (the library).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, get_args

import torch
from torch import Tensor, nn

from metalearner.errors import ConfigError, require_extra

HF = "hf"
"""``model.name`` of a pretrained Hugging Face encoder."""

Pooling = Literal["entity-start", "mean", "cls", "entity-mean"]
POOLINGS: tuple[Pooling, ...] = get_args(Pooling)
ROWS = 3  # token ids, attention mask, entity marks
HEAD_MARK, TAIL_MARK = 1, 2
MARKS = (HEAD_MARK, TAIL_MARK)  # pooled in this order: head, then tail


class PretrainedEncoder(nn.Module):
    """Sentences ``[..., 3, L]`` (int64, see the module doc) to features ``[..., out_features]``.

    Args:
        model: a ``transformers`` encoder (``AutoModel``), its weights as they are.
        pooling: ``entity-start``, ``mean``, ``cls`` or ``entity-mean``.
    """

    def __init__(self, model: Any, pooling: Pooling) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ConfigError(f"model.pooling {pooling!r} is unknown; use one of "
                              f"{', '.join(POOLINGS)}.")  # fmt: skip
        self.model = model.eval()
        self.pooling = pooling
        hidden = int(model.config.hidden_size)
        self.out_features = {"entity-start": 2, "entity-mean": 3}.get(pooling, 1) * hidden

    def train(self, mode: bool = True) -> PretrainedEncoder:
        """Sets this module's flag; the encoder stays in evaluation mode (no dropout, see the
        module doc)."""
        super().train(mode)
        self.model.eval()
        return self

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() < 2 or x.shape[-2] != ROWS:
            raise ValueError(
                f"model 'hf' expects [..., 3, L] ids, attention mask and entity marks, got "
                f"shape {list(x.shape)}"
            )
        lead = x.shape[:-2]
        x = x.reshape(-1, ROWS, x.shape[-1])
        if _concrete(x):  # cut the padding every sentence of the batch has
            x = x[..., : max(int(x[:, 1].sum(-1).max()), 1)]
        ids, mask, marks = x.unbind(1)
        dtype = self.model.get_input_embeddings().weight.dtype
        # [B, 1, 1, L] additive: transformers takes a 4-d mask as it is, with no data-dependent
        # checks (a 2-d one is inspected, which vmap refuses).
        keep = mask[:, None, None, :].to(dtype)
        additive = (1.0 - keep) * torch.finfo(dtype).min
        h = self.model(input_ids=ids, attention_mask=additive).last_hidden_state  # [B, L, H]
        if self.pooling == "cls":
            return h[:, 0].reshape(*lead, -1)
        parts = []
        if self.pooling != "mean":  # one mark per entity: a masked sum picks its hidden state
            parts += [(h * (marks == m).to(h.dtype).unsqueeze(-1)).sum(1) for m in MARKS]
        if self.pooling != "entity-start":
            weights = mask.to(h.dtype).unsqueeze(-1)
            parts.append((h * weights).sum(1) / weights.sum(1).clamp(min=1.0))
        return torch.cat(parts, dim=-1).reshape(*lead, -1)


def pretrained_features(
    path: str, input_shape: tuple[int, ...], *, pooling: str
) -> PretrainedEncoder:
    """The encoder at ``path`` as features, with its pretrained weights.

    Raises:
        ConfigError: inputs that are not ``[3, L]`` sentences, an unknown pooling, or a path
            that holds no model.
        MissingExtraError: transformers is not installed.
    """
    if len(input_shape) != 2 or input_shape[0] != ROWS or input_shape[1] < 1:
        raise ConfigError(
            f"Model 'hf' takes sentences encoded as [3, L] ids, got shape {tuple(input_shape)}; "
            "use it with text data (data.dataset fewrel)."
        )
    model = _load("AutoModel", path, attn_implementation="eager")
    return PretrainedEncoder(model.float(), pooling)  # type: ignore[arg-type]  # checked there


@functools.lru_cache(maxsize=4)
def load_tokenizer(path: str) -> Any:
    """The fast tokenizer of the model at ``path`` (cached: adapt encodes support and query).

    Raises:
        ConfigError: no model at ``path``, or a tokenizer without character offsets.
        MissingExtraError: transformers is not installed.
    """
    tokenizer = _load("AutoTokenizer", path)
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(
            f"The tokenizer of {path} is not a fast (Rust) tokenizer, which entity markers need "
            "to be located; use a model whose folder has a tokenizer.json."
        )
    return tokenizer


def local_folder(path: str) -> bool:
    """Whether ``path`` is a folder on this machine (read with no network) rather than a Hub id."""
    return Path(path).expanduser().is_dir()


def check_path(path: str | None) -> str:
    """``path`` made absolute where it is a local folder (a run's config is read from other
    folders later); a Hub id as it is.

    Raises:
        ConfigError: no path.
    """
    if not path:
        raise ConfigError(
            "model.name hf needs model.path: the folder of a Hugging Face model (config.json, "
            "weights, tokenizer) or a Hub id such as sentence-transformers/all-MiniLM-L6-v2."
        )
    return str(Path(path).expanduser().resolve()) if local_folder(path) else path


def _load(kind: str, path: str, **options: Any) -> Any:
    """``transformers.<kind>.from_pretrained(path)``: a local folder with no network.

    Raises:
        ConfigError: ``path`` names a local place that is not a model folder, or holds no model.
    """
    local = local_folder(path)
    looks_local = path.startswith((".", "/", "~")) or path.count("/") > 1 or "\\" in path
    if not local and (looks_local or Path(path).expanduser().exists()):
        raise ConfigError(
            f"model.path {path} is not a folder; give the folder of a Hugging Face model "
            "(config.json, weights, tokenizer), or a Hub id such as "
            "sentence-transformers/all-MiniLM-L6-v2."
        )
    require_extra("text", "transformers")
    import transformers

    where = str(Path(path).expanduser()) if local else path
    try:
        with _quiet(transformers):
            return getattr(transformers, kind).from_pretrained(
                where, local_files_only=local, **options
            )
    except (OSError, ValueError) as err:
        what = "folder" if local else "Hub id"
        raise ConfigError(
            f"model.path {path} ({what}) holds no model transformers can load "
            f"({str(err).splitlines()[0][:200]}); give the folder of a Hugging Face model "
            "(config.json, weights, tokenizer) or a Hub id."
        ) from None


@contextlib.contextmanager
def _quiet(transformers: Any) -> Iterator[None]:
    """No progress bar or load report from transformers: a command prints its own lines."""
    logging = transformers.utils.logging
    bar, level = logging.is_progress_bar_enabled(), logging.get_verbosity()
    logging.disable_progress_bar()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(level)
        if bar:
            logging.enable_progress_bar()


def _concrete(x: Tensor) -> bool:
    """Whether ``x``'s values may be read (not inside vmap, not while compiling)."""
    if torch.compiler.is_compiling():
        return False
    functorch = torch._C._functorch
    while functorch.is_functorch_wrapped_tensor(x):  # grad's wrappers may hold vmap's
        if functorch.is_batchedtensor(x):
            return False
        x = functorch.get_unwrapped(x)
    return True
