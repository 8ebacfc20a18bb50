"""Facts shared by the basic model checks (data, dtype, forward, output, initial loss).

Not a check module (the leading underscore keeps the registry from importing it as one). Every
fact here is computed at most once per run and read-only for the checks that use it.
"""
from __future__ import annotations

import functools
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from cvdoctor.finding import Finding, failed, passed, warned
from cvdoctor.model.context import call_model, first_tensor, rng_guard

_CACHE: "weakref.WeakKeyDictionary[Any, dict[str, Any]]" = weakref.WeakKeyDictionary()


def cached(func: Callable) -> Callable:
    """Memoize a fact per context (contexts are short-lived; the weak map forgets them)."""
    @functools.wraps(func)
    def wrapper(ctx):
        store = _CACHE.setdefault(ctx, {})
        if func.__name__ not in store:
            store[func.__name__] = func(ctx)
        return store[func.__name__]
    return wrapper


# --- the loss ------------------------------------------------------------------------------
@dataclass
class LossInfo:
    kind: str  # ce | nll | bce_logits | bce | regression | custom | training_step
    name: str
    label_smoothing: float = 0.0
    ignore_index: int | None = None
    reduction: str = "mean"


_FUNCTIONAL = {
    F.cross_entropy: "ce", F.nll_loss: "nll", F.binary_cross_entropy_with_logits: "bce_logits",
    F.binary_cross_entropy: "bce", F.mse_loss: "regression", F.l1_loss: "regression",
    F.smooth_l1_loss: "regression", F.huber_loss: "regression",
}
_MODULES = (
    (nn.CrossEntropyLoss, "ce"), (nn.NLLLoss, "nll"), (nn.BCEWithLogitsLoss, "bce_logits"),
    (nn.BCELoss, "bce"), (nn.MSELoss, "regression"), (nn.L1Loss, "regression"),
    (nn.SmoothL1Loss, "regression"), (nn.HuberLoss, "regression"),
)


@cached
def loss_info(ctx) -> LossInfo:
    if ctx.spec.training_step is not None:
        return LossInfo("training_step", "training_step")
    fn = ctx.loss_fn()
    keywords: dict[str, Any] = {}
    if isinstance(fn, functools.partial):
        keywords = dict(fn.keywords or {})
        fn = fn.func
    kind = next((k for cls, k in _MODULES if isinstance(fn, cls)), None)
    if kind is not None:
        return LossInfo(kind, type(fn).__name__,
                        label_smoothing=float(getattr(fn, "label_smoothing", 0.0) or 0.0),
                        ignore_index=getattr(fn, "ignore_index", None),
                        reduction=getattr(fn, "reduction", "mean"))
    kind = _FUNCTIONAL.get(fn)
    if kind is not None:
        default_ignore = -100 if kind in ("ce", "nll") else None
        return LossInfo(kind, f"F.{fn.__name__}",
                        label_smoothing=float(keywords.get("label_smoothing", 0.0)),
                        ignore_index=keywords.get("ignore_index", default_ignore),
                        reduction=keywords.get("reduction", "mean"))
    return LossInfo("custom", getattr(fn, "__name__", type(fn).__name__))


# --- outputs and targets --------------------------------------------------------------------
def main_output(ctx) -> torch.Tensor | None:
    """The tensor the loss reads: the output itself, or the first tensor of a tuple/dict."""
    out = ctx.base.outputs
    return first_tensor(out) if out is not None else None


def targets_tensor(ctx) -> torch.Tensor | None:
    t = ctx.spec.targets
    return t if isinstance(t, torch.Tensor) else None


def class_index_targets(out: torch.Tensor | None, targets: torch.Tensor | None) -> bool:
    """Targets that hold one class index per sample (or pixel): the output without its class
    dimension, e.g. (N,) for (N, C) logits and (N, H, W) for (N, C, H, W)."""
    if targets is None:
        return False
    if out is None:
        return targets.dim() in (1, 3)
    return out.dim() >= 2 and tuple(targets.shape) == tuple(out.shape[:1]) + tuple(out.shape[2:])


def valid_labels(targets: torch.Tensor, ignore_index: int | None) -> torch.Tensor:
    flat = targets.reshape(-1)
    if ignore_index is not None and not targets.is_floating_point():
        flat = flat[flat != ignore_index]
    return flat


# --- what reaches the first convolution ------------------------------------------------------
@dataclass
class ConvProbe:
    module: str
    in_channels: int
    shape: tuple[int, ...]
    dtype: torch.dtype
    stats: dict[str, float] = field(default_factory=dict)


class _Reached(Exception):
    pass


