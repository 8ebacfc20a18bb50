"""Facts about the user's model, computed once per context on copies and shared by the checks.

- ``base``: one forward + loss + backward on a copy in train mode (`BasePass`);
- ``loss_info``: what kind of loss it is (`LossInfo`);
- ``first_conv``: what reaches the first convolution the forward runs (`ConvProbe`);
- ``module_trace``: a train-mode forward with every module's output recorded (`ModuleTrace`).

Also the small readings several checks make of them (the main output, class-index targets, input
statistics, probability-shaped outputs). Every value here is read-only for the checks.
"""
from __future__ import annotations

import copy
import functools
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cvdoctor.factgraph import fact
from cvdoctor.model.context import (DEEPCOPY_FAILED, TO_DEVICE_FAILED, ErrorInfo, call_model,
                                    error_info, rng_guard)
from cvdoctor.model.tensors import detach, first_tensor
from cvdoctor.model.trace import OutputStats, Tracer


# --- the shared pass ------------------------------------------------------------------------

@dataclass
class BasePass:
    """One forward + loss + backward on a copy in train mode (the user's mode is not assumed)."""

    model: nn.Module | None = None  # the copy, after backward (grads populated)
    outputs: Any = None  # detached
    loss: float | None = None
    forward_error: ErrorInfo | None = None
    loss_error: ErrorInfo | None = None
    backward_error: ErrorInfo | None = None
    warnings: list[str] = field(default_factory=list)  # PyTorch warnings during forward + loss
    grads: dict[str, torch.Tensor | None] = field(default_factory=dict)  # trainable params only
    seconds: float = 0.0
    origin: "OutputOrigin | None" = None  # what produced the main output (autograd, module)
    custom_functions: list[type] = field(default_factory=list)  # autograd.Function classes used

    @property
    def ok(self) -> bool:
        return not (self.forward_error or self.loss_error or self.backward_error)


# What the user's code may raise into the base pass: sys.exit() in a forward is a forward that
# failed, not the end of cvdoctor's report.
USER_ERRORS = (Exception, SystemExit)


@fact("base")
def base_pass(ctx) -> BasePass:
    result = BasePass()
    start = time.perf_counter()
    with rng_guard(ctx.seed):
        try:
            model = copy.deepcopy(ctx.spec.model)
        except Exception as exc:  # noqa: BLE001 - an un-copyable model is the user's problem
            result.forward_error = error_info(exc, DEEPCOPY_FAILED)
            return result
        try:
            model = model.to(ctx.device).train(True)
            inputs, targets = ctx.batch()
        except Exception as exc:  # noqa: BLE001 - e.g. meta tensors, a batch on another device
            result.forward_error = error_info(exc, TO_DEVICE_FAILED)
            return result
        result.model = model
        tracer = Tracer(model).__enter__()
        outputs = None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                if ctx.spec.training_step is not None:
                    loss = ctx.spec.training_step(model, (inputs, targets))
                else:
                    try:
                        outputs = call_model(model, inputs)
                    except USER_ERRORS as exc:  # noqa: BLE001
                        result.forward_error = error_info(exc, tracer.innermost())
                        return result
                    result.outputs = detach(outputs)
                    result.origin = output_origin(first_tensor(outputs), tracer)
                    tracer.close()
                    loss = ctx.loss_fn()(outputs, targets)
            except USER_ERRORS as exc:  # noqa: BLE001
                err = error_info(exc, tracer.innermost())
                if outputs is None and ctx.spec.training_step is not None:
                    result.forward_error = err
                else:
                    result.loss_error = err
                return result
            finally:
                tracer.close()
                result.warnings = [f"{w.category.__name__}: {w.message}" for w in caught]
        try:
            if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
                raise TypeError(f"the loss must be a scalar tensor, got "
                                f"{type(loss).__name__}{tuple(getattr(loss, 'shape', ()))}")
            result.loss = float(loss.detach())
            result.custom_functions = custom_functions(loss)
            loss.backward()
        except USER_ERRORS as exc:  # noqa: BLE001
            result.backward_error = error_info(exc)
            return result
        finally:
            result.seconds = time.perf_counter() - start
        # the copy's own gradients (it is never stepped: one_step steps a copy of it)
        result.grads = {n: (p.grad.detach() if p.grad is not None else None)
                        for n, p in model.named_parameters() if p.requires_grad}
    return result


