"""Broken: labels run 1..10 instead of 0..9 (a 1-based class mapping).

`cvdoctor model examples/broken_off_by_one_labels.py` exits 1: model.data names the 1-based
labels, model.forward shows the real `IndexError: Target 10 is out of bounds.` from the loss.
"""
from cifar10_cnn import build_model, build_optimizer, get_batch as healthy_batch, loss_fn  # noqa: F401

num_classes = 10


def get_batch():
    images, labels = healthy_batch()
    return images, labels + 1          # the bug: classes numbered from 1
