"""Backbones and layers, used as pure functions of a parameter dict.

conv4, the MLP, TextCNN, and BatchNorm whose second derivative is written in closed form.
"""

from __future__ import annotations

from metalearner.nn.backbones import Network, build_model, init_params
from metalearner.nn.layers import ConvBlock, TaskBatchNorm2d
from metalearner.nn.norm import task_batch_norm
from metalearner.nn.textcnn import TextCNN

__all__ = [
    "ConvBlock",
    "Network",
    "TaskBatchNorm2d",
    "TextCNN",
    "build_model",
    "init_params",
    "task_batch_norm",
]
