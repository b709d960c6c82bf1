"""From a :class:`~metalearner.runs.config.RunConfig` to the objects a run needs.

Training and evaluation build their task generators, model and strategy here, so a run folder
evaluated later sees exactly the tasks and backbone it was trained with.

References:
    Vinyals et al., "Matching Networks for One Shot Learning", NeurIPS 2016 (class-disjoint
    train/validation/test episodes). Finn et al., "Model-Agnostic Meta-Learning", ICML 2017
    (sinusoid tasks, Omniglot rotations).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from metalearner.data.registry import dataset
from metalearner.data.subwords import MAX_TOKENS, SubwordEncoding
from metalearner.nn.hf import HF
from metalearner.runs.config import RunConfig
from metalearner.runs.models import PYTHON, build_network
from metalearner.runs.starts import load_backbone, load_weights
from metalearner.strategies import Strategy, get_strategy, resolve_config
from metalearner.tasks import (
    EpisodeSampler,
    LabeledBatches,
    SinusoidTasks,
    TaskBatch,
    TaskSet,
    TaskSource,
    with_rotations,
)


@dataclass
class Experiment:
    """The task generators, model and strategy of one run.

    Attributes:
        train: meta-training task source (training classes only).
        val_source: validation task source (validation classes only).
        test_source: test task source (test classes only; never used while training).
        model: the backbone, used only as a pure function by the strategy.
        strategy: the learning strategy bound to ``model``.
        meta: what a checkpoint records to rebuild and use the model (backbone, input shape,
            preprocessing, class names).
        batches: the training examples as shuffled mini-batches, for a strategy that trains on
            them (:attr:`Strategy.labeled_batches`), and the examples its ``statistics`` read;
            ``None`` for regression.
    """

    train: TaskSource
    val_source: TaskSource
    test_source: TaskSource
    model: nn.Module
    strategy: Strategy
    meta: dict[str, Any] = field(default_factory=dict)
    batches: LabeledBatches | None = None

    def training_batch(self, step: int, size: int, generator: torch.Generator) -> TaskBatch:
        """The batch of outer step ``step`` (0-based): for a strategy that trains on labelled
        mini-batches, mini-batch ``step`` of ``size`` examples (a function of the run's seed and
        ``step``); otherwise ``size`` tasks drawn from ``generator``."""
        if self.strategy.labeled_batches and self.batches is not None:
            return self.batches.batch(step, size)
        return self.train.sample(size, generator=generator)

    def val_tasks(self, cfg: RunConfig) -> TaskSet:
        """The fixed, seeded validation tasks."""
        return self.val_source.fixed(cfg.val_tasks, seed=cfg.val_seed)

    def test_tasks(self, cfg: RunConfig, num_tasks: int | None = None) -> TaskSet:
        """The fixed, seeded test tasks (seed distinct from validation's)."""
        return self.test_source.fixed(num_tasks or cfg.test_tasks, seed=cfg.test_seed)


def build_experiment(
    cfg: RunConfig, *, data_dir: Path | None = None, start: bool = True
) -> Experiment:
    """Loads the data, splits its classes and builds the model and strategy of ``cfg``.

    Args:
        cfg: the resolved run config.
        data_dir: where the dataset is (default ``$METALEARNER_DATA``).
        start: write ``model.weights`` or ``model.init_from`` into the model, so that
            ``init_params`` starts from them (a new run); ``False`` where the parameters come
            from the run's own checkpoint (a resume, evaluation), which never reads them again.

    Raises:
        DataError: the data is missing or too small for the tasks.
        ConfigError: the strategy, model or tasks do not fit together.
    """
    d, kind = cfg.data, get_strategy(cfg.strategy)
    settings = resolve_config(cfg.strategy, cfg.strategy_config)
    entry = dataset(d.dataset, setting="data.dataset")
    meta: dict[str, Any] = {"dataset": d.dataset}
    if entry.regression:
        # Sinusoids, the regression family. The three sources are the same family:
        # disjointness comes from distinct seeds.
        tasks = SinusoidTasks(shots=d.shots, queries=d.queries)
        train: TaskSource = SinusoidTasks(shots=d.shots, queries=d.train_queries or d.queries)
        val: TaskSource = tasks
        test: TaskSource = tasks
        input_shape: tuple[int, ...] = (1,)
        out_features, text = 1, False
        num_classes: int | None = None
        batches: LabeledBatches | None = None
        auto = entry.backbone()
        meta |= {"preprocessing": {}, "class_names": []}
    else:
        encoding = None  # a pretrained encoder reads its own tokenizer's ids, entities marked
        if cfg.model.name == HF and cfg.model.path is not None:
            length = d.max_length or MAX_TOKENS
            encoding = SubwordEncoding(cfg.model.path, length, cfg.model.markers)
        data, split = entry.load(d, data_dir, encoding=encoding)
        train_data, train_classes = data, split.train
        if d.train_on_val:  # the papers' final models: trained on train + val ("trainval")
            train_classes = torch.cat([split.train, split.val])
        if d.rotations and entry.rotations:
            train_data, train_classes = with_rotations(data, train_classes)
        queries = d.queries
        # ProtoNets trains on more ways than it tests with (60 vs 5 or 20 on Omniglot); any
        # strategy's episodes may have other queries (data.train_queries: MAML's presets).
        ways = kind.training_ways(settings) or d.ways
        train = EpisodeSampler(
            train_data, train_classes, ways=ways, shots=d.shots,
            queries=d.train_queries or queries, augment=d.augment,
            within_groups=d.train_within_groups,
        )  # fmt: skip
        (val_data, val_classes), (test_data, test_classes) = (data, split.val), (data, split.test)
        if d.test_rotations and entry.rotations:
            val_data, val_classes = with_rotations(data, split.val)
            test_data, test_classes = with_rotations(data, split.test)
        val = EpisodeSampler(
            val_data, val_classes, ways=d.ways, shots=d.shots, queries=queries,
            within_groups=d.val_within_groups, groups_setting="data.val_within_groups",
        )  # fmt: skip
        test = EpisodeSampler(test_data, test_classes, ways=d.ways, shots=d.shots, queries=queries)
        batches = LabeledBatches(train_data, train_classes, seed=cfg.seed, augment=d.augment)
        input_shape = tuple(int(s) for s in data.x.shape[1:])
        num_classes = train_data.num_classes
        out_features, auto = d.ways, entry.backbone(data)
        text = data.preprocessing.get("kind") == "text"
        meta |= {
            "preprocessing": dict(data.preprocessing),
            "class_names": list(data.class_names),
            "split": {k: v.tolist() for k, v in (("val", split.val), ("test", split.test))},
        }
    name = cfg.model.name if cfg.model.name != "auto" else auto
    options: dict[str, Any] = {}
    if name == "conv4":
        options = {"width": cfg.model.width, "depth": cfg.model.depth}
    elif name == "resnet12":
        options = {"width": cfg.model.width}
    elif name == "textcnn" and text:  # the embedding has a row per word of the vocabulary
        options = {"vocab_size": len(meta["preprocessing"]["vocabulary"])}
    elif name == HF:
        options = {"path": cfg.model.path, "pooling": cfg.model.pooling}
    elif name == PYTHON:
        options = {"factory": cfg.model.factory}
    if name in ("conv4", "resnet12") and entry.normalize is not None:
        # The dataset's input normalisation, kept with the backbone in the checkpoint.
        options["normalize"] = [list(entry.normalize[0]), list(entry.normalize[1])]
    backbone = {"name": name, "out_features": out_features, **options}
    built = build_network(backbone, input_shape, seed=cfg.seed)
    model = built.network
    if start and cfg.model.weights is not None:
        meta["start"] = load_weights(cfg.model.weights, model, built.own_names)
    elif start and cfg.model.init_from is not None:
        meta["start"] = load_backbone(cfg.model.init_from, model, backbone, input_shape, meta)
    if num_classes is not None:  # a head over every class id of the training data, say
        settings = kind.with_class_ids(settings, num_classes)
    strategy = kind(model, settings)
    strategy.norm = cfg.model.norm
    meta |= {
        # The strategy's effective settings (with what the data filled in), to rebuild it later.
        "strategy_config": dataclasses.asdict(strategy.config),
        "backbone": backbone,
        "input_shape": list(input_shape),
        "task": {"ways": d.ways, "shots": d.shots, "queries": d.queries},
    }
    return Experiment(train, val, test, model, strategy, meta, batches)


def seeded(seed: int) -> torch.Generator:
    """A fresh CPU generator seeded with ``seed``."""
    return torch.Generator().manual_seed(seed)


def task_stream(seed: int) -> torch.Generator:
    """The generator of a run's training tasks, seeded apart from its initialisation's.

    One seed for both made the first tasks a function of the initial weights (both read the
    same uniform draws); ``SeedSequence`` mixes ``seed`` into an unrelated seed of the stream.
    """
    mixed = np.random.SeedSequence([seed, 1]).generate_state(1, np.uint64)[0]
    return seeded(int(mixed))
