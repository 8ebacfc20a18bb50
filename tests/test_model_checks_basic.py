"""model.data, model.dtype, model.forward, model.output, model.initial_loss.

Every finding these checks can emit has a broken fixture that triggers it (real faults: the
real PyTorch error where there is one) and healthy fixtures that must stay quiet.
"""
from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cvdoctor
from modelzoo import SmallCNN, TinyUNet, digits_batch, image_batch, mask_batch
from test_catalog_consistency import GUIDE_TITLES

BASIC = ["model.data", "model.dtype", "model.forward", "model.output", "model.initial_loss"]


def run(model, batch, check=None, **kw):
    return cvdoctor.check_model(model, batch, select=[check] if check else BASIC, **kw)


def finding(model, batch, check, **kw):
    report = run(model, batch, check, **kw)
    (f,) = [f for f in report.findings if f.check == check]
    return f


def assert_finding(f, status, recipe, *words):
    assert (f.status, f.recipe) == (status, recipe), f"{f.status} {f.recipe}: {f.message}"
    for w in words:
        assert w in f.message, f.message


# --- healthy models stay quiet ----------------------------------------------------------------
def _bce_single():
    x, y = image_batch(16)
    return SmallCNN(num_classes=1), (x, (y % 2).float().unsqueeze(1)), nn.BCEWithLogitsLoss()


def _bce_multilabel():
    x, _ = image_batch(16)
    g = torch.Generator().manual_seed(1)
    return SmallCNN(num_classes=5), (x, (torch.rand(16, 5, generator=g) > 0.7).float()), \
        nn.BCEWithLogitsLoss()


def _bce_imbalanced():
    x, _ = image_batch(16)
    y = torch.zeros(16, 1)
    y[:2] = 1  # a 1:7 prior
    return SmallCNN(num_classes=1), (x, y), nn.BCEWithLogitsLoss()


def _torchvision(name):
    import torchvision

    torch.manual_seed(0)
    return getattr(torchvision.models, name)(num_classes=10), image_batch(8), None


def _timm(name, **kw):
    import timm

    torch.manual_seed(0)
    return timm.create_model(name, num_classes=10, **kw), image_batch(8), None


def _frozen_backbone():
    torch.manual_seed(0)
    model = SmallCNN()
    for p in model.features.parameters():
        p.requires_grad_(False)
    return model, image_batch(16), None


HEALTHY = {
    "small_cnn": lambda: (SmallCNN(), image_batch(16), None),
    "label_smoothing": lambda: (SmallCNN(), image_batch(16), nn.CrossEntropyLoss(label_smoothing=0.2)),
    "heavy_dropout": lambda: (SmallCNN(dropout=0.7), image_batch(16), None),
    "unet_masks": lambda: (TinyUNet(), mask_batch(4), None),
    "digits_real_images": lambda: (SmallCNN(in_channels=1), digits_batch(16), None),
    "mnist_like_1ch_28px": lambda: (SmallCNN(in_channels=1), image_batch(8, channels=1, size=28), None),
    "bce_single_logit": _bce_single,
    "bce_multilabel": _bce_multilabel,
    "bce_imbalanced_prior": _bce_imbalanced,
    "functional_ce_sum": lambda: (SmallCNN(), image_batch(16),
                                  functools.partial(F.cross_entropy, reduction="sum")),
    "nll_log_softmax": lambda: (nn.Sequential(SmallCNN(), nn.LogSoftmax(dim=1)), image_batch(16),
                                nn.NLLLoss()),
    "frozen_backbone": _frozen_backbone,
    "resnet18": lambda: _torchvision("resnet18"),
    "mobilenet_v3_small": lambda: _torchvision("mobilenet_v3_small"),
    "timm_resnet18": lambda: _timm("resnet18"),
    "timm_vit_32px": lambda: _timm("vit_tiny_patch16_224", img_size=32),
}


@pytest.mark.parametrize("name", list(HEALTHY))
def test_healthy_models_pass_the_basic_checks(name):
    torch.manual_seed(0)
    model, batch, loss_fn = HEALTHY[name]()
    report = run(model, batch, loss_fn=loss_fn, num_classes=None)
    problems = [(f.check, f.status, f.message) for f in report.findings
                if f.status not in ("pass", "skip")]
    assert not problems, problems
    assert report["model.forward"].status == "pass"
    if name not in ("nll_log_softmax",):
        assert report["model.initial_loss"].status == "pass", report["model.initial_loss"].message


def test_healthy_checks_leave_the_model_and_batch_untouched():
    model, (x, y) = SmallCNN(), image_batch(16)
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x0, y0, rng = x.clone(), y.clone(), torch.get_rng_state()
    run(model, (x, y))
    assert not model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(x, x0) and torch.equal(y, y0) and torch.equal(torch.get_rng_state(), rng)


