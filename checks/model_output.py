"""model.output: are the outputs what the loss expects?

Finite; head size vs the number of classes; segmentation output size vs the masks;
probabilities fed to a logits loss (softmax twice); logits clipped by a final ReLU; output and
target shapes that the loss silently broadcasts (PyTorch's own warning is captured too).
"""
from __future__ import annotations

import torch

from cvdoctor.finding import Problem, report_problems, skipped
from cvdoctor.model.facts import (class_index_targets, clipped_zero_fraction, main_output,
                                  probability_kind, targets_tensor, valid_labels)
from cvdoctor.registry import register

TITLE = "Model outputs"
RECIPES = ["nonfinite-outputs", "head-size-mismatch", "segmentation-output-size", "softmax-twice",
           "clipped-logits", "loss-broadcast-shape"]
BROADCAST_WARNING = "that is different to the input size"
# A head this wide whose labels all fall in its first tenth looks like ImageNet's left on a small
# dataset. By chance, with labels drawn uniformly over the head, all of WIDE_HEAD_MIN_LABELS land
# there with probability 0.1 ** 8 = 1e-8; sorted (unshuffled) batches can, hence a warning only.
WIDE_HEAD = 100
WIDE_HEAD_MIN_LABELS = 8


@register("model.output", order=40, title=TITLE, recipes=RECIPES, needs=["base", "loss_info"])
def check(ctx):
    """Reads the outputs of the shared forward pass and what produced them (the autograd node
    and the last module). Fails on NaN/inf outputs; on a head whose width differs from the
    given num_classes; on segmentation logits smaller than the masks; on probabilities fed to a
    loss that applies its own softmax/sigmoid, decided from structure (SoftmaxBackward0,
    SigmoidBackward0, a final nn.Softmax/nn.Sigmoid) with values only confirming; on logits cut
    at 0 by a final ReLU/clamp (at least 20% exact zeros, none negative); on output/target shapes
    the loss broadcasts. Warns when no num_classes is given and a head of 100+ outputs sees
    labels only in its first tenth. Skips for training_step (outputs not visible)."""
    info = ctx.fact("loss_info")
    base = ctx.fact("base")
    if info.kind == "training_step":
        return skipped(TITLE, "training_step computes the loss itself: the outputs it feeds the "
                       "loss are not visible to cvdoctor")
    if base.forward_error is not None:
        return skipped(TITLE, "the forward pass raised (see model.forward): no outputs to check")
    out = main_output(base)
    if out is None:
        return skipped(TITLE, f"the model returned {type(base.outputs).__name__}, "
                       "not tensors")
    if not out.is_floating_point():
        return skipped(TITLE, f"the outputs are {out.dtype}, not floating point")
    y = targets_tensor(ctx.spec)
    problems: list[Problem] = []
    bad = int((~torch.isfinite(out)).sum())
    if bad:
        problems.append(Problem(
            "fail", "nonfinite-outputs",
            f"{bad:,} of {out.numel():,} outputs are NaN/inf on a finite batch at initialization",
            "Find the layer that overflows (log/sqrt/division of 0, exp of large values, a custom "
            "init) with torch.autograd.set_detect_anomaly or forward hooks.",
            {"nonfinite_outputs": bad}))
    else:
        problems += broadcast_problems(base.warnings, out, y, info.kind)
        if info.kind in ("ce", "nll"):
            problems += _classification_problems(ctx, out, y, info)
        elif info.kind == "bce_logits":
            problems += _probability_problems(base.origin, out, info.name, dim=None)
            problems += _clipped(base.origin, out, info.name)
    k = out.shape[1] if out.dim() >= 2 else 1
    msg = f"outputs {tuple(out.shape)}, finite, range [{float(out.min()):.3g}, " \
          f"{float(out.max()):.3g}]" if not bad else ""
    return report_problems(TITLE, problems, msg, output_shape=list(out.shape), output_width=k,
                loss=info.name)


def broadcast_problems(warnings: list[str], out, y, kind: str) -> list[Problem]:
    """Output/target shapes that a loss broadcasts to a bigger shape without raising."""
    hit = next((w for w in warnings if BROADCAST_WARNING in w), None)
    expands = False
    if hit is None and y is not None and kind in ("regression", "bce", "bce_logits", "custom"):
        if y.is_floating_point() and tuple(out.shape) != tuple(y.shape):
            try:
                joint = torch.broadcast_shapes(out.shape, y.shape)
                expands = torch.Size(joint).numel() > max(out.numel(), y.numel())
            except RuntimeError:
                expands = False
    if hit is None and not expands:
        return []
    shapes = f"output {tuple(out.shape)} vs target {tuple(y.shape)}" if y is not None else ""
    return [Problem(
        "fail", "loss-broadcast-shape",
        f"the loss broadcasts {shapes} into a bigger shape: every output is compared with every "
        "target" + (f" (PyTorch: {hit.split(': ', 1)[-1][:120]})" if hit else ""),
        "Make the shapes equal: loss_fn(out.squeeze(1), y) or loss_fn(out, y.unsqueeze(1)).",
        {"warning": hit, "output_shape": list(out.shape),
         "target_shape": list(y.shape) if y is not None else None})]


