"""A synthesized batch for when the user gives none: normalized random images, balanced labels."""
from __future__ import annotations

import torch


def synthesize_batch(input_shape, num_classes: int, batch_size: int = 8, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    c, h, w = (int(x) for x in input_shape)
    inputs = torch.randn(batch_size, c, h, w, generator=gen)
    # Balanced labels: every class appears as evenly as the batch allows, in shuffled order.
    labels = torch.arange(batch_size) % max(int(num_classes), 1)
    labels = labels[torch.randperm(batch_size, generator=gen)]
    return inputs, labels
