"""model.amp: is training under torch.autocast safe for this model?

Runs only when the user says how they train: `amp = "bfloat16"` / `"float16"` (or
`autocast_dtype = torch.float16`) in the model file, `--amp DTYPE`, or `check_model(...,
amp="bfloat16")`; `grad_scaler = True/False` says whether a GradScaler is used. The forward/loss/
backward runs under autocast on the device in use and in float32 on the same samples, from the
same seed (cvdoctor.model.amp), and the difference is judged against what the dtype's precision
explains (thresholds named and measured in cvdoctor/model/amp.py).
"""
from __future__ import annotations

import math

import torch

from cvdoctor.catalog import recipe_for_error
from cvdoctor.finding import Finding, Problem, failed, report_problems, skipped
from cvdoctor.model.amp import (GRAD_SCALER_INIT, SAMPLES, UNDERFLOW_FAIL, amp_dtype, compare,
                                grad_limit, loss_limit, output_limit, parse_grad_scaler,
                                precision_pass)
from cvdoctor.registry import register

TITLE = "Mixed precision (autocast)"
RECIPES = ["amp-op-error", "amp-nonfinite", "amp-divergence", "mixed-precision-fp16-underflow",
           "amp-scaler-with-bf16"]
HOW_TO_ENABLE = ('say how you train: amp = "bfloat16" (or "float16", or autocast_dtype = '
                 'torch.float16) and grad_scaler = True/False in the model file, --amp DTYPE '
                 '[--grad-scaler yes|no], or check_model(..., amp="bfloat16")')


# Opt-in: without an autocast dtype the check is left out of the report (selected by name, the
# runner's skip says how to ask for it).
@register("model.amp", order=95, title=TITLE, recipes=RECIPES, needs=["base"],
          error_recipes=True, opt_in=("amp", "autocast_dtype"))
