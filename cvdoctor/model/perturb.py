"""Eval-mode forwards that compare outputs: change one sample and watch the others, rerun with
another seed and watch for noise. Shared by the batch-independence and train/eval checks.

Every forward is reseeded (dropout wired on in eval draws the same mask each time) and runs on
an eval copy, so BatchNorm uses running statistics and the difference is exactly zero on a
healthy model.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from cvdoctor.model.context import call_model, rng_guard
from cvdoctor.model.tensors import iter_tensors, map_tensors
from cvdoctor.model.trace import ROOT, Tracer

# A mixed row changes by O(1); reductions that differ only in float rounding stay near 1e-7.
REL_TOL = 1e-4


def traced_forward(model, inputs: Any, seed: int, *, io: bool = False) -> tuple[Any, Tracer]:
    """A no-grad forward reseeded to `seed`, with the call spy (batch statistics and dropout in
    training mode) and, with `io`, each module's first input and output tensors."""
    tracer = Tracer(model, io=io, spy=True)
    with rng_guard(seed), torch.no_grad(), tracer:
        outputs = call_model(model, inputs)
    return outputs, tracer


def perturb_sample(inputs: Any, index: int, n: int, seed: int) -> Any:
    """A copy of `inputs` where only sample `index` of every batch tensor is changed."""
    gen = torch.Generator().manual_seed(seed)

    def change(t: torch.Tensor) -> torch.Tensor:
        if t.dim() == 0 or t.shape[0] != n:
            return t
        t = t.clone()
        if t.is_floating_point():
            scale = float(t.float().std()) if t.numel() > 1 else 1.0
            noise = torch.randn(t[index].shape, generator=gen).to(t.device, t.dtype)
            t[index] = t[index] + (scale or 1.0) * noise
        else:
            t[index] = t[(index + 1) % n]
        return t

    return map_tensors(inputs, change)


def batch_rows(outputs: Any, n: int) -> list[torch.Tensor]:
    """Output tensors that carry the batch on their first axis, as float."""
    return [o.detach().float() for o in iter_tensors(outputs)
            if o.dim() > 0 and o.shape[0] == n and (o.is_floating_point() or o.is_complex())]


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


def moved(change: float, scale: float, noise: float = 0.0) -> bool:
    """A change beyond float rounding (REL_TOL of the output's size) and the noise floor."""
    return change > max(REL_TOL * scale, 10 * noise, 1e-12)


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
        return moved(self.change, self.scale, self.noise)


def measure_dependence(model, inputs, n: int, index: int, seed: int, baseline=None,
                       noise: float = 0.0) -> Dependence:
    base = baseline if baseline is not None else batch_rows(
        traced_forward(model, inputs, seed)[0], n)
    changed = batch_rows(traced_forward(model, perturb_sample(inputs, index, n,
                                                              seed + 1 + index), seed)[0], n)
    others = [i for i in range(n) if i != index]
    change, scale = row_change(base, changed, others)
    self_change, _ = row_change(base, changed, [index])
    return Dependence(index, change, scale, noise, self_change)


def first_module_where(a: Tracer, b: Tracer, differs) -> tuple[str | None, bool]:
    """The first module (innermost first: hooks fire on exit, so children finish before their
    parent) whose output differs between two traced runs, and whether its input already did."""
    for name in a.order:
        if name == ROOT or name not in b.inputs_outputs:
            continue
        (xa, ya), (xb, yb) = a.inputs_outputs[name], b.inputs_outputs[name]
        if differs(ya, yb):
            return name, differs(xa, xb)
    return None, False


def first_mixing_module(model, inputs, n: int, index: int, seed: int) -> tuple[str | None, bool]:
    """(first module whose output rows != index move, whether its input rows already moved)."""
    _, a = traced_forward(model, inputs, seed, io=True)
    _, b = traced_forward(model, perturb_sample(inputs, index, n, seed + 1 + index), seed,
                          io=True)
    others = [i for i in range(n) if i != index]

    def rows_moved(x, y):
        if x is None or y is None or x.shape != y.shape or x.dim() == 0 or x.shape[0] != n \
                or not (x.is_floating_point() or x.is_complex()):
            return False
        return moved(*row_change([x.float()], [y.float()], others))

    return first_module_where(a, b, rows_moved)


def first_random_module(model, inputs, seed: int) -> str | None:
    """The first module that gives a different output for the same input under two seeds."""
    _, a = traced_forward(model, inputs, seed, io=True)
    _, b = traced_forward(model, inputs, seed + 1, io=True)

    def random_output(ya, yb):
        return ya is not None and yb is not None and ya.shape == yb.shape \
            and ya.is_floating_point() and not bool((ya == yb).all())

    for name in a.order:
        if name == ROOT or name not in b.inputs_outputs:
            continue
        (xa, ya), (xb, yb) = a.inputs_outputs[name], b.inputs_outputs[name]
        same_in = xa is not None and xb is not None and xa.shape == xb.shape and \
            bool((xa == xb).all())
        if same_in and random_output(ya, yb):
            return name
    return None
