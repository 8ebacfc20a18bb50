"""Broken for DDP: forward takes an extra layer on rank 1 only."""
import torch
import torch.distributed as dist
from torch import nn

ddp = 2


class RankBranch(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 16), nn.ReLU())
        self.extra = nn.Linear(16, 16)
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        h = self.body(x)
        if dist.is_initialized() and dist.get_rank() == 1:
            h = self.extra(h)
        return self.head(h)


def build_model():
    return RankBranch()


def get_batch():
    return torch.randn(8, 3, 8, 8), torch.arange(8) % 4