# --- what produced the output: structure, not values -----------------------------------------

# Autograd nodes that only move, copy or cast values: looking through them finds the op that
# computed the output (`torch.sigmoid(x).view(-1)` ends in SigmoidBackward0 under a view).
_PASSTHROUGH_NODES = {
    "ViewBackward0", "UnsafeViewBackward0", "ReshapeAliasBackward0", "SqueezeBackward0",
    "SqueezeBackward1", "SqueezeBackward2", "UnsqueezeBackward0", "PermuteBackward0",
    "TransposeBackward0", "TBackward0", "CloneBackward0", "ExpandBackward0", "ToCopyBackward0",
    "SliceBackward0", "SelectBackward0", "AliasBackward0", "AsStridedBackward0",
    "AsStridedBackward1", "NarrowBackward0", "ContiguousBackward0",
}
# The op that computed the output -> what it does to the values.
_ACTIVATION_NODES = {
    "SoftmaxBackward0": "softmax", "LogSoftmaxBackward0": "log_softmax",
    "SigmoidBackward0": "sigmoid", "HardsigmoidBackward0": "sigmoid",
    "ReluBackward0": "clip", "ReluBackward1": "clip", "ThresholdBackward0": "clip",
    "ThresholdBackward1": "clip", "HardtanhBackward0": "clip", "HardtanhBackward1": "clip",
    "ClampBackward0": "clip", "ClampBackward1": "clip", "ClampMinBackward0": "clip",
    "DivBackward0": "divide",  # x / x.sum(): a softmax by hand when the rows then sum to 1
}
# The same read from the last module, when the output carries no autograd graph (every
# parameter frozen, a custom Function, torch.no_grad inside forward).
_ACTIVATION_MODULES = {
    nn.Softmax: "softmax", nn.Softmax2d: "softmax", nn.LogSoftmax: "log_softmax",
    nn.Sigmoid: "sigmoid", nn.Hardsigmoid: "sigmoid", nn.ReLU: "clip", nn.ReLU6: "clip",
    nn.Hardtanh: "clip", nn.Threshold: "clip",
}
_MAX_NODES = 8


@dataclass
class OutputOrigin:
    """What produced the main output tensor, read from the autograd graph and the modules."""

    nodes: tuple[str, ...] = ()  # autograd node names from the output back to the computing op
    final_op: str | None = None  # that op, e.g. "SigmoidBackward0"; None without a graph
    last_module: str | None = None  # the innermost module whose output forward returned
    last_module_type: str | None = None
    activation: str | None = None  # softmax | log_softmax | sigmoid | clip | divide | None
    source: str = "none"  # where `activation` was read: autograd | module | none


def output_origin(out: torch.Tensor | None, tracer: Tracer | None = None) -> OutputOrigin:
    origin = OutputOrigin()
    if out is None:
        return origin
    node, names = out.grad_fn, []
    while node is not None and len(names) < _MAX_NODES:
        name = type(node).__name__
        names.append(name)
        if name not in _PASSTHROUGH_NODES:
            origin.final_op = name
            break
        node = next((n for n, _ in node.next_functions if n is not None), None)
    origin.nodes = tuple(names)
    if tracer is not None and tracer.last is not None and tracer.last[1] is out:
        origin.last_module = tracer.last[0]
        module = tracer.model.get_submodule(tracer.last[0])
        origin.last_module_type = type(module).__name__
        module_activation = next((a for cls, a in _ACTIVATION_MODULES.items()
                                  if type(module) is cls), None)
    else:
        module_activation = None
    if origin.final_op is not None:
        origin.activation = _ACTIVATION_NODES.get(origin.final_op)
        origin.source = "autograd"
    elif module_activation is not None:
        origin.activation, origin.source = module_activation, "module"
    return origin


def custom_functions(loss: torch.Tensor) -> list[type]:
    """The torch.autograd.Function subclasses whose backward the loss's graph runs."""
    found: dict[type, None] = {}
    seen: set[int] = set()
    stack = [loss.grad_fn] if loss.grad_fn is not None else []
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        cls = getattr(node, "_forward_cls", None)
        if isinstance(node, torch.autograd.function.BackwardCFunction) and cls is not None:
            found.setdefault(cls, None)
        stack.extend(n for n, _ in node.next_functions if n is not None)
    return list(found)