# --- model.data ------------------------------------------------------------------------------
def test_data_nonfinite_inputs():
    x, y = image_batch(8)
    x[0, 0, 0, :3] = float("nan")
    x[1, 0, 0, 0] = float("inf")
    f = finding(SmallCNN(), (x, y), "model.data")
    assert_finding(f, "fail", "nonfinite-inputs", "4 of", "3 NaN", "1 inf")


def test_data_integer_pixels():
    x, y = image_batch(8)
    f = finding(SmallCNN(), ((x * 60 + 128).clamp(0, 255).to(torch.uint8), y), "model.data")
    assert_finding(f, "fail", "unnormalized-input", "uint8")


def test_data_raw_pixels_fail_and_normalized_pass():
    x, y = image_batch(8)
    f = finding(SmallCNN(), ((x * 60 + 128).clamp(0, 255), y), "model.data")
    assert_finding(f, "fail", "unnormalized-input", "raw 0-255 pixels", "features.0")
    assert finding(SmallCNN(), (x, y), "model.data").status == "pass"
    # [0, 1] images (ToTensor without Normalize) are common and train: not flagged
    assert finding(SmallCNN(), (torch.rand(8, 3, 32, 32), y), "model.data").status == "pass"


class NormalizesInside(nn.Module):
    """Takes 0-255 pixels and normalizes them itself: the first conv sees unit-scale values."""

    def __init__(self):
        super().__init__()
        self.net = SmallCNN()

    def forward(self, x):
        return self.net((x / 255 - 0.5) / 0.25)


def test_data_model_that_normalizes_inside_is_not_flagged():
    x, y = image_batch(8)
    f = finding(NormalizesInside(), ((x * 60 + 128).clamp(0, 255), y), "model.data")
    assert f.status == "pass", f.message


def test_data_far_from_unit_scale_warns():
    x, y = image_batch(8)
    f = finding(SmallCNN(), (x * 40 - 100, y), "model.data")
    assert_finding(f, "warn", "unnormalized-input", "far from unit scale")


def test_data_nhwc_batch():
    x, y = image_batch(8)
    f = finding(SmallCNN(), (x.permute(0, 2, 3, 1), y), "model.data")
    assert_finding(f, "fail", "channels-mismatch", "channels-last", "expects 3 channels")
    assert f.evidence["layout"] == "NHWC"


def test_data_wrong_channel_count():
    x, y = image_batch(8, channels=1)
    f = finding(SmallCNN(in_channels=3), (x, y), "model.data")
    assert_finding(f, "fail", "channels-mismatch", "expects 3 channels", "has 1")
    assert f.evidence["layout"] == "unknown"


@pytest.mark.parametrize("dtype", [torch.float32, torch.int32])
def test_data_labels_wrong_dtype_for_cross_entropy(dtype):
    x, y = image_batch(8)
    f = finding(SmallCNN(), (x, y.to(dtype)), "model.data")
    assert_finding(f, "fail", "labels-wrong-dtype", str(dtype).replace("torch.", ""), "int64")
    # the real error from the loss, matched to the same recipe
    fwd = finding(SmallCNN(), (x, y.to(dtype)), "model.forward")
    assert_finding(fwd, "fail", "labels-wrong-dtype", "expected target dtype to be Long")


def test_data_integer_targets_for_bce():
    x, y = image_batch(8)
    f = finding(SmallCNN(num_classes=1), (x, (y % 2).unsqueeze(1)), "model.data",
                loss_fn=nn.BCEWithLogitsLoss())
    assert_finding(f, "fail", "labels-wrong-dtype", "float targets")


def test_data_off_by_one_labels():
    x, y = image_batch(16)
    f = finding(SmallCNN(), (x, y + 1), "model.data")
    assert_finding(f, "fail", "target-out-of-bounds", "labels span 1..10", "1-based")
    assert f.evidence["one_based"] is True


def test_data_labels_beyond_the_head_not_one_based():
    x, y = image_batch(16, num_classes=10)
    f = finding(SmallCNN(num_classes=5), (x, y), "model.data")
    assert_finding(f, "fail", "target-out-of-bounds", "labels span 0..9", "5 outputs")
    assert f.evidence["one_based"] is False


def test_data_ignore_index_is_not_out_of_bounds():
    x, y = image_batch(16)
    y[:3] = -100
    assert finding(SmallCNN(), (x, y), "model.data").status == "pass"


def test_data_bce_targets_outside_0_1():
    x, y = image_batch(8)
    f = finding(SmallCNN(num_classes=1), (x, (y.float() / 2).unsqueeze(1)), "model.data",
                loss_fn=nn.BCEWithLogitsLoss())
    assert_finding(f, "fail", "target-out-of-bounds", "[0, 1]")


