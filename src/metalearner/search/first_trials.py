"""The first trials of a search: every listed strategy once, at its paper's settings, before the
sampler takes over.

A sampler draws the strategy like any other choice, so a few trials may never try a listed
strategy (3 trials over fomaml and protonet once drew fomaml three times). A search therefore
queues one trial for each listed strategy the study has no trial of, at the strategy's settings
in its preset (or its defaults): the point its paper found good, and inside the searched space
(a setting the user's space leaves out of reach is drawn instead).

Several commands may start one study together (machines sharing it through ``--storage``; the
workers of one command start after it queued). Each queues what it found missing, then keeps a
queued first trial of a strategy only if no earlier trial of the study is one too, and turns a
later one still waiting into an ordinary trial, drawn by the sampler. The lowest number wins
in every command, so each strategy is queued once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from metalearner.runs.config import to_dict

from .objective import RUN, space_of
from .plan import SearchPlan
from .space import Param

FIRST = "first trial of"  # user attribute: the strategy a queued first trial tries
FIXED = "fixed_params"  # Optuna's system attribute: the values a queued trial is given


def queue_first_trials(plan: SearchPlan, study: optuna.Study) -> list[str]:
    """Queues a first trial of each of ``plan.strategies`` that ``study`` has no trial of.

    Returns:
        The strategies queued, in the plan's order (none where every one has a trial).
    """
    tried = {strategy_of(t) for t in study.get_trials(deepcopy=False)}
    missing = [s for s in plan.strategies if s not in tried]
    for strategy in missing:
        study.enqueue_trial(paper_values(plan, strategy), user_attrs={FIRST: strategy})
    if missing:
        _keep_the_earliest(study)
    return missing


def strategy_of(trial: FrozenTrial) -> str | None:
    """The strategy ``trial`` tries: drawn, or given to a queued trial; ``None``: not yet known."""
    given: Mapping[str, Any] = trial.system_attrs.get(FIXED) or {}
    found = trial.params.get("strategy", given.get("strategy"))
    return None if found is None else str(found)


def paper_values(plan: SearchPlan, strategy: str) -> dict[str, Any]:
    """``strategy`` and the value of each of its searched settings in its preset (or defaults),
    as the study names them, where the searched range holds it."""
    settings = to_dict(plan.base_config(strategy, plan.trial_budget))
    values: dict[str, Any] = {"strategy": strategy}
    for p in space_of(plan, strategy):
        value = _lookup(settings, p.key)
        if isinstance(p, Param) and _holds(p, value):
            values[f"{strategy}.{p.name}"] = value
    return values


def _keep_the_earliest(study: optuna.Study) -> None:
    """Turns every first trial of a strategy after its earliest, while still waiting, into an
    ordinary trial (see the module doc)."""
    earliest: set[str] = set()
    for trial in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        strategy = trial.user_attrs.get(FIRST)
        if strategy is None or RUN in trial.user_attrs:
            continue  # a rerun of a cut-off trial carries its run folder: that trial again
        if strategy not in earliest:
            earliest.add(strategy)
        elif trial.state == TrialState.WAITING:
            # Through the storage, as Optuna's own enqueue_trial writes: a trial not yet taken
            # by a worker takes its values when it starts.
            study._storage.set_trial_system_attr(trial._trial_id, FIXED, {})
            study._storage.set_trial_user_attr(trial._trial_id, FIRST, None)


def _lookup(settings: Mapping[str, Any], key: str) -> Any:
    """The value at dotted ``key`` (``optimizer.lr``) of a run config's plain settings."""
    value: Any = settings
    for part in key.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def _holds(p: Param, value: Any) -> bool:
    """Whether ``p`` can take ``value``."""
    if p.kind == "choice":
        return value in p.choices
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if p.kind == "int" and value != int(value):
        return False
    return p.low <= value <= p.high
