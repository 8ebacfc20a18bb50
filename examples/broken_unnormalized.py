"""Broken: raw 0-255 pixels go into the model (no ToTensor scaling, no Normalize).

`cvdoctor model examples/broken_unnormalized.py` exits 1: model.data sees 0-255 pixels reaching
the first conv. (This deep, BatchNorm-free network shrinks its activations layer by layer at
PyTorch's default init, so its initial loss still looks normal: the data check is what catches it.)
"""
from cifar10_cnn import build_model, build_optimizer, cifar_like_images, loss_fn, num_classes  # noqa: F401
import torch


def get_batch(batch_size=16):
    g = torch.Generator().manual_seed(1)
    labels = (torch.arange(batch_size) % num_classes)[torch.randperm(batch_size, generator=g)]
    return cifar_like_images(batch_size) * 255, labels      # the bug: raw pixel values
