"""Every setting of a meta-training run as frozen dataclasses; YAML in, resolved YAML out.

A run is described by one :class:`RunConfig`. It is read from YAML (a file or a preset) with
``--set key=value`` overrides, checked field by field, and *resolved*: settings left to the
strategy (``optimizer.lr``, ``meta_batch``, ``optimizer.name``, ``optimizer.schedule``) are
filled from the strategy's own config, so the ``config.yaml`` written into a run folder states
every value the run used.

Example:
    >>> cfg = load_config(overrides=["strategy=maml", "data.dataset=sinusoid", "steps=100"])
    >>> cfg.optimizer.lr  # MAML's meta_lr
    0.001
    >>> print(to_yaml(cfg))
"""

from __future__ import annotations

import dataclasses
import math
import typing
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from metalearner.config.bounds import (
    EPISODE_BYTES_MAX,
    META_BATCH,
    SECONDS,
    STEPS,
    TASKS,
    THREADS,
    WIDTH,
    Range,
    check_bounds,
)
from metalearner.config.settings import (
    apply_overrides,
    assign,
    check_seed,
    from_dict,
    plain,
    tuples,
    whole_numbers,
)
from metalearner.config.yaml_files import dump_yaml, read_yaml
from metalearner.data.config import DataConfig, resolve_data, training_classes
from metalearner.data.registry import dataset
from metalearner.data.subwords import MARKERS, MAX_TOKENS
from metalearner.errors import ConfigError
from metalearner.nn.hf import HF, Pooling, check_path
from metalearner.nn.layers import NormMode

TrackerName = Literal["tensorboard"]
"""The trackers a run's ``log`` setting may name (each one's class: runs/trackers.py)."""


@dataclass(frozen=True)
class ModelConfig:
    """The backbone: ``auto`` is the dataset's (its registry entry says: conv4 for images,
    textcnn for sentences, the 40-40 MLP for tables and regression).

    ``norm`` is BatchNorm's mode (:mod:`metalearner.nn.layers`), in training, evaluation and
    adaptation: ``transductive`` normalises a task's queries with their own statistics (the
    papers' protocol: a prediction depends on the items predicted with it), ``inductive`` with
    the support set's (an item's prediction depends on it and the support set alone). mlp and
    textcnn have no BatchNorm: both modes are the same for them.

    A pretrained encoder: ``name: hf`` with ``path`` (a Hugging Face model folder or Hub id),
    its sentences tokenized by its own tokenizer with the entities marked by ``markers``, and
    pooled by ``pooling`` (:mod:`metalearner.nn.hf`, :mod:`metalearner.data.subwords`).

    Your own network: ``name: python`` with ``factory: package.module:function``, a function
    found in the current folder or on ``PYTHONPATH`` and called with those of ``input_shape``
    and ``out_features`` it takes, returning an ``nn.Module`` whose weights are the start
    (:mod:`metalearner.runs.models`). A new run starts from ``weights`` (a safetensors file)
    or from ``init_from``'s backbone (a finished run, e.g. a transfer baseline's pretraining:
    P>M>F's pretrain → meta-train) instead of a fresh initialisation, for any model
    (:mod:`metalearner.runs.starts`: which names, what is taken, what is recorded).
    """

    name: Literal["auto", "conv4", "resnet12", "mlp", "textcnn", "python", "hf"] = "auto"
    # conv4 channels per block; resnet12: 64 gives the papers' 64-160-320-640, others scale them
    width: Annotated[int, WIDTH] = 64
    depth: Annotated[int, Range(1, 64)] = 4  # conv4 blocks (each halves the image)
    norm: NormMode = "transductive"
    factory: str | None = None  # name: python: "package.module:function" building the network
    weights: str | None = None  # a .safetensors file of weights to start from
    init_from: str | None = None  # a run folder whose backbone (features.*) starts this run
    # name: hf: a Hugging Face model's folder (read with no network) or Hub id (nn/hf.py).
    path: str | None = None
    pooling: Pooling = "entity-start"  # hf: entity-start, mean, cls or entity-mean (nn/hf.py)
    markers: tuple[str, str, str, str] = MARKERS  # hf: text before/after the head, the tail