def test_data_single_class_batch():
    x, _ = image_batch(8)
    f = finding(SmallCNN(), (x, torch.full((8,), 3)), "model.data")
    assert_finding(f, "warn", "labels-single-class", "all 8 labels", "are 3")
    f = finding(SmallCNN(num_classes=1), (x, torch.zeros(8, 1)), "model.data",
                loss_fn=nn.BCEWithLogitsLoss())
    assert_finding(f, "warn", "labels-single-class")
    # two samples of one class is chance, not a finding
    assert finding(SmallCNN(), (x[:2], torch.tensor([3, 3])), "model.data").status == "pass"


def test_data_mask_values_exceed_classes():
    x, masks = mask_batch(4, num_classes=2)
    masks = masks * 255  # a 0/255 binary mask
    f = finding(TinyUNet(num_classes=2), (x, masks), "model.data")
    assert_finding(f, "fail", "mask-values-exceed-classes", "[255]", "2-class")
    fwd = finding(TinyUNet(num_classes=2), (x, masks), "model.forward")
    assert_finding(fwd, "fail", "mask-values-exceed-classes", "Target 255 is out of bounds")
    ok = finding(TinyUNet(num_classes=2), (x, masks), "model.data",
                 loss_fn=nn.CrossEntropyLoss(ignore_index=255))
    assert ok.status == "pass", ok.message


class BN1dHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.AdaptiveAvgPool2d(1),
                                      nn.Flatten())
        self.norm = nn.BatchNorm1d(8)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        return self.fc(self.norm(self.features(x)))


def test_data_batch_of_one_reaching_batchnorm():
    x, y = image_batch(1)
    f = finding(BN1dHead(), (x, y), "model.data")
    assert_finding(f, "fail", "batchnorm-batch-size-one", "Expected more than 1 value per channel")
    f = finding(SmallCNN(), (x, y), "model.data")  # BatchNorm2d over 32x32 pixels: runs, noisy
    assert_finding(f, "warn", "batchnorm-batch-size-one", "batch size 1")
    fwd = finding(BN1dHead(), (x, y), "model.forward")
    assert_finding(fwd, "fail", "batchnorm-batch-size-one", "`norm` (BatchNorm1d)")
    assert finding(BN1dHead(), image_batch(2), "model.data").status == "pass"


def test_data_independent_problems_are_separate_findings():
    """Two causes, two findings, each with its own fix and recipe (fails first)."""
    x, _ = image_batch(8)
    report = run(SmallCNN(), ((x * 60 + 128).clamp(0, 255), torch.full((8,), 2)), "model.data")
    raw, single = report.get_all("model.data")
    assert raw.status == "fail" and raw.recipe == "unnormalized-input"
    assert single.status == "warn" and single.recipe == "labels-single-class"
    assert "more" not in raw.message and single.fix


# --- model.dtype -----------------------------------------------------------------------------
def test_dtype_float64_batch_from_numpy():
    x, y = image_batch(8)
    f = finding(SmallCNN(), (x.double(), y), "model.dtype")
    assert_finding(f, "fail", "dtype-mismatch", "float64", "float32", "Input type (double)")


class CastsInput(SmallCNN):
    def forward(self, x):
        return super().forward(x.float())


def test_dtype_model_that_casts_its_input_is_fine():
    x, y = image_batch(8)
    f = finding(CastsInput(), (x.double(), y), "model.dtype")
    assert f.status == "pass", f.message


def test_dtype_half_model_with_float_input():
    x, y = image_batch(8)
    f = finding(nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10)).half(), (x, y),
                "model.dtype")
    assert_finding(f, "fail", "dtype-mismatch", "float32", "float16")


