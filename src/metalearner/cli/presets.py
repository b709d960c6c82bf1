"""``metalearner presets``: the papers' settings shipped as YAML files."""

from __future__ import annotations

from rich.console import Console


def presets_cmd() -> None:
    """List the presets: the papers' settings, their sources and published scores."""
    from rich.table import Table

    from metalearner.config.presets import list_presets, presets_dir

    table = Table(title=f"presets (YAML files in {presets_dir()})")
    for column in ("name", "setting", "expected (published)"):
        table.add_column(column)
    for p in list_presets():
        table.add_row(p.name, p.title, p.expected)
    Console(width=160).print(table)
