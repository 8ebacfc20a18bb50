"""Suspicious for DDP: BatchNorm layers and 2 images per rank, no SyncBatchNorm."""
import torch
from torch import nn

ddp = 2


def build_model():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))


def get_batch():
    return torch.randn(2, 3, 16, 16), torch.tensor([0, 1])
