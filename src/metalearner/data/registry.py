"""The dataset registry: a name maps to one :class:`~.entry.Dataset` entry holding its facts.

Adding a dataset is one :func:`register` call (the shipped ones are in
:mod:`metalearner.data.datasets`); ``data.dataset``, ``--dataset`` and every question the
package asks of a dataset then find it. As in learn2learn's benchmark registry, a name maps to
one entry that returns the data and its class split (seeded explicitly here).

Example:
    >>> entry = dataset("fewrel")
    >>> entry.metric, entry.splits[0], entry.backbone()
    ('accuracy', 'wiki', 'textcnn')
"""

from __future__ import annotations

from metalearner.data.datasets import FEWREL, FOLDER, OMNIGLOT, SINUSOID
from metalearner.data.entry import CrossDomain, Dataset, Loader, LoadSettings, input_kind
from metalearner.data.image_benchmarks import IMAGE_BENCHMARKS
from metalearner.errors import ConfigError, did_you_mean

__all__ = [
    "UNSPLIT",
    "CrossDomain",
    "Dataset",
    "LoadSettings",
    "Loader",
    "dataset",
    "find",
    "input_kind",
    "names",
    "register",
    "unregister",
]

UNSPLIT = ("vinyals", "lake")
"""What ``data.split`` of a dataset without splits may say. It is ignored, but every run config
written so far records ``vinyals`` there (Omniglot's default, once everyone's), so these values
still read and new runs record the same."""

# In the order `--dataset` lists them.
_REGISTRY: dict[str, Dataset] = {
    d.name: d for d in (SINUSOID, OMNIGLOT, FOLDER, FEWREL, *IMAGE_BENCHMARKS)
}


def register(entry: Dataset) -> Dataset:
    """Adds ``entry``, so ``data.dataset: <its name>`` works everywhere; returns it.

    Raises:
        ConfigError: the name is taken.
    """
    if entry.name in _REGISTRY:
        raise ConfigError(f"Dataset {entry.name!r} is registered already; choose another name.")
    _REGISTRY[entry.name] = entry
    return entry


def unregister(name: str) -> None:
    """Removes a registered dataset (a test's own, say); an unknown name is ignored."""
    _REGISTRY.pop(name, None)


def names() -> tuple[str, ...]:
    """The registered names, in the order they were registered."""
    return tuple(_REGISTRY)


def dataset(name: str, *, setting: str | None = None) -> Dataset:
    """The entry of dataset ``name``.

    Args:
        name: a registered name.
        setting: the setting that gave it (``data.dataset``), to name in the error.

    Raises:
        ConfigError: an unknown name, in one sentence listing the known ones.
    """
    entry = find(name)
    if entry is not None:
        return entry
    hint = did_you_mean(name, _REGISTRY)
    known = ", ".join(_REGISTRY)
    if setting is not None:
        raise ConfigError(f"Setting {setting!r} must be one of {known}, got {name!r}{hint}.")
    raise ConfigError(f"Unknown dataset {name!r}{hint}; use one of {known}.")


def find(name: object) -> Dataset | None:
    """The entry of ``name``, or ``None`` (a checkpoint of a dataset not registered here)."""
    return _REGISTRY.get(name) if isinstance(name, str) else None
