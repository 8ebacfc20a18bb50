"""The broken setups of the model issue, each one line away from a healthy SmallCNN, for comparing
cvdoctor with its peers. Every builder returns a fresh Setup (peers that train in place get
their own copy).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from modelzoo import SmallCNN, TinyUNet, image_batch, mask_batch  # noqa: E402


@dataclass
class Setup:
    model: nn.Module
    inputs: torch.Tensor
    targets: torch.Tensor
    optimizer: torch.optim.Optimizer | None = None
    loss_fn: Callable = field(default_factory=nn.CrossEntropyLoss)
    num_classes: int = 10
    classification: bool = True  # neural-net-checklist's suite is for classification only


def _adam(model):
    return torch.optim.Adam(model.parameters(), lr=1e-3)


def _setup(model, batch=None, optimizer=None, **kw) -> Setup:
    x, y = batch if batch is not None else image_batch(16)
    return Setup(model, x, y, optimizer if optimizer is not None else _adam(model), **kw)


# --- broken ------------------------------------------------------------------------------------

def off_by_one_labels() -> Setup:
    x, y = image_batch(16)
    return _setup(SmallCNN(), (x, y + 1))  # 1-based labels 1..10 for a 10-way head


class _SoftmaxTwice(SmallCNN):
    def forward(self, x):
        return F.softmax(super().forward(x), dim=1)


def softmax_twice() -> Setup:
    return _setup(_SoftmaxTwice())


def head_swapped_after_optimizer() -> Setup:
    model = SmallCNN()
    opt = _adam(model)
    model.head = nn.Linear(model.head.in_features, 10)  # the optimizer still holds the old head
    return _setup(model, optimizer=opt)


class _DetachedBackbone(SmallCNN):
    def forward(self, x):
        feats = torch.flatten(self.features(x), 1).detach()
        return self.head(self.dropout(feats))


def detached_backbone() -> Setup:
    return _setup(_DetachedBackbone())


class _DeadReLU(SmallCNN):
    def __init__(self):
        super().__init__()
        with torch.no_grad():
            for m in self.features:
                if isinstance(m, nn.BatchNorm2d):
                    m.bias.fill_(-100.0)


def dead_relus() -> Setup:
    return _setup(_DeadReLU())


class _MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 64), nn.ReLU(),
                                 nn.Linear(64, 10))

    def forward(self, x):
        return self.net(x)


def lr_too_high() -> Setup:
    model = _MLP()
    return _setup(model, optimizer=torch.optim.SGD(model.parameters(), lr=10.0))


class _BatchMixing(SmallCNN):
    def forward(self, x):
        f = self.features(x)  # (N, C, 1, 1)
        n = f.shape[0]
        f = f.permute(1, 0, 2, 3).reshape(n, -1)  # wrong: rows now mix samples
        return self.head(self.dropout(f))


def batch_mixing() -> Setup:
    return _setup(_BatchMixing())


def nhwc_input() -> Setup:
    x, y = image_batch(16)
    return _setup(SmallCNN(), (x.permute(0, 2, 3, 1).contiguous(), y))


def unnormalized_input() -> Setup:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (16, 3, 32, 32), generator=g).float()  # raw 0-255 pixels
    _, y = image_batch(16)
    return _setup(SmallCNN(), (x, y))


class _EvalDropout(SmallCNN):
    def forward(self, x):
        feats = torch.flatten(self.features(x), 1)
        return self.head(F.dropout(feats, 0.5, training=True))  # dropout on in eval mode too


def eval_mode_dropout() -> Setup:
    return _setup(_EvalDropout())


BROKEN = {
    "off-by-one labels": off_by_one_labels,
    "softmax twice": softmax_twice,
    "head swapped after optimizer": head_swapped_after_optimizer,
    "detached backbone": detached_backbone,
    "dead ReLUs": dead_relus,
    "lr too high (SGD lr=10)": lr_too_high,
    "batch mixing (wrong permute)": batch_mixing,
    "NHWC input": nhwc_input,
    "unnormalized input (0-255)": unnormalized_input,
    "eval-mode dropout": eval_mode_dropout,
}


# --- healthy (timing and false alarms) ---------------------------------------------------------

def healthy() -> dict[str, Callable[[], Setup]]:
    import timm
    import torchvision

    return {
        "SmallCNN": lambda: _setup(SmallCNN()),
        "resnet18": lambda: _setup(torchvision.models.resnet18(weights=None, num_classes=10)),
        "mobilenet_v3_small": lambda: _setup(
            torchvision.models.mobilenet_v3_small(weights=None, num_classes=10),
            image_batch(16, size=64)),
        "vit_tiny (32 px)": lambda: _setup(
            timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32,
                              patch_size=4, num_classes=10), image_batch(8)),
        "TinyUNet (masks)": lambda: _setup(TinyUNet(), mask_batch(), num_classes=3,
                                           classification=False),
    }


def describe(setup: Setup) -> dict[str, Any]:
    return {"model": type(setup.model).__name__, "inputs": tuple(setup.inputs.shape)}