class HalfHead(nn.Module):
    """A head added after model.half(): the body is float16, the head float32."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 16)).half()
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        return self.head(self.body(x.half()))


class Float64Buffer(SmallCNN):
    """A float64 constant kept as a buffer and used in float64 on purpose: runs."""

    def __init__(self):
        super().__init__()
        self.register_buffer("scale", torch.tensor(1.0, dtype=torch.float64))

    def forward(self, x):
        return super().forward(x) * self.scale.float()


def test_dtype_mixed_parameter_dtypes():
    x, y = image_batch(4, size=8, num_classes=4)
    f = finding(HalfHead(), (x, y), "model.dtype")
    assert_finding(f, "fail", "mixed-param-dtypes", "float16", "float32", "forward fails")
    f = finding(Float64Buffer(), image_batch(8), "model.dtype")
    assert_finding(f, "warn", "mixed-param-dtypes", "buffer scale")


def test_dtype_healthy_notes_the_gpu_part_it_could_not_run():
    f = finding(SmallCNN(), image_batch(8), "model.dtype")
    assert f.status == "pass"
    if not torch.cuda.is_available():
        assert "not checked (no GPU here)" in f.message


class CpuConstantInForward(SmallCNN):
    """Creates a tensor on a fixed device inside forward: fine on CPU, breaks on a GPU."""

    def forward(self, x):
        return super().forward(x) + torch.zeros(10, device="cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU: the bug only shows there")
def test_dtype_tensor_created_inside_forward_on_the_wrong_device():
    f = finding(CpuConstantInForward(), image_batch(8), "model.dtype")
    assert_finding(f, "fail", "device-mismatch", "forward creates")
    assert finding(SmallCNN(), image_batch(8), "model.dtype").status == "pass"


def test_data_depth_like_values_in_meters_are_not_called_raw_pixels():
    x, y = image_batch(8)
    f = finding(SmallCNN(), ((x * 8 + 20).clamp(0, 40), y), "model.data")
    assert f.evidence.get("scale") != "raw", f.message


# The device rules, with devices as recorded on GPU machines (this one has none).
from cvdoctor.checks.model_dtype import device_problems  # noqa: E402


@pytest.mark.parametrize("named, input_device, error, expected", [
    ([("p a", "cuda:0"), ("p b", "cuda:0")], "cuda:0", "", None),
    ([("p a", "cuda:0"), ("p b", "cpu")], "cuda:0", "", ("fail", "p b")),
    ([("p a", "cuda:0"), ("p b", "cuda:1")], "cuda:0", "", ("warn", "model parallelism")),
    ([("p a", "cuda:0"), ("p b", "cuda:1")], "cuda:0",
     "RuntimeError: Expected all tensors to be on the same device, but found at least two "
     "devices, cuda:0 and cuda:1!", ("fail", "p b")),
    ([("p a", "cuda:0")], "cpu", "", ("warn", "the batch is on cpu")),
    ([("p a", "cuda:0")], "cpu", "RuntimeError: Input type (torch.FloatTensor) and weight type "
     "(torch.cuda.FloatTensor) should be the same", ("warn", "the batch is on cpu")),
    ([("p a", "cpu")], "cpu", "", None),
])
def test_device_rules(named, input_device, error, expected):
    problems = device_problems(named, input_device, error)
    if expected is None:
        assert problems == []
    else:
        (p,) = problems
        assert p.recipe == "device-mismatch" and p.status == expected[0]
        assert expected[1] in p.message


# --- model.forward ---------------------------------------------------------------------------
class RaisesInBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3)
        self.block = Exploding()

    def forward(self, x):
        return self.block(self.stem(x))


class Exploding(nn.Module):
    def forward(self, x):
        raise ValueError("my custom layer cannot handle odd sizes")


def test_forward_unknown_error_names_the_module_and_gets_the_generic_recipe():
    f = finding(RaisesInBlock(), image_batch(4), "model.forward")
    assert_finding(f, "fail", "forward-error", "ValueError", "`block` (Exploding)",
                   "cannot handle odd sizes")
    assert "Exploding" in f.evidence["traceback"] or "raise ValueError" in f.evidence["traceback"]


def test_forward_known_error_is_matched_to_its_recipe():
    x, y = image_batch(4)
    f = finding(SmallCNN(), (x.permute(0, 2, 3, 1), y), "model.forward")
    assert_finding(f, "fail", "channels-mismatch", "`features.0` (Conv2d)", "3 channels")


class BadFlatten(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 16 * 16, 10)  # sized for 16 px inputs

    def forward(self, x):
        return self.fc(torch.flatten(self.conv(x), 1))


def test_forward_linear_shape_error():
    f = finding(BadFlatten(), image_batch(4), "model.forward")
    assert_finding(f, "fail", "shape-mismatch-linear", "`fc` (Linear)", "mat1 and mat2")


def test_forward_training_step_error():
    def step(model, batch):
        x, y = batch
        return F.cross_entropy(model(x)["logits"], y)  # the model returns a tensor

    f = finding(SmallCNN(), image_batch(4), "model.forward", training_step=step)
    assert f.status == "fail" and "IndexError" in f.message


def test_forward_healthy_reports_shapes_and_loss():
    f = finding(SmallCNN(), image_batch(8), "model.forward")
    assert f.status == "pass" and "outputs (8, 10)" in f.message and "loss" in f.message


# --- model.output ----------------------------------------------------------------------------
class NanLayer(nn.Module):
    def forward(self, x):
        return torch.log(x - x)  # log(0) = -inf, and -inf * 0 below makes NaN


def test_output_nonfinite():
    model = nn.Sequential(SmallCNN(), NanLayer())
    f = finding(model, image_batch(8), "model.output")
    assert_finding(f, "fail", "nonfinite-outputs", "80 of 80")


def test_output_head_size_vs_num_classes_and_labels():
    x, y = image_batch(16)
    f = finding(SmallCNN(num_classes=1000), (x, y), "model.output", num_classes=10)
    assert_finding(f, "fail", "head-size-mismatch", "1000 outputs", "10 classes")
    f = finding(SmallCNN(num_classes=1000), (x, y), "model.output")
    assert_finding(f, "warn", "head-size-mismatch", "only use 0..9")
    assert finding(SmallCNN(num_classes=10), (x, y), "model.output", num_classes=10).status == "pass"


class HalfResUNet(TinyUNet):
    def forward(self, x):
        return F.max_pool2d(super().forward(x), 2)


def test_output_segmentation_size():
    f = finding(HalfResUNet(), mask_batch(4), "model.output")
    assert_finding(f, "fail", "segmentation-output-size", "16x16", "32x32")
    fwd = finding(HalfResUNet(), mask_batch(4), "model.forward")
    assert fwd.status == "fail" and "size mismatch" in fwd.message


def test_output_softmax_twice():
    f = finding(nn.Sequential(SmallCNN(), nn.Softmax(dim=1)), image_batch(8), "model.output")
    assert_finding(f, "fail", "softmax-twice", "sum to 1", "raw logits")
    x, y = image_batch(16)
    f = finding(nn.Sequential(SmallCNN(num_classes=1), nn.Sigmoid()),
                (x, (y % 2).float().unsqueeze(1)), "model.output", loss_fn=nn.BCEWithLogitsLoss())
    assert_finding(f, "fail", "softmax-twice", "sigmoid outputs")
    f = finding(nn.Sequential(SmallCNN(), nn.Softmax(dim=1)), image_batch(8), "model.output",
                loss_fn=nn.NLLLoss())
    assert_finding(f, "fail", "softmax-twice", "log-probabilities")


def test_output_clipped_logits():
    f = finding(nn.Sequential(SmallCNN(), nn.ReLU()), image_batch(16), "model.output")
    assert_finding(f, "fail", "clipped-logits", "exactly 0", "ReluBackward0")


class _InRange(SmallCNN):
    """A healthy single-logit head whose raw logits all land in (0, 1): a bias of 0.5 and a
    tiny weight (what a small random init does by chance about one run in four)."""

    def __init__(self, num_classes=1):
        super().__init__(num_classes=num_classes)
        with torch.no_grad():
            self.head.weight.mul_(1e-3)
            self.head.bias.fill_(0.5)


def test_output_logits_in_0_1_by_chance_are_not_sigmoid_outputs():
    x, y = image_batch(16)
    model = _InRange()
    out = model.eval()(x)
    assert bool(((out > 0) & (out < 1)).all())  # the values alone look like a sigmoid
    f = finding(_InRange(), (x, (y % 2).float().unsqueeze(1)), "model.output",
                loss_fn=nn.BCEWithLogitsLoss())
    assert f.status == "pass", f.message


def test_output_activation_read_from_the_graph_and_from_the_last_module():
    x, y = image_batch(16)
    # torch.sigmoid in forward (no nn.Sigmoid module), then a view: found through the view
    class SigmoidThenView(SmallCNN):
        def forward(self, x):
            return torch.sigmoid(super().forward(x)).view(-1, 1)

    f = finding(SigmoidThenView(num_classes=1), (x, (y % 2).float().unsqueeze(1)),
                "model.output", loss_fn=nn.BCEWithLogitsLoss())
    assert_finding(f, "fail", "softmax-twice", "SigmoidBackward0")
    # every parameter frozen: no autograd graph, the last module (nn.Softmax) says it
    model = nn.Sequential(SmallCNN(), nn.Softmax(dim=1))
    model.requires_grad_(False)
    f = finding(model, image_batch(8), "model.output")
    assert_finding(f, "fail", "softmax-twice", "`1` (Softmax)")
    # a softmax written by hand: x.exp() / x.exp().sum(); the division plus rows summing to 1
    class ManualSoftmax(SmallCNN):
        def forward(self, x):
            e = super().forward(x).exp()
            return e / e.sum(1, keepdim=True)

    f = finding(ManualSoftmax(), image_batch(8), "model.output")
    assert_finding(f, "fail", "softmax-twice", "DivBackward0")
    # sigmoid outputs into cross-entropy squash the logits as well
    f = finding(nn.Sequential(SmallCNN(), nn.Sigmoid()), image_batch(8), "model.output")
    assert_finding(f, "fail", "softmax-twice", "sigmoid outputs")


def test_output_structure_without_confirming_values_is_quiet():
    x, y = image_batch(16)

    class ClampedForStability(SmallCNN):  # clamp(-20, 20) keeps negative logits: not a cut at 0
        def forward(self, x):
            return super().forward(x).clamp(-20, 20)

    class Tempered(SmallCNN):  # a division that is not a normalization
        def forward(self, x):
            return super().forward(x) / 2.0

    for model in (ClampedForStability(), Tempered()):
        assert finding(model, (x, y), "model.output").status == "pass"
    zero_head = SmallCNN()
    nn.init.zeros_(zero_head.head.weight)
    nn.init.zeros_(zero_head.head.bias)
    f = finding(zero_head, (x, y), "model.output")  # all logits exactly 0: not clipped
    assert f.status == "pass", f.message


def test_output_loss_broadcast_warning_is_captured():
    x, y = image_batch(16)
    f = finding(SmallCNN(num_classes=1), (x, y.float()), "model.output", loss_fn=nn.MSELoss())
    assert_finding(f, "fail", "loss-broadcast-shape", "(16, 1)", "(16,)",
                   "Using a target size")
    ok = finding(SmallCNN(num_classes=1), (x, y.float().unsqueeze(1)), "model.output",
                 loss_fn=nn.MSELoss())
    assert ok.status == "pass", ok.message


def test_output_custom_loss_broadcast_without_a_warning():
    def my_l2(out, target):
        return ((out - target) ** 2).mean()

    x, y = image_batch(16)
    f = finding(SmallCNN(num_classes=1), (x, y.float()), "model.output", loss_fn=my_l2)
    assert_finding(f, "fail", "loss-broadcast-shape", "(16, 1)")


def test_output_bce_shape_error_is_matched():
    x, y = image_batch(16)
    f = finding(SmallCNN(num_classes=1), (x, (y % 2).float()), "model.forward",
                loss_fn=nn.BCEWithLogitsLoss())
    assert_finding(f, "fail", "loss-broadcast-shape", "must be the same as input size")


def test_output_skips_training_step():
    def step(model, batch):
        return F.cross_entropy(model(batch[0]), batch[1])

    f = finding(SmallCNN(), image_batch(8), "model.output", training_step=step)
    assert f.status == "skip" and "training_step" in f.message


# --- model.initial_loss ----------------------------------------------------------------------
def _scaled(model, scale):
    with torch.no_grad():
        model.head.weight.mul_(scale)
        model.head.bias.mul_(scale)
    return model


def test_initial_loss_over_confident_init():
    torch.manual_seed(0)
    f = finding(_scaled(SmallCNN(), 150), image_batch(16), "model.initial_loss")
    assert_finding(f, "fail", "initial-loss-too-high", "over-confident", "ln 10")
    torch.manual_seed(0)
    f = finding(_scaled(SmallCNN(), 9), image_batch(16), "model.initial_loss")
    assert_finding(f, "warn", "initial-loss-too-high", "tolerable")


def test_stock_torchvision_inits_that_start_high_warn_not_fail():
    """MNASNet's head init (kaiming, fan_out) is tuned for 1000 classes: with 10 it starts at
    4-7x ln 10 and still trains. Over-confident, worth a warning, not a broken model."""
    from torchvision.models import mnasnet0_5
    torch.manual_seed(0)
    f = finding(mnasnet0_5(weights=None, num_classes=10), image_batch(8, size=64),
                "model.initial_loss")
    assert_finding(f, "warn", "initial-loss-too-high", "over-confident")
    assert f.evidence["logit_std"] > 3  # it does start well above ln 10


class ShallowNoBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                 nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.Flatten(),
                                 nn.Linear(32 * 16 * 16, 10))

    def forward(self, x):
        return self.net(x)


def test_initial_loss_names_unnormalized_input():
    torch.manual_seed(0)
    x, y = image_batch(16)
    f = finding(ShallowNoBN(), ((x * 60 + 128).clamp(0, 255), y), "model.initial_loss")
    assert_finding(f, "fail", "unnormalized-input", "not normalized")
    torch.manual_seed(0)
    assert finding(ShallowNoBN(), (x, y), "model.initial_loss").status == "pass"


class LeakyLabels(nn.Module):
    """The label is painted into channel 0 of the image, and a 'trained' head reads it."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(1, 10)
        with torch.no_grad():
            self.head.weight.copy_(torch.arange(10.0).view(10, 1) * 8)
            self.head.bias.copy_(-(torch.arange(10.0) ** 2) * 4)

    def forward(self, x):
        return self.head(x[:, 0, 0, :1])


