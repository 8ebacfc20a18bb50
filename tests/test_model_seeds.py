"""No false alarm by chance: every healthy fixture model, under many seeds, gets no `fail`.

A check that decides from values can be fooled by a random init (all twelve logits of a
single-logit head falling in (0, 1) is not a sigmoid). Each case here is rebuilt under
SEEDS different seeds (model init and batch), and every model check runs on it. The overfit
check, the expensive one, runs over the same seeds on a few tiny models (OVERFIT_CASES); on the
real architectures the cheap checks run and the overfit check is left to
test_model_zoo_healthy.py. Warnings are allowed (a setting that can be legitimate); `fail` and
`error` are not.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cvdoctor
from broken_models_peer import Square
from modelzoo import HEALTHY_SETUPS, SmallCNN, TinyUNet, image_batch, mask_batch

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

SEEDS = range(10)
EXPENSIVE = ["model.overfit_batch"]


def _tiny(num_classes=10, **kw):
    return SmallCNN(num_classes=num_classes, width=8, **kw)


def _small_init(model: SmallCNN, scale: float) -> SmallCNN:
    with torch.no_grad():
        model.head.weight.mul_(scale)
        model.head.bias.mul_(scale)
    return model


def _zero_head(model: SmallCNN) -> SmallCNN:
    """torchvision's ViT and many detection heads start from a zero-initialized last layer."""
    nn.init.zeros_(model.head.weight)
    nn.init.zeros_(model.head.bias)
    return model


def _binary(seed, n=12):
    x, y = image_batch(n, size=16, seed=seed)
    return x, (y % 2).float().unsqueeze(1)


def _multilabel(seed, n=12, k=5):
    x, _ = image_batch(n, size=16, seed=seed)
    g = torch.Generator().manual_seed(seed)
    return x, (torch.rand(n, k, generator=g) > 0.6).float()


def _regression(seed, n=12):
    x, _ = image_batch(n, size=16, seed=seed)
    g = torch.Generator().manual_seed(seed + 100)
    return x, torch.randn(n, 2, generator=g)


def _frozen_features(seed):
    """Transfer learning done right: features frozen (requires_grad False, BatchNorm in eval
    mode after model.train()), declared frozen by glob, the optimizer over the head only."""
    model = _tiny()
    model.features.requires_grad_(False)
    model.train()
    model.features.eval()
    opt = torch.optim.Adam(model.head.parameters(), lr=1e-3)
    return model, image_batch(16, size=16, seed=seed), {"frozen": ["features.*"],
                                                        "optimizer": opt}


class _CustomFunctionCNN(SmallCNN):
    def forward(self, x):
        return self.head(Square.apply(torch.flatten(self.features(x), 1)))


class _LogSoftmaxCNN(SmallCNN):
    def forward(self, x):
        return F.log_softmax(super().forward(x), dim=1)


# name -> seed -> (model, batch, check_model kwargs); built after torch.manual_seed(seed)
TINY = {
    "ce_10_classes": lambda s: (_tiny(), image_batch(16, size=16, seed=s), {}),
    "ce_label_smoothing": lambda s: (_tiny(), image_batch(16, size=16, seed=s),
                                     {"loss_fn": nn.CrossEntropyLoss(label_smoothing=0.1)}),
    "ce_small_init_head": lambda s: (_small_init(_tiny(), 0.01), image_batch(16, size=16, seed=s),
                                     {}),
    "ce_zero_init_head": lambda s: (_zero_head(_tiny()), image_batch(16, size=16, seed=s), {}),
    "nll_log_softmax": lambda s: (_LogSoftmaxCNN(width=8), image_batch(16, size=16, seed=s),
                                  {"loss_fn": nn.NLLLoss()}),
    "bce_single_logit": lambda s: (_tiny(1), _binary(s), {"loss_fn": nn.BCEWithLogitsLoss()}),
    "bce_single_logit_small_init": lambda s: (_small_init(_tiny(1), 0.05), _binary(s),
                                              {"loss_fn": nn.BCEWithLogitsLoss()}),
    "bce_multilabel": lambda s: (_tiny(5), _multilabel(s), {"loss_fn": nn.BCEWithLogitsLoss()}),
    "bce_multilabel_small_init": lambda s: (_small_init(_tiny(5), 0.05), _multilabel(s),
                                            {"loss_fn": nn.BCEWithLogitsLoss()}),
    "segmentation_unet": lambda s: (TinyUNet(width=4), mask_batch(4, size=16, seed=s),
                                    {"num_classes": 3}),
    "regression_mse": lambda s: (_tiny(2), _regression(s), {"loss_fn": nn.MSELoss()}),
    "regression_small_init": lambda s: (_small_init(_tiny(2), 0.01), _regression(s),
                                        {"loss_fn": nn.SmoothL1Loss()}),
    "frozen_features_declared": _frozen_features,
    "custom_autograd_function": lambda s: (_CustomFunctionCNN(width=8),
                                           image_batch(16, size=16, seed=s), {}),
}
# cases that exist to exercise an opt-in check: it must run and pass, not skip
MUST_PASS = {"frozen_features_declared": "model.frozen",
             "custom_autograd_function": "model.gradcheck"}
OVERFIT_CASES = ["ce_10_classes", "bce_single_logit_small_init", "bce_multilabel",
                 "segmentation_unet", "regression_mse", "ce_zero_init_head"]


def _no_fail(report, label):
    bad = [f"{f.check}: {f.status} [{f.recipe}]: {f.message}" for f in report.findings
           if f.status in ("fail", "error")]
    assert not bad, f"false alarm on healthy {label}:\n" + "\n".join(bad)


@pytest.mark.parametrize("name", list(TINY))
def test_tiny_healthy_models_never_fail_over_seeds(name):
    for seed in SEEDS:
        torch.manual_seed(seed)
        model, batch, kwargs = TINY[name](seed)
        report = cvdoctor.check_model(model, batch, ignore=EXPENSIVE, **kwargs)
        _no_fail(report, f"{name} seed {seed}")
        if name in MUST_PASS:
            f = report[MUST_PASS[name]]
            assert f.status == "pass", f"{name} seed {seed}: {f.message}"


@pytest.mark.parametrize("name", OVERFIT_CASES)
def test_overfit_verdict_is_stable_over_seeds(name):
    for seed in SEEDS:
        torch.manual_seed(seed)
        model, batch, kwargs = TINY[name](seed)
        report = cvdoctor.check_model(model, batch, select=EXPENSIVE, **kwargs)
        _no_fail(report, f"{name} seed {seed}")


@pytest.mark.parametrize("name", list(HEALTHY_SETUPS))
def test_real_architectures_never_fail_the_cheap_checks_over_seeds(name):
    build, batch_fn = HEALTHY_SETUPS[name]
    for seed in SEEDS:
        torch.manual_seed(seed)
        model = build()
        batch = batch_fn(seed=seed) if batch_fn is not None else image_batch(8, seed=seed)
        kwargs = {"num_classes": 3} if name == "unet" else {}
        report = cvdoctor.check_model(model, batch, ignore=EXPENSIVE, **kwargs)
        _no_fail(report, f"{name} seed {seed}")
