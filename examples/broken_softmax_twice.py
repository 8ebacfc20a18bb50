"""Broken: the model ends in Softmax and the loss is CrossEntropyLoss (softmax applied twice).

`cvdoctor model examples/broken_softmax_twice.py` exits 1: model.output sees probabilities where
CrossEntropyLoss wants logits.
"""
from torch import nn

from cifar10_cnn import Cifar10CNN, build_optimizer, get_batch, loss_fn  # noqa: F401

num_classes = 10


def build_model():
    return nn.Sequential(Cifar10CNN(), nn.Softmax(dim=1))   # the bug: CrossEntropyLoss does this
