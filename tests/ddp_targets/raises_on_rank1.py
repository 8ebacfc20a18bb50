"""Broken for DDP: forward raises on rank 1 only (a per-rank file it cannot find)."""
import os

import torch
from torch import nn

ddp = 2


class ReadsAShard(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))

    def forward(self, x):
        if os.environ.get("RANK") == "1":
            raise FileNotFoundError("no such file: shards/calibration-rank1.pt")
        return self.net(x)


def build_model():
    return ReadsAShard()


def get_batch():
    return torch.randn(8, 3, 8, 8), torch.arange(8) % 4
