"""``metalearner presets``: the papers' settings shipped as YAML files; ``presets copy`` writes
one out to edit and train, as torchtune's ``tune cp`` copies a recipe's config."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

presets_app = typer.Typer(
    help="List the presets: the papers' settings, their sources and published scores.",
    invoke_without_command=True,
)


@presets_app.callback()
def presets_cmd(ctx: typer.Context) -> None:
    """List the presets: the papers' settings, their sources and published scores."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.table import Table

    from metalearner.config.preset_costs import measured_costs
    from metalearner.config.presets import list_presets, presets_dir

    costs, machines = measured_costs()
    devices = [d for d in ("cpu", "cuda") if d in machines]
    table = Table(title=f"presets (YAML files in {presets_dir()})")
    for column in ("name", "setting", "expected (published)", "paper's BatchNorm, test tasks"):
        table.add_column(column)
    for device in devices:
        table.add_column(f"training cost, {device} (measured)")
    # A numbered mark for each way presets were measured apart from the machine line's run.
    marks: dict[str, dict[str, int]] = {}
    for device in devices:
        apart = sorted({m.measured[device] for m in costs.values() if device in m.measured})
        marks[device] = {note: i + 1 for i, note in enumerate(apart)}
    for p in list_presets():
        measured = costs.get(p.name)
        cost = []
        for device in devices:
            if measured is None:
                cost.append("not measured")
                continue
            note = measured.measured.get(device)
            cost.append(measured.cost(device) + (f" †{marks[device][note]}" if note else ""))
        # The preset's own comments give the detail (and where each fact is stated).
        protocol = [p.norm_mode, str(p.test_task_count) if p.test_task_count else ""]
        table.add_row(p.name, p.title, p.expected, ", ".join(filter(None, protocol)), *cost)
    console = Console(markup=False, width=200)
    console.print(table)
    for device in devices:
        console.print(
            f"{device} costs: outer steps only (validation and scoring come on top), measured on "
            f"{machines[device]} by benchmarks/preset_costs.py."
        )
        for note, mark in marks[device].items():  # presets measured apart from that run
            console.print(f"†{mark} {device}: measured {note}.")


@presets_app.command("copy")
def copy_cmd(
    name: Annotated[str, typer.Argument(help="The preset (see `metalearner presets`).")],
    dest: Annotated[
        Path | None,
        typer.Argument(help="A .yaml file or a folder to write it to (default: NAME.yaml here)."),
    ] = None,
) -> None:
    """Write a preset's YAML (with its comments) to a file to edit, then train it."""
    from metalearner.config.presets import get_preset
    from metalearner.errors import ConfigError, file_above

    preset = get_preset(name)
    target = dest if dest is not None else Path(f"{preset.name}.yaml")
    if target.is_dir() or target.suffix.lower() not in (".yaml", ".yml"):  # a folder
        target = target / f"{preset.name}.yaml"
    if target.exists():
        raise ConfigError(f"{target} already exists; give another file name or remove it.")
    blocker = file_above(target)
    if blocker is not None:
        raise ConfigError(f"{target}: {blocker} is a file, not a folder; give another path.")
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("x") as out:  # "x": a file that appeared meanwhile is not overwritten
        out.write(preset.path.read_text())
    typer.echo(f"wrote {target}; edit it, then: metalearner train {target}")
