"""Backbones and layers, used as pure functions of a parameter dict.

conv4, ResNet-12 (with DropBlock), the MLP, TextCNN, and BatchNorm whose second derivative is
written in closed form; any ``nn.Module`` of yours as a network (:mod:`metalearner.nn.user`).
"""

from __future__ import annotations

from metalearner.nn.backbones import Network, build_model, init_params, keep_weights
from metalearner.nn.dropblock import drop_blocks
from metalearner.nn.layers import ConvBlock, TaskBatchNorm2d
from metalearner.nn.norm import task_batch_norm
from metalearner.nn.resnet12 import ResNet12
from metalearner.nn.textcnn import TextCNN
from metalearner.nn.user import as_embedding, as_model, as_network, load_into

__all__ = [
    "ConvBlock",
    "Network",
    "ResNet12",
    "TaskBatchNorm2d",
    "TextCNN",
    "as_embedding",
    "as_model",
    "as_network",
    "build_model",
    "drop_blocks",
    "init_params",
    "keep_weights",
    "load_into",
    "task_batch_norm",
]
