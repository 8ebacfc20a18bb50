"""model.data: is the batch what the model and the loss expect?

Inputs finite and floating point, channels where the first convolution wants them (NHWC vs
NCHW), pixel scale, class labels (dtype, range, a single class), segmentation masks within the
class count, and a batch of one reaching BatchNorm in train mode.
"""
from __future__ import annotations

import torch
from torch import nn

from cvdoctor.finding import Problem, report_problems
from cvdoctor.model.facts import (class_index_targets, fmt_stats, input_stats, main_output,
                                  pixel_scale, targets_tensor, valid_labels)
from cvdoctor.model.tensors import first_tensor
from cvdoctor.registry import register

TITLE = "Data and labels"
RECIPES = ["nonfinite-inputs", "unnormalized-input", "channels-mismatch", "labels-wrong-dtype",
           "target-out-of-bounds", "labels-single-class", "mask-values-exceed-classes",
           "batchnorm-batch-size-one"]
# One class in a whole batch: with two balanced classes a shuffled batch of 8 is one class by
# chance 2 * 0.5 ** 8 = 0.8% of the time (a batch of 4: 12.5%); rare positives make it common,
# hence a warning that says so, never a failure.
SINGLE_CLASS_MIN_BATCH = 8


@register("model.data", order=10, title=TITLE, recipes=RECIPES,
          needs=["base", "loss_info", "first_conv"])
def check(ctx):
    """Reads the batch and what reaches the first convolution (a forward stopped there). Fails
    on NaN/inf inputs, integer pixels fed to float layers, a batch whose channel axis is not
    where the first conv wants it (NHWC), raw 0-255 pixels (non-negative, max 50-255, mean
    above 2), class labels of the wrong dtype or outside the head (1-based labels named), BCE
    targets outside [0, 1], mask values beyond the class count, and a batch of one that crashes
    BatchNorm. Warns on inputs far from unit scale (std or |mean| above 5), a batch of 8+
    labels that are all one class, and a batch of one reaching BatchNorm in train mode."""
    problems: list[Problem] = []
    x = first_tensor(ctx.spec.inputs)
    facts: dict = {}
    if x is not None:
        facts["input_shape"] = list(x.shape)
        facts["input_dtype"] = str(x.dtype).replace("torch.", "")
        problems += _input_problems(ctx, x, facts)
    problems += _label_problems(ctx, facts)
    problems += _batchnorm_problems(ctx, x)
    return report_problems(TITLE, problems, _ok_message(facts), **facts)


