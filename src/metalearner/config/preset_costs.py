"""What a preset costs to train here: measured seconds per outer step times the preset's steps.

The seconds come from ``benchmarks/preset_costs.py``, which trains a few outer steps of every
preset and writes ``preset_costs.json`` beside this file with the machine it ran on (threads,
CPU, torch); ``metalearner presets`` shows the result. A cost is an estimate of the outer steps
alone (validations and the final scoring come on top) on that kind of machine; a GPU column
appears once a GPU was measured.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

COSTS_FILE = "preset_costs.json"


@dataclass(frozen=True)
class Measured:
    """Seconds per outer step of one preset on each kind of device measured.

    Attributes:
        seconds_per_step: ``{"cpu": 2.1, "cuda": 0.08}``: the devices measured.
        steps: the preset's outer steps (what the cost multiplies).
        measured: per device, when and on what it was measured where that differs from the
            machine line (a preset measured alone, or on stand-ins of its data).
    """

    seconds_per_step: dict[str, float]
    steps: int
    measured: dict[str, str] = field(default_factory=dict)

    def cost(self, device: str) -> str:
        """``2.1 s/step × 60000 ≈ 35 h``, or ``""`` where ``device`` was not measured."""
        per_step = self.seconds_per_step.get(device)
        if per_step is None:
            return ""
        return f"{per_step:.3g} s/step × {self.steps} ≈ {duration(per_step * self.steps)}"


def duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``3.5 h`` or ``4.2 days``: a length people read at a glance."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def measured_costs() -> tuple[dict[str, Measured], dict[str, Any]]:
    """Each measured preset's seconds per step, and the machines they were measured on
    (``{"cpu": "2-core AMD EPYC, 2 threads, torch 2.13.0", ...}``); empty if never measured."""
    file = resources.files("metalearner.config").joinpath(COSTS_FILE)
    if not file.is_file():
        return {}, {}
    raw = json.loads(file.read_text())
    costs = {
        name: Measured(
            seconds_per_step=dict(entry["seconds_per_step"]),
            steps=int(entry["steps"]),
            measured=dict(entry.get("measured", {})),
        )
        for name, entry in raw.get("presets", {}).items()
    }
    return costs, dict(raw.get("machines", {}))
