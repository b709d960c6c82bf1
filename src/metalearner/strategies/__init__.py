"""Learning strategies: what is learned across tasks and how a new task is adapted to.

Importing this package registers every built-in strategy: ``maml``, ``fomaml``, ``metasgd``,
``anil`` (:mod:`.maml`), ``reptile`` (:mod:`.reptile`) and ``protonet`` (:mod:`.protonet`).
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
from metalearner.strategies.maml import ANIL, FOMAML, LR_PREFIX, MAML, MAMLConfig, MetaSGD
from metalearner.strategies.protonet import ProtoNet, ProtoNetConfig, prototype_logits
from metalearner.strategies.reptile import Reptile, ReptileConfig

__all__ = [
    "ANIL",
    "FOMAML",
    "LR_PREFIX",
    "MAML",
    "ConfigBase",
    "MAMLConfig",
    "MetaSGD",
    "Params",
    "Predictor",
    "ProtoNet",
    "ProtoNetConfig",
    "Reptile",
    "ReptileConfig",
    "Strategy",
    "available",
    "build",
    "get_strategy",
    "prototype_logits",
    "register",
    "resolve_config",
]