@dataclass(frozen=True)
class OptimizerConfig:
    """The outer optimiser: the one place parameters change (DESIGN.md rule 2).

    ``auto`` values come from the strategy: Reptile steps by plain SGD on its pseudo-gradient
    with a linearly annealed step (Nichol et al. 2018), ProtoNets halves Adam's step every
    ``lr_halve_every`` episodes (Snell et al. 2017), the others use constant Adam (Finn et al.
    2017). The ResNet-12 papers' SGD is ``momentum`` 0.9, ``weight_decay`` 5e-4 (Tian et al.
    2020; Lee et al. 2019 with ``nesterov``), its step size cut at given steps (``milestones``).
    """

    name: Literal["auto", "adam", "sgd"] = "auto"
    lr: float | None = None  # None: the strategy's meta_lr
    schedule: Literal["auto", "constant", "cosine", "linear", "step"] = "auto"
    # "step": steps between decays (None: the strategy's)
    decay_every: Annotated[int | None, STEPS] = None
    decay_rate: float = 0.5  # "step": factor per decay
    # "step" at fixed steps instead (decay_every and decay_rate then unused): [[step, factor],
    # ...], the base lr times factor from that step on (RFS's cuts after epochs 60 and 80 of
    # 100: [[36000, 0.1], [48000, 0.01]]).
    milestones: tuple[tuple[int, float], ...] = ()
    clip: float | None = None  # max global gradient norm; None: no clipping
    betas: tuple[float, float] = (0.9, 0.999)  # Adam only
    momentum: float = 0.0  # SGD only: heavy-ball momentum (PyTorch's, dampening 0)
    nesterov: bool = False  # SGD only: Nesterov's momentum (needs momentum > 0)
    # L2 penalty added to every parameter's gradient before the step (PyTorch's weight_decay,
    # SGD and Adam alike).
    weight_decay: float = 0.0


@dataclass(frozen=True)
class RunConfig:
    """One meta-training run: tasks, strategy, model, optimiser, schedule of checks."""

    strategy: str = "maml"
    strategy_config: dict[str, Any] = field(default_factory=dict)  # the strategy's own settings
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    steps: Annotated[int, STEPS] = 1000  # outer steps (the learning-rate schedule spans these)
    # Seconds of training after which the run stops early, validated and saved as at its last
    # step (a budget for benchmarks); null: no limit. Only outer steps count, not validation or
    # checkpoints, so a strategy with costly validation buys as many steps as any other.
    time_budget: Annotated[float | None, SECONDS] = None
    # Tasks per outer step; None: the strategy's meta_batch_size.
    meta_batch: Annotated[int | None, META_BATCH] = None
    val_every: Annotated[int, STEPS] = 100  # steps between validations (and checkpoints)
    # Also validate once this many seconds of training passed since the last validation (for
    # budgets, where steps per second differ 100-fold between strategies); null: steps only.
    val_every_seconds: Annotated[float | None, SECONDS] = None
    val_tasks: Annotated[int, TASKS] = 100
    test_tasks: Annotated[int, TASKS] = 600  # evaluation's default (the papers' 600 tasks)
    # Fixed task sets: the same for every seed and strategy, so runs compare on identical tasks.
    val_seed: int = 1001
    test_seed: int = 2002
    seed: int = 0  # initialisation and the training task stream
    log_every: Annotated[int, STEPS] = 10  # steps between lines of metrics.jsonl
    # Seconds between progress lines where stdout is not a terminal (a log file under nohup,
    # SLURM or CI); a line also comes at each validation and at the end. A terminal gets a bar.
    progress_every: Annotated[float, SECONDS] = 30.0
    precision: Literal["float32", "bfloat16"] = "float32"
    device: Literal["cpu", "cuda"] = "cpu"
    # CPU threads per op; null keeps PyTorch's default. Tiny models (the sinusoid MLP) run many
    # times faster on one thread: their ops are too small to split, and idle threads spin.
    threads: Annotated[int | None, THREADS] = None
    # Trackers that also receive every metrics line (runs/trackers.py): [tensorboard] writes
    # TensorBoard event files into the run's tensorboard/ folder. curves.png is always drawn.
    log: tuple[TrackerName, ...] = ()