# --- the loss ------------------------------------------------------------------------------

@dataclass
class LossInfo:
    kind: str  # ce | nll | bce_logits | bce | regression | custom | training_step
    name: str
    label_smoothing: float = 0.0
    ignore_index: int | None = None
    reduction: str = "mean"
    pos_weight: Any = None  # BCEWithLogitsLoss(pos_weight=...): scales the positives' terms
    weight: Any = None  # BCE's per-element rescaling weight (CE's class weights cancel at init)


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


@fact("loss_info")
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
                        reduction=getattr(fn, "reduction", "mean"),
                        pos_weight=getattr(fn, "pos_weight", None),
                        weight=getattr(fn, "weight", None))
    kind = _FUNCTIONAL.get(fn)
    if kind is not None:
        default_ignore = -100 if kind in ("ce", "nll") else None
        return LossInfo(kind, f"F.{fn.__name__}",
                        label_smoothing=float(keywords.get("label_smoothing", 0.0)),
                        ignore_index=keywords.get("ignore_index", default_ignore),
                        reduction=keywords.get("reduction", "mean"),
                        pos_weight=keywords.get("pos_weight"), weight=keywords.get("weight"))
    return LossInfo("custom", getattr(fn, "__name__", type(fn).__name__))


# --- what reaches the first convolution ------------------------------------------------------

@dataclass
class ConvProbe:
    module: str
    in_channels: int
    shape: tuple[int, ...]
    dtype: torch.dtype
    stats: dict[str, float] = field(default_factory=dict)
    reads_batch: bool = False  # its input is the batch's first tensor, values unchanged


class _Reached(Exception):
    pass


@fact("first_conv")
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
            given = first_tensor(ctx.spec.inputs)  # the user's batch: never modified in place
            same = (given is not None and given.shape == x.shape and given.dtype == x.dtype
                    and bool(torch.equal(given.to(x.device), x)))
            found.append(ConvProbe(names.get(id(module), "?"), module.in_channels,
                                   tuple(x.shape), x.dtype, input_stats(x), same))
        raise _Reached

    handles = [m.register_forward_pre_hook(hook) for m in model.modules()
               if isinstance(m, nn.modules.conv._ConvNd)]
    if not handles:
        return None
    inputs, targets = ctx.batch()
    try:
        with rng_guard(ctx.seed), torch.no_grad():
            if ctx.spec.training_step is not None:  # its own way in (SAM: model.preprocess)
                ctx.spec.training_step(model, (inputs, targets))
            else:
                call_model(model, inputs)
    except _Reached:
        pass
    except Exception:  # noqa: BLE001 - a broken forward is model.forward's finding
        pass
    finally:
        for h in handles:
            h.remove()
    return found[0] if found else None


# --- a traced train-mode forward -------------------------------------------------------------

@dataclass
class ModuleTrace:
    """What a hooked forward saw per module, in the order they finished."""

    order: list[str] = field(default_factory=list)
    outputs: dict[str, OutputStats] = field(default_factory=dict)
    error: str | None = None

    def ran(self, module: str) -> bool:
        return module in self.outputs

    def requires_grad(self, module: str) -> bool:
        return self.outputs[module].requires_grad

    def first_nonfinite(self) -> str | None:
        return next((m for m in self.order if self.outputs[m].nonfinite), None)

    def all_zero(self) -> list[str]:
        return [m for m in self.order if self.outputs[m].all_zero and m != "<root>"]


@fact("module_trace")
def module_trace(ctx) -> ModuleTrace:
    """One train-mode forward + loss on a copy, every module's outputs recorded: which modules
    ran, whether their outputs carry gradients, hold NaN/inf or are all zero."""
    trace = ModuleTrace()
    with rng_guard(ctx.seed):
        model = ctx.copy_model(train=True)
        tracer = Tracer(model, stats=True)
        try:
            x, y = ctx.batch()
            with tracer, torch.enable_grad():
                ctx.compute_loss(model, x, y)
        except Exception as exc:  # noqa: BLE001 - the base pass ran; a flaky rerun only blurs names
            trace.error = f"{type(exc).__name__}: {exc}"
    trace.order, trace.outputs = tracer.order, tracer.outputs
    return trace