def _input_problems(ctx, x: torch.Tensor, facts: dict) -> list[Problem]:
    out: list[Problem] = []
    if x.is_floating_point() or x.is_complex():
        bad = int((~torch.isfinite(x)).sum())
        if bad:
            nans = int(torch.isnan(x).sum())
            out.append(Problem(
                "fail", "nonfinite-inputs",
                f"{bad:,} of {x.numel():,} input values are not finite ({nans:,} NaN, "
                f"{bad - nans:,} inf)",
                "Find where the batch gets NaN/inf (division by a zero std, corrupt files, "
                "log of 0) and fix it there; assert torch.isfinite(x).all() in the loader.",
                {"nonfinite_inputs": bad, "nan_inputs": nans}))
    elif not _first_layer_is_embedding(ctx.spec.model):
        out.append(Problem(
            "fail", "unnormalized-input",
            f"inputs are {facts['input_dtype']} (raw pixels?); the model's layers compute in "
            "floating point",
            "Convert and normalize: x = (x.float() / 255 - mean) / std "
            "(transforms.ToTensor() + transforms.Normalize(mean, std)).",
            {"scale": "integer"}))
        return out
    probe = ctx.fact("first_conv")
    stats = probe.stats if probe is not None and probe.stats else input_stats(x)
    facts["input_stats"] = {k: round(v, 4) for k, v in stats.items()}
    if probe is not None:
        facts["first_conv"] = probe.module
        facts["first_conv_in_channels"] = probe.in_channels
        got = probe.shape[1] if len(probe.shape) > 1 else None
        if got is not None and got != probe.in_channels:
            nhwc = len(probe.shape) == 4 and probe.shape[-1] == probe.in_channels
            what = (f"the batch looks channels-last (NHWC {tuple(probe.shape)}): "
                    if nhwc else "")
            out.append(Problem(
                "fail", "channels-mismatch",
                f"{what}first conv `{probe.module}` expects {probe.in_channels} channels, its "
                f"input has {got} at dim 1 (shape {tuple(probe.shape)})",
                "Permute to NCHW: x = x.permute(0, 3, 1, 2).contiguous()" if nhwc else
                f"Give the model {probe.in_channels}-channel images, or build its first conv "
                f"with in_channels={got}.",
                {"layout": "NHWC" if nhwc else "unknown", "conv_input_shape": list(probe.shape)}))
            return out  # pixel statistics over the wrong axis mean nothing
    scale = pixel_scale(stats)
    where = f"reaching first conv `{probe.module}`" if probe is not None else "of the inputs"
    if scale == "raw":
        out.append(Problem(
            "fail", "unnormalized-input",
            f"raw 0-255 pixels {where}: {fmt_stats(stats)}",
            "Scale and normalize: transforms.ToTensor() then transforms.Normalize(mean, std) "
            "(or x = (x / 255 - mean) / std).",
            {"scale": "raw"}))
    elif scale == "unnormalized":
        out.append(Problem(
            "warn", "unnormalized-input",
            f"inputs {where} are far from unit scale: {fmt_stats(stats)} (fine only if the "
            "model rescales them later)",
            "Normalize the inputs to about mean 0, std 1 with the dataset's mean and std.",
            {"scale": "unnormalized"}))
    return out


def _first_layer_is_embedding(model: nn.Module) -> bool:
    for module in model.modules():
        if isinstance(module, nn.Embedding):
            return True
        if isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)):
            return False
    return False


def _label_problems(ctx, facts: dict) -> list[Problem]:
    info = ctx.fact("loss_info")
    y = targets_tensor(ctx.spec)
    if y is None or info.kind not in ("ce", "nll", "bce_logits", "bce"):
        return []
    out_t = main_output(ctx.fact("base"))
    facts["target_shape"] = list(y.shape)
    facts["target_dtype"] = str(y.dtype).replace("torch.", "")
    if info.kind in ("bce_logits", "bce"):
        return _binary_label_problems(y, facts)
    if not class_index_targets(out_t, y):
        return []  # class probabilities (soft labels), or a shape problem model.output names
    problems: list[Problem] = []
    if y.is_floating_point() or y.dtype not in (torch.int64, torch.uint8):
        integral = not y.is_floating_point() or bool((y == y.round()).all())
        problems.append(Problem(
            "fail", "labels-wrong-dtype",
            f"class labels are {facts['target_dtype']}; {info.name} needs int64 (long) class "
            "indices" + (" (their values are whole numbers)" if integral else ""),
            "Convert in the dataset or loop: y = y.long()",
            {}))
        if not integral:
            return problems
    labels = valid_labels(y.long(), info.ignore_index)
    if not labels.numel():
        return problems
    lo, hi = int(labels.min()), int(labels.max())
    classes = out_t.shape[1] if out_t is not None and out_t.dim() >= 2 else ctx.spec.num_classes
    segmentation = y.dim() >= 2
    facts["label_range"] = [lo, hi]
    facts["classes_in_batch"] = int(labels.unique().numel())
    if classes:
        facts["num_classes"] = int(classes)
    if classes and (lo < 0 or hi >= classes):
        bad = int(((labels < 0) | (labels >= classes)).sum())
        if segmentation:
            values = sorted(int(v) for v in labels[(labels < 0) | (labels >= classes)].unique()[:8])
            problems.append(Problem(
                "fail", "mask-values-exceed-classes",
                f"{bad:,} mask pixels hold values {values} outside [0, {classes}) for a "
                f"{classes}-class output",
                "Map mask values to class indices (e.g. 255 -> ignore: "
                "CrossEntropyLoss(ignore_index=255), or mask // 255 for a 0/255 mask).",
                {"bad_values": values}))
        else:
            one_based = lo >= 1 and hi == classes
            problems.append(Problem(
                "fail", "target-out-of-bounds",
                f"labels span {lo}..{hi} but the model has {classes} outputs (valid 0.."
                f"{classes - 1}); {bad} of {labels.numel()} out of range"
                + ("; they look 1-based" if one_based else ""),
                "Shift labels to start at 0 (y - 1)" if one_based else
                f"Make the head {hi + 1} wide or fix the label mapping so labels are 0.."
                f"{classes - 1}.",
                {"one_based": one_based}))
    if (not segmentation and labels.numel() >= SINGLE_CLASS_MIN_BATCH
            and facts["classes_in_batch"] == 1):
        problems.append(_single_class(labels.numel(), lo))
    return problems