@cached
def first_conv(ctx) -> ConvProbe | None:
    """The first convolution the forward pass runs, and what it receives.

    Found by running a copy until that convolution and stopping there (cheap: one layer), so the
    answer is what forward really does, not a guess from registration order, and a model that
    normalizes or permutes its input inside forward is seen as it is.
    """
    try:
        model = ctx.copy_model(train=False)
    except Exception:  # noqa: BLE001 - model.forward reports an un-copyable model
        return None
    names = {id(m): n for n, m in model.named_modules()}
    found: list[ConvProbe] = []

    def hook(module, args):
        x = args[0] if args else None
        if isinstance(x, torch.Tensor):
            xf = x.detach().float()
            finite = xf[torch.isfinite(xf)]
            stats = {}
            if finite.numel():
                stats = {"mean": float(finite.mean()), "std": float(finite.std()) if
                         finite.numel() > 1 else 0.0, "min": float(finite.min()),
                         "max": float(finite.max())}
            found.append(ConvProbe(names.get(id(module), "?"), module.in_channels,
                                   tuple(x.shape), x.dtype, stats))
        raise _Reached

    handles = [m.register_forward_pre_hook(hook) for m in model.modules()
               if isinstance(m, nn.modules.conv._ConvNd)]
    if not handles:
        return None
    inputs, _ = ctx.batch()
    try:
        with rng_guard(ctx.seed), torch.no_grad():
            call_model(model, inputs)
    except _Reached:
        pass
    except Exception:  # noqa: BLE001 - a broken forward is model.forward's finding
        pass
    finally:
        for h in handles:
            h.remove()
    return found[0] if found else None


def input_stats(x: torch.Tensor) -> dict[str, float]:
    xf = x.detach().float()
    finite = xf[torch.isfinite(xf)]
    if not finite.numel():
        return {}
    return {"mean": float(finite.mean()), "std": float(finite.std()) if finite.numel() > 1
            else 0.0, "min": float(finite.min()), "max": float(finite.max())}


def pixel_scale(stats: dict[str, float]) -> str | None:
    """'raw' for 0-255 pixels, 'unnormalized' for values far from unit scale, else None."""
    if not stats:
        return None
    if stats["min"] >= 0 and 50 <= stats["max"] <= 255.5 and stats["mean"] > 2:
        return "raw"
    if stats["std"] > 5 or abs(stats["mean"]) > 5:
        return "unnormalized"
    return None


def fmt_stats(stats: dict[str, float]) -> str:
    return (f"mean {stats['mean']:.3g}, std {stats['std']:.3g}, range "
            f"[{stats['min']:.3g}, {stats['max']:.3g}]") if stats else "no finite values"


# --- folding problems into one finding -------------------------------------------------------
@dataclass
class Problem:
    status: str  # warn | fail
    recipe: str
    message: str
    fix: str
    evidence: dict[str, Any] = field(default_factory=dict)


def fold(title: str, problems: list[Problem], ok_message: str, **evidence: Any) -> Finding:
    """One line per check: the worst problem in the message, the others in the evidence."""
    if not problems:
        return passed(title, ok_message, **evidence)
    problems = sorted(problems, key=lambda p: p.status != "fail")  # stable: fails first
    worst, rest = problems[0], problems[1:]
    message = worst.message
    if rest:
        message += f" (and {len(rest)} more: {'; '.join(p.message for p in rest)})"
    ev = dict(evidence)
    ev.update(worst.evidence)
    if rest:
        ev["other_problems"] = [{"status": p.status, "recipe": p.recipe, "message": p.message,
                                 "fix": p.fix, **p.evidence} for p in rest]
    helper = failed if worst.status == "fail" else warned
    return helper(title, message, worst.fix, worst.recipe, **ev)




CLIPPED_ZERO_FRACTION = 0.2  # this share of exact zeros with no negative value: a final ReLU


def rows_are_probabilities(out: torch.Tensor, dim: int = 1) -> bool:
    """Non-negative and summing to 1 along `dim`: softmax already applied."""
    sums = out.sum(dim=dim)
    return bool((out >= 0).all()) and bool(torch.allclose(sums, torch.ones_like(sums), atol=1e-3))


def relu_clipped_fraction(out: torch.Tensor) -> float | None:
    """Share of outputs that are exactly 0 when none is negative (logits cut by a final ReLU);
    None when some output is negative, so nothing clips them."""
    if float(out.min()) < 0:
        return None
    return float((out == 0).float().mean())


def quoted_names(names, limit: int = 3) -> str:
    """`a`, `b`, `c` and 2 more: module names for a one-line message."""
    names = list(names)
    shown = ", ".join(f"`{n}`" for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
