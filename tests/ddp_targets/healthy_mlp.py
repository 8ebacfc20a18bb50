"""Healthy for DDP: an MLP with dropout and LayerNorm on 16 synthetic samples per rank."""
import os

import torch
from torch import nn

ddp = 2
SEED = int(os.environ.get("CVDOCTOR_TEST_SEED", "0"))


def build_model():
    torch.manual_seed(SEED)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 32), nn.LayerNorm(32), nn.GELU(),
                         nn.Dropout(0.3), nn.Linear(32, 5))


def get_batch():
    g = torch.Generator().manual_seed(SEED + 1)
    return torch.randn(16, 3, 8, 8, generator=g), torch.randint(0, 5, (16,), generator=g)


def build_optimizer(params):
    return torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01)