def test_initial_loss_far_below_expectation():
    x, y = image_batch(16)
    x = x.clone()
    x[:, 0, 0, 0] = y.float()
    f = finding(LeakyLabels(), (x, y), "model.initial_loss")
    assert_finding(f, "warn", "initial-loss-too-low", "far below ln 10", "leak")


def test_initial_loss_close_to_ln_k_for_the_wrong_head():
    torch.manual_seed(0)
    f = finding(SmallCNN(num_classes=1000), image_batch(16), "model.initial_loss", num_classes=10)
    assert_finding(f, "fail", "head-size-mismatch", "ln 1000", "not ln 10")


def test_initial_loss_nan():
    f = finding(nn.Sequential(SmallCNN(), NanLayer()), image_batch(8), "model.initial_loss")
    assert_finding(f, "fail", "nan-loss", "nan")


def test_initial_loss_label_smoothing_keeps_ln_c():
    torch.manual_seed(0)
    f = finding(SmallCNN(), image_batch(16), "model.initial_loss",
                loss_fn=nn.CrossEntropyLoss(label_smoothing=0.3))
    assert f.status == "pass" and "label smoothing 0.3" in f.message


def test_initial_loss_sum_reduction_scales_the_expectation():
    torch.manual_seed(0)
    f = finding(SmallCNN(), image_batch(16), "model.initial_loss",
                loss_fn=nn.CrossEntropyLoss(reduction="sum"))
    assert f.status == "pass", f.message
    assert f.evidence["expected"] == pytest.approx(16 * 2.302585, rel=1e-4)


