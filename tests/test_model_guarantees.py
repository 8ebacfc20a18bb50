"""The model-check guarantee: a full `check_model` run leaves everything the user handed over
bit-identical: parameters, buffers (BatchNorm running statistics and counters), gradients,
requires_grad, every module's train/eval mode, the optimizer's state (momentum buffers, step
counts, param groups), the batch, and the global RNG states (torch, python `random`, numpy)."""
from __future__ import annotations

import copy
import random

import numpy as np
import pytest
import torch
from torch import nn

import cvdoctor
from modelzoo import SmallCNN, TinyUNet, image_batch, mask_batch


pytestmark = pytest.mark.usefixtures("one_thread")


def snapshot_model(model: nn.Module) -> dict:
    return {
        "params": {n: p.detach().clone() for n, p in model.named_parameters()},
        "grads": {n: None if p.grad is None else p.grad.detach().clone()
                  for n, p in model.named_parameters()},
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "buffers": {n: b.detach().clone() for n, b in model.named_buffers()},
        "modes": {n: m.training for n, m in model.named_modules()},
        "param_ids": [id(p) for p in model.parameters()],
    }


def snapshot_optimizer(opt: torch.optim.Optimizer) -> dict:
    sd = opt.state_dict()
    return {"state": copy.deepcopy(sd["state"]), "groups": copy.deepcopy(sd["param_groups"]),
            "param_ids": [[id(p) for p in g["params"]] for g in opt.param_groups]}


def snapshot_rng() -> dict:
    return {"torch": torch.get_rng_state().clone(), "python": random.getstate(),
            "numpy": np.random.get_state()}


def assert_same(a, b, where=""):
    """Bit-identical comparison of nested dicts/lists/tuples of tensors and plain values."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), where
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b) or (a.is_floating_point() and torch.equal(a.isnan(), b.isnan())
                                     and torch.equal(a.nan_to_num(), b.nan_to_num())), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), f"{where}: keys {set(a) ^ set(b)}"
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b), where
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def _trained_sgd(model, batch):
    """An optimizer with real state: momentum buffers after one step, grads left in place."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x, y = batch
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    return opt


def _run_full_and_compare(model, batch, **kwargs):
    inputs, targets = batch
    batch_before = (inputs.clone(), targets.clone())
    opt = kwargs.get("optimizer")
    model_before = snapshot_model(model)
    opt_before = snapshot_optimizer(opt) if opt is not None else None
    # move the global RNGs somewhere unusual so "restored to a seed" would not pass
    torch.manual_seed(1234)
    random.seed(99)
    np.random.seed(7)
    torch.rand(3)
    random.random()
    np.random.rand()
    rng_before = snapshot_rng()

    report = cvdoctor.check_model(model, batch, **kwargs)

    rng_after = snapshot_rng()
    assert_same(rng_before, rng_after, "rng")
    assert_same(model_before, snapshot_model(model), "model")
    if opt is not None:
        assert_same(opt_before, snapshot_optimizer(opt), "optimizer")
    assert_same(batch_before, (inputs, targets), "batch")
    assert len(report.check_ids()) >= 5, report  # the full model set ran, not a stub
    assert "model.overfit_batch" in report.check_ids()
    return report


def test_bn_model_in_eval_mode_with_momentum_optimizer_untouched():
    torch.manual_seed(0)
    model = SmallCNN()
    batch = image_batch(16)
    opt = _trained_sgd(model, batch)
    model.eval()  # handed over in eval mode: must still be in eval mode afterwards
    assert opt.state_dict()["state"], "the fixture must carry momentum state"
    _run_full_and_compare(model, batch, optimizer=opt)
    assert not model.training


def test_train_mode_model_with_frozen_part_and_leftover_grads_untouched():
    torch.manual_seed(0)
    model = SmallCNN()
    batch = image_batch(16)
    for p in model.features[:3].parameters():
        p.requires_grad_(False)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    x, y = batch
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()  # Adam state: step, exp_avg, exp_avg_sq; grads stay populated
    model.train()
    _run_full_and_compare(model, batch, optimizer=opt)
    assert model.training


def test_segmentation_model_and_masks_untouched():
    torch.manual_seed(0)
    model = TinyUNet()
    _run_full_and_compare(model, mask_batch(), num_classes=3)


def test_broken_run_that_diverges_leaves_nothing_behind():
    """The overfit check trains with lr 10 and re-runs: still nothing of the user's changes."""
    from broken_models_overfit import TinyMLP, lr_too_high

    torch.manual_seed(0)
    model = TinyMLP()
    report = _run_full_and_compare(model, image_batch(16), optimizer=lr_too_high(model))
    assert report["model.overfit_batch"].status == "fail"


@pytest.mark.parametrize("harm", ["param", "buffer", "mode", "rng", "optimizer"])
def test_the_comparison_catches_a_check_that_breaks_the_guarantee(harm):
    """A throw-away check that breaks one guarantee: the comparison above must notice."""
    from cvdoctor.finding import passed
    from cvdoctor.registry import register, unregister

    def misbehave(ctx):
        model, opt = ctx.spec.model, ctx.spec.optimizer
        if harm == "param":
            with torch.no_grad():
                model.head.weight[0, 0] += 1e-6
        elif harm == "buffer":
            model.features[1].num_batches_tracked += 1
        elif harm == "mode":
            model.dropout.eval()
        elif harm == "rng":
            torch.rand(1)
        elif harm == "optimizer":
            opt.param_groups[0]["lr"] *= 2
        return passed("misbehaving", "for the guarantee test")

    register("model.zz_guarantee_breaker", title="misbehaving")(misbehave)
    try:
        torch.manual_seed(0)
        model = SmallCNN()
        batch = image_batch(8)
        opt = _trained_sgd(model, batch)
        model.train()
        where = {"param": "model.params", "buffer": "model.buffers", "mode": "model.modes",
                 "rng": "rng", "optimizer": "optimizer.groups"}[harm]
        with pytest.raises(AssertionError, match=where):
            _run_full_and_compare(model, batch, optimizer=opt,
                                  select=["model.zz_guarantee_breaker", "model.forward",
                                          "model.output", "model.data", "model.dtype",
                                          "model.overfit_batch"], budget=1.0)
    finally:
        unregister("model.zz_guarantee_breaker")