def _binary_label_problems(y: torch.Tensor, facts: dict) -> list[Problem]:
    problems: list[Problem] = []
    if not y.is_floating_point():
        problems.append(Problem(
            "fail", "labels-wrong-dtype",
            f"BCE targets are {facts['target_dtype']}; binary cross-entropy needs float targets",
            "Convert: y = y.float() (and match the output shape, e.g. y.unsqueeze(1)).", {}))
    yf = y.float()
    lo, hi = float(yf.min()), float(yf.max())
    facts["label_range"] = [lo, hi]
    if lo < 0 or hi > 1:
        problems.append(Problem(
            "fail", "target-out-of-bounds",
            f"BCE targets span [{lo:g}, {hi:g}]; binary targets must lie in [0, 1]",
            "Use 0/1 (or soft [0, 1]) targets; for several classes use CrossEntropyLoss.", {}))
    columns = yf.reshape(yf.shape[0], -1) if yf.dim() >= 1 else yf.reshape(1, 1)
    if columns.shape[1] == 1 and columns.shape[0] >= SINGLE_CLASS_MIN_BATCH:
        if int(columns.unique().numel()) == 1:
            problems.append(_single_class(columns.shape[0], lo))
    return problems


def _single_class(n: int, value) -> Problem:
    return Problem(
        "warn", "labels-single-class",
        f"all {n} labels in the batch are {value:g}: the model can reach low loss by always "
        "predicting it (fine only if your loader's batches are shuffled and this one is chance)",
        "Shuffle the training loader (DataLoader(..., shuffle=True)) and check the label mapping.",
        {"single_label": value})


def _batchnorm_problems(ctx, x) -> list[Problem]:
    if x is None or x.dim() == 0 or x.shape[0] != 1:
        return []
    norms = [n for n, m in ctx.spec.model.named_modules()
             if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return []
    base = ctx.fact("base")
    err = base.forward_error or base.loss_error
    crashed = err is not None and "Expected more than 1 value per channel" in err.message
    return [Problem(
        "fail" if crashed else "warn", "batchnorm-batch-size-one",
        f"batch size 1 reaches {len(norms)} BatchNorm layer(s) (first `{norms[0]}`) in train mode"
        + (f": {err.message}" if crashed else ": batch statistics of one sample are noise"),
        "Train with batch size >= 2 (drop_last=True avoids a last batch of 1), or use "
        "GroupNorm/LayerNorm for tiny batches.",
        {"batchnorm_layers": norms[:5]})]


def _ok_message(facts: dict) -> str:
    parts = []
    if "input_shape" in facts:
        stats = facts.get("input_stats")
        parts.append(f"inputs {facts['input_dtype']} {tuple(facts['input_shape'])}"
                     + (f", mean {stats['mean']:.2f} std {stats['std']:.2f}" if stats else ""))
    if "label_range" in facts:
        lo, hi = facts["label_range"]
        parts.append(f"labels {lo:g}..{hi:g}" + (f", {facts['classes_in_batch']} classes in batch"
                                                 if "classes_in_batch" in facts else ""))
    return "; ".join(parts) or "nothing to check in this batch"
