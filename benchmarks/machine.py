"""Recording a benchmark run in RESULTS.md (imported by the benchmark scripts).

RESULTS.md holds one section per benchmark, the latest run's, so that it stays a page of current
tables: :func:`record` writes a run's section in place of the one with the same title and
appends the section it replaces, unchanged, to the newest file in ``history/``, so that nothing
measured is lost.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from pathlib import Path

import torch

from metalearner.runs.curves import read_curves
from metalearner.runs.provenance import commit, cpu

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
"""The current tables; ``history/`` beside it holds the sections they replaced."""


def describe() -> str:
    """CPU, torch threads and version, and the GPU where one was used."""
    gpu = ""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        gpu = f"{torch.cuda.get_device_name(0)} with "
    return f"{gpu}{cpu()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"


def validation_curve(folder: Path) -> str:
    """The run in ``folder``'s validation scores against its training time, as one line.

    What a missed target needs beside its number (issue 29): whether the score was still
    climbing when the budget ran out (steps/s limit it) or flat long before (the strategy does).
    """
    curves = read_curves(folder)
    scale = 100 if curves.metric == "accuracy" else 1  # accuracy in %, other scores as logged
    points = ", ".join(
        f"{p.seconds / 60:.1f} min {scale * p.value:.2f}"
        + (f" ± {scale * p.ci95:.2f}" if p.ci95 else "")
        for p in curves.val
    )
    what = f"validation {curves.metric or 'score'}{' (%)' if scale == 100 else ''}"
    return f"{what} against training time: {points or 'none'}"


def record(
    title: str,
    command: str,
    body: str,
    *,
    machine: str | None = None,
    details: Sequence[str] = (),
    results: Path | None = None,
) -> str:
    """Writes a run's section into RESULTS.md in place of the last run of the same benchmark.

    The title is the section's key: it names the benchmark and the part of it that one run
    measures (a setting, a device, a set of presets), the same from run to run. The section
    titled ``title`` is replaced where ``results`` has one (any further sections with that
    title are removed), else the new one is appended. What is replaced is appended, as it was,
    to the newest file of ``history/`` beside ``results`` (by name: ``history/YYYY-MM….md``),
    or to a new ``history/YYYY-MM.md`` where there is none.

    Args:
        title: the section's heading, without the ``## ``.
        command: the command that reproduces the run.
        body: what the run measured (a table, and notes).
        machine: the machine line; default :func:`describe`.
        details: further ``- `` lines after the machine line (``"Allocator: ..."``).
        results: the file to write; default :data:`RESULTS` (benchmarks/RESULTS.md).

    Returns:
        The section written.
    """
    results = RESULTS if results is None else results
    text = results.read_text() if results.exists() else "# Benchmark results\n"
    head, sections = _split(text)
    heading = f"## {title}"
    replaced = [s for s in sections if _heading(s) == heading]
    history = _newest(results.parent / "history")
    if replaced:
        history = history or _new_history(results.parent / "history")
        archived = history.read_text()
        with history.open("a") as f:
            f.write("" if archived.endswith("\n") else "\n")
            f.write("".join(f"\n{s.rstrip()}\n" for s in replaced))
    lines = [
        heading,
        "",
        f"- Command: `{command}`",
        f"- Machine: {machine if machine is not None else describe()}",
        *(f"- {line}" for line in details),
        f"- Commit: {commit()} ({date.today()})",
    ]
    if history is not None:
        link = history.relative_to(results.parent).as_posix()
        lines.append(f"- Older runs: [{link}]({link})")
    section = "\n".join([*lines, "", body.strip("\n"), ""])
    if replaced:
        at = sections.index(replaced[0])
        sections = [s for s in sections if _heading(s) != heading]
        sections.insert(at, section)
    else:
        sections.append(section)
    parts = [head.rstrip("\n")] if head.strip() else []
    parts += [s.rstrip("\n") for s in sections]
    results.write_text("\n\n".join(parts) + "\n")
    return section


def _split(text: str) -> tuple[str, list[str]]:
    """The text before the first section, and the sections (a ``## `` heading outside a code
    block starts one and runs to the next)."""
    head: list[str] = []
    sections: list[list[str]] = []
    fenced = False
    for line in text.splitlines(keepends=True):
        if line.startswith("```"):
            fenced = not fenced
        if not fenced and line.startswith("## "):
            sections.append([line])
        elif sections:
            sections[-1].append(line)
        else:
            head.append(line)
    return "".join(head), ["".join(s) for s in sections]


def _heading(section: str) -> str:
    return section.split("\n", 1)[0].rstrip()


def _newest(folder: Path) -> Path | None:
    files = sorted(folder.glob("*.md")) if folder.is_dir() else []
    return files[-1] if files else None


def _new_history(folder: Path) -> Path:
    path = folder / f"{date.today():%Y-%m}.md"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"# Benchmark results replaced in RESULTS.md, from {date.today():%Y-%m}\n\n"
        "Each section is one run as RESULTS.md showed it until a later run of the same "
        "benchmark replaced it, oldest first.\n"
    )
    return path
