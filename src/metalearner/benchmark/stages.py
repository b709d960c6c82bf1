"""The stages of a long command, each a line as it starts and as it ends, with the time spent
and an estimate of what is left: plain lines, readable in a log file as in a terminal.

What is left is the estimate of the stages not yet ended, scaled by how long the ended ones
took against their estimates, so a machine slower than measured shows it after one stage.

Example:
    >>> stages = Stages([Stage("maml", "training", "trained", 42.0)], log=print)
    >>> stages.start("maml", "training", "into runs/b/maml")
    [1/1] maml: training into runs/b/maml (about 42 s; about 42 s left)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    """One stage of a command.

    Attributes:
        who: what it works on (a strategy's name).
        doing, done: the work, as it starts (``training``) and once ended (``trained``).
        seconds: its estimated duration.
        share: the fraction of the command's wall clock it takes: 1, or 1/N where N stages
            run at once.
    """

    who: str
    doing: str
    done: str
    seconds: float
    share: float = 1.0


class Stages:
    """The planned stages of a command, announced through ``log`` as each starts and ends."""

    def __init__(self, stages: Sequence[Stage], *, log: Callable[[str], None]) -> None:
        self._stages = {(s.who, s.doing): (number, s) for number, s in enumerate(stages, 1)}
        self._log = log
        self._began = time.perf_counter()
        self._started: dict[tuple[str, str], float] = {}
        self._ended: set[tuple[str, str]] = set()
        self._took = self._expected = 0.0  # ended stages: their real and estimated seconds

    def start(self, who: str, doing: str, detail: str = "") -> None:
        """Says that ``who``'s stage ``doing`` starts (``detail``: e.g. where it writes)."""
        key = (who, doing)
        number, stage = self._stages[key]
        self._started[key] = time.perf_counter()
        what = f"{doing} {detail}".strip()
        self._log(
            f"{self._count(number)} {who}: {what} (about {duration(stage.seconds)}; about "
            f"{duration(self.left())} left)"
        )

    def end(self, who: str, doing: str) -> None:
        """Says that ``who``'s stage ``doing`` ended, in how long, and what is left."""
        key = (who, doing)
        number, stage = self._stages[key]
        took = time.perf_counter() - self._started.get(key, self._began)
        self._ended.add(key)
        self._took += took
        self._expected += stage.seconds
        elapsed = time.perf_counter() - self._began
        self._log(
            f"{self._count(number)} {who}: {stage.done} in {duration(took)}; "
            f"{duration(elapsed)} elapsed, about {duration(self.left())} left"
        )

    def left(self) -> float:
        """Estimated seconds of wall clock until every stage has ended."""
        pace = self._took / self._expected if self._expected > 0 else 1.0
        return pace * sum(
            s.seconds * s.share for key, (_, s) in self._stages.items() if key not in self._ended
        )

    def _count(self, number: int) -> str:
        return f"[{number}/{len(self._stages)}]"


def duration(seconds: float) -> str:
    """``0.4 s``, ``42 s``, ``10.0 min`` or ``1.5 h``."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
