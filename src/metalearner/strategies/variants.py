"""The named MAML variants: each is :class:`MAML` with the flag that defines it.

References:
    Finn et al., "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks", ICML 2017.
    Li et al., "Meta-SGD: Learning to Learn Quickly for Few-Shot Learning", 2017.
    Raghu et al., "Rapid Learning or Feature Reuse? Towards Understanding the Effectiveness of
    MAML", ICLR 2020.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from metalearner.strategies.maml import MAML, MAMLConfig
from metalearner.strategies.registry import register
from metalearner.strategies.space import SearchParam, SpaceContext


@register("fomaml")
class FOMAML(MAML):
    """First-order MAML: the meta-gradient is the query-loss gradient at the adapted parameters.

    References:
        Finn et al., "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks",
        ICML 2017, section 5.2 (first-order approximation).
    """

    default_config: ClassVar[MAMLConfig] = MAMLConfig(first_order=True)
    requires: ClassVar[str | None] = "first_order"


@register("metasgd")
class MetaSGD(MAML):
    """Meta-SGD: learns a step size for every parameter entry along with the initialisation.

    The step sizes start from U(0.005, 0.1) as in the paper and are trained by the outer loop
    like any other meta-parameter (keys ``"inner_lr.<name>"``). They are learned for
    ``inner_steps`` steps, so a new task is adapted with as many (``eval_steps`` follows
    ``inner_steps`` unless given): the paper trains and tests one step, and applying learned
    step sizes more often than they were learned for can diverge.

    References:
        Li et al., "Meta-SGD: Learning to Learn Quickly for Few-Shot Learning", 2017.
    """

    default_config: ClassVar[MAMLConfig] = MAMLConfig(
        learn_inner_lr=True, inner_lr_init=(0.005, 0.1), eval_steps=1
    )
    requires: ClassVar[str | None] = "learn_inner_lr"
    follows: ClassVar[Mapping[str, str]] = {"eval_steps": "inner_steps"}
    # Not MAML's eval_steps: it adapts with the steps its step sizes were learned for.
    anchor_settings: ClassVar[tuple[str, ...]] = ("inner_lr", "inner_steps")
    # Learned step sizes applied more often than learned for diverge first.
    diverging_setting: ClassVar[str] = "strategy_config.eval_steps (to inner_steps)"

    @classmethod
    def search_space(cls, config: MAMLConfig, context: SpaceContext) -> list[SearchParam]:
        """MAML's space but the inner step size: Meta-SGD learns its step sizes."""
        return [p for p in super().search_space(config, context) if p.name != "inner_lr"]


@register("anil")
class ANIL(MAML):
    """Almost No Inner Loop: only the head adapts; the backbone is learned by the outer loss.

    The head is a network's ``.head``, or a module's final ``nn.Linear`` where it can be found
    (``fc``, ``classifier``, a ``Sequential``'s last layer); otherwise name it, or put a new one
    on an embedding: ``ANIL(as_network(module, head="proj"), config)``,
    ``as_network(embedding, out_features=ways)`` (:mod:`metalearner.nn.user`).

    References:
        Raghu et al., "Rapid Learning or Feature Reuse? Towards Understanding the Effectiveness
        of MAML", ICLR 2020.
    """

    default_config: ClassVar[MAMLConfig] = MAMLConfig(head_only=True)
    requires: ClassVar[str | None] = "head_only"