def test_initial_loss_bce_prior_aware():
    _, batch, loss_fn = _bce_imbalanced()
    f = finding(SmallCNN(num_classes=1), batch, "model.initial_loss", loss_fn=loss_fn)
    assert f.status == "pass" and f.evidence["prior_entropy"] < 0.693


@pytest.mark.parametrize("loss_fn, training_step, reason", [
    (nn.MSELoss(), None, "MSELoss has no known value"),
    (lambda out, y: (out - y).abs().mean(), None, "no known value"),
    (None, lambda m, b: F.cross_entropy(m(b[0]), b[1]), "training_step"),
])
def test_initial_loss_skips_unknown_losses(loss_fn, training_step, reason):
    x, y = image_batch(8)
    target = y.float().unsqueeze(1) if loss_fn is not None else y
    f = finding(SmallCNN(num_classes=1 if loss_fn is not None else 10), (x, target),
                "model.initial_loss", loss_fn=loss_fn, training_step=training_step)
    assert f.status == "skip" and reason in f.message


# --- error-text patterns of the recipes these checks own ---------------------------------------
from cvdoctor.catalog import load_catalog, match_text  # noqa: E402

PATTERN_ROWS = [
    ("labels-wrong-dtype", "RuntimeError: expected target dtype to be Long or Byte, but got Float"),
    ("labels-wrong-dtype", "RuntimeError: expected scalar type Long but found Int"),
    ("labels-wrong-dtype", "RuntimeError: Expected object of scalar type Long but got scalar type "
                           "Float for argument #2 'target' in call to _thnn_nll_loss_forward"),
    ("labels-wrong-dtype", 'RuntimeError: "nll_loss_forward_reduce_cuda_kernel_2d_index" not '
                           "implemented for 'Int'"),
    ("labels-wrong-dtype", "RuntimeError: result type Float can't be cast to the desired output "
                           "type Long"),
    ("mask-values-exceed-classes", "IndexError: Target 255 is out of bounds."),
    ("mask-values-exceed-classes",
     "/pytorch/aten/src/THCUNN/SpatialClassNLLCriterion.cu:106: "
     "cunn_SpatialClassNLLCriterion_updateOutput_kernel: block: [2,0,0], thread: [96,0,0] "
     "Assertion `t >= 0 && t < n_classes` failed."),
    ("mask-values-exceed-classes",
     "/opt/pytorch/aten/src/ATen/native/cuda/NLLLoss2d.cu:104: nll_loss2d_forward_kernel: block: "
     "[0,0,0], thread: [7,0,0] Assertion `t >= 0 && t < n_classes` failed."),
    ("unnormalized-input", "RuntimeError: Input type (unsigned char) and bias type (float) should "
                           "be the same"),
    ("unnormalized-input", "RuntimeError: Input type (torch.ByteTensor) and weight type "
                           "(torch.FloatTensor) should be the same"),
    ("batchnorm-batch-size-one", "ValueError: Expected more than 1 value per channel when "
                                 "training, got input size torch.Size([1, 512])"),
    ("loss-broadcast-shape", "UserWarning: Using a target size (torch.Size([64])) that is "
                             "different to the input size (torch.Size([64, 1])). This will likely "
                             "lead to incorrect results due to broadcasting. Please ensure they "
                             "have the same size."),
    ("loss-broadcast-shape", "ValueError: Target size (torch.Size([16])) must be the same as "
                             "input size (torch.Size([16, 1]))"),
    ("segmentation-output-size", "RuntimeError: size mismatch (got input: [4, 3, 128, 128] , "
                                 "target: [4, 256, 256]"),
    ("segmentation-output-size", "RuntimeError: only batches of spatial targets supported (3D "
                                 "tensors) but got targets of size: : [4, 1, 256, 256]"),
]