def load_config(
    path: Path | str | None = None,
    *,
    base: Mapping[str, Any] | None = None,
    settings: Mapping[str, Any] | None = None,
    overrides: Sequence[str] = (),
) -> RunConfig:
    """Reads a run config from YAML (or ``base``), applies ``key=value`` overrides, resolves it.

    Args:
        path: a YAML file; ignored when ``base`` is given.
        base: an already parsed mapping (a preset).
        settings: ``dotted.key -> value`` settings applied on top of the file or ``base``
            (a program's own, typed: a benchmark's shared budget and task shape).
        overrides: ``dotted.key=value`` strings; values are parsed as YAML (``0.1``, ``true``,
            ``null``, ``[1, 2]``).

    Raises:
        ConfigError: unreadable YAML, an unknown key, a value of the wrong type or out of range.
    """
    raw: dict[str, Any] = dict(base) if base is not None else {}
    if base is None and path is not None:
        path = Path(path)
        if (path / "config.yaml").is_file():  # `train runs/x`: most likely meant to continue it
            raise ConfigError(
                f"{path} is a run folder, not a config file; to continue the run use --resume "
                f"--out {path}, or give its {path / 'config.yaml'} to start a new run like it."
            )
        raw = read_yaml(path)
    for key, value in (settings or {}).items():
        assign(raw, key, value)
    apply_overrides(raw, overrides, example="steps=100")
    return resolve(from_dict(RunConfig, raw, ""))