def check(ctx) -> Finding | list[Finding]:
    """Runs the forward/loss/backward on the first samples under torch.autocast with the dtype
    the user trains with (bf16 or fp16, on the device in use; fp16 on a CPU through CUDA's
    autocast rules with float32 kernels) and in float32, from the same seed. Fails when an op
    raises under autocast, when the loss or gradients are NaN/inf only under autocast, when the
    outputs or the loss differ from float32 by more than 4x the most any healthy model did
    (outputs: bf16 0.28, fp16 0.044; loss: bf16 0.068, fp16 0.0072), and with fp16 without a
    GradScaler when 25%+ of the non-zero gradient elements underflow to 0. Warns on fp16
    without a GradScaler (any underflow grows as gradients shrink), on gradients 4x further from
    float32 than any healthy model's (bf16 1.96, fp16 0.64), and on a GradScaler with bf16 (not
    needed: bf16 has float32's range). Opt-in: runs when an autocast dtype is given."""
    dtype = amp_dtype(ctx.option("amp"), ctx.option("autocast_dtype"))
    if dtype is None:
        return skipped(TITLE, f"mixed precision not checked: {HOW_TO_ENABLE}")
    if isinstance(dtype, str):
        return skipped(TITLE, f"{dtype}; {HOW_TO_ENABLE}")
    base = ctx.fact("base")
    if not base.ok:
        return skipped(TITLE, "the float32 forward/loss/backward already fails (see "
                       "model.forward): nothing to compare autocast with")
    scaler = parse_grad_scaler(ctx.option("grad_scaler"))
    name = str(dtype).replace("torch.", "")
    device = ctx.device.type
    samples = SAMPLES
    fp16 = dtype is torch.float16
    ctx.progress(f"amp: {name} autocast on {device} vs float32, {samples} samples")
    ref = precision_pass(ctx, None, samples)
    amp = precision_pass(ctx, dtype, samples, scale=GRAD_SCALER_INIT if fp16 else None,
                         unscaled=not fp16 or scaler is False)
    where = f"autocast({device!r}, dtype=torch.{name})"
    if fp16 and device == "cpu":
        where += " (CUDA's fp16 casts, emulated with this CPU's float32 kernels)"
    evidence = {"dtype": name, "device": device, "samples": samples, "grad_scaler": scaler,
                "loss_fp32": ref.loss, "loss_amp": amp.loss,
                "seconds": round(amp.seconds, 3)}
    if amp.error is not None:
        return _op_error(amp, where, evidence)
    if ref.error is not None or ref.loss is None:
        return skipped(TITLE, "the float32 pass on the first samples failed: "
                       f"{ref.error.text if ref.error else 'no loss'}", **evidence)
    c = compare(ref, amp, scaled=fp16 and scaler is not False)
    evidence.update(loss_rel=_r(c.loss_rel), output_rel=_r(c.output_rel),
                    grad_rel=_r(c.grad_rel), loss_limit=_r(loss_limit(dtype)),
                    output_limit=_r(output_limit(dtype)), grad_limit=_r(grad_limit(dtype)),
                    underflow=_r(c.underflow), underflow_scaled=_r(c.underflow_scaled),
                    loss_scale=amp.scale)
    problems: list[Problem] = []
    underflow = fp16 and scaler is False
    if not math.isfinite(amp.loss) or c.nonfinite_grads:
        what = (f"the loss is {amp.loss}" if not math.isfinite(amp.loss) else
                f"{len(c.nonfinite_grads)} gradient tensors hold NaN/inf (first "
                f"`{c.nonfinite_grads[0]}`)")
        problems.append(Problem(
            "fail", "amp-nonfinite",
            f"under {where} {what}, while float32 gives a finite loss {ref.loss:.4g}: a value "
            f"leaves the {name} range" + (" (fp16 overflows above 65504)" if fp16 else ""),
            "Keep the overflowing part in float32: wrap it in torch.autocast(..., "
            "enabled=False) and call .float() on its inputs; scale large inputs down."
            + (" Or use bfloat16." if fp16 else ""),
            {"nonfinite_grads": c.nonfinite_grads[:10]}))
    elif (c.output_rel or 0) > output_limit(dtype) or c.loss_rel > loss_limit(dtype):
        what = (f"the outputs differ from float32 by {c.output_rel:.2g} of their norm"
                if (c.output_rel or 0) > output_limit(dtype) else
                f"the loss is {amp.loss:.5g} against {ref.loss:.5g} in float32 "
                f"({c.loss_rel:.2g} apart)")
        problems.append(Problem(
            "fail", "amp-divergence",
            f"under {where} {what}: more than the {name} rounding explains (limits "
            f"{output_limit(dtype):.2g} for outputs, {loss_limit(dtype):.2g} for the loss, 4x "
            "the most any healthy model showed): an op computes with large values or cancels "
            "them",
            "Find the op that loses precision (large offsets subtracted, big sums, exp of "
            "large values) and run it in float32 under torch.autocast(..., enabled=False).",
            {}))
    elif underflow:
        status = "fail" if (c.underflow or 0) >= UNDERFLOW_FAIL else "warn"
        problems.append(Problem(
            status, "mixed-precision-fp16-underflow",
            f"float16 autocast without a GradScaler: {c.underflow or 0:.1%} of the gradient "
            f"elements that are non-zero in float32 underflow to exactly 0 (with the loss scaled "
            f"by {amp.scale or GRAD_SCALER_INIT:g} like a GradScaler: "
            f"{c.underflow_scaled or 0:.1%})"
            + ("" if status == "fail" else "; more will as gradients shrink during training"),
            "Use a GradScaler: scaler.scale(loss).backward(); scaler.step(optimizer); "
            "scaler.update() (or train in bfloat16, which needs none).",
            {}))
    elif c.grad_rel > grad_limit(dtype):
        problems.append(Problem(
            "warn", "amp-divergence",
            f"under {where} the gradients differ from float32 by {c.grad_rel:.2g} of their "
            f"norm (beyond {grad_limit(dtype):.2g}); outputs and loss agree",
            "Find the layer whose gradients change most in low precision and keep it in float32 "
            "(torch.autocast(..., enabled=False)); normalization over tiny batches amplifies "
            "rounding.", {}))
    if not fp16 and scaler:
        problems.append(Problem(
            "warn", "amp-scaler-with-bf16",
            "a GradScaler with bfloat16 autocast: bfloat16 has float32's range, gradients do "
            "not underflow, so the scaler only adds work (and a skipped step whenever it "
            "probes its scale)",
            "Drop the GradScaler with bfloat16: loss.backward(); optimizer.step().", {}))
    scaler_note = ("" if not fp16 else
                   "; assumed a GradScaler (say grad_scaler = False if you train without one)"
                   if scaler is None else "")
    out_part = (f"outputs {c.output_rel:.2g} apart (limit {output_limit(dtype):.2g}), "
                if c.output_rel is not None else "")
    ok = (f"{where} on {samples} samples against float32: {out_part}loss {amp.loss:.5g} vs "
          f"{ref.loss:.5g}, gradients {c.grad_rel:.2g} apart (limit {grad_limit(dtype):.2g}), "
          f"all finite"
          + (f"; {c.underflow_scaled or 0:.1%} of gradients underflow with loss scaling"
             if fp16 and scaler is not False else "") + scaler_note)
    return report_problems(TITLE, problems, ok, **evidence)


def _op_error(amp, where: str, evidence: dict) -> Finding:
    err = amp.error
    match = recipe_for_error(err.text, err.traceback)
    recipe = match.recipe if match else "amp-op-error"
    module = f" in `{err.module}`" if err.module and err.module != "<root>" else ""
    first = err.message.splitlines()[0] if err.message else ""
    return failed(TITLE, f"the {amp.stage} raised {err.type}{module} under {where} (it runs in "
                  f"float32): {first[:200]}",
                  "Run that op in float32: wrap it in torch.autocast(..., enabled=False) and "
                  "call .float() on its inputs (masks: use torch.finfo(x.dtype).min, not -1e9).",
                  recipe, error=err.text, traceback=err.traceback, **evidence)


def _r(x):
    if x is None:
        return None
    return round(x, 6) if math.isfinite(x) else str(x)