@pytest.mark.parametrize("recipe, text", PATTERN_ROWS)
def test_recipe_patterns_rank_their_recipe_first(recipe, text):
    matches = match_text(text)
    assert matches and matches[0].recipe == recipe, [(m.recipe, m.score) for m in matches[:3]]


@pytest.mark.parametrize("text", [
    "KeyError: 'lr'",
    "RuntimeError: Input type (double) and bias type (float) should be the same",
    "IndexError: Target 10 is out of bounds.",
    "RuntimeError: mat1 and mat2 shapes cannot be multiplied (16x4096 and 1024x10)",
])
def test_recipe_patterns_do_not_claim_other_errors(text):
    mine = {r for r, _ in PATTERN_ROWS}
    matches = match_text(text)
    assert not matches or matches[0].recipe not in mine, matches[0]


def test_recipes_of_these_checks_parse_and_cite_the_references():
    catalog = load_catalog()
    owned = ["forward-error", "labels-wrong-dtype", "labels-single-class",
             "mask-values-exceed-classes", "unnormalized-input", "batchnorm-batch-size-one",
             "nonfinite-inputs", "mixed-param-dtypes", "head-size-mismatch", "softmax-twice",
             "clipped-logits", "loss-broadcast-shape", "segmentation-output-size",
             "nonfinite-outputs", "initial-loss-too-high", "initial-loss-too-low"]
    for rid in owned:
        recipe = catalog[rid]
        assert "cvdoctor model" in recipe.section("Verify"), rid
        # Sources by what a reader can find (a guide's title and section, a page, an issue):
        # the catalog consistency test holds every recipe to that; here, that there is one.
        refs = recipe.section("References")
        assert any(title in refs for title in GUIDE_TITLES) or "http" in refs or \
            "Field experience" in refs, rid


