"""The checks the closest peer (torchtest2) has: model.input_dependency (the output depends on the
input, sample by sample), model.gradcheck (custom autograd Functions) and model.frozen (frozen
parameters and BatchNorm statistics stay put). Every finding has a fixture that triggers it and
healthy set-ups that stay quiet; the frozen names arrive from the API, the model file and the
command line."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torch import nn

import cvdoctor
from broken_models_peer import (BatchMeanBroadcast, CachedInput, ClampedReLU, DeadReLUs,
                                FirstChannelOnly, InPlaceClamp, ScaleBy, Square,
                                SquareWrongBackward, WithFunction, attribute_not_freeze,
                                frozen_features, trainable_head_optimizer, zero_init_head)
from cvdoctor.cli import cli
from cvdoctor.model.frozen import matches, parse_frozen
from modelzoo import SmallCNN, TinyUNet, image_batch, mask_batch

pytestmark = pytest.mark.usefixtures("one_thread")
DEP, GC, FROZEN = "model.input_dependency", "model.gradcheck", "model.frozen"


def one(model, batch=None, check=DEP, **kw):
    torch.manual_seed(0)
    report = cvdoctor.check_model(model, batch if batch is not None else image_batch(16),
                                  select=[check], **kw)
    return report.get_all(check)


def single(*args, **kw):
    (f,) = one(*args, **kw)
    return f


# --- model.input_dependency -------------------------------------------------------------------
@pytest.mark.parametrize("build, batch, kw", [
    (SmallCNN, None, {}),
    (TinyUNet, mask_batch(4), {"num_classes": 3}),
    (lambda: SmallCNN(num_classes=1), None, {"loss_fn": None}),
    (lambda: zero_init_head(SmallCNN()), None, {}),
])
def test_input_dependency_healthy(build, batch, kw):
    if kw.get("loss_fn", 0) is None:
        x, y = image_batch(16)
        batch, kw = (x, (y % 2).float().unsqueeze(1)), {"loss_fn": nn.BCEWithLogitsLoss()}
    f = single(build(), batch, **kw)
    assert f.status == "pass", f.message
    assert "samples get different outputs" in f.message


def test_zero_init_head_is_constant_at_init_and_fine_after_one_step():
    f = single(zero_init_head(SmallCNN()))
    assert f.status == "pass" and "after one Adam step they differ" in f.message, f.message
    assert f.evidence["constant"] is True and f.evidence["after_step"]["constant"] is False


@pytest.mark.parametrize("build", [
    lambda: __import__("torchvision").models.efficientnet_b0(weights=None, num_classes=10),
    lambda: __import__("torchvision").models.googlenet(weights=None, num_classes=10,
                                                        aux_logits=False, init_weights=True),
], ids=["efficientnet_b0", "googlenet"])
def test_fresh_batchnorm_that_shrinks_the_eval_output_is_not_an_input_blind_model(build):
    """Stock torchvision networks whose small-init layers meet BatchNorm's untrained running
    variance of 1: in eval mode at init every output is ~1e-13, whatever the input. Judged with
    the batch's statistics they tell the samples apart, as they do once trained."""
    f = single(build(), image_batch(8, size=64))
    assert f.status == "pass", f.message
    assert "untrained running statistics" in f.message and f.evidence["batchnorm_calibrated"]
    assert f.evidence["constant"] is True  # the eval-mode reading at init that misled it


def test_input_dependency_forward_reads_a_cached_tensor():
    f = single(CachedInput())
    assert (f.status, f.recipe) == ("fail", "output-ignores-input"), f.message
    assert "zeroing the input or rolling its samples leaves every output" in f.message
    assert "at init and after one optimizer step" in f.message


def test_input_dependency_constant_over_samples_but_moved_by_zeroing():
    f = next(f for f in one(BatchMeanBroadcast()) if f.status == "fail")
    assert f.recipe == "output-ignores-input"
    assert "all 16 samples get the same output although they differ" in f.message, f.message


