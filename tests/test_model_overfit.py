"""model.overfit_batch: every verdict it can reach, on a fixture that triggers it and on healthy
models that must not.

Verdicts should not depend on how busy the CPU is, so most tests give a generous budget (the
run then ends on a verdict: memorized, flat, stalled, diverged) instead of the default time cap.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

import cvdoctor
from broken_models_overfit import (DeadReluCNN, ReluHeadCNN, SoftmaxTwiceCNN, TinyMLP,
                                   healthy_sgd, lr_far_too_high, lr_too_high, lr_too_low,
                                   weight_decay_too_strong)
from modelzoo import SmallCNN, TinyUNet, digits_batch, image_batch, mask_batch

CHECK = "model.overfit_batch"
BUDGET = 60.0  # generous: verdicts come from the training curve, not from the clock


pytestmark = pytest.mark.usefixtures("one_thread")


def overfit(model, batch=None, **kwargs):
    torch.manual_seed(0)
    kwargs.setdefault("budget", BUDGET)
    report = cvdoctor.check_model(model, batch if batch is not None else image_batch(16),
                                  select=[CHECK], **kwargs)
    finding = report[CHECK]
    assert finding.status != "error", finding.evidence.get("traceback")
    return finding


def reruns(finding):
    return {r["label"]: r for r in finding.evidence.get("reruns", [])}


# --- healthy: memorizes (or is clearly learning) and passes ------------------------------------

def test_healthy_cnn_memorizes_the_batch():
    torch.manual_seed(0)
    f = overfit(SmallCNN())
    assert f.status == "pass", f.message
    assert f.message.startswith("memorized the batch")
    assert f.evidence["main"]["acc"] == 1.0
    assert f.evidence["task"] == "class"


def test_healthy_sgd_with_usual_weight_decay_passes():
    torch.manual_seed(0)
    model = SmallCNN()
    f = overfit(model, optimizer=healthy_sgd(model))
    assert f.status == "pass", f.message
    assert "reruns" not in f.evidence


def test_real_digits_memorized():
    torch.manual_seed(0)
    f = overfit(SmallCNN(in_channels=1), digits_batch())
    assert f.status == "pass", f.message


def test_label_smoothing_keeps_loss_above_zero_but_passes():
    torch.manual_seed(0)
    f = overfit(SmallCNN(), loss_fn=nn.CrossEntropyLoss(label_smoothing=0.1))
    assert f.status == "pass", f.message
    # the lowest reachable loss is the entropy of the smoothed targets, not 0
    assert 0.4 < f.evidence["loss_floor"] < 0.6


def test_heavy_dropout_judged_with_dropout_off():
    torch.manual_seed(0)
    f = overfit(SmallCNN(dropout=0.5))
    assert f.status == "pass", f.message


def test_segmentation_masks_use_pixel_accuracy():
    torch.manual_seed(0)
    f = overfit(TinyUNet(), mask_batch())
    assert f.status == "pass", f.message
    assert f.evidence["task"] == "dense"


def test_multilabel_bce_uses_thresholded_accuracy():
    torch.manual_seed(0)
    x, _ = image_batch(16)
    targets = (torch.rand(16, 5, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    f = overfit(SmallCNN(num_classes=5), (x, targets), loss_fn=nn.BCEWithLogitsLoss())
    assert f.status == "pass", f.message
    assert f.evidence["task"] == "binary"


def test_regression_judged_by_relative_loss_drop():
    torch.manual_seed(0)
    x, _ = image_batch(16)
    targets = torch.randn(16, 10, generator=torch.Generator().manual_seed(1))
    f = overfit(TinyMLP(), (x, targets), loss_fn=nn.MSELoss())
    assert f.status == "pass", f.message
    assert f.evidence["task"] == "loss-only"


def test_training_step_is_used_for_the_loss():
    torch.manual_seed(0)
    calls = []

    def training_step(model, batch):
        calls.append(1)
        x, y = batch
        return nn.functional.cross_entropy(model(x), y)

    f = overfit(TinyMLP(), training_step=training_step)
    assert f.status == "pass", f.message
    assert len(calls) > 5


# --- diverged: learning rate too high, confirmed by a lower-lr re-run --------------------------

def test_lr_too_high_diverges_and_lower_lr_confirms():
    torch.manual_seed(0)
    model = TinyMLP()
    f = overfit(model, optimizer=lr_too_high(model))
    assert (f.status, f.recipe) == ("fail", "overfit-lr-too-high"), f.message
    assert "diverged at lr 10" in f.message
    assert reruns(f)["lr/10"]["verdict"] in ("memorized", "learning")
    assert "10x lower" in f.message and f.fix


def test_lr_too_high_with_momentum_still_named():
    torch.manual_seed(0)
    model = TinyMLP()
    f = overfit(model, optimizer=lr_far_too_high(model))
    assert (f.status, f.recipe) == ("fail", "overfit-lr-too-high"), f.message


def test_nan_at_every_learning_rate_is_not_blamed_on_the_step_size():
    class NanAfterUpdate(TinyMLP):
        """Finite at init; NaN as soon as any update moved the first layer (at any step size)."""

        def forward(self, x):
            w = self.net[1].weight
            if not hasattr(self, "_ref"):
                self._ref = w.detach().clone()
            out = super().forward(x)
            if not torch.equal(w.detach(), self._ref):
                out = out + float("nan")
            return out

    torch.manual_seed(0)
    f = overfit(NanAfterUpdate())
    assert (f.status, f.recipe) == ("fail", "nan-loss"), f.message
    assert set(reruns(f)) == {"lr/10", "lr/100"}


# --- flat: learning rate too low, weight decay, dead network -----------------------------------

def test_lr_too_low_is_flat_and_higher_lr_confirms():
    torch.manual_seed(0)
    model = SmallCNN()
    f = overfit(model, optimizer=lr_too_low(model))
    assert (f.status, f.recipe) == ("warn", "overfit-lr-too-low"), f.message
    assert "the loss does not move" in f.message and "lr 1e-07" in f.message
    assert any(r["lr"] > 1e-3 for r in reruns(f).values())


def test_weight_decay_too_strong_confirmed_by_zero_decay_rerun():
    torch.manual_seed(0)
    model = SmallCNN()
    f = overfit(model, optimizer=weight_decay_too_strong(model))
    assert (f.status, f.recipe) == ("fail", "overfit-weight-decay"), f.message
    assert reruns(f)["weight_decay=0"]["overrides"] == {"weight_decay": 0.0}
    assert f.evidence["main"]["weight_ratio"] < 0.5  # the decay shrank the weights


class PixelLinear(nn.Module):
    """A 1x1 convolution: a per-pixel linear classifier, healthy, but it cannot memorize random
    per-pixel labels; its loss falls steadily and slowly."""

    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        return self.c(x)


class MutedLogits(PixelLinear):
    """Logits scaled by 1e-6: gradients reach the weights, the loss cannot move."""

    def forward(self, x):
        return self.c(x) * 1e-6


def _noise_masks():
    g = torch.Generator().manual_seed(0)
    return torch.randn(4, 3, 32, 32, generator=g), torch.randint(0, 4, (4, 32, 32), generator=g)


def test_a_loss_that_falls_too_slowly_warns_instead_of_failing():
    torch.manual_seed(0)
    f = overfit(PixelLinear(), batch=_noise_masks())
    assert (f.status, f.recipe) == ("warn", "overfit-no-progress"), f.message
    assert "falls too slowly" in f.message and f.evidence["main"]["progress"] > 0.01


def test_a_loss_that_does_not_move_at_any_learning_rate_still_fails():
    torch.manual_seed(0)
    f = overfit(MutedLogits(), batch=_noise_masks())
    assert (f.status, f.recipe) == ("fail", "overfit-no-progress"), f.message
    assert "cause not confirmed" in f.message


def test_dead_network_is_flat_with_zero_gradients():
    torch.manual_seed(0)
    f = overfit(DeadReluCNN())
    assert (f.status, f.recipe) == ("fail", "overfit-no-progress"), f.message
    assert f.evidence["zero_grad_fraction"] > 0.9


# --- plateau: the outputs cap the loss ---------------------------------------------------------

def test_softmax_twice_is_stuck_on_a_plateau():
    torch.manual_seed(0)
    f = overfit(SoftmaxTwiceCNN())
    assert (f.status, f.recipe) == ("fail", "overfit-plateau"), f.message
    assert f.evidence["output_evidence"]["cause"] == "probabilities"
    assert "1.46" in f.message  # ln(1 + 9/e): the lowest cross-entropy of probabilities


def test_relu_after_the_head_is_flagged():
    torch.manual_seed(0)
    f = overfit(ReluHeadCNN())
    assert (f.status, f.recipe) == ("fail", "overfit-plateau"), f.message
    assert f.evidence["output_evidence"]["cause"] == "clipped"


# --- budget: running out is a warning, never a failure -----------------------------------------

def test_tiny_budget_warns_and_never_fails():
    torch.manual_seed(0)
    f = overfit(SmallCNN(), budget=0.05)
    assert (f.status, f.recipe) == ("warn", "overfit-budget-exhausted"), f.message


def test_a_slow_machine_without_budget_is_not_judged_rather_than_warned(monkeypatch):
    """The default cap is wall time: on a busy machine a healthy model ends it before a verdict
    while its loss goes down. Without --budget that is a skip saying so, not a warning (audits
    saw the bundled healthy example warn under load)."""
    import sys

    import cvdoctor.model.overfit as overfit_module
    from cvdoctor.registry import get_check

    check_module = sys.modules[get_check("model.overfit_batch").func.__module__]

    monkeypatch.setattr(check_module, "MAIN_CAP_S", 0.02)  # as if every step were 50x slower
    monkeypatch.setattr(overfit_module, "HARD_CAP_FACTOR", 1)
    torch.manual_seed(0)
    f = overfit(SmallCNN(), budget=None)
    assert f.status == "skip" and "not judged" in f.message and "--budget" in f.message, \
        (f.status, f.message)


def test_a_slow_machine_without_budget_and_too_few_steps_is_not_judged(monkeypatch):
    """A VGG on the CPU takes one step inside the default cap, and Adam's first step often
    raises the loss: no progress after a step or two is no evidence either way."""
    import sys

    import cvdoctor.model.overfit as overfit_module
    from cvdoctor.registry import get_check

    check_module = sys.modules[get_check("model.overfit_batch").func.__module__]
    monkeypatch.setattr(check_module, "MAIN_CAP_S", 0.02)
    monkeypatch.setattr(overfit_module, "HARD_CAP_FACTOR", 1)
    torch.manual_seed(0)
    model = SmallCNN()
    f = overfit(model, optimizer=torch.optim.SGD(model.parameters(), lr=0.0), budget=None)
    assert f.status == "skip" and "too few to judge" in f.message, (f.status, f.message)
    assert f.evidence["main"]["steps"] < overfit_module.MIN_JUDGE_STEPS


@pytest.mark.parametrize("budget", [0.2, 0.5])
def test_short_budget_on_a_broken_setup_does_not_fail_for_want_of_time(budget):
    torch.manual_seed(0)
    model = SmallCNN()
    f = overfit(model, optimizer=lr_too_low(model), budget=budget)
    # flat within the budget is a real observation, but "cause not confirmed" is not allowed
    # to come from re-runs that the budget cut short
    assert f.status in ("warn", "pass"), f.message
    if f.status == "warn":
        assert f.recipe in ("overfit-budget-exhausted", "overfit-lr-too-low")


def test_progress_goes_to_the_callback_not_stdout(capsys):
    torch.manual_seed(0)
    messages = []
    cvdoctor.check_model(SmallCNN(), image_batch(16), select=[CHECK], budget=BUDGET,
                         progress=messages.append)
    assert any(m.startswith("overfit step") and "loss" in m for m in messages), messages
    assert capsys.readouterr().out == ""


def test_users_model_and_optimizer_untouched():
    torch.manual_seed(0)
    model = SmallCNN()
    opt = healthy_sgd(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cvdoctor.check_model(model, image_batch(16), optimizer=opt, select=[CHECK], budget=BUDGET)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert opt.state_dict()["state"] == {}
    assert all(p.grad is None for p in model.parameters())
