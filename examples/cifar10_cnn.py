"""The classic CIFAR-10 CNN, healthy: `cvdoctor model examples/cifar10_cnn.py` exits 0.

Three conv-conv-pool stages and a small classifier, as in the usual CIFAR-10 tutorials (at half
the usual width, so the checks finish in seconds on a laptop CPU). CIFAR-10
cannot be downloaded here, so get_batch() makes CIFAR-like images: smooth random colour fields in
[0, 1], normalized with the real CIFAR-10 channel statistics, and balanced labels. Point the same
names at your real data loader and the checks run on your data.
"""
import torch
from torch import nn

num_classes = 10
input_shape = (3, 32, 32)
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


def conv_block(cin, cout):
    return [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU()]


class Cifar10CNN(nn.Module):
    def __init__(self, num_classes=num_classes):
        super().__init__()
        self.network = nn.Sequential(
            *conv_block(3, 16), *conv_block(16, 32), nn.MaxPool2d(2),       # 32 x 16 x 16
            *conv_block(32, 64), *conv_block(64, 64), nn.MaxPool2d(2),      # 64 x 8 x 8
            *conv_block(64, 128), *conv_block(128, 128), nn.MaxPool2d(2),   # 128 x 4 x 4
            nn.Flatten(),
            nn.Linear(128 * 4 * 4, 128), nn.ReLU(),
            nn.Linear(128, num_classes),
        )

    def forward(self, x):
        return self.network(x)


def build_model():
    return Cifar10CNN()


def cifar_like_images(n, seed=0):
    """Low-frequency colour fields in [0, 1] (upsampled 4x4 noise): image-like, not white noise."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 4, 4, generator=g)
    images = nn.functional.interpolate(coarse, size=(32, 32), mode="bilinear",
                                       align_corners=False)
    return (images + 0.05 * torch.rand(n, 3, 32, 32, generator=g)).clamp(0, 1)


def normalize(images):
    mean = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR_STD).view(1, 3, 1, 1)
    return (images - mean) / std


def get_batch(batch_size=16):
    g = torch.Generator().manual_seed(1)
    labels = (torch.arange(batch_size) % num_classes)[torch.randperm(batch_size, generator=g)]
    return normalize(cifar_like_images(batch_size)), labels


loss_fn = nn.CrossEntropyLoss()


def build_optimizer(params):
    return torch.optim.Adam(params, lr=1e-3)
