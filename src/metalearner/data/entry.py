"""What a dataset is: one :class:`Dataset` entry holds every fact the package asks about it.

Its splits and their class counts, the metric it is scored by, its kind of input and the
backbone that reads it, whether it needs the user's ``data.path``, its cross-domain protocol and
how to load it: each is a field or a question of the entry, so no module outside ``data/``
compares a dataset's name (DESIGN.md rule 10). The entries live in
:mod:`metalearner.data.datasets`, the lookup by name in :mod:`metalearner.data.registry`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol, cast

from metalearner.data.labeled import LabeledSet
from metalearner.data.splits import ClassSplit, random_split
from metalearner.data.subwords import SubwordEncoding
from metalearner.data.text import MAX_LENGTH, is_text
from metalearner.errors import ConfigError

InputKind = Literal["image", "text", "table", "regression"]

TABLE_SUFFIXES = (".csv", ".npz")
"""The endings of a user's table (any other ``data.path`` is a folder of class folders)."""

BACKBONES: Mapping[str, str] = {
    "image": "conv4",
    "text": "textcnn",
    "table": "mlp",
    "regression": "mlp",
}
"""The backbone ``model.name: auto`` picks for each kind of input."""


PixelStats = tuple[tuple[float, ...], tuple[float, ...]]
"""Per-channel ``(mean, std)`` of a dataset's pixels in ``[0, 1]``."""


class LoadSettings(Protocol):
    """The ``data`` settings a loader reads (a resolved :class:`~.config.DataConfig`)."""

    @property
    def split(self) -> str | None: ...
    @property
    def split_seed(self) -> int: ...
    @property
    def path(self) -> str | None: ...
    @property
    def image_size(self) -> int | None: ...
    @property
    def max_length(self) -> int | None: ...
    @property
    def meta_train_classes(self) -> int | None: ...
    @property
    def val_classes(self) -> int | None: ...


class Loader(Protocol):
    """Loads a dataset and splits its classes: ``meta_train`` classes (``val`` of them held out
    for validation), the rest for test; ``download`` fetches missing files where it can."""

    def __call__(
        self, d: LoadSettings, data_dir: Path | None, *, meta_train: int, val: int, download: bool
    ) -> tuple[LabeledSet, ClassSplit]: ...


class TextLoader(Protocol):
    """A text dataset's :class:`Loader` that also encodes its sentences for a pretrained encoder
    (``encoding``: its tokenizer and entity markers) when given one."""

    def __call__(
        self,
        d: LoadSettings,
        data_dir: Path | None,
        *,
        meta_train: int,
        val: int,
        download: bool,
        encoding: SubwordEncoding | None = None,
    ) -> tuple[LabeledSet, ClassSplit]: ...


@dataclass(frozen=True)
class CrossDomain:
    """How ``benchmark --cross-domain`` scores models on a domain they did not train on.

    Attributes:
        title: the report's heading for it.
        summary: the report's paragraph saying what is scored.
        train_split: the split every strategy then trains on (``None``: the plan's own).
        trained_on: that split in words, for the report's setup.
        test_split: a split with the same training whose test classes are scored too.
        within_groups: also tasks whose classes all share a group (an alphabet).
        lake_runs: also Lake et al.'s 20-way one-shot runs (:mod:`metalearner.tasks.lake`).
    """

    title: str
    summary: str
    train_split: str | None = None
    trained_on: str = ""
    test_split: str | None = None
    within_groups: bool = False
    lake_runs: bool = False