def resolve(cfg: RunConfig) -> RunConfig:
    """Fills every ``auto``/``None`` left to the strategy and checks ranges and combinations."""
    from metalearner.strategies import get_strategy, resolve_config

    kind = get_strategy(cfg.strategy)
    hints = typing.get_type_hints(type(kind.default_config))
    settings = {
        k: whole_numbers(v, hints[k]) if k in hints else v
        for k, v in tuples(cfg.strategy_config).items()
    }
    if kind.applies_precision:
        # A strategy with a precision option of its own applies it where it pays (the training
        # loop autocasts the others): one setting, the run's, drives both.
        if settings.get("precision", cfg.precision) != cfg.precision:
            raise ConfigError(
                f"strategy_config.precision ({settings['precision']}) differs from precision "
                f"({cfg.precision}); set only precision (remove strategy_config.precision)."
            )
        settings["precision"] = cfg.precision
    strat = resolve_config(cfg.strategy, settings)
    cfg = _pretrained_encoder(cfg)
    data = resolve_data(cfg.data)
    classes = training_classes(data)
    if classes:
        strat = kind.fit_to_classes(strat, classes=classes, ways=data.ways, given=set(settings))
    kind.check_device(strat, cfg.device)
    kind.check_norm(strat, cfg.model.norm)
    opt, outer = cfg.optimizer, kind.outer_loop(strat)  # the strategy's defaults for "auto"
    name = opt.name if opt.name != "auto" else outer.optimizer
    schedule = opt.schedule if opt.schedule != "auto" else outer.schedule
    lr = opt.lr if opt.lr is not None else outer.lr
    batch = cfg.meta_batch if cfg.meta_batch is not None else outer.meta_batch
    decay = opt.decay_every
    if schedule == "step" and decay is None and not opt.milestones:  # milestones: unused
        tasks = outer.halve_every_tasks  # counted in tasks, decay in steps
        decay = -(-tasks // batch) if tasks else max(cfg.steps // 4, 1)
    out = dataclasses.replace(
        cfg,
        strategy_config=dataclasses.asdict(strat),
        optimizer=dataclasses.replace(opt, name=name, schedule=schedule, decay_every=decay, lr=lr),
        meta_batch=batch,
        data=data,
    )
    _check_ranges(out)
    _check_episode_bytes(out, kind.training_ways(strat))
    _check_training_ways(out, kind.training_ways(strat))
    return out


def to_dict(cfg: RunConfig) -> dict[str, Any]:
    """The config as plain YAML/JSON types (tuples become lists)."""
    return typing.cast(dict[str, Any], plain(dataclasses.asdict(cfg)))


def to_yaml(cfg: RunConfig, *, once: bool = False) -> str:
    """The resolved config as YAML, in field order.

    A strategy's own ``precision`` is left out: it is the run's ``precision`` (see
    :func:`resolve`), so a user who edits that one line changes both. With ``once``, so are the
    strategy's settings that only give a run setting its default (its ``run_settings``:
    ``strategy_config.meta_lr`` beside ``optimizer.lr``, ``meta_batch_size`` beside
    ``meta_batch``): the run setting is what applies, and a reader sees one value per setting.
    Such YAML reads back as :func:`stated_once` of ``cfg``.
    """
    return dump_yaml(_stated(cfg, once=once))


def stated_once(cfg: RunConfig) -> RunConfig:
    """The run ``to_yaml(cfg, once=True)`` describes: ``cfg`` with the strategy's second
    spellings of run settings at their defaults, which the run does not read."""
    return load_config(base=_stated(cfg, once=True))


def _stated(cfg: RunConfig, *, once: bool) -> dict[str, Any]:
    from metalearner.strategies import get_strategy

    out = to_dict(cfg)
    own = out["strategy_config"]
    own.pop("precision", None)
    if once:
        for key in get_strategy(cfg.strategy).run_settings:
            own.pop(key, None)
    return out


def _pretrained_encoder(cfg: RunConfig) -> RunConfig:
    """For ``model.name: hf``: its path made absolute where it is a folder, its data checked to
    be text, ``data.max_length`` counted in its tokens where null."""
    model, d = cfg.model, cfg.data
    if model.name != HF:
        if model.path is not None:
            raise ConfigError(
                f"model.path is set but model.name is {model.name!r}; set model.name=hf to use "
                "the pretrained encoder there, or remove model.path."
            )
        return cfg
    if dataset(d.dataset, setting="data.dataset").kind != "text":
        raise ConfigError(
            f"model.name hf reads sentences, and data.dataset {d.dataset} holds no text; use a "
            "text dataset (fewrel), or another model."
        )
    if cfg.optimizer.lr is None:  # the strategies' defaults are for networks from scratch
        warnings.warn(
            "model.name hf fine-tunes a pretrained encoder with the strategy's outer step "
            "(optimizer.lr), made for networks trained from scratch, which may wreck its "
            "weights; set optimizer.lr (2e-5 fine-tunes BERT-like encoders).",
            UserWarning,
            stacklevel=3,
        )
    length = d.max_length if d.max_length is not None else MAX_TOKENS
    return dataclasses.replace(
        cfg,
        model=dataclasses.replace(model, path=check_path(model.path)),
        data=dataclasses.replace(d, max_length=length),
    )


def _check_ranges(cfg: RunConfig) -> None:
    opt = cfg.optimizer
    check_bounds(cfg)  # the sizes and counts (and what resolving filled in), as declared above
    for key, seed in (("seed", cfg.seed), ("val_seed", cfg.val_seed), ("test_seed", cfg.test_seed)):
        check_seed(key, seed)
    _check_model(cfg.model)
    lr = opt.lr or 0.0
    if not (lr > 0 and math.isfinite(lr)):
        raise ConfigError(f"Setting 'optimizer.lr' must be a number > 0, got {opt.lr}.")
    if opt.clip is not None and not opt.clip > 0:
        raise ConfigError(f"Setting 'optimizer.clip' must be > 0 or null, got {opt.clip}.")
    # The "step" schedule multiplies the step size by decay_rate every decay_every steps: above
    # 1 it would grow, and at or below 0 it would stop or reverse (ascend) the descent.
    if not 0 < opt.decay_rate <= 1:
        raise ConfigError(
            f"Setting 'optimizer.decay_rate' must be in (0, 1], got {opt.decay_rate}."
        )
    for i, beta in enumerate(opt.betas):
        if not 0 <= beta < 1:
            raise ConfigError(
                f"Setting 'optimizer.betas' must be two numbers in [0, 1), got {beta} at "
                f"position {i + 1}."
            )
    _check_momentum_and_milestones(opt)
    if len({cfg.seed, cfg.val_seed, cfg.test_seed}) < 3:
        raise ConfigError(
            f"seed ({cfg.seed}), val_seed ({cfg.val_seed}) and test_seed ({cfg.test_seed}) must "
            "differ, or validation and test tasks could repeat training tasks."
        )


def _check_momentum_and_milestones(opt: OptimizerConfig) -> None:
    # Momentum is SGD's alone here (Adam's are its betas); PyTorch's Nesterov step needs some.
    if not (0 <= opt.momentum < 1) or (opt.momentum and opt.name != "sgd"):
        raise ConfigError(
            f"Setting 'optimizer.momentum' must be in [0, 1) and is SGD's (optimizer.name=sgd; "
            f"Adam's are optimizer.betas), got {opt.momentum} with {opt.name}."
        )
    if opt.nesterov and not (opt.name == "sgd" and opt.momentum > 0):
        raise ConfigError(
            "optimizer.nesterov needs optimizer.name=sgd and optimizer.momentum > 0; set both, "
            "or drop nesterov."
        )
    if not (opt.weight_decay >= 0 and math.isfinite(opt.weight_decay)):
        raise ConfigError(
            f"Setting 'optimizer.weight_decay' must be a number >= 0, got {opt.weight_decay}."
        )
    if not opt.milestones:
        return
    steps = [at for at, _ in opt.milestones]
    if opt.schedule != "step" or steps[0] < 1 or steps != sorted(set(steps)):
        raise ConfigError(
            f"optimizer.milestones {[list(m) for m in opt.milestones]} need optimizer.schedule="
            "step and steps >= 1 in increasing order: [[step, factor], ...]."
        )
    if not all(0 < factor <= 1 for _, factor in opt.milestones):
        raise ConfigError(
            "optimizer.milestones' factors multiply the base optimizer.lr and must be in (0, 1]."
        )


def _check_model(model: ModelConfig) -> None:
    from metalearner.runs.models import PYTHON, check_factory

    if model.name == PYTHON:
        check_factory(model.factory)
    elif model.factory is not None:
        raise ConfigError(
            f"model.factory is set but model.name is {model.name!r}; set model.name=python to "
            "build the network with it, or remove model.factory."
        )
    if model.weights is not None and model.init_from is not None:
        raise ConfigError(
            "model.weights and model.init_from are both set; a run starts from one of them."
        )


def _check_episode_bytes(cfg: RunConfig, train_ways: int | None) -> None:
    # A meta-batch is gathered into one tensor, so settings each within its bound may still
    # multiply to more than any memory: refused here, before any data is loaded or allocated.
    d, entry = cfg.data, dataset(cfg.data.dataset)
    ways = 1 if entry.regression else max(d.ways, train_ways or 0)  # regression: K points
    per_example, example = entry.example_size(d)
    batch, examples = cfg.meta_batch or 1, d.shots + max(d.queries, d.train_queries or 0)
    total = batch * ways * examples * per_example
    if total > EPISODE_BYTES_MAX:
        factors = [f"meta_batch {batch}", *([f"{ways} ways"] if ways > 1 else [])]
        factors += [f"{examples} examples of shots + queries", f"{per_example} bytes ({example})"]
        raise ConfigError(
            f"One meta-batch's inputs would take {total / 2**30:.3g} GiB ({' × '.join(factors)}), "
            f"more than the {EPISODE_BYTES_MAX // 2**30} GiB bound; lower meta_batch, data.ways, "
            "data.shots, data.queries, data.train_queries or the size of an example."
        )


def _check_training_ways(cfg: RunConfig, train_ways: int | None) -> None:
    # Caught here, the message names the settings to change; the task sampler can only say
    # that a split is too small. ``train_ways``: the strategy's, where it differs from data.ways.
    classes, d = training_classes(cfg.data), cfg.data
    if classes is None:
        return
    if d.ways > classes:  # the tasks' ways first: a larger train_ways follows from them
        key, ways = "data.ways", d.ways
    elif train_ways and train_ways > classes:
        key, ways = "strategy_config.train_ways", train_ways
    else:
        return
    entry = dataset(d.dataset)
    rotated = entry.rotations and d.rotations
    if entry.held_out_examples and d.val_classes == 0:
        source = f"data.meta_train_classes {d.meta_train_classes}"
    elif d.train_on_val:
        source = f"data.meta_train_classes {d.meta_train_classes}, validation classes included"
        source += ", times 4 rotations" if rotated else ""
    else:
        source = f"data.meta_train_classes {d.meta_train_classes} minus data.val_classes "
        source += f"{d.val_classes}" + (", times 4 rotations" if rotated else "")
    raise ConfigError(
        f"{key} is {ways} but only {max(classes, 0)} training classes are left ({source}); "
        f"lower {key} or raise data.meta_train_classes."
    )
