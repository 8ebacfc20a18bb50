"""Batch from a DataLoader (first batch used); model as a module-level instance; criterion."""
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from _shared import TinyNet

g = torch.Generator().manual_seed(0)
_x = torch.randn(32, 3, 16, 16, generator=g)
_y = torch.arange(32) % 4
train_loader = DataLoader(TensorDataset(_x, _y), batch_size=8, shuffle=True, generator=g)
model = TinyNet(4)
criterion = nn.CrossEntropyLoss(label_smoothing=0.1)
