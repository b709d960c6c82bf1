"""Named run configs with the papers' settings, shipped as commented YAML files.

Each preset is ``metalearner/config/preset_files/<name>.yaml``; its leading comments say what it is
(first line), where the setting comes from (``# source:``), the published score to expect
(``# expected:``) and how long the paper trained for it (``# paper steps: 60000, meta-batch 32``,
with where that is stated), against which a shorter run's score is read. The image benchmarks'
presets also say how the paper's code normalised with BatchNorm (``# batchnorm: inductive (...)``),
on how many test tasks its score was taken (``# paper test tasks: 600``) and what training
costs on a GPU (``# gpu time: ~4 h on one V100 (...)``, stated or estimated). ``metalearner
presets`` lists them; ``metalearner train --preset NAME`` runs one, and copying the file is the
way to start a variation.

References:
    Finn et al., "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks", ICML 2017.
    Nichol et al., "On First-Order Meta-Learning Algorithms", 2018. Snell et al., "Prototypical
    Networks for Few-shot Learning", NeurIPS 2017. Li et al., "Meta-SGD", 2017. Lee et al.,
    "Meta-Learning with Differentiable Convex Optimization", CVPR 2019. Bertinetto et al.,
    "Meta-learning with differentiable closed-form solvers", ICLR 2019. Tian et al., "Rethinking
    Few-Shot Image Classification: a Good Embedding Is All You Need?", ECCV 2020.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from metalearner.config.yaml_files import read_yaml
from metalearner.errors import ConfigError, did_you_mean

_BUDGET = re.compile(r"(≥ ?)?(\d+), meta-batch (\d+)\b")
_LEADING_NUMBER = re.compile(r"\d+")
_FIELDS = ("source", "expected", "paper steps", "batchnorm", "paper test tasks", "gpu time")


@dataclass(frozen=True)
class PaperBudget:
    """How long a paper trained for its published score (a preset's ``# paper steps:``).

    Attributes:
        steps: outer steps (meta-iterations, episodes).
        meta_batch: tasks per step.
        at_least: the paper states no length, only that it trained at least this long (an
            early stop after a patience: ``≥ 20000``).
    """

    steps: int
    meta_batch: int
    at_least: bool = False

    def share(self, steps: int, meta_batch: int) -> float:
        """The fraction of the paper's training tasks that ``steps`` of ``meta_batch`` tasks saw
        (an upper bound where the paper's length is ``at_least``)."""
        return steps * meta_batch / (self.steps * self.meta_batch)


@dataclass(frozen=True)
class Preset:
    """A preset file and what its comments say.

    Attributes:
        name: what ``--preset`` takes (the file name without ``.yaml``).
        path: the YAML file.
        title: its first comment line.
        source: the paper (``# source:``).
        expected: the published score (``# expected:``).
        paper_steps: the paper's training (``# paper steps:``): outer steps, meta-batch and
            where they are stated; empty where the paper states none.
        batchnorm: how the paper's code normalised a task's queries (``# batchnorm:``), its
            mode first (``transductive`` or ``inductive``, :mod:`metalearner.nn.layers`).
        paper_test_tasks: the test tasks behind the published score (``# paper test tasks:``),
            their number first.
        gpu_time: what training costs on a GPU (``# gpu time:``), stated or estimated (it
            says which).
    """

    name: str
    path: Path
    title: str
    source: str
    expected: str
    paper_steps: str = ""
    batchnorm: str = ""
    paper_test_tasks: str = ""
    gpu_time: str = ""

    @property
    def norm_mode(self) -> str:
        """The BatchNorm mode of the paper's code (``# batchnorm:``'s first word), or ``""``."""
        return self.batchnorm.split(" ", 1)[0]

    @property
    def test_task_count(self) -> int | None:
        """The number of test tasks behind the published score, where one is recorded."""
        found = _LEADING_NUMBER.match(self.paper_test_tasks.replace(",", ""))
        return int(found[0]) if found else None

    @property
    def paper_budget(self) -> PaperBudget | None:
        """The training behind the published score, or ``None`` where none is recorded."""
        found = _BUDGET.match(self.paper_steps)
        if not found:
            return None
        return PaperBudget(int(found[2]), int(found[3]), at_least=bool(found[1]))

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
    title, fields = "", dict.fromkeys(_FIELDS, "")
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        text = line.lstrip("#").strip()
        key, sep, value = text.partition(":")
        if sep and key in fields:
            fields[key] = value.strip()
        elif not title:
            title = text
    return Preset(path.stem, path, title, *(fields[key] for key in _FIELDS))
