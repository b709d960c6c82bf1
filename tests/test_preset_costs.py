"""``metalearner presets`` shows what each preset costs to train, as measured on a machine."""

from __future__ import annotations

import sys
from pathlib import Path

from metalearner.config import list_presets, read_yaml
from metalearner.config.preset_costs import Measured, duration, measured_costs
from metalearner.runs.config import load_config

sys.path.insert(0, str(Path(__file__).parent))
from cli_runner import run_cli


def test_every_preset_has_a_measured_cpu_cost_of_its_own_steps() -> None:
    # A preset added or lengthened without running benchmarks/preset_costs.py fails here.
    costs, machines = measured_costs()
    assert "cpu" in machines and "torch" in machines["cpu"]
    for preset in list_presets():
        assert preset.name in costs, f"{preset.name}: run benchmarks/preset_costs.py --only it"
        measured = costs[preset.name]
        assert measured.seconds_per_step["cpu"] > 0
        assert measured.steps == load_config(base=read_yaml(preset.path)).steps


def test_cost_is_seconds_per_step_times_steps_in_readable_units() -> None:
    m = Measured(seconds_per_step={"cpu": 2.0}, steps=60000)
    assert m.cost("cpu") == "2 s/step × 60000 ≈ 33.3 h"
    assert m.cost("cuda") == ""
    assert [duration(s) for s in (45, 600, 5 * 3600, 3 * 86400)] == [
        "45 s", "10 min", "5.0 h", "3.0 days",
    ]  # fmt: skip


def test_presets_command_shows_each_cost_and_where_it_was_measured(tmp_path: Path) -> None:
    result = run_cli("presets", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    _, machines = measured_costs()
    shown = " ".join(result.stdout.split())  # rich wraps cells
    assert "training cost, cpu (measured)" in shown
    assert f"measured on {' '.join(machines['cpu'].split())}" in shown
    assert "s/step ×" in shown and "not measured" not in shown
    # Presets measured apart (another commit, stand-ins of their data) say so under a mark.
    apart = sorted({m.measured["cpu"] for m in measured_costs()[0].values() if "cpu" in m.measured})
    for mark, note in enumerate(apart, start=1):
        assert f"†{mark} cpu: measured {' '.join(note.split())}" in shown
    assert ("†" in shown) == bool(apart)
