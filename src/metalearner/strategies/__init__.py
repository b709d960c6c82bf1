"""Learning strategies: what is learned across tasks and how a new task is adapted to.

Importing this package registers every built-in strategy: ``maml`` (:mod:`.maml`), ``fomaml``,
``metasgd``, ``anil`` (:mod:`.variants`), ``reptile`` (:mod:`.reptile`), ``protonet``
(:mod:`.protonet`), and the baselines ``scratch`` and ``pretrain`` (:mod:`.baselines`) and
``finetune``, ``baselinepp`` and ``nearest-centroid`` (:mod:`.transfer`).
"""

from metalearner.strategies.base import (
    ConfigBase,
    Params,
    Predictor,
    Strategy,
    available,
    build,
    get_strategy,
    register,
    resolve_config,
)
from metalearner.strategies.baselines import BaselineConfig, Pretrain, Scratch
from metalearner.strategies.maml import LR_PREFIX, MAML, MAMLConfig
from metalearner.strategies.protonet import ProtoNet, ProtoNetConfig, prototype_logits
from metalearner.strategies.reptile import Reptile, ReptileConfig
from metalearner.strategies.transfer import (
    BaselinePlusPlus,
    FineTune,
    NearestCentroid,
    TransferConfig,
)
from metalearner.strategies.variants import ANIL, FOMAML, MetaSGD

__all__ = [
    "ANIL",
    "FOMAML",
    "LR_PREFIX",
    "MAML",
    "BaselineConfig",
    "BaselinePlusPlus",
    "ConfigBase",
    "FineTune",
    "MAMLConfig",
    "MetaSGD",
    "NearestCentroid",
    "Params",
    "Predictor",
    "Pretrain",
    "ProtoNet",
    "ProtoNetConfig",
    "Reptile",
    "ReptileConfig",
    "Scratch",
    "Strategy",
    "TransferConfig",
    "available",
    "build",
    "get_strategy",
    "prototype_logits",
    "register",
    "resolve_config",
]
