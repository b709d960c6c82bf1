"""Named run configs with the papers' settings, shipped as commented YAML files.

Each preset is ``metalearner/config/preset_files/<name>.yaml``; its leading comments say what it is
(first line), where the setting comes from (``# source:``) and the published score to expect
(``# expected:``). ``metalearner presets`` lists them; ``metalearner train --preset NAME``
runs one, and copying the file is the way to start a variation.

References:
    Finn et al., "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks", ICML 2017.
    Nichol et al., "On First-Order Meta-Learning Algorithms", 2018. Snell et al., "Prototypical
    Networks for Few-shot Learning", NeurIPS 2017. Li et al., "Meta-SGD", 2017.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from metalearner.config.yaml_files import read_yaml
from metalearner.errors import ConfigError, did_you_mean


@dataclass(frozen=True)
class Preset:
    """A preset file and what its comments say.

    Attributes:
        name: what ``--preset`` takes (the file name without ``.yaml``).
        path: the YAML file.
        title: its first comment line.
        source: the paper (``# source:``).
        expected: the published score (``# expected:``).
    """

    name: str
    path: Path
    title: str
    source: str
    expected: str

    def load(self) -> dict[str, Any]:
        """The preset's settings as a mapping (for :func:`metalearner.runs.config.load_config`)."""
        return read_yaml(self.path)


def presets_dir() -> Path:
    """The folder holding the preset YAML files."""
    return Path(str(resources.files("metalearner.config") / "preset_files"))


def list_presets() -> list[Preset]:
    """Every preset, sorted by name."""
    return [_describe(p) for p in sorted(presets_dir().glob("*.yaml"))]


def get_preset(name: str) -> Preset:
    """The preset called ``name``.

    Raises:
        ConfigError: for an unknown name (the message lists the known ones).
    """
    found = {p.name: p for p in list_presets()}
    if name not in found:
        raise ConfigError(
            f"Unknown preset {name!r}{did_you_mean(name, found)}; use one of {', '.join(found)} "
            "(see `metalearner presets`)."
        )
    return found[name]


def _describe(path: Path) -> Preset:
    title, fields = "", {"source": "", "expected": ""}
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        text = line.lstrip("#").strip()
        key, sep, value = text.partition(":")
        if sep and key in fields:
            fields[key] = value.strip()
        elif not title:
            title = text
    return Preset(path.stem, path, title, fields["source"], fields["expected"])
