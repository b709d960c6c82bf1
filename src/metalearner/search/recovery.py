"""A search after a kill: a trial whose worker died is failed and queued to run again.

Each trial records the process that runs it (:data:`PROCESS`: the machine, its boot and pid
namespace, the pid and the process's start time). When a search starts, and after each trial,
a worker fails the RUNNING trials whose process on this machine is gone, however soon after the
kill, and queues each again with its settings and run folder, so its rerun resumes that run
(:func:`recover`). A trial whose process lives is never failed: a pid counts as the same process
only with the same start time, so a pid the system has since given to another process does not
keep a dead trial running, and an ended process left unreaped (a zombie) counts as gone.

A trial run on another machine cannot be checked from here; it is left to the study's heartbeat
(:mod:`.study`): a trial whose worker is silent for longer than the grace is failed by Optuna
before a worker's next trial, and :func:`rerun` queues it again.
"""

from __future__ import annotations

import os
import socket
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

PROCESS = "process"  # user attribute: the process running the trial (see process_of)
WORKER = "worker"  # user attribute: that process's pid, for people reading the study
RERUNS = "metalearner:reruns"  # system attribute: the numbers of the trials this one reruns
# A trial is queued again at most this often, so one that kills its worker every time (out of
# memory, say) does not end every later search the same way.
MAX_RERUNS = 2


def this_process() -> dict[str, Any]:
    """This process, as a trial records the process that runs it (see :func:`process_of`)."""
    found = process_of(os.getpid())
    assert found is not None  # this process runs
    return found


def process_of(pid: int) -> dict[str, Any] | None:
    """Process ``pid`` of this machine as a trial records it; ``None`` if it does not run.

    Where Linux's ``/proc`` tells a process's start time, the record holds it, so that a later
    process given the same pid is another process (:func:`is_gone`); elsewhere a pid that runs
    is taken to be the same process (and off POSIX any pid at all), which can only keep a dead
    trial waiting for the heartbeat.
    """
    if Path("/proc/self/stat").exists():
        start = _start(pid)
        return None if start is None else {**_machine(), "pid": pid, "start": start}
    if os.name != "posix":  # Windows: os.kill(pid, 0) would stop the process, not probe it
        return {**_machine(), "pid": pid}
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # another user's process: it runs
    return {**_machine(), "pid": pid}


def is_gone(recorded: Mapping[str, Any]) -> bool:
    """Whether the process a trial recorded ran on this machine and has ended since."""
    if any(recorded.get(key) != value for key, value in _machine().items()):
        return False  # another machine's (or another boot's, or another pid namespace's)
    now = process_of(int(recorded.get("pid", 0)))
    return now is None or now.get("start") != recorded.get("start")


def recover(study: optuna.Study) -> list[int]:
    """Fails the trials cut off by a kill and queues each to run again (see the module doc).

    Returns:
        The numbers of the trials of this machine failed here. Another machine's trial whose
        heartbeat stopped is failed and queued too, by Optuna, and not counted.
    """
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        recorded = trial.user_attrs.get(PROCESS)
        if isinstance(recorded, dict) and is_gone(recorded) and _fail(study, trial):
            rerun(study, trial)
            failed.append(trial.number)
    with warnings.catch_warnings():  # "experimental" in Optuna since 2.9, and relied on
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # calls rerun for each (study.py sets it)
    return failed


def rerun(study: optuna.Study, trial: FrozenTrial) -> None:
    """Queues a cut-off ``trial`` to run again: its settings, and its run folder to resume.

    The process that ran it is not carried over: until the rerun's own process records itself,
    a rerun in progress must not look like a trial of the dead one.
    """
    history = [*trial.system_attrs.get(RERUNS, []), trial.number]
    if len(history) > MAX_RERUNS:
        return
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.WAITING,
            params=trial.params,
            distributions=trial.distributions,
            user_attrs=carried(trial.user_attrs),
            system_attrs={RERUNS: history},
        )
    )


def carried(user_attrs: Mapping[str, Any]) -> dict[str, Any]:
    """What a rerun of a trial takes from its user attributes: all but the process."""
    return {k: v for k, v in user_attrs.items() if k not in (PROCESS, WORKER)}


def _fail(study: optuna.Study, trial: FrozenTrial) -> bool:
    """Marks ``trial`` failed; ``False`` if another worker finished or failed it first.

    Through the study's storage, as Optuna's own ``fail_stale_trials`` does: ``Study.tell``
    would also hand the trial to this process's sampler, which never saw it.
    """
    try:
        return study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    except optuna.exceptions.UpdateFinishedTrialError:
        return False


def _machine() -> dict[str, str]:
    """What tells this machine from another: its name and, on Linux, its boot and pid
    namespace (a pid names the same process only within both)."""
    found = {"host": socket.gethostname()}
    try:
        found["boot"] = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        found["pids"] = os.readlink("/proc/self/ns/pid")
    except OSError:
        pass  # not Linux: the name alone
    return found


def _start(pid: int) -> int | None:
    """Process ``pid``'s start time (clock ticks after boot: the 22nd field of
    ``/proc/PID/stat``); ``None`` if no such process runs (a zombie has ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after the name, which may hold spaces
    return None if fields[0] in ("Z", "X") else int(fields[19])
