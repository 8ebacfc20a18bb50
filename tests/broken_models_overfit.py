"""Broken setups for model.overfit_batch: each one keeps a healthy model from memorizing a batch.

The models are tests/modelzoo.SmallCNN with one line changed; the optimizers are the usual ones
with one hyper-parameter out of range.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from modelzoo import SmallCNN


class SoftmaxTwiceCNN(SmallCNN):
    """Returns probabilities to a CrossEntropyLoss, which applies log-softmax again."""

    def forward(self, x):
        return F.softmax(super().forward(x), dim=1)


class ReluHeadCNN(SmallCNN):
    """A ReLU after the classifier: every negative logit is clipped to exactly 0."""

    def forward(self, x):
        return F.relu(super().forward(x))


class DeadReluCNN(SmallCNN):
    """Every ReLU of the feature extractor sees a hugely negative bias: all features are 0, the
    head only has its bias, and no learning rate can fit balanced labels with a bias alone."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        with torch.no_grad():
            for m in self.features:
                if isinstance(m, nn.BatchNorm2d):
                    m.bias.fill_(-100.0)


class TinyMLP(nn.Module):
    """Healthy by itself (it memorizes 16 images in a few steps with Adam); without BatchNorm
    nothing rescues it from a step size that is far too large."""

    def __init__(self, in_features: int = 3 * 32 * 32, num_classes: int = 10):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(in_features, 64), nn.ReLU(),
                                 nn.Linear(64, num_classes))

    def forward(self, x):
        return self.net(x)


def sgd(model: nn.Module, lr: float, **kwargs) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=lr, **kwargs)


def lr_too_high(model: nn.Module) -> torch.optim.Optimizer:
    """Explodes to inf/NaN within a few steps on TinyMLP; lr 1 memorizes."""
    return sgd(model, lr=10.0)


def lr_far_too_high(model: nn.Module) -> torch.optim.Optimizer:
    """With momentum, lr 1 still explodes on TinyMLP; lr 0.1 memorizes."""
    return sgd(model, lr=10.0, momentum=0.9)


def lr_too_low(model: nn.Module) -> torch.optim.Optimizer:
    return sgd(model, lr=1e-7, momentum=0.9)


def weight_decay_too_strong(model: nn.Module) -> torch.optim.Optimizer:
    return sgd(model, lr=0.05, momentum=0.9, weight_decay=10.0)


def healthy_sgd(model: nn.Module) -> torch.optim.Optimizer:
    return sgd(model, lr=0.05, momentum=0.9, weight_decay=5e-4)
