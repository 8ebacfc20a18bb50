"""Broken: the optimizer is built, then the head is replaced; the new head is never trained.

`cvdoctor model examples/broken_head_swapped_after_optimizer.py` exits 1: model.optimizer finds
the new head's parameters missing from the optimizer's param groups.
"""
import torch
from torch import nn

from cifar10_cnn import Cifar10CNN, get_batch, loss_fn, num_classes  # noqa: F401

model = Cifar10CNN(num_classes=100)                            # e.g. a CIFAR-100 checkpoint
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
model.network[-1] = nn.Linear(128, num_classes)                # the bug: after the optimizer
