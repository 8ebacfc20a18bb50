"""model.amp: training under torch.autocast against float32, on this machine's CPU (CPU autocast
runs both bfloat16 and float16). Every finding has a real fault that triggers it; healthy models
stay quiet over seeds; the dtype and the GradScaler arrive from the API, the model file and the
command line."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch import nn

import cvdoctor
from cvdoctor.catalog import match_text
from cvdoctor.cli import cli
from cvdoctor.model.amp import amp_dtype, parse_grad_scaler
from modelzoo import SmallCNN, image_batch

pytestmark = pytest.mark.usefixtures("one_thread")
AMP = "model.amp"


def amp_finding(model, batch=None, **kw):
    torch.manual_seed(0)
    report = cvdoctor.check_model(model, batch if batch is not None else image_batch(16),
                                  select=[AMP], **kw)
    (f,) = report.get_all(AMP)
    return f


class AnchorOffset(SmallCNN):
    """head(f + 1000) - head(1000): exact in float32, the features vanish in bfloat16 (its
    spacing at 1000 is 4)."""

    def forward(self, x):
        f = torch.flatten(self.features(x), 1)
        return self.head(f + 1000.0) - self.head(torch.full_like(f, 1000.0))


class HugeFeatures(SmallCNN):
    """Features scaled by 1e6 into the head: fine in float32, above float16's 65504."""

    def forward(self, x):
        return self.head(torch.flatten(self.features(x), 1) * 1e6)


class MaskedAttention(SmallCNN):
    """masked_fill(-1e9) on scores that autocast makes float16."""

    def forward(self, x):
        f = torch.flatten(self.features(x), 1)
        scores = (f @ f.t()).masked_fill(torch.eye(len(f), dtype=torch.bool), -1e9)
        return self.head(F.softmax(scores, 1) @ f)


def weighted_loss(out, target):
    """A loss weight of 1e-4 (multi-task weighting): fp16 gradients underflow without scaling."""
    return F.cross_entropy(out, target) * 1e-4


def test_amp_is_opt_in_and_says_how_to_enable_it():
    torch.manual_seed(0)
    report = cvdoctor.check_model(SmallCNN(), image_batch(16), ignore=["model.overfit_batch"])
    assert AMP not in report.check_ids()  # not asked for: not in the report
    f = amp_finding(SmallCNN())  # asked for by name: a skip that says how to turn it on
    assert f.status == "skip"
    assert "--amp" in f.message and "`amp = ...`" in f.message, f.message


def test_amp_names_a_value_that_is_no_autocast_dtype():
    f = amp_finding(SmallCNN(), amp="int8")
    assert f.status == "skip" and "'int8' is not an autocast dtype" in f.message


@pytest.mark.parametrize("amp, scaler, words", [
    ("bfloat16", None, ["bfloat16", "on 8 samples"]),
    ("bfloat16", False, ["bfloat16"]),
    ("float16", None, ["float16", "assumed a GradScaler"]),
    ("float16", True, ["float16", "underflow with loss scaling"]),
])
def test_amp_healthy_passes(amp, scaler, words):
    f = amp_finding(SmallCNN(), amp=amp, grad_scaler=scaler)
    assert f.status == "pass", f.message
    for w in words:
        assert w in f.message, f.message
    assert f.evidence["loss_rel"] < f.evidence["loss_limit"]


def test_amp_fp16_without_grad_scaler_warns_even_when_nothing_underflows_yet():
    f = amp_finding(SmallCNN(), amp="float16", grad_scaler=False)
    assert (f.status, f.recipe) == ("warn", "mixed-precision-fp16-underflow"), f.message
    assert "without a GradScaler" in f.message


def test_amp_fp16_gradients_underflow_without_a_grad_scaler():
    f = amp_finding(SmallCNN(), amp="float16", grad_scaler=False, loss_fn=weighted_loss)
    assert (f.status, f.recipe) == ("fail", "mixed-precision-fp16-underflow"), f.message
    assert f.evidence["underflow"] >= 0.25 and f.evidence["underflow_scaled"] < 0.01
    # with a GradScaler the same model is fine
    assert amp_finding(SmallCNN(), amp="float16", grad_scaler=True,
                       loss_fn=weighted_loss).status == "pass"


def test_amp_bfloat16_with_a_grad_scaler_warns():
    f = amp_finding(SmallCNN(), amp="bfloat16", grad_scaler=True)
    assert (f.status, f.recipe) == ("warn", "amp-scaler-with-bf16"), f.message


def test_amp_overflow_in_float16_is_nonfinite():
    f = amp_finding(HugeFeatures(), amp="float16")
    assert (f.status, f.recipe) == ("fail", "amp-nonfinite"), f.message
    assert "float16 range" in f.message
    assert amp_finding(HugeFeatures(), amp="bfloat16").status == "pass"  # bf16 has the range


def test_amp_precision_loss_in_bfloat16_diverges():
    f = amp_finding(AnchorOffset(), amp="bfloat16")
    assert (f.status, f.recipe) == ("fail", "amp-divergence"), f.message
    assert "outputs differ from float32" in f.message
    assert f.evidence["output_rel"] > f.evidence["output_limit"]


