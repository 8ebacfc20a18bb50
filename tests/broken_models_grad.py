"""Broken model variants for model.gradients, model.optimizer, model.batch_independence and
model.train_eval. Each class is one bug a user really writes; healthy models are in modelzoo.py.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from modelzoo import SmallCNN


def conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU())


class Backbone(nn.Module):
    def __init__(self, width: int = 8):
        super().__init__()
        self.stem = conv_block(3, width)
        self.stage = conv_block(width, width * 2)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        return torch.flatten(self.pool(self.stage(self.stem(x))), 1)


class UnusedBranch(nn.Module):
    """An auxiliary head defined in __init__ and never called in forward."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.backbone = Backbone()
        self.head = nn.Linear(16, num_classes)
        self.aux_head = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, num_classes))

    def forward(self, x):
        return self.head(self.backbone(x))


class DetachedBackbone(nn.Module):
    """Features detached before the head: only the head trains."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.backbone = Backbone()
        self.head = nn.Linear(16, num_classes)

    def forward(self, x):
        return self.head(self.backbone(x).detach())


class NoGradBackbone(DetachedBackbone):
    """The feature extractor runs under torch.no_grad() although it is meant to train."""

    def forward(self, x):
        with torch.no_grad():
            feats = self.backbone(x)
        return self.head(feats)


def all_frozen(model: nn.Module) -> nn.Module:
    for p in model.parameters():
        p.requires_grad_(False)
    return model




class DeadReLU(nn.Module):
    """Bias -10 after a normalized input: every ReLU unit of the hidden layer is off."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(32, num_classes)
        with torch.no_grad():
            self.features[2].bias.fill_(-10.0)

    def forward(self, x):
        return self.head(self.features(x))


class LogOfNegative(nn.Module):
    """log() of a signed activation: NaN for every negative entry."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.log = LogLayer()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(8, num_classes)

    def forward(self, x):
        return self.head(torch.flatten(self.pool(self.log(self.conv(x))), 1))


class LogLayer(nn.Module):
    def forward(self, x):
        return torch.log(x)


class ExplodingChain(nn.Module):
    """A deep Linear/ReLU chain whose weights a custom init scaled up by `scale`.

    scale=10: gradients ~1e3-1e4x the parameter norm (warn); scale=100: ~1e9x (fail).
    """

    def __init__(self, num_classes: int = 10, depth: int = 6, width: int = 64,
                 scale: float = 10.0):
        super().__init__()
        layers, cin = [], 3 * 8 * 8
        for _ in range(depth):
            layers += [nn.Linear(cin, width), nn.ReLU()]
            cin = width
        self.body = nn.Sequential(nn.AdaptiveAvgPool2d(8), nn.Flatten(), *layers)
        self.head = nn.Linear(width, num_classes)
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, nn.Linear):
                    m.weight.mul_(scale)

    def forward(self, x):
        return self.head(self.body(x))


class SigmoidChain(nn.Module):
    """A 20-layer sigmoid MLP with small init: the earliest layers get ~nothing."""

    def __init__(self, num_classes: int = 10, depth: int = 20, width: int = 32):
        super().__init__()
        layers, cin = [], 3 * 4 * 4
        for _ in range(depth):
            layers += [nn.Linear(cin, width), nn.Sigmoid()]
            cin = width
        self.body = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), *layers)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.head(self.body(x))


class InplaceAfterSigmoid(nn.Module):
    """`h += 1` on a sigmoid output that autograd still needs."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Linear(8, num_classes)

    def forward(self, x):
        h = torch.sigmoid(self.conv(x))
        h += 1
        return self.head(h.mean(dim=(2, 3)))


class FlattenAcrossBatch(nn.Module):
    """`x.view(-1, N)` with N taken from the wrong axis: flattening mixes samples."""

    def __init__(self, num_classes: int = 10, width: int = 8):
        super().__init__()
        self.features = nn.Sequential(conv_block(3, width), nn.AdaptiveAvgPool2d(2))
        self.head = nn.Linear(width * 4, num_classes)

    def forward(self, x):
        f = self.features(x)  # (N, C, 2, 2)
        f = f.permute(1, 0, 2, 3).reshape(x.shape[0], -1)  # channels-first: rows mix samples
        return self.head(f)


class HardcodedDropout(SmallCNN):
    """F.dropout with the default training=True: dropout stays on in eval."""

    def forward(self, x):
        f = torch.flatten(self.features(x), 1)
        return self.head(F.dropout(f, 0.5))


class AlwaysDropout(nn.Dropout):
    def forward(self, x):
        return F.dropout(x, self.p, training=True)


class DropoutSubclassModel(SmallCNN):
    """A Dropout subclass that ignores self.training."""

    def __init__(self):
        super().__init__()
        self.dropout = AlwaysDropout(0.3)


class BatchStatNorm(nn.BatchNorm2d):
    """A "fixed" BatchNorm that always normalizes with batch statistics."""

    def forward(self, x):
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            training=True, momentum=0.1, eps=self.eps)


class ForcedBatchStats(nn.Module):
    def __init__(self, num_classes: int = 10, width: int = 8):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1)
        self.norm = BatchStatNorm(width)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.head(F.relu(self.norm(self.conv(x))).mean(dim=(2, 3)))


class NoRunningStats(ForcedBatchStats):
    """BatchNorm2d(track_running_stats=False): batch statistics in eval too."""

    def __init__(self, num_classes: int = 10, width: int = 8):
        super().__init__(num_classes, width)
        self.norm = nn.BatchNorm2d(width, track_running_stats=False)


class DropoutUnused(SmallCNN):
    """Dropout and BatchNorm defined, forward bypasses both (train == eval)."""

    def __init__(self):
        super().__init__()
        self.plain = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
                                   nn.AdaptiveAvgPool2d(1))
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        return self.head(torch.flatten(self.plain(x), 1))


def head_replaced_after_optimizer(num_classes: int = 10):
    """The classic transfer-learning slip: optimizer built, then model.head replaced."""
    model = SmallCNN(num_classes=1000)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.head = nn.Linear(model.head.in_features, num_classes)
    return model, optimizer

