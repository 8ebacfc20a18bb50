"""model.batch_independence and model.train_eval: broken fixtures and healthy models."""
from __future__ import annotations

import pytest
import torch

import cvdoctor
from broken_models_grad import (DropoutSubclassModel, DropoutUnused, FlattenAcrossBatch,
                                ForcedBatchStats, HardcodedDropout, NoRunningStats)
from modelzoo import HEALTHY_SETUPS, SmallCNN, image_batch

BI, TE = "model.batch_independence", "model.train_eval"


def run(model, batch=None, checks=(BI, TE)):
    report = cvdoctor.check_model(model, batch or image_batch(8), select=list(checks))
    return {c: report.get_all(c) for c in checks}


def one(findings):
    assert len(findings) == 1, [f.message for f in findings]
    return findings[0]


# The cheaper half of the shared healthy set: these two checks run several extra forwards.
HEALTHY = {name: HEALTHY_SETUPS[name] for name in (
    "small_cnn", "heavy_dropout", "unet", "tv_resnet18", "timm_vit_32px", "frozen_backbone")}


@pytest.mark.parametrize("name", sorted(HEALTHY))
def test_healthy_models_pass_both(name):
    build, batch = HEALTHY[name]
    out = run(build(), batch() if batch else None)
    for check in (BI, TE):
        f = one(out[check])
        assert f.status == "pass", (check, f.message)


def test_healthy_exact_independence_in_eval_with_batchnorm():
    f = one(run(SmallCNN(), checks=(BI,))[BI])
    assert f.evidence["change"] == 0.0  # eval BN on running stats: exactly zero, no tolerance


def test_view_permute_mixing_fails_and_locates_it():
    out = run(FlattenAcrossBatch())
    f = one(out[BI])
    assert (f.status, f.recipe) == ("fail", "batch-mixing")
    assert "`head`" in f.message and f.evidence["input_already_mixed"]
    assert one(out[TE]).status == "pass"  # not a train/eval problem: reported once


@pytest.mark.parametrize("model_cls,detail", [(ForcedBatchStats, "BatchStatNorm"),
                                              (NoRunningStats, "track_running_stats=False")])
def test_batch_stats_in_eval_fail_once_in_train_eval(model_cls, detail):
    out = run(model_cls())
    te, bi = one(out[TE]), one(out[BI])
    assert (te.status, te.recipe) == ("fail", "eval-batch-dependent")
    assert "`norm`" in te.message and detail in te.message
    # Same root cause: batch_independence points to it, without a second fail.
    assert (bi.status, bi.recipe) == ("warn", "eval-batch-dependent")


def test_batch_of_one_is_skipped_with_the_reason():
    f = one(run(SmallCNN(), image_batch(1), checks=(BI,))[BI])
    assert f.status == "skip" and "batch of 1" in f.message


def test_model_handed_over_in_eval_mode_warns():
    f = one(run(SmallCNN().eval(), checks=(TE,))[TE])
    assert (f.status, f.recipe) == ("warn", "model-in-eval-mode")


def test_functional_dropout_default_training_true_fails():
    out = run(HardcodedDropout())
    f = one(out[TE])
    assert (f.status, f.recipe) == ("fail", "eval-nondeterministic")
    assert "p=0.5" in f.message
    assert one(out[BI]).status == "pass"  # random, but still per-sample


def test_dropout_subclass_ignoring_training_is_named():
    f = one(run(DropoutSubclassModel(), checks=(TE,))[TE])
    assert (f.status, f.recipe) == ("fail", "eval-nondeterministic")
    assert "`dropout` (p=0.3)" in f.message


def test_custom_noise_without_dropout_call_is_located_by_differential_runs():
    class Noisy(torch.nn.Module):
        def forward(self, x):
            return x + 0.5 * torch.randn_like(x)  # no `if self.training`

    model = SmallCNN()
    model.features.insert(3, Noisy())
    f = one(run(model, checks=(TE,))[TE])
    assert (f.status, f.recipe) == ("fail", "eval-nondeterministic")
    assert "`features.3`" in f.message


def test_identical_train_and_eval_is_an_info_note_not_a_warning():
    f = one(run(DropoutUnused(), checks=(TE,))[TE])
    assert f.status == "pass" and "identical" in f.message


def test_frozen_batchnorm_inside_a_training_model_is_a_note():
    model = SmallCNN()
    model.features[1].eval()
    f = one(run(model, checks=(TE,))[TE])
    assert f.status == "pass" and "features.1" in f.message


def test_users_model_mode_and_rng_are_untouched():
    model = ForcedBatchStats()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    run(model)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(rng, torch.get_rng_state())
