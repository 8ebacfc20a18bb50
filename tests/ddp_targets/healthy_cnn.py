"""Healthy for DDP: a small CNN with BatchNorm, 8 images per rank from a loader that splits the
data with DistributedSampler when a process group runs, and a save_checkpoint that unwraps."""
import os

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

ddp = 2
num_classes = 10
SEED = int(os.environ.get("CVDOCTOR_TEST_SEED", "0"))
torch.manual_seed(SEED)  # the same on every rank: one model, one dataset


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(16, num_classes)

    def forward(self, x):
        return self.head(self.features(x))


def build_model():
    return SmallCNN()


_dataset = TensorDataset(torch.randn(64, 3, 32, 32), torch.arange(64) % num_classes)


def get_dataloader():
    sampler = DistributedSampler(_dataset, seed=SEED) if dist.is_initialized() else None
    return DataLoader(_dataset, batch_size=8, sampler=sampler, shuffle=sampler is None)


loss_fn = nn.CrossEntropyLoss()


def build_optimizer(params):
    return torch.optim.SGD(params, lr=0.05, momentum=0.9)


def save_checkpoint(model, path):
    torch.save(getattr(model, "module", model).state_dict(), path)
