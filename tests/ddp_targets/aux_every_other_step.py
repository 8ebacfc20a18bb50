"""Broken for DDP with the default find_unused_parameters=False: an auxiliary branch that runs on
every second step only (a deep-supervision loss switched on and off), so on the other steps its
parameters get no gradient."""
import torch
from torch import nn

ddp = 2


class AuxEveryOtherStep(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 16), nn.ReLU())
        self.head = nn.Linear(16, 4)
        self.aux = nn.Linear(16, 16)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        h = self.body(x)
        if self.training and self.calls % 2 == 0:
            h = h + self.aux(h)
        return self.head(h)


def build_model():
    return AuxEveryOtherStep()


def get_batch():
    return torch.randn(8, 3, 8, 8), torch.arange(8) % 4
