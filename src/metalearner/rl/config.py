"""Every setting of a meta-RL run in one frozen dataclass, with the MAML paper's defaults.

``--set key=value`` overrides are parsed as YAML values and checked against the field types
(:mod:`metalearner.config.types`, shared with the supervised configs). Settings left ``null`` are
filled from the task family (meta-batch 20 and horizon 100 for navigation, 40 and 200 for
HalfCheetah) when the config is resolved, so a run folder's ``config.yaml`` states every value
the run used.

References:
    Finn et al., "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks", ICML 2017,
    appendix A.2 (inner step 0.1, 20 trajectories per task, TRPO with KL 0.01). Schulman et al.,
    "Trust Region Policy Optimization", ICML 2015 (conjugate gradient, line search).
    Schulman et al., "Proximal Policy Optimization Algorithms", 2017 (ε = 0.2).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from metalearner.config.bounds import (
    ADAPT_STEPS,
    EXAMPLES,
    META_BATCH,
    SECONDS,
    STEPS,
    TASKS,
    THREADS,
    WIDTH,
    Range,
    check_bounds,
)
from metalearner.config.settings import apply_overrides, check_seed, from_dict, plain
from metalearner.config.yaml_files import dump_yaml, read_saved_yaml
from metalearner.errors import ConfigError, DataError
from metalearner.rl.families import get_family
from metalearner.runs.folder import write_atomic


@dataclass(frozen=True)
class RLConfig:
    """One meta-RL run: task family, strategy, inner and outer loop, evaluation, bookkeeping."""

    env: Literal["navigation2d", "halfcheetah-vel", "halfcheetah-dir"] = "navigation2d"
    # maml: meta-learn the initialisation. pretrain: the baseline trained on all tasks jointly
    # (the outer optimiser on pooled trajectories of random tasks, no adaptation in training).
    method: Literal["maml", "pretrain"] = "maml"
    outer: Literal["trpo", "ppo"] = "trpo"  # the meta-optimiser (ppo: cheaper, first-order)
    # Meta-iterations (pytorch-maml-rl's 2D navigation run: 500).
    iterations: Annotated[int, STEPS] = 500
    # Seconds of training (rollouts and updates; not checkpoints) after which the run stops
    # and saves as at its last iteration; null: iterations only.
    time_budget: Annotated[float | None, SECONDS] = None
    # Tasks per iteration; null: the family's (20 / 40).
    meta_batch: Annotated[int | None, META_BATCH] = None
    trajectories: Annotated[int, EXAMPLES] = 20  # per task, before and after each inner step
    # Steps per episode; null: the family's (100 / 200).
    horizon: Annotated[int | None, Range(1, 10**6)] = None
    hidden: Annotated[tuple[int, int], WIDTH] = (100, 100)  # the policy MLP's widths (ReLU)
    init_log_std: float = 0.0  # the policy starts with σ = 1 on every action dimension
    inner_lr: float = 0.1  # α of the policy-gradient inner step
    # Inner steps during meta-training, each on fresh trajectories.
    inner_steps: Annotated[int, ADAPT_STEPS.at_least(1)] = 1
    # Treat inner gradients as constants (no second-order term); null: true for ppo only.
    first_order: bool | None = None
    gamma: float = 0.99  # discount
    gae_lambda: float = 1.0  # GAE λ (1: discounted return minus the linear baseline)
    baseline_reg: float = 1e-5  # ridge coefficient of the linear feature baseline
    normalize_advantages: bool = True  # zero mean, unit variance within each task
    max_kl: float = 0.01  # TRPO's trust region δ
    cg_iters: Annotated[int, Range(1, 10**4)] = 10  # conjugate-gradient iterations
    cg_damping: float = 0.01  # added to the KL Hessian for the solve
    ls_backtrack: float = 0.5  # the line search's shrink factor
    ls_steps: Annotated[int, Range(1, 1000)] = 15  # the line search's tries
    ppo_clip: float = 0.2  # PPO's ε
    # Adam steps per iteration on the same trajectories.
    ppo_epochs: Annotated[int, Range(1, 10**4)] = 5
    ppo_lr: float = 3e-4  # Adam's step size
    eval_steps: Annotated[int, ADAPT_STEPS] = 3  # adaptation steps scored by `rl evaluate`
    # Fixed evaluation tasks (same seed for every policy compared).
    test_tasks: Annotated[int, TASKS] = 40
    test_seed: int = 2002
    seed: int = 0  # initialisation, training tasks, rollout seeds and action noise
    # Iterations between checkpoints (also every 2 minutes, and at the end).
    save_every: Annotated[int, STEPS] = 10
    # Also train the pretrained baseline (same settings, budget and environment steps per
    # iteration, method=pretrain) into <run>/pretrain after the MAML run.
    baselines: bool = False
    # CPU threads per op (null: PyTorch's default). One by default: the policy's matrices are
    # small, and where another process holds a core, two spinning threads made an iteration 7x
    # slower (4.9 s vs 35 s for navigation on the 2-core CPU).
    threads: Annotated[int | None, THREADS] = 1

    def __post_init__(self) -> None:
        check_bounds(self)  # the sizes and counts, as declared above
        for name in ("inner_lr", "max_kl", "ppo_clip", "ppo_lr", "baseline_reg"):
            if not (getattr(self, name) > 0 and math.isfinite(getattr(self, name))):
                raise ConfigError(f"Setting {name!r} must be > 0, got {getattr(self, name)}.")
        for name in ("gamma", "gae_lambda", "ls_backtrack"):
            if not 0 < getattr(self, name) <= 1:
                raise ConfigError(f"Setting {name!r} must be in (0, 1], got {getattr(self, name)}.")
        if not (self.cg_damping >= 0 and math.isfinite(self.cg_damping)):
            raise ConfigError(f"Setting 'cg_damping' must be >= 0, got {self.cg_damping}.")
        if not math.isfinite(self.init_log_std):
            raise ConfigError(f"Setting 'init_log_std' must be finite, got {self.init_log_std}.")
        check_seed("seed", self.seed)
        check_seed("test_seed", self.test_seed)
        # Training tasks come from seed + 1's stream (θ₀ takes seed's), test tasks from
        # test_seed's and their rollouts from test_seed + 1's: no two may be the same stream.
        if self.test_seed in (self.seed, self.seed + 1):
            raise ConfigError(
                f"test_seed ({self.test_seed}) must differ from seed ({self.seed}) and seed + 1, "
                "or the test tasks would repeat training tasks."
            )

    @property
    def tasks_per_iteration(self) -> int:
        """Tasks collected per iteration: MAML's meta-batch, or as many environment steps for
        the pretrained baseline (one batch of trajectories per task and inner step, pooled)."""
        batch = self.meta_batch or 1
        return batch * (self.inner_steps + 1) if self.method == "pretrain" else batch


def resolve(cfg: RLConfig) -> RLConfig:
    """Fills ``null`` settings from the task family and the outer loop."""
    family = get_family(cfg.env)
    return dataclasses.replace(
        cfg,
        meta_batch=cfg.meta_batch or family.meta_batch,
        horizon=cfg.horizon or family.horizon,
        first_order=cfg.first_order if cfg.first_order is not None else cfg.outer == "ppo",
    )


def from_mapping(data: Mapping[str, Any]) -> RLConfig:
    """An :class:`RLConfig` from a mapping, every key and value type checked (the settings
    parser every config uses, :func:`metalearner.config.settings.from_dict`).

    Raises:
        ConfigError: an unknown key, or a value of the wrong type or out of range.
    """
    if isinstance(data, Mapping) and isinstance(data.get("env"), str):
        get_family(data["env"])  # an unknown name gets the family list, not a type message
    config: RLConfig = from_dict(RLConfig, data, "")
    return config


def load_rl_config(env: str, overrides: Sequence[str] = (), seed: int | None = None) -> RLConfig:
    """The resolved config for ``env`` with ``key=value`` overrides (values parsed as YAML).

    Example:
        >>> cfg = load_rl_config("navigation2d", ["iterations=50", "outer=ppo"])
        >>> cfg.meta_batch, cfg.first_order
        (20, True)
    """
    raw: dict[str, Any] = {"env": env}
    apply_overrides(raw, overrides, example="iterations=100")
    if seed is not None:
        raw["seed"] = seed
    return resolve(from_mapping(raw))


def to_dict(cfg: RLConfig) -> dict[str, Any]:
    """The config as plain YAML/JSON types (tuples become lists)."""
    return typing.cast(dict[str, Any], plain(dataclasses.asdict(cfg)))


def config_yaml(cfg: RLConfig) -> str:
    """``cfg`` as the YAML of a run folder's ``config.yaml``, in field order."""
    return dump_yaml(to_dict(cfg))


def write_config(path: Path, cfg: RLConfig) -> None:
    """Writes ``cfg`` as YAML, in field order."""
    write_atomic(path, config_yaml(cfg))


def read_config(path: Path) -> RLConfig:
    """The resolved config of a run folder's ``config.yaml``.

    Raises:
        DataError: the file is missing or damaged (not UTF-8 text, not YAML, empty, not a
            mapping).
    """
    if not path.is_file():
        raise DataError(
            f"{path.parent} is not an RL run folder (it has no {path.name}); give a folder "
            "written by `metalearner rl train`."
        )
    return resolve(from_mapping(read_saved_yaml(path)))
