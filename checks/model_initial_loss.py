"""model.initial_loss: is the loss at initialization what the loss function predicts?

An untrained model's logits are near zero, so its predictions are near uniform: cross-entropy
over C classes gives ln C (label smoothing does not change that: a uniform prediction costs ln C
against any target distribution), BCE-with-logits gives ln 2 per element. A prior-aware init
(bias set to the label frequencies) may start lower, down to the entropy of the prior. Real
inits are not exactly uniform: the spread of the logits adds about var/2, so the bands are wide
and were measured on healthy models: 190 runs (tests/test_model_seeds.py's 19 set-ups under 10
seeds each: small CNNs with CE, label smoothing, NLL, small and zero-init heads, single-logit and
multi-label BCE, U-Nets, torchvision/timm resnet18, resnet10t, a ViT at 32 px, a frozen
backbone) all start within 0.87-1.33x the expectation. The warn band starts at 1.5x (ln 1000)
to 2.4x (ln 2), the fail band at 10x + 10 (stock torchvision MNASNet and Inception v3 with a
10-class head start at up to 6.8x and train); "too low" at 0.5x of the lower of the
expectation and the label prior's entropy.
"""
from __future__ import annotations

import math

import torch

from cvdoctor.finding import Problem, report_problems, skipped
from cvdoctor.model.facts import (class_index_targets, input_stats, main_output, pixel_scale,
                                  targets_tensor, valid_labels)
from cvdoctor.model.tensors import first_tensor
from cvdoctor.registry import register

TITLE = "Loss at initialization"
RECIPES = ["initial-loss-too-high", "initial-loss-too-low", "head-size-mismatch",
           "unnormalized-input", "nan-loss"]
LN2 = math.log(2)


def bands(expected: float, prior_entropy: float | None) -> dict[str, float]:
    """Healthy inits measured at 0.94-1.25x the expectation; these leave room on both sides.
    Stock torchvision networks built with a 10-class head start higher and still train:
    EfficientNet-B0 2.3x, Inception v3 4.8x (loss 11.1), MNASNet 3.6-6.8x (8.4-15.6 over five
    seeds): a warning from 1.5x, a failure only from 10x + 10 (33 for 10 classes: logits so
    large that the init itself is broken, such as a head scaled 150x, 54)."""
    low_ref = min(expected, prior_entropy) if prior_entropy is not None else expected
    return {"warn_above": expected + max(0.5 * expected, 1.0),
            "fail_above": 10 * expected + 10.0,
            # with raw or unnormalized pixels measured at the first layer, the cause is known
            # and the earlier band of 2x + 2 holds
            "fail_above_unnormalized": 2 * expected + 2.0,
            "warn_below": 0.5 * low_ref}


@register("model.initial_loss", order=50, title=TITLE, recipes=RECIPES,
          needs=["base", "loss_info", "first_conv"])
def check(ctx):
    """Compares the loss of the shared forward pass with what an untrained model gives: ln C
    for cross-entropy/NLL over C classes, ln 2 per element for BCE (sum reduction scaled).
    Fails when the loss is NaN/inf, above 10x + 10 the expectation (2x + 2 with unnormalized
    pixels at the first layer), or near ln K of a K-wide head
    when num_classes says C != K; warns above expectation + max(50%, 1) (an over-confident
    init; named as unnormalized input when the pixels are raw), and below half the lower of the
    expectation and the labels' prior entropy (labels leaking into inputs, or a trained head).
    Skips losses with no known value at init (regression, custom, training_step)."""
    info = ctx.fact("loss_info")
    base = ctx.fact("base")
    if info.kind == "training_step":
        return skipped(TITLE, "training_step computes its own loss: no known value at init")
    if info.kind in ("regression", "custom"):
        return skipped(TITLE, f"{info.name} has no known value for an untrained model (known: "
                       "cross-entropy, NLL on log-probabilities, BCE)")
    if base.loss is None:
        return skipped(TITLE, "no loss was computed: the forward pass or the loss raised "
                       "(see model.forward)")
    loss = base.loss
    if not math.isfinite(loss):
        return report_problems(TITLE, [Problem(
            "fail", "nan-loss", f"the loss at initialization is {loss} on a batch of "
            f"{_batch_size(ctx)}",
            "Find the first non-finite value (inputs, outputs, log of 0 in the loss) before "
            "training: torch.autograd.set_detect_anomaly(True).", {"loss": str(loss)})], "")
    out, y = main_output(base), targets_tensor(ctx.spec)
    expectation = _expectation(ctx, info, out, y)
    if isinstance(expectation, str):
        return skipped(TITLE, expectation)
    expected, prior_entropy, label, scale = expectation
    per = loss / scale
    b = bands(expected, prior_entropy)
    ev = {"loss": round(loss, 5), "expected": round(expected * scale, 5), "ratio":
          round(per / expected, 3), "bands": {k: round(v * scale, 4) for k, v in b.items()},
          "expectation": label, "reduction": info.reduction}
    if prior_entropy is not None:
        ev["prior_entropy"] = round(prior_entropy * scale, 5)
    problems = []
    head = _head_mismatch(ctx, info, out, per)
    if head is not None:
        problems.append(head)
    elif per > b["warn_above"]:
        problems.append(_too_high(ctx, per, expected, label, b, out, scale))
    elif per < b["warn_below"]:
        problems.append(Problem(
            "warn", "initial-loss-too-low",
            f"loss {loss:.4g} at init is far below {label} = {expected * scale:.3g} "
            f"({per / expected:.2f}x): the model already knows the answers (fine when starting "
            "from weights trained on this task; otherwise labels leak into the inputs)",
            "Check that targets cannot be read from the inputs and that the head is freshly "
            "initialized when you mean to train it.", {}))
    return report_problems(TITLE, problems,
                f"loss {loss:.4g} vs {label} = {expected * scale:.3g} ({per / expected:.2f}x)",
                **ev)