@pytest.mark.parametrize("pos_weight", [None, 3.0, 19.0, 50.0])
@pytest.mark.parametrize("seed", range(5))
def test_initial_loss_accounts_for_pos_weight(pos_weight, seed):
    """BCEWithLogitsLoss(pos_weight=p) costs ln 2 * (p y + 1 - y) per element at logits 0: a
    rare-positive multi-label set-up with pos_weight 19 or 50 is healthy, not over-confident."""
    torch.manual_seed(seed)
    x, _ = image_batch(16)
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(16, 5, generator=g) > 0.9).float()
    y[0, 0] = 1.0
    pw = None if pos_weight is None else torch.full((5,), pos_weight)
    f = finding(SmallCNN(num_classes=5), (x, y), "model.initial_loss",
                loss_fn=nn.BCEWithLogitsLoss(pos_weight=pw))
    assert f.status == "pass", f.message
    if pos_weight:
        assert "pos_weight" in f.message


def test_initial_loss_with_pos_weight_still_catches_overconfident_logits():
    x, _ = image_batch(16)
    y = (torch.rand(16, 5, generator=torch.Generator().manual_seed(0)) > 0.9).float()
    model = SmallCNN(num_classes=5)
    with torch.no_grad():
        last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
        last.bias.fill_(6.0)  # every logit starts near +6: "everything is positive"
    f = finding(model, (x, y), "model.initial_loss",
                loss_fn=nn.BCEWithLogitsLoss(pos_weight=torch.full((5,), 19.0)))
    assert f.status in ("warn", "fail") and f.recipe == "initial-loss-too-high", f.message


def test_a_torch_compiled_model_is_checked_through_the_module_it_wraps():
    """torch.compile's OptimizedModule shares the parameters of the module it wraps: checks
    read that module (clean names, the optimizer matched by identity, no recompiling of every
    hooked copy) and model.forward says so."""
    torch.manual_seed(0)
    inner = SmallCNN()
    model = torch.compile(inner)
    opt = torch.optim.Adam(model.parameters())
    report = cvdoctor.check_model(model, image_batch(8), optimizer=opt,
                                  select=["model.forward", "model.optimizer", "model.gradients"])
    (fwd,) = report.get_all("model.forward")
    assert fwd.status == "pass" and fwd.evidence["compiled"] is True, fwd.message
    assert "torch.compile'd" in fwd.message
    (opt_f,) = report.get_all("model.optimizer")
    assert opt_f.status == "pass", opt_f.message
    (grad,) = report.get_all("model.gradients")
    assert grad.status == "pass" and "_orig_mod" not in grad.message, grad.message
