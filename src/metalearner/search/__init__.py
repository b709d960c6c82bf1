"""``metalearner search``: choose the learning strategy and its hyperparameters automatically.

An Optuna study over a conditional space (the strategy, then its own settings), run by Bayesian
optimisation (TPE, GP) or evolutionary search (CMA-ES, NSGA-II), with pruning of poor trials,
persistent in a database, resumable and parallel; the winner is retrained and tested once.

- :mod:`.plan`: the search's settings; :mod:`.space`: the search space;
- :mod:`.study`: storage, samplers and pruners; :mod:`.objective`: one trial;
- :mod:`.recovery`: a trial cut off by a kill, failed and run again;
- :mod:`.runner`: the search and the winner's retraining; :mod:`.report`: the report.
"""

from metalearner.errors import require_extra

require_extra("search", "optuna", "cmaes")  # before any module of the package imports them

from metalearner.search.plan import SearchPlan, load_search_plan  # noqa: E402
from metalearner.search.runner import SearchResult, finish, run_search, search_trials  # noqa: E402

__all__ = [
    "SearchPlan",
    "SearchResult",
    "finish",
    "load_search_plan",
    "run_search",
    "search_trials",
]
