"""model.gradients: one broken fixture per finding, and healthy models that must stay quiet."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import cvdoctor
from broken_models_grad import (DeadReLU, DetachedBackbone, ExplodingChain, InplaceAfterSigmoid,
                                LogOfNegative, NoGradBackbone, SigmoidChain, UnusedBranch,
                                all_frozen)
from modelzoo import HEALTHY_SETUPS, SmallCNN, frozen_backbone_resnet18, image_batch, timm_model

CHECK = "model.gradients"


def grads(model, batch=None, **kw):
    report = cvdoctor.check_model(model, batch or image_batch(8), select=[CHECK], **kw)
    return report.get_all(CHECK)


def one(model, batch=None, **kw):
    findings = grads(model, batch, **kw)
    assert len(findings) == 1, [f.message for f in findings]
    return findings[0]


HEALTHY = HEALTHY_SETUPS


@pytest.mark.parametrize("name", sorted(HEALTHY))
def test_healthy_models_pass(name):
    build, batch = HEALTHY[name]
    f = one(build(), batch() if batch else None)
    assert f.status == "pass", f.message


def test_timm_zero_init_gamma_is_alive_after_one_step_not_dead():
    f = one(timm_model("resnet18"))
    assert f.status == "pass", f.message
    assert f.evidence["zero_at_init"] > 0  # the zero-init BN gammas were seen, then judged alive
    assert "alive after one step" in f.message


def test_frozen_backbone_is_intentional_and_said_so():
    f = one(frozen_backbone_resnet18())
    assert f.status == "pass"
    assert "frozen" in f.message and "11,176,512" in f.message


def test_all_parameters_frozen_fails_with_the_backward_error_recipe():
    f = one(all_frozen(SmallCNN()))
    assert (f.status, f.recipe) == ("fail", "tensor-does-not-require-grad")
    assert "0 of 5,514 parameters require grad" in f.message


def test_all_frozen_without_a_backward_error_is_no_trainable_parameters():
    x, y = image_batch(8)
    x.requires_grad_(True)  # the input carries a graph, so backward itself succeeds
    f = one(all_frozen(SmallCNN()), (x, y))
    assert (f.status, f.recipe) == ("fail", "no-trainable-parameters")


def test_unused_module_warns_and_names_it():
    f = one(UnusedBranch())
    assert (f.status, f.recipe) == ("warn", "unused-parameters")
    assert "`aux_head`" in f.message and "backbone" not in f.message
    assert "DistributedDataParallel" in f.message


def test_detached_backbone_fails_and_names_it():
    f = one(DetachedBackbone())
    assert (f.status, f.recipe) == ("fail", "detached-features")
    assert "`backbone`" in f.message and ".detach()" in f.message
    assert "head" not in f.evidence["modules"]


def test_no_grad_backbone_fails_and_says_no_grad():
    f = one(NoGradBackbone())
    assert (f.status, f.recipe) == ("fail", "detached-features")
    assert "`backbone`" in f.message and "ran under `torch.no_grad()`" in f.message


def test_dead_relu_fails_after_steps_and_names_the_zero_layer():
    f = one(DeadReLU())
    assert (f.status, f.recipe) == ("fail", "dead-gradients")
    assert "features.0.weight" in f.evidence["parameters"]
    assert "features.2.weight" in f.evidence["parameters"]
    assert "`features.3` outputs all zeros" in f.message


def test_nan_gradients_name_the_first_parameter_and_the_module():
    f = one(LogOfNegative())
    assert (f.status, f.recipe) == ("fail", "nonfinite-gradients")
    assert "first `conv.weight`" in f.message and "`log`" in f.message


@pytest.mark.parametrize("scale,status", [(10.0, "warn"), (100.0, "fail")])
def test_exploding_gradients_relative_to_parameter_scale(scale, status):
    f = one(ExplodingChain(scale=scale))
    assert (f.status, f.recipe) == (status, "exploding-gradients")
    assert f.evidence["ratio"] >= 1e3


def test_vanishing_gradients_in_the_earliest_layers():
    f = one(SigmoidChain())
    assert (f.status, f.recipe) == ("warn", "vanishing-gradients")
    assert "`body.2.weight`" in f.message
    assert f.evidence["ratio"] < 1e-4


def test_inplace_modification_points_at_the_forward_line():
    f = one(InplaceAfterSigmoid())
    assert (f.status, f.recipe) == ("fail", "inplace-modification")
    assert "Sigmoid" in f.message and "h = torch.sigmoid(self.conv(x))" in f.message


def test_forward_error_is_a_skip_with_the_reason():
    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(10, 10)

        def forward(self, x):
            return self.fc(x)  # 4-D image into a Linear(10): shape error

    f = one(Broken())
    assert f.status == "skip" and "forward raised" in f.message


def test_the_users_model_is_untouched():
    model = DeadReLU()  # exercises the extra optimizer steps on a copy
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    one(model)
    assert not model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(rng, torch.get_rng_state())


class _BackwardRaises(torch.autograd.Function):
    """Identity forward; its backward raises the error text we want to see matched."""

    message = "CUDA out of memory. Tried to allocate 2.00 GiB"

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError(_BackwardRaises.message)


class BackwardOOM(SmallCNN):
    def forward(self, x):
        return _BackwardRaises.apply(super().forward(x))


def test_other_backward_errors_go_through_the_explain_matcher():
    f = one(BackwardOOM())
    assert f.status == "fail" and f.recipe == "cuda-oom", (f.recipe, f.message)
    assert "backward raised RuntimeError" in f.message


def test_unknown_backward_error_is_a_fail_that_quotes_it(monkeypatch):
    monkeypatch.setattr(_BackwardRaises, "message", "zorglub exploded in a way nobody knows")
    f = one(BackwardOOM())
    assert f.status == "fail" and f.recipe == "backward-error" and "zorglub" in f.message


def test_no_grad_backbone_outside_the_optimizer_is_frozen_in_effect():
    """Feature extraction the way SAM and transfer-learning tutorials write it: the backbone
    under torch.no_grad(), the optimizer over the head. Nothing there is meant to train."""
    model = NoGradBackbone()
    f = one(model, optimizer=torch.optim.Adam(model.head.parameters()))
    assert f.status == "pass", f.message
    assert "`backbone`" in f.message and "frozen in effect" in f.message
    assert f.evidence["outside_optimizer"] and all(
        n.startswith("backbone.") for n in f.evidence["outside_optimizer"])


def test_no_grad_backbone_the_optimizer_holds_still_fails():
    model = NoGradBackbone()
    f = one(model, optimizer=torch.optim.Adam(model.parameters()))
    assert (f.status, f.recipe) == ("fail", "detached-features"), f.message


def test_unused_module_outside_the_optimizer_is_a_note():
    model = UnusedBranch()
    held = [p for n, p in model.named_parameters() if not n.startswith("aux_head.")]
    f = one(model, optimizer=torch.optim.Adam(held))
    assert f.status == "pass" and "`aux_head`" in f.message, f.message
