"""Small healthy models and batches shared by the model-check tests (read-only for tests).

Broken variants live next to the test that needs them; these must stay healthy: every model
check must pass (or at most warn where stated) on them.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


class SmallCNN(nn.Module):
    """The classic CIFAR-10 CNN, shrunk: conv-bn-relu blocks, dropout, linear head."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: int = 16,
                 dropout: float = 0.2):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, width * 2, 3, padding=1), nn.BatchNorm2d(width * 2), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(width * 2, num_classes)

    def forward(self, x):
        return self.head(self.dropout(torch.flatten(self.features(x), 1)))


class TinyUNet(nn.Module):
    """Two-level U-Net producing (N, C, H, W) logits for (N, H, W) integer masks."""

    def __init__(self, num_classes: int = 3, in_channels: int = 3, width: int = 8):
        super().__init__()

        def block(cin, cout):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout),
                                 nn.ReLU())

        self.enc1 = block(in_channels, width)
        self.enc2 = block(width, width * 2)
        self.up = nn.ConvTranspose2d(width * 2, width, 2, stride=2)
        self.dec1 = block(width * 2, width)
        self.out = nn.Conv2d(width, num_classes, 1)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        d1 = self.dec1(torch.cat([self.up(e2), e1], dim=1))
        return self.out(d1)


def image_batch(n: int = 16, channels: int = 3, size: int = 32, num_classes: int = 10,
                seed: int = 0):
    """Normalized random images with balanced labels."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, channels, size, size, generator=g)
    y = (torch.arange(n) % num_classes)[torch.randperm(n, generator=g)]
    return x, y


def mask_batch(n: int = 4, channels: int = 3, size: int = 32, num_classes: int = 3, seed: int = 0):
    """Images with (N, H, W) integer masks whose classes follow simple image structure."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, channels, size, size, generator=g)
    masks = (x[:, 0] > 0.5).long() + (x[:, 1] > 0.5).long()
    return x, masks.clamp(max=num_classes - 1)


def digits_batch(n: int = 16, seed: int = 0):
    """Real images that ship offline: scikit-learn's 8x8 digits, normalized, as (N, 1, 8, 8)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(data.images), generator=g)[:n]
    x = torch.tensor(data.images[idx.numpy()], dtype=torch.float32).unsqueeze(1)
    x = (x - x.mean()) / x.std()
    y = torch.tensor(data.target[idx.numpy()], dtype=torch.long)
    return x, y


def tv_resnet18(num_classes: int = 10) -> nn.Module:
    import torchvision

    return torchvision.models.resnet18(weights=None, num_classes=num_classes)


def timm_model(name: str, num_classes: int = 10, **kw) -> nn.Module:
    import timm

    return timm.create_model(name, pretrained=False, num_classes=num_classes, **kw)


def frozen_backbone_resnet18(num_classes: int = 10) -> nn.Module:
    """Healthy transfer learning: everything frozen except the fresh head."""
    model = tv_resnet18(1000)
    for p in model.parameters():
        p.requires_grad_(False)
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model


# name -> (model factory, batch factory or None for image_batch()): real architectures that every
# model check must stay quiet on. Tests pick the subset their cost allows.
HEALTHY_SETUPS = {
    "small_cnn": (lambda: SmallCNN(), None),
    "heavy_dropout": (lambda: SmallCNN(dropout=0.5), None),
    "unet": (lambda: TinyUNet(), mask_batch),
    "digits_1ch": (lambda: SmallCNN(in_channels=1), digits_batch),
    "tv_resnet18": (tv_resnet18, None),
    "timm_resnet18": (lambda: timm_model("resnet18"), None),
    "timm_resnet10t": (lambda: timm_model("resnet10t"), None),
    "timm_vit_32px": (lambda: timm_model("vit_tiny_patch16_224", img_size=32, patch_size=4), None),
    "frozen_backbone": (frozen_backbone_resnet18, None),
}
