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


# --- does the output depend on the input? ---------------------------------------------------

def replace_inputs(inputs: Any, n: int, how: str) -> Any:
    """A copy of `inputs` with every batch tensor zeroed (`how="zero"`; integer tensors such as
    token ids are rolled instead, zero may not be a valid id) or rolled by one sample along the
    batch axis (`how="roll"`)."""
    def change(t: torch.Tensor) -> torch.Tensor:
        if t.dim() == 0 or t.shape[0] != n:
            return t
        if how == "zero" and (t.is_floating_point() or t.is_complex()):
            return torch.zeros_like(t)
        return t.roll(1, 0)

    return map_tensors(inputs, change)


def samples_differ(inputs: Any, n: int) -> bool:
    """Whether the batch holds at least two different samples."""
    for t in iter_tensors(inputs):
        if t.dim() > 0 and t.shape[0] == n and n > 1 and not bool((t == t[:1]).all()):
            return True
    return False


def rows_constant(rows: list[torch.Tensor]) -> bool:
    """Every sample got the same output (within REL_TOL of the outputs' size)."""
    if not rows or rows[0].shape[0] < 2:
        return False
    for r in rows:
        finite = torch.isfinite(r)
        if not bool(finite.all()):
            return False
        if moved(float((r - r[:1]).abs().max()), float(r.abs().max())):
            return False
    return True


@dataclass
class InputUse:
    """How the eval-mode outputs react to the inputs (all on one model)."""

    constant: bool  # every sample gets the same output although the samples differ
    zero_change: float  # largest output change when the inputs are zeroed
    roll_change: float | None  # ... when the samples are rolled along the batch (n >= 2)
    scale: float

    @property
    def ignores_input(self) -> bool:
        return not moved(self.zero_change, self.scale) and (
            self.roll_change is None or not moved(self.roll_change, self.scale))


def input_use(model, inputs: Any, n: int, seed: int, rows: list[torch.Tensor]) -> InputUse:
    """Forward zeroed inputs (and, only when that changes nothing, rolled ones) on `model`."""
    every = list(range(n))
    zero_rows = batch_rows(traced_forward(model, replace_inputs(inputs, n, "zero"), seed)[0], n)
    zero_change, scale = row_change(rows, zero_rows, every)
    roll_change = None
    if n >= 2 and not moved(zero_change, scale):
        rolled = batch_rows(traced_forward(model, replace_inputs(inputs, n, "roll"), seed)[0], n)
        roll_change, _ = row_change(rows, rolled, every)
    constant = samples_differ(inputs, n) and rows_constant(rows)
    return InputUse(constant, zero_change, roll_change, scale)


def dead_input_channels(model, inputs: Any, n: int, seed: int) -> list[tuple[int, list[int]]]:
    """(input tensor index, channels) of image-like inputs (N, C, ...) whose channels have no
    influence at all on the eval-mode outputs: the gradient of a fixed random projection of the
    outputs is exactly zero over every sample and position of that channel (and the channel is
    not all zeros in the batch). Summed over positions, so pixels a strided layer never covers
    at the border do not count; exact zeros are structure (a slice, a channel never read), not
    chance."""
    leaves: list[torch.Tensor] = []

    def leaf(t: torch.Tensor) -> torch.Tensor:
        if t.is_floating_point() and t.dim() >= 3 and t.shape[0] == n:
            t = t.detach().clone().requires_grad_(True)
            leaves.append(t)
            return t.clone()  # a non-leaf copy: models may modify their input in place
        return t

    grad_inputs = map_tensors(inputs, leaf)
    if not leaves:
        return []
    gen = torch.Generator().manual_seed(seed)
    with rng_guard(seed), torch.enable_grad():
        outputs = call_model(model, grad_inputs)
        rows = [o for o in iter_tensors(outputs) if o.dim() > 0 and o.shape[0] == n
                and o.is_floating_point() and o.requires_grad]
        if not rows:
            return []
        objective = sum((r * torch.randn(r.shape, generator=gen).to(r.device, r.dtype)).sum()
                        for r in rows)
        grads = torch.autograd.grad(objective, leaves, allow_unused=True)
    dead = []
    for i, (x, g) in enumerate(zip(leaves, grads)):
        dims = [d for d in range(x.dim()) if d != 1]
        influence = torch.zeros(x.shape[1]) if g is None else g.detach().abs().float().sum(dims)
        present = x.detach().abs().float().sum(dims) > 0
        channels = [c for c in range(x.shape[1]) if influence[c] == 0 and bool(present[c])]
        if channels and len(channels) < x.shape[1]:
            dead.append((i, channels))
    return dead


# BatchNorm running statistics count as untrained up to this many updates: at init (0) and after
# the one optimizer step a re-judgement takes (1), they are still ~(mean 0, variance 1).
UNTRAINED_BN_UPDATES = 1


def calibrate_batchnorm(model, inputs: Any, seed: int) -> list[str]:
    """Give `model`'s untrained BatchNorm layers the running statistics of `inputs`, in place;
    returns their names (empty: nothing to calibrate, `model` unchanged).

    In eval mode a fresh BatchNorm divides by a running variance of 1. Where the layers before
    it start small (torchvision's EfficientNet and GoogLeNet init), the activations shrink layer
    after layer and the eval output of a healthy, untrained network is a constant ~1e-13: a
    reading of the init, not of the model. One no-grad forward with only those layers in
    training mode and a cumulative average (momentum None) sets their statistics to the
    batch's, the way training would."""
    untrained = []
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and \
                module.track_running_stats and module.running_mean is not None:
            count = module.num_batches_tracked
            if count is not None and int(count) <= UNTRAINED_BN_UPDATES:
                untrained.append((name, module))
    if not untrained:
        return []
    was = model.training
    model.eval()
    momenta = []
    for _, module in untrained:
        momenta.append(module.momentum)
        module.reset_running_stats()
        module.momentum = None
        module.train()
    try:
        traced_forward(model, inputs, seed)
    finally:
        for (_, module), momentum in zip(untrained, momenta):
            module.momentum = momentum
        model.train(was)
    return [name or ROOT for name, _ in untrained]
