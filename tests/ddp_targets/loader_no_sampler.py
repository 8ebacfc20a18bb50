"""Broken for DDP: a shuffled loader without DistributedSampler (every rank reads the whole
dataset), and a save_checkpoint that saves the DDP wrapper's state_dict. Seeded, as most training
scripts are (CVDOCTOR_TEST_SEEDED=1), every rank even shuffles in the same order."""
import os

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

ddp = 2
if os.environ.get("CVDOCTOR_TEST_SEEDED") == "1":
    torch.manual_seed(0)
train_loader = DataLoader(TensorDataset(torch.randn(32, 3, 8, 8), torch.arange(32) % 4),
                          batch_size=8, shuffle=True)


def build_model():
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 16), nn.ReLU(), nn.Linear(16, 4))


def save_checkpoint(model, path):
    torch.save(model.state_dict(), path)  # the wrapper's keys: module.1.weight, ...
