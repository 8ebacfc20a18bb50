"""A small CIFAR-10-style classifier, laid out the way `cvdoctor model` reads a file.

    cvdoctor model examples/tests/my_model.py
    pytest examples/tests --cvdoctor-model examples/tests/my_model.py
"""
import torch
from torch import nn

NUM_CLASSES = 10
num_classes = NUM_CLASSES
input_shape = (3, 32, 32)


class SmallCNN(nn.Module):
    def __init__(self, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.head = nn.Linear(32, num_classes)

    def forward(self, x):
        return self.head(torch.flatten(self.features(x), 1))


def build_model() -> nn.Module:
    return SmallCNN()


def get_batch(n: int = 16):
    """One batch: normalized images, every class present (stands in for your DataLoader)."""
    g = torch.Generator().manual_seed(0)
    images = torch.randn(n, 3, 32, 32, generator=g)
    labels = torch.arange(n) % NUM_CLASSES
    return images, labels


def build_optimizer(params):
    return torch.optim.AdamW(params, lr=3e-3, weight_decay=1e-4)
