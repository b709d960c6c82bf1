"""Task generators: data in, a stream of small learning tasks out."""

from metalearner.data.labeled import LabeledSet, model_input, to_float
from metalearner.data.splits import ClassSplit, random_split
from metalearner.tasks.augment import with_rotations
from metalearner.tasks.batch import TaskBatch, TaskSet, TaskSource, concat, iter_batches
from metalearner.tasks.episodes import EpisodePlan, EpisodeSampler, EpisodeTaskSet
from metalearner.tasks.lake import export_lake_runs, load_lake_runs
from metalearner.tasks.minibatches import LabeledBatches
from metalearner.tasks.noise import NoisyLabels
from metalearner.tasks.regression import FixedTasks, SinusoidTasks

__all__ = [
    "ClassSplit",
    "EpisodePlan",
    "EpisodeSampler",
    "EpisodeTaskSet",
    "FixedTasks",
    "LabeledBatches",
    "LabeledSet",
    "NoisyLabels",
    "SinusoidTasks",
    "TaskBatch",
    "TaskSet",
    "TaskSource",
    "concat",
    "export_lake_runs",
    "iter_batches",
    "load_lake_runs",
    "model_input",
    "random_split",
    "to_float",
    "with_rotations",
]