def test_amp_op_that_fails_under_float16():
    f = amp_finding(MaskedAttention(), amp="float16")
    assert (f.status, f.recipe) == ("fail", "amp-op-error"), f.message
    assert "without overflow" in f.message and "torch.float16" in f.message
    assert amp_finding(MaskedAttention(), amp="bfloat16").status == "pass"


@pytest.mark.parametrize("text", [
    "RuntimeError: value cannot be converted to type c10::Half without overflow",
    "RuntimeError: value cannot be converted to type at::Half without overflow: -1e+09",
    "RuntimeError: value cannot be converted to type at::BFloat16 without overflow",
])
def test_amp_op_error_pattern_explains_the_message(text):
    assert match_text(text)[0].recipe == "amp-op-error"


@pytest.mark.parametrize("value, expected", [
    ("yes", True), ("no", False), (True, True), (False, False), (None, None), ("maybe", None)])
def test_parse_grad_scaler(value, expected):
    assert parse_grad_scaler(value) is expected


def test_parse_grad_scaler_reads_a_grad_scaler_object():
    with pytest.warns(UserWarning):  # CUDA scaler on a CPU machine disables itself
        scaler = torch.amp.GradScaler("cuda")
    assert parse_grad_scaler(scaler) is False
    assert parse_grad_scaler(torch.amp.GradScaler("cpu")) is True


def test_amp_dtype_accepts_names_and_dtypes():
    assert amp_dtype("bf16", None) is torch.bfloat16
    assert amp_dtype(None, torch.float16) is torch.float16
    assert amp_dtype("torch.float16", None) is torch.float16
    assert isinstance(amp_dtype(None, torch.float64), str)


AMP_FILE = '''
import torch
from torch import nn

{hint}


def build_model():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(8, 4))


def get_batch():
    g = torch.Generator().manual_seed(0)
    return torch.randn(8, 3, 16, 16, generator=g), torch.arange(8) % 4
'''


@pytest.mark.parametrize("hint, args, status, recipe", [
    ('amp = "bfloat16"', [], "pass", None),
    ('amp = "bfloat16"\ngrad_scaler = True', [], "warn", "amp-scaler-with-bf16"),
    ("autocast_dtype = torch.float16\ngrad_scaler = False", [], "warn",
     "mixed-precision-fp16-underflow"),
    ("", ["--amp", "bfloat16", "--grad-scaler", "yes"], "warn", "amp-scaler-with-bf16"),
    ('amp = "float16"', ["--amp", "bfloat16"], "pass", None),  # the command line wins
    ("", [], "skip", None),
])
def test_amp_from_the_model_file_and_the_command_line(tmp_path: Path, hint, args, status,
                                                      recipe):
    path = tmp_path / "amp_model.py"
    path.write_text(AMP_FILE.format(hint=hint))
    run = CliRunner().invoke(cli, ["model", str(path), "--select", AMP, "--json", *args])
    assert run.exit_code == 0, run.output
    (f,) = json.loads(run.stdout)["findings"]
    assert (f["status"], f["recipe"]) == (status, recipe), f
    if "--amp" in args:
        assert f["evidence"]["dtype"] == "bfloat16"


def test_amp_helper():
    from pytest_cvdoctor import assert_amp_safe

    assert assert_amp_safe(SmallCNN(), image_batch(16), amp="bfloat16").status == "pass"
    with pytest.raises(AssertionError, match="amp-divergence"):
        assert_amp_safe(AnchorOffset(), image_batch(16), amp="bfloat16")


@pytest.mark.slow
@pytest.mark.parametrize("amp, scaler, seeds", [("bfloat16", False, 10), ("float16", True, 10)])
def test_amp_healthy_models_never_fail_over_seeds(amp, scaler, seeds):
    from test_model_seeds import TINY

    for name, build in TINY.items():
        for seed in range(seeds):
            torch.manual_seed(seed)
            model, batch, kwargs = build(seed)
            report = cvdoctor.check_model(model, batch, select=[AMP], amp=amp,
                                          grad_scaler=scaler, **kwargs)
            bad = [f"{f.status} {f.recipe}: {f.message}" for f in report.findings
                   if f.status in ("fail", "error", "warn")]
            assert not bad, f"{name} seed {seed} under {amp}: {bad}"


def test_half_autocast_follows_cuda_autocast_dtypes_and_matches_cpu_fp16_kernels():
    """The CPU stand-in for CUDA fp16 autocast: fp16 ops return fp16, fp32 ops float32, and
    the result agrees with this CPU's own (slow) fp16 autocast within fp16 rounding."""
    from cvdoctor.model.amp import HalfAutocast

    torch.manual_seed(0)
    x, w = torch.randn(4, 8), torch.randn(3, 8)
    with HalfAutocast():
        y = F.linear(x, w)
        p = F.softmax(y, dim=1)
        z = torch.relu(y)
    assert (y.dtype, p.dtype, z.dtype) == (torch.float16, torch.float32, torch.float16)
    model, (xb, _) = SmallCNN().eval(), image_batch(4)
    with torch.no_grad():
        with HalfAutocast():
            emulated = model(xb).float()
        with torch.autocast("cpu", dtype=torch.float16):
            native = model(xb).float()
        reference = model(xb)
    assert float((emulated - native).norm() / reference.norm()) < 5e-3
    assert float((emulated - reference).norm() / reference.norm()) < 5e-3
