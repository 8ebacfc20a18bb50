"""Broken for DDP: an auxiliary head built in __init__ that forward never calls."""
import torch
from torch import nn

ddp = 2


class WithAuxHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 16), nn.ReLU())
        self.head = nn.Linear(16, 4)
        self.aux_head = nn.Linear(16, 4)  # kept "for later": never called

    def forward(self, x):
        return self.head(self.backbone(x))


def build_model():
    return WithAuxHead()


def get_batch():
    return torch.randn(8, 3, 8, 8), torch.arange(8) % 4
