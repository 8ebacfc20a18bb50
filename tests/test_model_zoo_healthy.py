"""Healthy real models pass every model check with no `fail` and no `error`.

A false alarm on a healthy model costs more trust than a missed warning, so this runs the whole
model check set (not one check) on the setups people actually train: torchvision and timm
classifiers, a ViT, a U-Net with (N, H, W) masks, BCE heads, label smoothing, heavy dropout, a
frozen backbone, 1-channel images and real images. Warnings are allowed (a model handed over in
eval mode, a run cut by the time cap on a busy CPU); they are printed for the record.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

import cvdoctor
from modelzoo import SmallCNN, TinyUNet, digits_batch, image_batch, mask_batch

torchvision = pytest.importorskip("torchvision")
timm = pytest.importorskip("timm")


pytestmark = pytest.mark.usefixtures("one_thread")


def _resnet18():
    return torchvision.models.resnet18(weights=None, num_classes=10)


def _frozen_backbone():
    """Transfer learning: backbone frozen on purpose, a new head, an optimizer over the head."""
    model = torchvision.models.resnet18(weights=None)
    for p in model.parameters():
        p.requires_grad_(False)
    model.fc = nn.Linear(model.fc.in_features, 10)
    return model, {"optimizer": torch.optim.Adam(model.fc.parameters(), lr=1e-3)}


def _mnist_cnn():
    """1-channel 28x28 (MNIST-shaped) images."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 10))


def _binary_batch():
    x, _ = image_batch(16)
    y = (torch.arange(16) % 2).float().unsqueeze(1)  # balanced, float (N, 1)
    return x, y


def _multilabel_batch():
    x, _ = image_batch(16)
    g = torch.Generator().manual_seed(3)
    return x, (torch.rand(16, 5, generator=g) > 0.5).float()


def _case(name):
    """(model, batch, check_model kwargs) for one healthy setup, built fresh for each test."""
    torch.manual_seed(0)
    if name == "torchvision_resnet18":
        return _resnet18(), image_batch(8), {}
    if name == "torchvision_mobilenet_v3_small":
        return (torchvision.models.mobilenet_v3_small(weights=None, num_classes=10),
                image_batch(8, size=64), {})
    if name == "timm_resnet18":
        return timm.create_model("resnet18", pretrained=False, num_classes=10), image_batch(8), {}
    if name == "timm_vit_tiny_32px":
        model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32,
                                  patch_size=4, num_classes=10, depth=4)
        return model, image_batch(8), {}
    if name == "unet_masks":
        return TinyUNet(), mask_batch(), {"num_classes": 3}
    if name == "bce_single_logit":
        return SmallCNN(num_classes=1), _binary_batch(), {"loss_fn": nn.BCEWithLogitsLoss()}
    if name == "bce_multilabel":
        return SmallCNN(num_classes=5), _multilabel_batch(), {"loss_fn": nn.BCEWithLogitsLoss()}
    if name == "label_smoothing":
        return SmallCNN(), image_batch(16), {
            "loss_fn": nn.CrossEntropyLoss(label_smoothing=0.1)}
    if name == "heavy_dropout":
        return SmallCNN(dropout=0.5), image_batch(16), {}
    if name == "frozen_backbone":
        model, kwargs = _frozen_backbone()
        return model, image_batch(8), kwargs
    if name == "mnist_1ch_28px":
        return _mnist_cnn(), image_batch(16, channels=1, size=28), {}
    if name == "sklearn_digits":
        return SmallCNN(in_channels=1), digits_batch(), {}
    raise KeyError(name)


CASES = ["torchvision_resnet18", "torchvision_mobilenet_v3_small", "timm_resnet18",
         "timm_vit_tiny_32px", "unet_masks", "bce_single_logit", "bce_multilabel",
         "label_smoothing", "heavy_dropout", "frozen_backbone", "mnist_1ch_28px",
         "sklearn_digits"]


@pytest.mark.slow
@pytest.mark.parametrize("name", CASES)
def test_healthy_model_has_no_fail(name):
    model, batch, kwargs = _case(name)
    report = cvdoctor.check_model(model, batch, name=name, **kwargs)
    print(report)
    bad = [f"{f.check}: {f.status}: {f.message}" for f in report.failures]
    assert not bad, f"false alarm on healthy {name}:\n" + "\n".join(bad) + "\n\n" + str(report)
    # every model check ran (none silently missing from the set)
    ids = set(report.check_ids())
    assert "model.overfit_batch" in ids and "model.gradients" in ids, ids
