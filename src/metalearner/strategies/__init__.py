"""Learning strategies: what is learned across tasks and how a new task is adapted to.

Importing this package registers every built-in strategy: ``maml`` (:mod:`.maml`), ``fomaml``,
``metasgd``, ``anil`` (:mod:`.variants`), ``reptile`` (:mod:`.reptile`), ``protonet``
(:mod:`.protonet`), and the baselines ``scratch`` and ``pretrain`` (:mod:`.baselines`) and
``finetune`` and ``baselinepp`` (:mod:`.transfer`), and ``nearest-centroid``, ``simpleshot``
and ``rfs`` on ``finetune``'s backbone (:mod:`.heads`).

A strategy subclasses :class:`Strategy` (:mod:`.base`), declares what it is there (its task
kinds, outer-loop defaults, search space, ...) and is registered by name (:mod:`.registry`);
``metalearner.testing`` holds the contract test that checks it.
"""

from metalearner.strategies.base import (
    OuterLoop,
    Params,
    Predictor,
    StepwiseStrategy,
    Strategy,
    TaskKind,
)
from metalearner.strategies.baselines import BaselineConfig, Pretrain, Scratch
from metalearner.strategies.config import ConfigBase
from metalearner.strategies.heads import RFS, NearestCentroid, SimpleShot
from metalearner.strategies.maml import LR_PREFIX, MAML, MAMLConfig
from metalearner.strategies.protonet import ProtoNet, ProtoNetConfig, prototype_logits
from metalearner.strategies.registry import (
    available,
    build,
    get_strategy,
    name_of,
    register,
    resolve_config,
    unregister,
)
from metalearner.strategies.reptile import Reptile, ReptileConfig
from metalearner.strategies.space import SearchParam, SpaceContext
from metalearner.strategies.transfer import BaselinePlusPlus, FineTune, TransferConfig
from metalearner.strategies.variants import ANIL, FOMAML, MetaSGD

__all__ = [
    "ANIL",
    "FOMAML",
    "LR_PREFIX",
    "MAML",
    "RFS",
    "BaselineConfig",
    "BaselinePlusPlus",
    "ConfigBase",
    "FineTune",
    "MAMLConfig",
    "MetaSGD",
    "NearestCentroid",
    "OuterLoop",
    "Params",
    "Predictor",
    "Pretrain",
    "ProtoNet",
    "ProtoNetConfig",
    "Reptile",
    "ReptileConfig",
    "Scratch",
    "SearchParam",
    "SimpleShot",
    "SpaceContext",
    "StepwiseStrategy",
    "Strategy",
    "TaskKind",
    "TransferConfig",
    "available",
    "build",
    "get_strategy",
    "name_of",
    "prototype_logits",
    "register",
    "resolve_config",
    "unregister",
]
