"""Mixed precision: the shared forward/loss/backward again under torch.autocast, against float32.

Both passes run on copies of the user's model, in train mode, on the first samples of the batch,
from the same seed, so the only difference is the precision. Measured: the outputs, the loss and
every gradient in both, the gradients with the loss scaled as a GradScaler does, and an
exception if an op fails under autocast.

bfloat16 runs under the device's own autocast. float16 on a CPU does not: its fp16 convolution
and matmul kernels are 30-50x slower than float32 (a resnet18 pass of 2 samples took 11 s) and
round differently from a GPU's. There `HalfAutocast` does what CUDA autocast does, op by op: the
ops CUDA runs in fp16 (convolutions, linear, matmuls) get fp16-rounded inputs and weights and
return fp16 (computed in float32 and rounded, as tensor cores accumulate in float32), the ops it
runs in float32 (softmax, log, exp, norms, losses) get float32 inputs, everything else runs on
what it is given. Gradients pass the same casts backwards, so they round, underflow and overflow
at fp16's range as on a GPU.
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

import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

DTYPES = {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16,
          "fp16": torch.float16, "half": torch.float16}
SAMPLES = 8  # per pass: BatchNorm over fewer amplifies rounding (bf16 grads 0.99 at 4 samples)
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


# What CUDA autocast runs in float16 ("lower precision" ops) and in float32, by torch function.
_LOW = {
    F.conv1d, F.conv2d, F.conv3d, F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d,
    F.linear, F.bilinear, F.prelu, torch.matmul, torch.mm, torch.bmm, torch.mv, torch.addmm,
    torch.addbmm, torch.baddbmm, torch.addmv, torch.addr, torch.chain_matmul, torch.einsum,
    torch.Tensor.__matmul__, torch.Tensor.__rmatmul__, torch.Tensor.matmul, torch.Tensor.mm,
    torch.Tensor.bmm, torch.Tensor.mv, F.scaled_dot_product_attention,
}
_FP32 = {
    F.softmax, F.log_softmax, F.softmin, torch.softmax, torch.log_softmax, torch.Tensor.softmax,
    torch.Tensor.log_softmax, torch.exp, torch.Tensor.exp, torch.log, torch.Tensor.log,
    torch.log1p, torch.log2, torch.log10, torch.pow, torch.Tensor.pow, torch.Tensor.__pow__,
    torch.rsqrt, torch.reciprocal, torch.acos, torch.asin, torch.cosh, torch.sinh, torch.tan,
    torch.erfinv, torch.expm1, torch.cumsum, torch.cumprod, torch.prod, torch.dist, torch.norm,
    torch.cdist, torch.renorm, torch.logsumexp, F.layer_norm, F.group_norm, F.normalize,
    F.cosine_similarity, F.cross_entropy, F.nll_loss, F.binary_cross_entropy_with_logits,
    F.mse_loss, F.l1_loss, F.smooth_l1_loss, F.huber_loss, F.kl_div, F.soft_margin_loss,
    F.multilabel_margin_loss, F.margin_ranking_loss, F.hinge_embedding_loss,
    F.poisson_nll_loss, F.cosine_embedding_loss, F.triplet_margin_loss, F.multi_margin_loss,
    F.multilabel_soft_margin_loss, F.softplus,
}
# Ops CUDA runs in the input's own dtype but this CPU may not have a Half kernel for, or runs
# with float32 parameters: computed in float32, returned as fp16 (what the GPU returns).
_HALF_OUT = {F.batch_norm, F.instance_norm}


def _cast(obj: Any, dtype: torch.dtype, round_first: bool = False) -> Any:
    def one(t: torch.Tensor) -> torch.Tensor:
        if t.dtype not in (torch.float32, torch.float16):
            return t
        if round_first and t.dtype == torch.float32:
            t = t.half()  # autocast's cast of inputs and weights to fp16
        return t.to(dtype)
    return map_tensors(obj, one)


class HalfAutocast(TorchFunctionMode):
    """CUDA's float16 autocast, op by op, with float32 kernels (see the module docstring)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _LOW:
            out = func(*_cast(args, torch.float32, True), **_cast(kwargs, torch.float32, True))
            return _cast(out, torch.float16)
        if func in _FP32:
            return func(*_cast(args, torch.float32), **_cast(kwargs, torch.float32))
        if func in _HALF_OUT:
            return _cast(func(*_cast(args, torch.float32), **_cast(kwargs, torch.float32)),
                         torch.float16)
        try:
            return func(*args, **kwargs)
        except (RuntimeError, NotImplementedError) as exc:
            if "not implemented for 'Half'" not in str(exc):
                raise
            # a GPU has this kernel in fp16: compute it in float32, return fp16
            return _cast(func(*_cast(args, torch.float32), **_cast(kwargs, torch.float32)),
                         torch.float16)


