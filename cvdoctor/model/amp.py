"""Mixed precision: the shared forward/loss/backward again under torch.autocast, against float32.

Both passes run on copies of the user's model, in train mode, on the first samples of the batch
(fp16 kernels on a CPU are 30-50x slower than float32: a few samples keep it to a second), from
the same seed, so the only difference is the precision. Measured: the loss and every gradient in
both, the gradients again with the loss scaled as a GradScaler starts (2**16), and an exception
if an op fails under autocast.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from cvdoctor.model.context import ErrorInfo, error_info, rng_guard
from cvdoctor.model.tensors import batch_size, first_tensor, map_tensors
from cvdoctor.model.trace import Tracer

DTYPES = {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16,
          "fp16": torch.float16, "half": torch.float16}
SAMPLES = {torch.bfloat16: 8, torch.float16: 2}  # samples per pass (fp16 kernels on CPU are slow)
GRAD_SCALER_INIT = 2.0 ** 16  # torch.amp.GradScaler's init_scale


def parse_grad_scaler(value: Any) -> bool | None:
    """--grad-scaler yes|no, grad_scaler = True/False, or the GradScaler object itself."""
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return {"yes": True, "true": True, "on": True, "1": True,
                "no": False, "false": False, "off": False, "0": False}.get(value.lower())
    enabled = getattr(value, "is_enabled", None)
    if callable(enabled):  # a torch.amp.GradScaler instance
        return bool(enabled())
    return None


def amp_dtype(amp: Any, autocast_dtype: Any) -> torch.dtype | str | None:
    """The autocast dtype the user trains with; a string when it names no usable dtype."""
    value = amp if amp is not None else autocast_dtype
    if value is None:
        return None
    if isinstance(value, torch.dtype):
        return value if value in (torch.bfloat16, torch.float16) else \
            f"{value} is not an autocast dtype (bfloat16 or float16)"
    text = str(value).replace("torch.", "").lower()
    if text in DTYPES:
        return DTYPES[text]
    return f"amp = {value!r} is not an autocast dtype (\"bfloat16\" or \"float16\")"


@dataclass
class PrecisionPass:
    loss: float | None = None
    output: torch.Tensor | None = None  # the main output (first tensor), float32 copy
    grads: dict[str, torch.Tensor | None] = field(default_factory=dict)
    scaled_grads: dict[str, torch.Tensor | None] = field(default_factory=dict)  # / scale
    scale: float | None = None  # the loss scale those were taken at
    error: ErrorInfo | None = None
    stage: str = ""  # forward | loss | backward, when error
    seconds: float = 0.0


def _cut(obj: Any, n: int | None, keep: int) -> Any:
    if n is None or n <= keep:
        return obj
    return map_tensors(obj, lambda t: t[:keep] if t.dim() > 0 and t.shape[0] == n else t)


def precision_pass(ctx, dtype: torch.dtype | None, samples: int, scale: float | None = None
                   ) -> PrecisionPass:
    """Forward + loss (+ backward) on a train-mode copy under autocast(`dtype`) (None: float32)
    on the first `samples` samples; with `scale`, a second backward of loss * scale too."""
    result = PrecisionPass()
    start = time.perf_counter()
    with rng_guard(ctx.seed):
        model = ctx.copy_model(train=True)
        x, y = ctx.batch()
        n = batch_size(x)
        x, y = _cut(x, n, samples), _cut(y, n, samples)
        tracer = Tracer(model).__enter__()
        try:
            with torch.autocast(ctx.device.type, dtype=dtype or torch.float32,
                                enabled=dtype is not None):
                outputs, loss = ctx.compute_loss(model, x, y)
        except Exception as exc:  # noqa: BLE001 - an op that fails under autocast is a finding
            result.error, result.stage = error_info(exc, tracer.innermost()), "forward"
            return result
        finally:
            tracer.close()
        try:
            out = first_tensor(outputs)
            if out is not None and (out.is_floating_point() or out.is_complex()):
                result.output = out.detach().float()
            result.loss = float(loss.detach().float())
            params = {n: p for n, p in model.named_parameters() if p.requires_grad}
            while scale is not None and scale >= 1 and loss.requires_grad:
                # a GradScaler halves its scale after a step with inf/NaN gradients (and skips
                # that step) until they are finite: the gradients training ends up with
                grads = torch.autograd.grad(loss * scale, list(params.values()),
                                            allow_unused=True, retain_graph=True)
                result.scaled_grads = {n: None if g is None else g.detach().float() / scale
                                       for n, g in zip(params, grads)}
                result.scale = scale
                if all(g is None or bool(torch.isfinite(g).all()) for g in grads):
                    break
                scale /= 2
            if loss.requires_grad:
                grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
                result.grads = {n: None if g is None else g.detach().float()
                                for n, g in zip(params, grads)}
        except Exception as exc:  # noqa: BLE001
            result.error, result.stage = error_info(exc), "backward"
    result.seconds = time.perf_counter() - start
    return result


@dataclass
class Comparison:
    loss_rel: float  # |loss_amp - loss_fp32| / max(|loss_fp32|, 1e-6)
    output_rel: float | None  # ||out_amp - out_fp32|| / ||out_fp32|| (None: no output tensor)
    grad_rel: float  # ||g_amp - g_fp32|| / ||g_fp32|| over every gradient element
    nonfinite_grads: list[str]
    underflow: float  # share of gradient elements non-zero in float32 and exactly 0 here
    underflow_scaled: float | None  # the same with the loss scaled like a GradScaler


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.shape != b.shape or not bool(torch.isfinite(a).all()):
        return math.inf
    ref = float(b.norm())
    diff = float((a - b).norm())
    return diff / ref if ref > 0 else (0.0 if diff == 0 else math.inf)


def _lost(ref: dict, grads: dict) -> tuple[int, int]:
    lost = alive = 0
    for name, g32 in ref.items():
        if g32 is None:
            continue
        g = grads.get(name)
        live = g32 != 0
        alive += int(live.sum())
        lost += int(live.sum()) if g is None else int((live & (g == 0)).sum())
    return lost, alive


def compare(ref: PrecisionPass, amp: PrecisionPass, scaled: bool = False) -> Comparison:
    """`scaled`: judge the gradients a GradScaler would give (loss scaled, then unscaled)."""
    loss_rel = (abs(amp.loss - ref.loss) / max(abs(ref.loss), 1e-6)
                if amp.loss is not None and ref.loss is not None and math.isfinite(amp.loss)
                else math.inf)
    output_rel = (_rel(amp.output, ref.output)
                  if amp.output is not None and ref.output is not None else None)
    grads = amp.scaled_grads if scaled and amp.scaled_grads else amp.grads
    nonfinite = [n for n, g in grads.items() if g is not None and not bool(torch.isfinite(g).all())]
    diff = total = 0.0
    for name, g32 in ref.grads.items():
        if g32 is None:
            continue
        g = grads.get(name)
        g = torch.zeros_like(g32) if g is None else g
        if bool(torch.isfinite(g).all()):
            diff += float((g - g32).pow(2).sum())
        total += float(g32.pow(2).sum())
    grad_rel = math.inf if nonfinite else (math.sqrt(diff / total) if total > 0 else 0.0)
    lost, alive = _lost(ref.grads, amp.grads)
    underflow_scaled = None
    if amp.scaled_grads:
        lost_s, _ = _lost(ref.grads, amp.scaled_grads)
        underflow_scaled = lost_s / alive if alive else 0.0
    return Comparison(loss_rel, output_rel, grad_rel, nonfinite, lost / alive if alive else 0.0,
                      underflow_scaled)


# --- what the precision explains ----------------------------------------------------------------
# Unit roundoff of each dtype (half the spacing of numbers near 1).
UNIT_ROUNDOFF = {torch.bfloat16: 2.0 ** -8, torch.float16: 2.0 ** -11}
# Measured on the 19 healthy set-ups of tests/test_model_seeds.py under 10 seeds each (bf16, 8
# samples; fp16, 2 samples, the 12 tiny ones), in units of the dtype's rounding:
# - outputs, ||out_amp - out_fp32|| / ||out_fp32||: bf16 at most 18 units (0.071, resnet18
#   with a frozen backbone), fp16 at most 11 (0.0053);
# - the loss, relative: bf16 at most 4.4 units (0.017, torchvision resnet18), fp16 0.9;
# - gradients, ||g_amp - g_fp32|| / ||g_fp32||: bf16 at most 125 units (0.49, torchvision
#   resnet18, whose BatchNorm over 1x1 maps of 8 samples amplifies rounding; 0.99 at 4
#   samples), everything else below 58; fp16 at most 39.
# Beyond 64 units (bf16 0.25, fp16 0.031) the outputs or the loss are not what the precision
# explains: a failure. Gradients beyond 512 units (bf16 2.0, fp16 0.25): a warning.
OUTPUT_DIVERGENCE_UNITS = 64
LOSS_DIVERGENCE_UNITS = 64
GRAD_DIVERGENCE_UNITS = 512
# fp16 without a GradScaler: healthy tiny models lose up to 5% of their non-zero gradient
# elements to underflow already at init (small-init heads); a quarter is a failure, anything
# is a warning (gradients shrink as training converges).
UNDERFLOW_FAIL = 0.25

def output_limit(dtype: torch.dtype) -> float:
    return OUTPUT_DIVERGENCE_UNITS * UNIT_ROUNDOFF[dtype]


def loss_limit(dtype: torch.dtype) -> float:
    return LOSS_DIVERGENCE_UNITS * UNIT_ROUNDOFF[dtype]


def grad_limit(dtype: torch.dtype) -> float:
    return GRAD_DIVERGENCE_UNITS * UNIT_ROUNDOFF[dtype]
