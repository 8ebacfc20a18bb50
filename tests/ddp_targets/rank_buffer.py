"""Suspicious for DDP: a registered buffer updated with a rank-dependent value in forward (here
the rank itself; in real code a per-rank counter or generator). DDP broadcasts rank 0's buffers
before every forward, so the other ranks' updates are lost."""
import torch
import torch.distributed as dist
from torch import nn

ddp = 2


class RankBuffer(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
        self.register_buffer("seen", torch.zeros(()))

    def forward(self, x):
        if self.training:
            rank = dist.get_rank() if dist.is_initialized() else 0
            self.seen += x.shape[0] * (1 + rank)
        return self.net(x)


def build_model():
    return RankBuffer()


def get_batch():
    return torch.randn(8, 3, 8, 8), torch.arange(8) % 4
