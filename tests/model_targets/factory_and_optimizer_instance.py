"""build_model() exists, but the optimizer instance is bound to the module-level `model`."""
import torch

from _shared import TinyNet, batch

model = TinyNet(4)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)


def build_model():
    return TinyNet(4)


def get_batch():
    return batch(8, 4)