def test_input_dependency_names_channels_a_wrong_slice_never_reads():
    f = single(FirstChannelOnly())
    assert (f.status, f.recipe) == ("warn", "output-ignores-input"), f.message
    assert "channels 1, 2 of input 0 (16, 3, 32, 32)" in f.message
    assert f.evidence["dead_channels"] == {"0": [1, 2]}


def test_input_dependency_of_dead_relus_follows_from_model_gradients():
    torch.manual_seed(0)
    report = cvdoctor.check_model(DeadReLUs(), image_batch(16),
                                  select=["model.gradients", DEP])
    grad, dep = report["model.gradients"], report[DEP]
    assert (grad.status, grad.recipe) == ("fail", "dead-gradients")
    assert (dep.status, dep.recipe) == ("fail", "dead-gradients")
    assert dep.caused_by == "model.gradients"
    assert "`features.2` outputs all zeros" in dep.message, dep.message


def test_input_dependency_skips_when_the_eval_forward_fails():
    x, y = image_batch(8)
    f = single(SmallCNN(), (x.permute(0, 2, 3, 1), y))
    assert f.status == "skip" and "eval-mode forward raised" in f.message


# --- model.gradcheck --------------------------------------------------------------------------
def test_gradcheck_skips_a_model_without_custom_functions():
    f = single(SmallCNN(), check=GC)
    assert f.status == "skip" and "no custom torch.autograd.Function" in f.message


@pytest.mark.parametrize("fn", [Square, ClampedReLU, ScaleBy])
def test_gradcheck_passes_correct_functions(fn):
    f = single(WithFunction(fn), check=GC)
    assert f.status == "pass", f.message
    assert f"`{fn.__name__}`" in f.message and "matches finite differences" in f.message
    assert "apply" not in fn.__dict__  # the recording wrapper is gone


def test_gradcheck_fails_a_wrong_backward():
    f = single(WithFunction(SquareWrongBackward), check=GC)
    assert (f.status, f.recipe) == ("fail", "custom-function-gradient"), f.message
    assert "(`SquareWrongBackward`) returns gradients that disagree" in f.message
    assert "Jacobian mismatch" in f.message
    assert "apply" not in SquareWrongBackward.__dict__


def test_gradcheck_leaves_a_user_defined_apply_in_place():
    class OwnApply(Square):
        @classmethod
        def apply(cls, *args):  # noqa: D102 - some codebases wrap apply
            return super().apply(*args)

    before = OwnApply.__dict__["apply"]
    f = single(WithFunction(OwnApply), check=GC)
    assert f.status == "pass", f.message
    assert OwnApply.__dict__["apply"] is before


# --- model.frozen -----------------------------------------------------------------------------
def test_frozen_skips_when_nothing_is_frozen():
    f = single(SmallCNN(), check=FROZEN)
    assert f.status == "skip" and "frozen = [" in f.message


def test_frozen_healthy_transfer_learning_passes():
    model = frozen_features(SmallCNN())
    f = single(model, check=FROZEN, optimizer=trainable_head_optimizer(model),
               frozen=["features.*"])
    assert f.status == "pass", f.message
    assert "8 frozen parameter tensors" in f.message and "keep their running statistics" in \
        f.message


def test_frozen_by_requires_grad_only_notes_the_batchnorm_statistics():
    model = frozen_features(SmallCNN(), bn_eval=False)
    f = single(model, check=FROZEN, optimizer=trainable_head_optimizer(model))
    assert f.status == "pass", f.message
    assert "still update their running statistics" in f.message


def test_frozen_attribute_instead_of_requires_grad_moves():
    model = attribute_not_freeze(SmallCNN())
    model.features.eval()
    f = single(model, check=FROZEN, frozen=["features"])
    assert (f.status, f.recipe) == ("fail", "frozen-params-moved"), f.message
    assert "named frozen" in f.message and "still require grad and sit in the optimizer" in \
        f.message
    assert f.evidence["moved"][0] == "features.0.weight"


