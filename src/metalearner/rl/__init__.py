"""Meta-reinforcement learning: Gymnasium task families and MAML with policy gradients.

The same split as the supervised package: task generators (:mod:`.families`: 2D navigation,
HalfCheetah velocity and direction, each with ``sample_tasks(n, generator)`` / ``set_task``)
and a strategy (MAML-RL: a policy-gradient inner loop, a TRPO or PPO outer loop), on a policy
that is a pure function of a parameter dict.

Example:
    >>> from metalearner.rl import load_rl_config, train_rl, evaluate_rl
    >>> cfg = load_rl_config("navigation2d", ["iterations=100", "baselines=true"])
    >>> train_rl(cfg, "runs/nav")
    >>> evaluate_rl("runs/nav").table()

References:
    Finn et al., "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks", ICML 2017,
    section 5.3.
"""

from metalearner.errors import require_extra

require_extra("rl", "gymnasium", "mujoco")  # before any module of the package imports them

from metalearner.rl.config import RLConfig, load_rl_config  # noqa: E402
from metalearner.rl.evaluate import RLEvalResult, evaluate_rl  # noqa: E402
from metalearner.rl.families import FAMILIES, Family, get_family, register  # noqa: E402
from metalearner.rl.state import load_policy  # noqa: E402
from metalearner.rl.train import RLTrainResult, train_rl  # noqa: E402

register()  # gymnasium.make("metalearner/Navigation2D-v0") works once metalearner.rl is imported

__all__ = [
    "FAMILIES",
    "Family",
    "RLConfig",
    "RLEvalResult",
    "RLTrainResult",
    "evaluate_rl",
    "get_family",
    "load_policy",
    "load_rl_config",
    "register",
    "train_rl",
]