# --- readings of the facts -------------------------------------------------------------------

def main_output(base: BasePass) -> torch.Tensor | None:
    """The tensor the loss reads: the output itself, or the first tensor of a tuple/dict."""
    return first_tensor(base.outputs) if base.outputs is not None else None


def targets_tensor(spec) -> torch.Tensor | None:
    t = spec.targets
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


def input_stats(x: torch.Tensor) -> dict[str, float]:
    xf = x.detach().float()
    finite = xf[torch.isfinite(xf)]
    if not finite.numel():
        return {}
    return {"mean": float(finite.mean()), "std": float(finite.std()) if finite.numel() > 1
            else 0.0, "min": float(finite.min()), "max": float(finite.max())}


# 8-bit pixels: non-negative, a maximum of at least RAW_PIXEL_MIN_MAX (depth in meters or a
# few-valued mask is not 8-bit pixels), a mean well above unit scale.
RAW_PIXEL_MIN_MAX = 50
RAW_PIXEL_MIN_MEAN = 2
# Values this far from unit scale (std or |mean|) are not normalized.
UNNORMALIZED_SCALE = 5


def pixel_scale(stats: dict[str, float]) -> str | None:
    """'raw' for 0-255 pixels, 'unnormalized' for values far from unit scale, else None."""
    if not stats:
        return None
    if stats["min"] >= 0 and RAW_PIXEL_MIN_MAX <= stats["max"] <= 255.5 \
            and stats["mean"] > RAW_PIXEL_MIN_MEAN:
        return "raw"
    if stats["std"] > UNNORMALIZED_SCALE or abs(stats["mean"]) > UNNORMALIZED_SCALE:
        return "unnormalized"
    return None


def fmt_stats(stats: dict[str, float]) -> str:
    return (f"mean {stats['mean']:.3g}, std {stats['std']:.3g}, range "
            f"[{stats['min']:.3g}, {stats['max']:.3g}]") if stats else "no finite values"


# A final ReLU (or clamp at 0) zeroes about half of the logits of an untrained head; with the
# structure saying "clip", this share of exact zeros and no negative value confirms it cuts at 0
# (a clamp(-20, 20) for stability leaves negative values and is not a clip at 0).
CLIPPED_ZERO_FRACTION = 0.2
# Softmax rows sum to 1 up to float32 rounding: measured |sum - 1| <= 2e-6 over 1000 classes.
PROBABILITY_SUM_ATOL = 1e-3


def rows_are_probabilities(out: torch.Tensor, dim: int = 1) -> bool:
    """Non-negative and summing to 1 along `dim`: softmax already applied."""
    if out.dim() <= dim:
        return False
    sums = out.float().sum(dim=dim)
    return bool((out >= 0).all()) and bool(torch.allclose(sums, torch.ones_like(sums),
                                                          atol=PROBABILITY_SUM_ATOL))


def relu_clipped_fraction(out: torch.Tensor) -> float | None:
    """Share of outputs that are exactly 0 when none is negative (logits cut by a final ReLU);
    None when some output is negative, so nothing clips them."""
    if float(out.min()) < 0:
        return None
    return float((out == 0).float().mean())


def probability_kind(origin: OutputOrigin | None, out: torch.Tensor, dim: int = 1) -> str | None:
    """'softmax' or 'sigmoid' when the op that produced `out` makes probabilities (autograd node
    or last module) and the values agree; None otherwise. A value range alone is never enough:
    a small-init single-logit head puts all its logits in (0, 1) by chance."""
    act = origin.activation if origin is not None else None
    if act in ("softmax", "divide"):
        return "softmax" if rows_are_probabilities(out, dim) else None
    if act == "sigmoid":
        return "sigmoid" if bool(((out >= 0) & (out <= 1)).all()) else None
    return None


def clipped_zero_fraction(origin: OutputOrigin | None, out: torch.Tensor) -> float | None:
    """Share of exact zeros when the op that produced `out` clips (ReLU, clamp, hardtanh) and
    the values confirm a cut at 0 (none negative, at least CLIPPED_ZERO_FRACTION zeros)."""
    if origin is None or origin.activation != "clip":
        return None
    zeros = relu_clipped_fraction(out)
    return zeros if zeros is not None and zeros >= CLIPPED_ZERO_FRACTION else None