@dataclass(frozen=True)
class Dataset:
    """Every fact of one dataset: the one place the package asks about it.

    Attributes:
        name: what ``data.dataset`` and ``--dataset`` say.
        kind: its input: ``image``, ``text``, ``table`` or ``regression`` (points of a function,
            generated, not loaded); ``None``: told by the user's files (images or a table).
        metric: ``accuracy`` (higher is better) or ``mse`` (lower is better).
        splits: its named class splits, the first the default; empty: none.
        meta_train_classes: classes for meta-training and validation where
            ``data.meta_train_classes`` is null.
        split_classes: that default where a split's differs.
        val_classes: validation classes where ``data.val_classes`` is null.
        fixed_splits: splits whose classes the source fixes, so the class counts do not apply.
        held_out_examples: ``data.val_classes`` 0 validates on held-out examples of every
            training class instead of on held-out classes.
        rotations: ``data.rotations`` adds its rotated training images as new classes.
        same_training: groups of splits that meta-train on the same classes (and vocabulary),
            so a run trained on one is scored on another without retraining.
        cross_domain: its cross-domain protocol, or ``None``.
        loader: loads the data and splits its classes.
        reader: reads the user's files at ``data.path`` (the dataset then needs one) with the
            settings (``data.image_size``); their classes are split at random with
            ``data.split_seed``.
        path_is: what ``data.path`` must be, for messages.
        channels: an image dataset's channels as stored: 1 (grey) or 3 (RGB).
        image_size: ``data.image_size`` where it is null: the side its papers use.
        normalize: per-channel ``(mean, std)`` of its pixels in ``[0, 1]``, which the
            backbone subtracts and divides by (the papers' input normalisation); ``None``:
            none (BatchNorm after the first convolution makes it nearly moot for grey images).
        preset_prefix: how its presets' names start where not with its name (``mini``).
    """

    name: str
    kind: InputKind | None
    metric: Literal["accuracy", "mse"] = "accuracy"
    splits: tuple[str, ...] = ()
    meta_train_classes: int = 1200
    split_classes: Mapping[str, int] = field(default_factory=dict)
    val_classes: int = 100
    fixed_splits: tuple[str, ...] = ()
    held_out_examples: bool = False
    rotations: bool = False
    same_training: tuple[tuple[str, ...], ...] = ()
    cross_domain: CrossDomain | None = None
    loader: Loader | None = None
    reader: Callable[[Path, LoadSettings], LabeledSet] | None = None
    path_is: str = "a class-folder tree or a table"
    channels: int = 1
    image_size: int = 28
    normalize: PixelStats | None = None
    preset_prefix: str = ""

    @property
    def preset_stem(self) -> str:
        """How its presets' names start (``mini`` in ``mini-5w1s-maml``): its name by default."""
        return self.preset_prefix or self.name

    @property
    def regression(self) -> bool:
        """Whether its tasks are regression (points of a function) rather than N-way episodes."""
        return self.kind == "regression"

    @property
    def task_kind(self) -> str:
        """``"regression"`` or ``"classification"``."""
        return "regression" if self.regression else "classification"

    @property
    def needs_path(self) -> bool:
        """Whether a run of it needs ``data.path``: the user's own files."""
        return self.reader is not None

    def backbone(self, data: LabeledSet | None = None) -> str:
        """The backbone ``model.name: auto`` picks: by its kind of input, or by ``data``'s."""
        kind = self.kind or (input_kind(data) if data is not None else "table")
        return BACKBONES[kind]

    def image_side(self, d: LoadSettings) -> int:
        """The side of its stored images: ``data.image_size``, or its own where that is null."""
        return d.image_size or self.image_size

    def example_size(self, d: LoadSettings) -> tuple[int, str]:
        """Bytes of one example as the model takes it, and what it is in words, for the size
        check of a meta-batch before any data is loaded (:mod:`metalearner.runs.config`)."""
        kind = self.kind
        if kind is None:  # a user's files: a table by its ending, else images
            kind = "table" if str(d.path or "").lower().endswith(TABLE_SUFFIXES) else "image"
        if kind == "image":  # stored uint8, float32 in the model
            side, c = self.image_side(d), self.channels
            return 4 * c * side * side, f"a {c}×{side}×{side} float32 image, data.image_size {side}"
        if kind == "text":  # token ids and two rows of position ids (metalearner.data.text)
            length = d.max_length or MAX_LENGTH
            return 8 * 3 * length, f"3×{length} int64 ids, data.max_length {length}"
        if kind == "table":  # its width is known once it is read: one feature at the least
            return 4, "one float32 feature at the least"
        return 4, "one float32 point"

    def class_counts(
        self, split: str | None, meta_train: int | None, val: int | None
    ) -> tuple[int, int]:
        """``(meta_train_classes, val_classes)``: the given ones, its defaults where ``None``."""
        if meta_train is None:
            meta_train = self.split_classes.get(split or "", self.meta_train_classes)
        return meta_train, self.val_classes if val is None else val

    def counts_classes(self, split: str | None) -> bool:
        """Whether the class counts choose its classes on ``split`` (not regression, and not a
        split whose classes the source fixes)."""
        return not self.regression and split not in self.fixed_splits

    def trains_alike(self, split: str | None, other: str) -> bool:
        """Whether splits ``split`` and ``other`` meta-train on the same classes."""
        return any(split in group and other in group for group in self.same_training)

    def task_shape(self, ways: int, shots: int) -> str:
        """Its tasks in words: ``omniglot 5-way 1-shot``, ``sinusoid regression, K = 10``."""
        if self.regression:
            return f"{self.name} regression, K = {shots}"
        return f"{self.name} {ways}-way {shots}-shot"

    def load(
        self,
        d: LoadSettings,
        data_dir: Path | None,
        *,
        download: bool = False,
        encoding: SubwordEncoding | None = None,
    ) -> tuple[LabeledSet, ClassSplit]:
        """Its data and class split for the settings ``d``; sentences encoded for a pretrained
        encoder where ``encoding`` is given (a text dataset's loader is a :class:`TextLoader`).

        Raises:
            ConfigError: it generates its tasks, it needs ``data.path``, the counts do not fit,
                or ``encoding`` is given for data that is not text.
            DataError: the data is missing or unreadable.
        """
        meta_train, val = self.class_counts(d.split, d.meta_train_classes, d.val_classes)
        if encoding is not None and (self.kind != "text" or self.loader is None):
            raise ConfigError(
                f"model.name hf reads sentences, and data.dataset {self.name} holds no text; "
                "use a text dataset (fewrel), or another model."
            )
        if self.reader is not None:
            return self._user_files(d, data_dir, meta_train, val)
        if self.loader is None:
            raise ConfigError(f"{self.name} generates its tasks; it has no data to load.")
        if encoding is not None:
            text = cast(TextLoader, self.loader)
            return text(d, data_dir, meta_train=meta_train, val=val, download=download,
                        encoding=encoding)  # fmt: skip
        return self.loader(d, data_dir, meta_train=meta_train, val=val, download=download)

    def _user_files(
        self, d: LoadSettings, data_dir: Path | None, meta_train: int, val: int
    ) -> tuple[LabeledSet, ClassSplit]:
        assert self.reader is not None
        if d.path is None:
            raise ConfigError(f"data.dataset {self.name!r} needs data.path: {self.path_is}.")
        path = Path(d.path).expanduser()
        if not path.is_absolute() and data_dir is not None and not path.exists():
            path = data_dir / path
        data = self.reader(path, d)
        train = meta_train - val
        if meta_train >= data.num_classes or train < 1:
            raise ConfigError(
                f"{data.name} has {data.num_classes} classes; set data.meta_train_classes below "
                "that (and above data.val_classes) so some classes are left for testing."
            )
        return data, random_split(data.num_classes, train=train, val=val, seed=d.split_seed)


def input_kind(data: LabeledSet) -> InputKind:
    """What a labeled set holds: sentences, images (``[M, C, H, W]``) or feature vectors."""
    if is_text(data.preprocessing):
        return "text"
    return "image" if data.x.dim() == 4 else "table"
