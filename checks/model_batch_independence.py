"""model.batch_independence: in eval mode, output i must not depend on input j != i.

Perturb one sample and look at the other rows of the output. Every forward is reseeded with the
same seed (dropout wired on in eval draws the same mask each time) and runs on an eval copy, so
BatchNorm uses running statistics and the difference is exactly zero on a healthy model; a rerun
of the unchanged batch gives the noise floor. Also home of the eval-forward tracer that
model.train_eval shares.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from cvdoctor.finding import Finding, failed, passed, skipped, warned
from cvdoctor.model.context import call_model, first_tensor, rng_guard
from cvdoctor.registry import register

from ._model_basics import quoted_names

TITLE = "Samples stay independent in eval mode"
RECIPES = ["batch-mixing", "eval-batch-dependent"]

# A mixed row changes by O(1); reductions that differ only in float rounding stay near 1e-7.
REL_TOL = 1e-4

_BATCH_NORM = {F.batch_norm}
_DROPOUT = {F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout,
            F.feature_alpha_dropout}


class _CallSpy(TorchFunctionMode):
    """Notes batch_norm/dropout calls that run in training mode, and which module made them."""

    def __init__(self, stack: list[str]):
        super().__init__()
        self.stack = stack
        self.batch_stats: list[str] = []
        self.dropout: list[tuple[str, float]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _BATCH_NORM or func in _DROPOUT:
            try:
                bound = inspect.signature(func).bind(*args, **kwargs)
                bound.apply_defaults()
                training = bool(bound.arguments.get("training"))
                p = float(bound.arguments.get("p", 0.0) or 0.0)
            except (TypeError, ValueError):
                training, p = False, 0.0
            where = self.stack[-1] if self.stack else "<root>"
            if training and func in _BATCH_NORM and where not in self.batch_stats:
                self.batch_stats.append(where)
            if training and func in _DROPOUT and p > 0 \
                    and where not in [d[0] for d in self.dropout]:
                self.dropout.append((where, p))
        return func(*args, **kwargs)


@dataclass
class ForwardTrace:
    outputs: Any = None
    batch_stats: list[str] = field(default_factory=list)  # modules normalizing with batch stats
    dropout: list[tuple[str, float]] = field(default_factory=list)  # modules dropping out
    order: list[str] = field(default_factory=list)
    io: dict[str, tuple[torch.Tensor | None, torch.Tensor | None]] = field(default_factory=dict)


def traced_forward(model: nn.Module, inputs: Any, seed: int, record_io: bool = False
                   ) -> ForwardTrace:
    """A no-grad forward reseeded to `seed`, with the call spy and (optionally) per-module
    first input/output tensors."""
    trace = ForwardTrace()
    stack: list[str] = []
    handles = []
    for name, module in model.named_modules():
        name = name or "<root>"

        def pre(_m, args, name=name):
            stack.append(name)

        def post(_m, args, output, name=name):
            if stack:
                stack.pop()
            if record_io and name not in trace.io:
                trace.order.append(name)
                x, y = first_tensor(args), first_tensor(output)
                trace.io[name] = (x.detach().clone() if x is not None else None,
                                  y.detach().clone() if y is not None else None)

        handles.append(module.register_forward_pre_hook(pre))
        handles.append(module.register_forward_hook(post))
    spy = _CallSpy(stack)
    try:
        with rng_guard(seed), torch.no_grad(), spy:
            trace.outputs = call_model(model, inputs)
    finally:
        for h in handles:
            h.remove()
    trace.batch_stats, trace.dropout = spy.batch_stats, spy.dropout
    return trace


def batch_size(inputs: Any) -> int | None:
    t = first_tensor(inputs)
    return int(t.shape[0]) if t is not None and t.dim() > 0 else None


def perturb_sample(inputs: Any, index: int, n: int, seed: int) -> Any:
    """A copy of `inputs` where only sample `index` of every batch tensor is changed."""
    gen = torch.Generator().manual_seed(seed)

    def change(t):
        if not isinstance(t, torch.Tensor) or t.dim() == 0 or t.shape[0] != n:
            return t
        t = t.clone()
        if t.is_floating_point():
            scale = float(t.float().std()) if t.numel() > 1 else 1.0
            noise = torch.randn(t[index].shape, generator=gen).to(t.device, t.dtype)
            t[index] = t[index] + (scale or 1.0) * noise
        else:
            t[index] = t[(index + 1) % n]
        return t

    if isinstance(inputs, dict):
        return {k: change(v) for k, v in inputs.items()}
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(change(v) for v in inputs)
    return change(inputs)


def batch_rows(outputs: Any, n: int) -> list[torch.Tensor]:
    """Output tensors that carry the batch on their first axis, as float."""
    out = []

    def walk(o):
        if isinstance(o, torch.Tensor):
            if o.dim() > 0 and o.shape[0] == n and (o.is_floating_point() or o.is_complex()):
                out.append(o.detach().float())
        elif isinstance(o, dict):
            for v in o.values():
                walk(v)
        elif isinstance(o, (tuple, list)):
            for v in o:
                walk(v)

    walk(outputs)
    return out


def row_change(a: list[torch.Tensor], b: list[torch.Tensor], rows) -> tuple[float, float]:
    """(largest absolute change over `rows`, largest magnitude there) across output tensors."""
    change, scale = 0.0, 0.0
    for x, y in zip(a, b):
        xs, ys = x[rows], y[rows]
        finite = torch.isfinite(xs) & torch.isfinite(ys)
        if finite.any():
            change = max(change, float((xs - ys).abs()[finite].max()))
            scale = max(scale, float(xs.abs()[finite].max()))
    return change, scale


@dataclass
class Dependence:
    """How much the other rows move when one sample changes."""

    index: int
    change: float
    scale: float
    noise: float
    self_change: float

    @property
    def mixed(self) -> bool:
        return self.change > max(REL_TOL * self.scale, 10 * self.noise, 1e-12)


def measure_dependence(model, inputs, n: int, index: int, seed: int, baseline=None,
                       noise: float = 0.0) -> Dependence:
    base = baseline if baseline is not None else batch_rows(
        traced_forward(model, inputs, seed).outputs, n)
    moved = batch_rows(traced_forward(model, perturb_sample(inputs, index, n, seed + 1 + index),
                                      seed).outputs, n)
    others = [i for i in range(n) if i != index]
    change, scale = row_change(base, moved, others)
    self_change, _ = row_change(base, moved, [index])
    return Dependence(index, change, scale, noise, self_change)


def first_mixing_module(model, inputs, n: int, index: int, seed: int) -> tuple[str | None, bool]:
    """(first module whose output rows != index move, whether its input rows already moved)."""
    a = traced_forward(model, inputs, seed, record_io=True)
    b = traced_forward(model, perturb_sample(inputs, index, n, seed + 1 + index), seed,
                       record_io=True)
    others = [i for i in range(n) if i != index]

    def moved(x, y):
        if x is None or y is None or x.shape != y.shape or x.dim() == 0 or x.shape[0] != n \
                or not (x.is_floating_point() or x.is_complex()):
            return False
        change, scale = row_change([x.float()], [y.float()], others)
        return change > max(REL_TOL * scale, 1e-12)

    # Hooks fire on exit, so a parent is recorded after its children: the first in `order`
    # is the innermost module where the mixing shows.
    for name in a.order:
        if name == "<root>" or name not in b.io:
            continue
        (xa, ya), (xb, yb) = a.io[name], b.io[name]
        if moved(ya, yb):
            return name, moved(xa, xb)
    return None, False


def _prepare(ctx):
    """An eval copy and the inputs, or a skip finding."""
    if ctx.spec.training_step is not None and ctx.spec.inputs is None:
        return None, None, skipped(TITLE, "no model inputs to perturb (training_step only)")
    inputs, _ = ctx.batch()
    n = batch_size(inputs)
    if n is None:
        return None, None, skipped(TITLE, "the inputs carry no tensor with a batch axis")
    if n < 2:
        return None, None, skipped(TITLE, "batch of 1: there is no other sample to mix with")
    model = ctx.copy_model(train=False)
    return model, inputs, None


@register("model.batch_independence", order=80, title=TITLE, recipes=RECIPES, needs=[])
def check(ctx) -> Finding:
    model, inputs, skip = _prepare(ctx)
    if skip:
        return skip
    n = batch_size(inputs)
    seed = ctx.seed
    try:
        first = traced_forward(model, inputs, seed)
    except Exception as exc:  # noqa: BLE001 - model.forward reports forward errors
        return skipped(TITLE, f"the eval-mode forward raised {type(exc).__name__} "
                       f"(see model.forward)", error=f"{type(exc).__name__}: {exc}")
    base = batch_rows(first.outputs, n)
    if not base:
        return skipped(TITLE, f"no floating-point output with the batch ({n}) on its first axis "
                       f"to compare")

    # Perturb the first sample; only if other rows move, measure the noise floor (a rerun of the
    # same batch) and confirm with the last sample: a real mix shows in both.
    noise = 0.0
    dep = measure_dependence(model, inputs, n, 0, seed, baseline=base)
    if dep.mixed:
        again = traced_forward(model, inputs, seed)
        noise, _ = row_change(base, batch_rows(again.outputs, n), list(range(n)))
        dep.noise = noise
    if dep.mixed:
        confirm = measure_dependence(model, inputs, n, n - 1, seed, baseline=base, noise=noise)
        if not confirm.mixed:
            return passed(TITLE, f"changing sample 0 moved other outputs by {dep.change:.2g} "
                          f"but changing sample {n - 1} did not: taken as numerical noise",
                          change=dep.change, noise=noise, unconfirmed=True)
    else:
        if dep.self_change == 0:
            return passed(TITLE, f"changing sample 0 leaves the other {n - 1} outputs exactly "
                          f"as they were (it does not change its own output either: the model "
                          f"may ignore its input)", change=dep.change, noise=noise)
        return passed(TITLE, f"changing sample 0 leaves the other {n - 1} outputs unchanged "
                      f"(max change {dep.change:.2g}, noise {noise:.2g})",
                      change=dep.change, noise=noise)

    module, input_mixed = first_mixing_module(model, inputs, n, 0, seed)
    rel = dep.change / max(dep.scale, 1e-12)
    evidence = dict(change=dep.change, relative_change=rel, noise=noise, first_module=module,
                    input_already_mixed=input_mixed, batch_stat_modules=first.batch_stats)
    measured = (f"changing only sample 0 moves the other outputs by up to {dep.change:.3g} "
                f"({rel:.0%} of their size)")
    if first.batch_stats and (module is None or _related(module, first.batch_stats)):
        return warned(
            TITLE, f"{measured}, through batch statistics in eval mode "
            f"({quoted_names(first.batch_stats)}); model.train_eval reports the cause",
            "Let BatchNorm use its running statistics in eval (no `training=True` in "
            "F.batch_norm, keep track_running_stats=True).", "eval-batch-dependent", **evidence)
    if module is None:
        where = "in the model's own forward code (a view/reshape/permute over the batch axis)"
    elif input_mixed:
        where = (f"samples are already mixed when they reach `{module}`: a view/reshape/permute "
                 f"over the batch axis in the forward code before it")
    else:
        where = f"`{module}` ({type(model.get_submodule(module)).__name__}) mixes them"
    return failed(
        TITLE, f"{measured}: {where}",
        "Flatten per sample: `x.flatten(1)` or `x.reshape(x.shape[0], -1)`, and permute only "
        "non-batch axes.", "batch-mixing", **evidence)


def _related(module: str, names: list[str]) -> bool:
    return any(module == m or module.startswith(m + ".") or m.startswith(module + ".")
               for m in names)