# --- one optimizer step on a copy of the shared pass ------------------------------------------

@dataclass
class OneStep:
    """The base pass's copy (weights, BatchNorm statistics and gradients after its train-mode
    forward/backward), copied again and moved by one step of the user's optimizer, rebuilt."""

    model: nn.Module | None = None  # after the step
    before: dict[str, torch.Tensor] = field(default_factory=dict)  # every parameter, pre-step
    with_grad: set[str] = field(default_factory=set)  # non-zero finite gradient at the step
    optimizer: torch.optim.Optimizer | None = None
    error: str | None = None  # why no step was taken


@fact("one_step", needs=["base"])
def one_step(ctx) -> OneStep:
    """No extra forward/backward: the step reuses the base pass's gradients (only optimizers
    that need a closure, LBFGS and friends, run the model again)."""
    base = ctx.fact("base")
    result = OneStep()
    if not base.ok or base.model is None:
        result.error = "the shared forward/backward failed (see model.forward, model.gradients)"
        return result
    with rng_guard(ctx.seed):
        model = copy.deepcopy(base.model)
        try:
            opt = ctx.build_optimizer(model)
        except Exception as exc:  # noqa: BLE001 - a factory that breaks on the copy
            result.error = f"could not rebuild the optimizer on a copy: {type(exc).__name__}: {exc}"
            return result
        params = dict(model.named_parameters())
        for n, p in params.items():
            g = base.grads.get(n)
            p.grad = g.clone() if g is not None else None
        # the base copy's own parameters: it is never stepped, so no clone is needed
        result.before = {n: p.detach() for n, p in base.model.named_parameters()}
        result.with_grad = {n for n, p in params.items() if p.grad is not None
                            and bool(p.grad.any()) and bool(torch.isfinite(p.grad).all())}
        x, y = ctx.batch()

        def closure():
            opt.zero_grad()
            _, loss = ctx.compute_loss(model, x, y)
            loss.backward()
            return loss

        try:
            opt.step()
        except Exception:  # noqa: BLE001 - LBFGS and friends need a closure
            try:
                opt.step(closure)
            except Exception as exc:  # noqa: BLE001
                result.error = f"the optimizer step raised {type(exc).__name__}: {exc}"
                return result
    result.model, result.optimizer = model, opt
    return result


# --- the shared eval-mode forward --------------------------------------------------------------

@dataclass
class EvalPass:
    """One no-grad forward of the batch on an eval-mode copy, reseeded to ctx.seed, with the
    call spy (modules that normalize with batch statistics or drop out in eval mode)."""

    n: int | None = None  # batch size: the first axis of the first input tensor
    outputs: Any = None  # detached
    rows: list[torch.Tensor] = field(default_factory=list)  # float outputs with the batch first
    batch_stats: list[str] = field(default_factory=list)
    dropout: list[tuple[str, float]] = field(default_factory=list)
    error: str | None = None


def eval_forward_failed(error: str, spec) -> str:
    """Why an eval-mode check skips when model(inputs) raised: for a set-up driven by its own
    training_step, the forward was never meant to take the batch as given."""
    kind = error.split(":")[0]
    if getattr(spec, "training_step", None) is not None:
        return (f"model(inputs) raised {kind}: this set-up is driven by its training_step, and "
                "the eval-mode checks need a forward that takes the batch as given")
    return f"the eval-mode forward raised {kind} (see model.forward)"


@fact("eval_pass")
def eval_pass(ctx) -> EvalPass:
    from cvdoctor.model.perturb import batch_rows, traced_forward
    from cvdoctor.model.tensors import batch_size

    result = EvalPass()
    inputs, _ = ctx.batch()
    result.n = batch_size(inputs)
    try:
        model = ctx.copy_model(train=False)
        outputs, tracer = traced_forward(model, inputs, ctx.seed)
    except USER_ERRORS as exc:  # noqa: BLE001 - model.forward reports forward errors
        result.error = f"{type(exc).__name__}: {exc}"
        return result
    result.outputs = detach(outputs)
    result.batch_stats, result.dropout = list(tracer.batch_stats), list(tracer.dropout)
    if result.n is not None:
        result.rows = batch_rows(outputs, result.n)
    return result