def _autocast(device: str, dtype: torch.dtype | None):
    if dtype is torch.float16 and device == "cpu":
        return HalfAutocast()
    return torch.autocast(device, dtype=dtype or torch.float32, enabled=dtype is not None)


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


def precision_pass(ctx, dtype: torch.dtype | None, samples: int, scale: float | None = None,
                   unscaled: bool = True) -> PrecisionPass:
    """Forward + loss (+ backward) on a train-mode copy under autocast(`dtype`) (None: float32)
    on the first `samples` samples; with `scale`, a backward of loss * scale, and, unless
    `unscaled` is False, one of the loss itself (each backward of fp16 on a CPU costs)."""
    result = PrecisionPass()
    start = time.perf_counter()
    with rng_guard(ctx.seed):
        model = ctx.copy_model(train=True)
        x, y = ctx.batch()
        n = batch_size(x)
        x, y = _cut(x, n, samples), _cut(y, n, samples)
        tracer = Tracer(model).__enter__()
        try:
            with _autocast(ctx.device.type, dtype):
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
            if loss.requires_grad and (unscaled or scale is None):
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
    underflow: float | None  # share of gradient elements non-zero in float32 and exactly 0 here
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
    underflow = underflow_scaled = None
    if amp.grads:
        lost, alive = _lost(ref.grads, amp.grads)
        underflow = lost / alive if alive else 0.0
    if amp.scaled_grads:
        lost_s, alive = _lost(ref.grads, amp.scaled_grads)
        underflow_scaled = lost_s / alive if alive else 0.0
    return Comparison(loss_rel, output_rel, grad_rel, nonfinite, underflow, underflow_scaled)


# --- what the precision explains ----------------------------------------------------------------
# The largest difference from float32 measured on healthy models: the 21 set-ups of
# tests/test_model_seeds.py (small CNNs with CE, label smoothing, NLL, small- and zero-init
# heads, single-logit and multi-label BCE, U-Nets, regression, a frozen backbone, a custom
# autograd Function, torchvision/timm resnet18, resnet10t, a ViT at 32 px) under 10 seeds each,
# 8 samples, on this CPU (bf16: CPU autocast; fp16: HalfAutocast):
# - outputs, ||out_amp - out_fp32|| / ||out_fp32||: bf16 0.071 (resnet18 with a frozen
#   backbone), fp16 0.011 (the same);
# - the loss, relative: bf16 0.017 (torchvision resnet18), fp16 0.0018;
# - gradients, ||g_amp - g_fp32|| / ||g_fp32||: bf16 0.49, fp16 0.16 (both torchvision
#   resnet18, whose BatchNorm over 1x1 maps of 8 samples amplifies rounding; every other set-up
#   stays below 0.23 and 0.08).
HEALTHY_MAX = {torch.bfloat16: {"output": 0.071, "loss": 0.017, "grad": 0.49},
               torch.float16: {"output": 0.011, "loss": 0.0018, "grad": 0.16}}
# Four times that is beyond what the precision explains: outputs or loss, a failure; gradients
# (outputs and loss agreeing), a warning.
MARGIN = 4
# fp16 without a GradScaler: healthy tiny models lose up to 5% of their non-zero gradient
# elements to underflow already at init (small-init heads); a quarter is a failure, anything
# is a warning (gradients shrink as training converges).
UNDERFLOW_FAIL = 0.25

def output_limit(dtype: torch.dtype) -> float:
    return MARGIN * HEALTHY_MAX[dtype]["output"]


def loss_limit(dtype: torch.dtype) -> float:
    return MARGIN * HEALTHY_MAX[dtype]["loss"]


def grad_limit(dtype: torch.dtype) -> float:
    return MARGIN * HEALTHY_MAX[dtype]["grad"]