def test_frozen_parameter_changed_in_place_by_forward():
    model = frozen_features(InPlaceClamp())
    with torch.no_grad():
        model.features[0].weight.mul_(10)
    f = single(model, check=FROZEN, optimizer=trainable_head_optimizer(model))
    assert (f.status, f.recipe) == ("fail", "frozen-params-moved"), f.message
    assert "changed in place" in f.message and "requires_grad=False" in f.message


def test_frozen_batchnorm_in_train_mode_drifts():
    model = frozen_features(SmallCNN(), bn_eval=False)
    f = single(model, check=FROZEN, optimizer=trainable_head_optimizer(model),
               frozen=["features.*"])
    assert (f.status, f.recipe) == ("fail", "frozen-bn-drift"), f.message
    assert "`features.1`, `features.5`" in f.message and "running_" in f.message


def test_frozen_name_that_matches_nothing_warns():
    model = frozen_features(SmallCNN())
    findings = one(model, check=FROZEN, optimizer=trainable_head_optimizer(model),
                   frozen=["backbone.*", "features.*"])
    warn = next(f for f in findings if f.status == "warn")
    assert warn.recipe == "frozen-name-unmatched" and "`backbone.*`" in warn.message
    assert any(f.status == "pass" for f in findings) or len(findings) == 1


@pytest.mark.parametrize("value, expected", [
    ("backbone.*", ("backbone.*",)), ("a, b.*  c", ("a", "b.*", "c")),
    (["a", "b"], ("a", "b")), (("a,b", "a"), ("a", "b")), ("", None), (None, None)])
def test_parse_frozen(value, expected):
    assert parse_frozen(value) == expected


def test_frozen_name_matching():
    assert matches("backbone.0.weight", ("backbone.*",))
    assert matches("backbone.0.weight", ("backbone",))
    assert matches("backbone.0.weight", ("backbone.",))
    assert not matches("backbone2.0.weight", ("backbone",))
    assert matches("layer1.0.bn1.weight", ("layer?.*",))


FROZEN_FILE = '''
import torch
from torch import nn

frozen = ["features.*"]


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        return self.head(self.features(x))


def build_model():
    model = Net()
    model.features.requires_grad = False     # the bug: an attribute, not a freeze
    return model


def get_batch():
    g = torch.Generator().manual_seed(0)
    return torch.randn(8, 3, 16, 16, generator=g), torch.arange(8) % 4
'''


def test_frozen_names_from_the_model_file_and_the_command_line(tmp_path: Path):
    path = tmp_path / "frozen_model.py"
    path.write_text(FROZEN_FILE)
    run = CliRunner().invoke(cli, ["model", str(path), "--select", FROZEN, "--json"])
    assert run.exit_code == 1, run.output
    findings = json.loads(run.stdout)["findings"]
    assert {f["recipe"] for f in findings} == {"frozen-params-moved", "frozen-bn-drift"}
    assert findings[0]["evidence"]["patterns"] == ["features.*"]
    # the command line overrides the file: a name that matches nothing, repeatable
    run = CliRunner().invoke(cli, ["model", str(path), "--select", FROZEN, "--json",
                                   "--frozen", "head.weight", "--frozen", "nope.*"])
    findings = json.loads(run.stdout)["findings"]
    assert {f["recipe"] for f in findings} >= {"frozen-name-unmatched"}
    assert findings[0]["evidence"]["patterns"] == ["head.weight", "nope.*"]


def test_frozen_helper_argument_in_the_pytest_helpers():
    from pytest_cvdoctor import assert_frozen

    model = frozen_features(SmallCNN())
    f = assert_frozen(model, image_batch(16), frozen=["features.*"],
                      optimizer=trainable_head_optimizer(model))
    assert f.status == "pass"
    with pytest.raises(AssertionError, match="frozen-params-moved"):
        assert_frozen(attribute_not_freeze(SmallCNN()), image_batch(16), frozen="features")
