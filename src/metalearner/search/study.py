"""The Optuna study behind a search: storage, sampler and pruner, by name.

The study lives in a database, so it outlives any process: SQLite in the search folder by
default, or any URL Optuna's RDB storage takes (PostgreSQL, MySQL) for workers on several
machines; a plain ``postgresql://`` URL goes through psycopg 3, the driver of the ``postgres``
extra. Every worker heartbeats its running trial; a trial whose worker died on another machine
is failed ``GRACE`` seconds after its last heartbeat and queued to run again with the same
parameters (a trial of this machine is found at once: :mod:`.recovery`).

Each trial's sampler is seeded from the plan's seed and the trial's number, which the storage
hands out once per study: a search continued after a kill draws new settings, two workers draw
from different seeds, and a search run again from the start draws what it drew before.

References:
    Akiba et al., "Optuna: A Next-generation Hyperparameter Optimization Framework", KDD 2019.
    Bergstra et al., "Algorithms for Hyper-Parameter Optimization", NeurIPS 2011 (TPE).
    Hansen, "The CMA Evolution Strategy: A Tutorial", 2016. Deb et al., "A Fast and Elitist
    Multiobjective Genetic Algorithm: NSGA-II", IEEE TEC 2002. Li et al., "Hyperband", JMLR 2018.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import sqlalchemy.exc
from optuna.distributions import BaseDistribution
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from metalearner.errors import ConfigError, require_extra

from .plan import SearchPlan
from .recovery import rerun

# Seconds: a worker silent for GRACE is taken as dead. A trial takes minutes; a worker that
# is alive but busy (a GIL-bound step, a slow database) must not be mistaken for a dead one.
HEARTBEAT, GRACE = 10, 30


def storage_url(plan: SearchPlan, out: Path) -> str:
    """``plan.storage``, or SQLite in ``out/study.db``."""
    return plan.storage or f"sqlite:///{(out / 'study.db').resolve()}"


def open_study(plan: SearchPlan, out: Path, *, worker: int = 0) -> optuna.Study:
    """The plan's study (created on first use, loaded after), with its sampler and pruner.

    ``worker`` (the worker's index in this command) changes nothing: each trial's own number
    seeds its sampler, so workers draw different settings without seeds of their own.
    """
    return optuna.create_study(
        storage=_storage(storage_url(plan, out)),
        study_name=plan.study_name,
        direction="maximize" if plan.metric == "accuracy" else "minimize",
        sampler=SeededPerTrial(
            lambda seed: make_sampler(plan.sampler, seed, plan.trials), plan.seed
        ),
        pruner=make_pruner(plan.pruner),
        load_if_exists=True,
    )


def check_storage(url: str) -> None:
    """Connects to the database at ``url`` (creating Optuna's tables), creating no study.

    Raises:
        ConfigError: a bad URL, a missing database driver, or a database that does not answer.
    """
    _storage(url)


def _storage(url: str, *, attempts: int = 5) -> RDBStorage:
    """Optuna's RDB storage at ``url``, retried while another process creates its tables.

    Optuna creates a new database's tables on first connection, without a lock, so workers
    started together on one new database collide: "table studies already exists", or a
    duplicate ``alembic_version`` row (optuna/optuna#1092). The retry finds the tables made and
    goes on; any other database error is raised at once.
    """
    # SQLite serialises writers: wait for the lock rather than fail when workers write at once.
    engine = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else None
    driven = _with_driver(url)

    def connect() -> RDBStorage:
        with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna, and relied on
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return RDBStorage(
                driven,
                engine_kwargs=engine,
                heartbeat_interval=HEARTBEAT,
                grace_period=GRACE,
                heartbeat_stale_trial_callback=rerun,
            )

    for attempt in range(attempts - 1):
        try:
            return _connect(connect, url)
        except sqlalchemy.exc.DBAPIError as error:
            created_meanwhile = isinstance(error, sqlalchemy.exc.IntegrityError) or (
                "already exists" in str(error.orig)
            )
            if not created_meanwhile:
                raise _unreachable(url, error) from None
            time.sleep(0.1 * (attempt + 1))
    try:
        return _connect(connect, url)  # the last attempt: any error is raised
    except sqlalchemy.exc.DBAPIError as error:
        raise _unreachable(url, error) from None


def _with_driver(url: str) -> str:
    """``url`` with the driver SQLAlchemy is to use: psycopg 3 (the ``postgres`` extra's) for a
    plain ``postgresql://``, for which SQLAlchemy would pick psycopg2.

    Raises:
        MissingExtraError: a PostgreSQL URL without psycopg installed, naming the extra.
    """
    scheme, _, rest = url.partition("://")
    if scheme not in ("postgresql", "postgres", "postgresql+psycopg"):
        return url
    require_extra("postgres", "psycopg")
    return f"postgresql+psycopg://{rest}"


# The pip package of each database driver module SQLAlchemy imports (its default ones first).
PACKAGES = {"psycopg": "psycopg[binary]", "psycopg2": "psycopg2-binary", "MySQLdb": "mysqlclient",
            "pymysql": "PyMySQL", "oracledb": "oracledb", "pyodbc": "pyodbc"}  # fmt: skip


def _connect(connect: Callable[[], RDBStorage], url: str) -> RDBStorage:
    """``connect()``, with a bad URL or a missing database driver said in one sentence."""
    try:
        return connect()
    except sqlalchemy.exc.ArgumentError:
        raise ConfigError(
            f"--storage {_shown(url)!r} is not a database URL; write e.g. "
            "sqlite:///path/to/study.db or postgresql://user:password@host/database."
        ) from None
    except ImportError as error:
        cause = error.__cause__ if isinstance(error.__cause__, ImportError) else error
        module = (cause.name or "").split(".")[0] or url.partition(":")[0]
        raise ConfigError(
            f"--storage {_shown(url)!r} needs the database driver {module}, which is not "
            f"installed; install it (pip install '{PACKAGES.get(module, module)}') or use "
            "another --storage."
        ) from None


def _unreachable(url: str, error: sqlalchemy.exc.DBAPIError) -> ConfigError:
    reason = str(error.orig).strip().splitlines()[0] if error.orig is not None else "no answer"
    check = (
        "that its folder exists and is writable"
        if url.startswith("sqlite")
        else "that its server runs and accepts connections"
    )
    return ConfigError(
        f"Cannot reach the database of --storage {_shown(url)!r} ({reason.rstrip('.')}); check "
        f"{check}, or use another --storage."
    )


def _shown(url: str) -> str:
    """``url`` without its password."""
    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return url


def make_sampler(name: str, seed: int, trials: int) -> optuna.samplers.BaseSampler:
    """The sampler called ``name``, seeded with ``seed``."""
    startup = max(2, min(10, trials // 4))  # random trials before the model takes over
    if name == "tpe":
        # multivariate + group: a joint model per strategy's own parameters (a conditional
        # space); constant_liar keeps parallel workers from proposing the same point.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(
                seed=seed, n_startup_trials=startup, multivariate=True, group=True,
                constant_liar=True,
            )  # fmt: skip
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup)
    if name == "cmaes":
        # CMA-ES models the continuous parameters; the strategy choice is drawn independently.
        return optuna.samplers.CmaEsSampler(
            seed=seed, n_startup_trials=startup, warn_independent_sampling=False
        )
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(50, trials)))
    return optuna.samplers.RandomSampler(seed=seed)


class SeededPerTrial(optuna.samplers.BaseSampler):
    """A sampler made afresh for each trial, seeded from the plan's seed and the trial's number.

    A sampler seeded once per process draws, in every process, the settings it drew in the
    first: a search continued after a kill would repeat its first trials, and two workers
    starting on a new study would draw the same ones. The samplers keep nothing between trials
    that the study does not hold (TPE, GP, CMA-ES and NSGA-II read the finished trials, and
    CMA-ES its state, from the study), so a fresh one per trial loses nothing but its caches.

    Args:
        make: the sampler, given its seed.
        seed: the plan's seed.
    """

    def __init__(self, make: Callable[[int], optuna.samplers.BaseSampler], seed: int) -> None:
        self._make, self._seed = make, seed
        self._sampler = make(seed)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Makes the sampler of ``trial`` (Optuna calls this first for every trial)."""
        mixed = np.random.SeedSequence([self._seed % 2**64, trial.number])
        self._sampler = self._make(int(mixed.generate_state(1)[0]))
        self._sampler.before_trial(study, trial)

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return self._sampler.infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self._sampler.sample_relative(study, trial, search_space)

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        return self._sampler.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self._sampler.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._sampler.reseed_rng()


def make_pruner(name: str) -> optuna.pruners.BasePruner:
    """``median`` (stop a trial below the median of earlier ones at the same validation),
    ``hyperband`` or ``none``."""
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=7)
    return optuna.pruners.NopPruner()


def finished(study: optuna.Study) -> int:
    """Trials that count towards the plan's total: complete or pruned."""
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return len(study.get_trials(deepcopy=False, states=states))
