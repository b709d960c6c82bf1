"""The strategy contract, shipped so that a strategy written outside the package is checked as
the built-in ones are: toy problems and tiny models (:mod:`.toys`), and the checks and a pytest
test class to subclass (:mod:`.contract`). Importing it does not need pytest.

Example:
    >>> from metalearner.testing import ContractCase, StrategyContract
    >>> class TestMyStrategy(StrategyContract):
    ...     case = ContractCase("my-strategy", family="regression")
"""

from metalearner.testing.contract import (
    CHECKS,
    ContractCase,
    Family,
    NotApplicable,
    StrategyContract,
    check_classification,
    check_descent,
    check_determinism,
    check_dtype,
    check_meta_grads,
    check_regression,
    check_strategy,
    contract_cases,
    families,
    meta_train_toy,
    query_loss,
)
from metalearner.testing.toys import (
    TEXT_LENGTH,
    TOY_SETTINGS,
    conv_biases,
    image_batch,
    regression_batch,
    rel_error,
    tiny_conv,
    toy_model,
    toy_regression_model,
    toy_regression_source,
    toy_source,
    toy_text_model,
    toy_text_source,
)

__all__ = [
    "CHECKS",
    "TEXT_LENGTH",
    "TOY_SETTINGS",
    "ContractCase",
    "Family",
    "NotApplicable",
    "StrategyContract",
    "check_classification",
    "check_descent",
    "check_determinism",
    "check_dtype",
    "check_meta_grads",
    "check_regression",
    "check_strategy",
    "contract_cases",
    "conv_biases",
    "families",
    "image_batch",
    "meta_train_toy",
    "query_loss",
    "regression_batch",
    "rel_error",
    "tiny_conv",
    "toy_model",
    "toy_regression_model",
    "toy_regression_source",
    "toy_source",
    "toy_text_model",
    "toy_text_source",
]