def _classification_problems(ctx, out, y, info) -> list[Problem]:
    problems: list[Problem] = []
    if out.dim() < 2:
        return problems
    k = out.shape[1]
    hint = ctx.spec.num_classes
    if hint is not None and k != hint:
        problems.append(Problem(
            "fail", "head-size-mismatch",
            f"the head has {k} outputs but the data has {hint} classes",
            f"Replace the head with {hint} outputs (e.g. model.fc = nn.Linear(in_features, "
            f"{hint})) before building the optimizer.",
            {"head_outputs": k, "num_classes": hint}))
    elif hint is None and y is not None and class_index_targets(out, y) and y.dim() == 1:
        labels = valid_labels(y.long(), info.ignore_index)
        if (k >= WIDE_HEAD and labels.numel() >= WIDE_HEAD_MIN_LABELS and int(labels.min()) >= 0
                and int(labels.max()) + 1 <= k // 10):
            problems.append(Problem(
                "warn", "head-size-mismatch",
                f"the head has {k} outputs but the {labels.numel()} labels only use 0.."
                f"{int(labels.max())} (fine only if the other classes exist in the dataset; "
                "pass num_classes to be sure)",
                "Size the head to your classes (e.g. nn.Linear(in_features, num_classes)).",
                {"head_outputs": k, "max_label": int(labels.max())}))
    if y is not None and out.dim() >= 3 and y.dim() == out.dim() - 1 and not y.is_floating_point():
        if tuple(out.shape[2:]) != tuple(y.shape[1:]):
            factor = [round(t / o, 3) if o else None for o, t in zip(out.shape[2:], y.shape[1:])]
            problems.append(Problem(
                "fail", "segmentation-output-size",
                f"the output is {'x'.join(map(str, out.shape[2:]))} per image but the masks are "
                f"{'x'.join(map(str, y.shape[1:]))} (masks/output = {factor})",
                "Make the decoder undo every downsampling (same padding, one upsample per "
                "pool), or resize logits: F.interpolate(out, size=mask.shape[-2:]).",
                {"output_spatial": list(out.shape[2:]), "mask_spatial": list(y.shape[1:])}))
    problems += _probability_problems(ctx.fact("base").origin, out, info.name, dim=1,
                                      log=info.kind == "nll")
    if info.kind == "ce":
        problems += _clipped(ctx.fact("base").origin, out, info.name)
    return problems


def _made_by(origin) -> str:
    if origin.source == "autograd":
        return f"the output comes from {origin.final_op}"
    return f"the last module is `{origin.last_module}` ({origin.last_module_type})"


def _probability_problems(origin, out, loss_name: str, dim: int | None,
                          log: bool = False) -> list[Problem]:
    """Outputs that are already probabilities (softmax or sigmoid) where the loss applies its
    own: the op that made them says so, the values agree."""
    kind = probability_kind(origin, out, dim if dim is not None else 1)
    if kind is None:
        return []
    if kind == "sigmoid":
        what = f"sigmoid outputs ({_made_by(origin)}; all in [0, 1])"
    else:
        what = (f"softmax outputs ({_made_by(origin)}; non-negative, rows sum to 1 over "
                f"dim {dim or 1})")
    expects = "log-probabilities" if log else "raw logits"
    return [Problem(
        "fail", "softmax-twice",
        f"the outputs are {what}, but {loss_name} expects {expects}: gradients vanish as "
        "predictions sharpen",
        "Return logits from forward (drop the final softmax/sigmoid); apply it only at "
        "inference." if not log else "Return log_softmax from forward, not softmax.",
        {"probability_outputs": kind, "output_op": origin.final_op,
         "last_module": origin.last_module})]


def _clipped(origin, out, loss_name: str) -> list[Problem]:
    zeros = clipped_zero_fraction(origin, out)
    if zeros is None:
        return []
    return [Problem(
        "fail", "clipped-logits",
        f"{_made_by(origin)}, no output is negative and {zeros:.0%} are exactly 0: an "
        f"activation after the last layer clips the logits {loss_name} needs",
        "Remove the activation after the final Linear/Conv: the head must return raw logits.",
        {"zero_fraction": round(zeros, 4), "output_op": origin.final_op,
         "last_module": origin.last_module})]
