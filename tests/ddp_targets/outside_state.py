"""Broken for DDP: each rank seeds with its rank before building the model, and the model keeps
a random positional table as a plain attribute (not a buffer), which DDP does not broadcast."""
import os

import torch
from torch import nn

ddp = 2
torch.manual_seed(int(os.environ.get("RANK", "0")))  # per-rank seed before the model is built


class WithPlainTensor(nn.Module):
    def __init__(self):
        super().__init__()
        self.pos = torch.randn(1, 16)  # should be self.register_buffer("pos", ...)
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 16), nn.ReLU())
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        return self.head(self.body(x) + self.pos)


def build_model():
    return WithPlainTensor()


def get_batch():
    g = torch.Generator().manual_seed(0)
    return torch.randn(8, 3, 8, 8, generator=g), torch.arange(8) % 4