def _batch_size(ctx) -> str:
    x = first_tensor(ctx.spec.inputs)
    return str(x.shape[0]) if x is not None and x.dim() else "?"


def _expectation(ctx, info, out, y):
    """(expected loss per element, prior entropy or None, label, reduction scale) or a reason."""
    if out is None:
        return "the model's outputs are not tensors: no known loss value"
    if info.kind in ("ce", "nll"):
        if out.dim() < 2:
            return f"outputs of shape {tuple(out.shape)} have no class dimension"
        k = out.shape[1]
        if info.kind == "nll":
            lse = torch.logsumexp(out.float(), dim=1)
            if not torch.allclose(lse, torch.zeros_like(lse), atol=1e-3):
                return ("NLLLoss is fed outputs that are not log-probabilities: no known value "
                        "at init (apply log_softmax in forward)")
        if k < 2:
            return "a 1-wide output with cross-entropy has a loss of 0 by construction"
        prior, count = None, out.shape[0]
        if y is not None and class_index_targets(out, y) and not y.is_floating_point():
            labels = valid_labels(y, info.ignore_index)
            count = labels.numel()
            if count:
                freq = torch.bincount(labels.clamp(0, k - 1), minlength=k).float() / count
                prior = float(-(freq[freq > 0] * freq[freq > 0].log()).sum())
        label = f"ln {k}"
        if info.label_smoothing:
            label += f" (label smoothing {info.label_smoothing:g} keeps it ln {k})"
        scale = count if info.reduction == "sum" else 1
        return math.log(k), prior, label, max(scale, 1)
    if info.kind in ("bce_logits", "bce"):
        if y is None or not y.is_floating_point() or y.shape != out.shape:
            return "BCE targets are not float and shaped like the outputs (see model.data)"
        p = y.float().reshape(y.shape[0], -1).mean(dim=0).clamp(1e-6, 1 - 1e-6)
        prior = float((-(p * p.log() + (1 - p) * (1 - p).log())).mean())
        scale = y.numel() if info.reduction == "sum" else 1
        factor = _bce_weighting(info, y)
        if factor is None:
            return LN2, prior, "ln 2", scale
        # At logits 0 each element costs ln 2 * w * (pos_weight * y + 1 - y).
        return (LN2 * factor, prior * factor,
                f"ln 2 x {factor:.3g} (pos_weight/weight on these targets)", scale)
    return f"{info.name}: no known value at init"


def _bce_weighting(info, y) -> float | None:
    """mean(w * (pos_weight * y + 1 - y)) for BCE with pos_weight or weight, else None."""
    if info.pos_weight is None and info.weight is None:
        return None
    y = y.detach().double()
    try:
        pw = (torch.as_tensor(info.pos_weight, dtype=torch.float64)
              if info.pos_weight is not None else torch.ones((), dtype=torch.float64))
        w = (torch.as_tensor(info.weight, dtype=torch.float64)
             if info.weight is not None else torch.ones((), dtype=torch.float64))
        per = w.to(y.device) * (pw.to(y.device) * y + 1 - y)  # broadcasts as the loss does
    except RuntimeError:
        return None
    return float(per.mean())


def _head_mismatch(ctx, info, out, per: float) -> Problem | None:
    """Loss near ln K for the head's K outputs, while the data has C != K classes."""
    c = ctx.spec.num_classes
    if info.kind not in ("ce", "nll") or c is None or out is None or out.dim() < 2:
        return None
    k = out.shape[1]
    if k == c or c < 2:
        return None
    if abs(per - math.log(k)) >= abs(per - math.log(c)):
        return None
    return Problem(
        "fail", "head-size-mismatch",
        f"loss {per:.4g} at init matches ln {k} = {math.log(k):.3g} (the head's {k} outputs), "
        f"not ln {c} = {math.log(c):.3g} for your {c} classes",
        f"Give the model a {c}-way head (num_classes={c}).",
        {"head_outputs": k, "num_classes": c})


def _too_high(ctx, per, expected, label, b, out, scale) -> Problem:
    status = "fail" if per > b["fail_above"] else "warn"
    probe = ctx.fact("first_conv")
    x = first_tensor(ctx.spec.inputs)
    stats = probe.stats if probe is not None and probe.stats else (
        input_stats(x) if x is not None and x.is_floating_point() else {})
    logit_std = float(out.float().std()) if out.numel() > 1 else 0.0
    ev = {"logit_std": round(logit_std, 4)}
    head = f"loss {per * scale:.4g} at init is {per / expected:.1f}x {label} = " \
           f"{expected * scale:.3g} (logit std {logit_std:.3g})"
    if pixel_scale(stats):
        return Problem(
            "fail" if per > b["fail_above_unnormalized"] else "warn", "unnormalized-input",
            f"{head}: the inputs are not normalized (mean {stats['mean']:.3g}, std "
            f"{stats['std']:.3g}), so the logits start huge",
            "Normalize the inputs (ToTensor() + Normalize(mean, std)).", ev)
    return Problem(
        status, "initial-loss-too-high",
        f"{head}: the model starts over-confident"
        + ("" if status == "fail" else " (tolerable, but it wastes the first iterations)"),
        "Initialize the last layer small (e.g. nn.init.zeros_(head.weight) or std 0.01) and "
        "check custom init and logit scaling.", ev)
