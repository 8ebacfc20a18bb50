"""Check the backward of the custom torch.autograd.Function classes a model uses.

The shared pass lists the Function classes whose backward the loss runs (their autograd nodes).
Each is then called again, once, with the arguments it really gets inside the model: a forward
on a copy records the first call of each (by wrapping `apply` on the class for the length of that
forward, then restoring it). `torch.autograd.gradcheck` compares its backward with finite
differences on those arguments in float64, cut to the first samples of the batch, in fast mode
(one random direction: a few calls however large the tensors), and a mismatch counts only when a
second check on slightly moved inputs also fails (an input within eps of a kink, e.g. a custom
ReLU at 0, fails one check by chance, not two).
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import torch
from torch.autograd.gradcheck import GradcheckError

from cvdoctor.model.context import rng_guard
from cvdoctor.model.tensors import map_tensors

SAMPLES = 2  # tensors that carry the batch are cut to this many samples
MOVE = 1e-3  # the confirming check moves every input by this much (relative to its spread)


@dataclass
class FunctionCheck:
    name: str  # qualified name of the Function class
    status: str  # ok | mismatch | not-called | not-checked
    detail: str = ""
    inputs: list[tuple[int, ...]] = field(default_factory=list)  # shapes checked


def _qualname(cls: type) -> str:
    return cls.__qualname__


@contextmanager
def _recording(classes: list[type], calls: dict[type, tuple]) -> Iterator[None]:
    """Record the first (args, kwargs) each class's `apply` gets, for the length of the block."""
    saved = []
    for cls in classes:
        own = cls.__dict__.get("apply", None)
        original = cls.apply  # bound classmethod

        def wrapper(_cls, *args, __original=original, __cls=cls, **kwargs):
            if __cls not in calls:
                calls[__cls] = (map_tensors(args, lambda t: t.detach().clone()),
                                map_tensors(kwargs, lambda t: t.detach().clone()),
                                map_tensors(args, lambda t: t.requires_grad))
            return __original(*args, **kwargs)

        saved.append((cls, own))
        cls.apply = classmethod(wrapper)
    try:
        yield
    finally:
        for cls, own in saved:
            if own is None:
                del cls.apply
            else:
                cls.apply = own


def record_calls(ctx, classes: list[type]) -> dict[type, tuple]:
    """One train-mode forward + loss on a copy, recording the first call of each class."""
    calls: dict[type, tuple] = {}
    with rng_guard(ctx.seed):
        model = ctx.copy_model(train=True)
        x, y = ctx.batch()
        with _recording(classes, calls), torch.enable_grad():
            ctx.compute_loss(model, x, y)
    return calls


def _cut(t: torch.Tensor, n: int | None) -> torch.Tensor:
    if n is not None and t.dim() > 0 and t.shape[0] == n and n > SAMPLES:
        return t[:SAMPLES]
    return t


def check_function(cls: type, call: tuple, n: int | None, seed: int) -> FunctionCheck:
    args, kwargs, grad_flags = call
    name = _qualname(cls)
    positions = [i for i, a in enumerate(args) if isinstance(a, torch.Tensor)
                 and a.is_floating_point() and grad_flags[i]]
    if not positions:
        return FunctionCheck(name, "not-checked", "no floating-point argument needs a gradient")
    last_error = ""
    for cut in (n, None):  # first on a few samples; a function that needs the whole batch: all
        try:
            inputs = [_cut(args[i], cut).double() for i in positions]

            def fn(*xs, __cut=cut):
                full = list(map_tensors(args, lambda t: _cut(t, __cut)))
                for i, x in zip(positions, xs):
                    full[i] = x
                full = [a.double() if isinstance(a, torch.Tensor) and a.is_floating_point()
                        and i not in positions else a for i, a in enumerate(full)]
                return cls.apply(*full, **kwargs)

            shapes = [tuple(x.shape) for x in inputs]
            _outputs_in_float64(fn, inputs)
            first = _gradcheck(fn, inputs)
            if first is None:
                return FunctionCheck(name, "ok", inputs=shapes)
            gen = torch.Generator().manual_seed(seed)
            moved = [x + MOVE * (float(x.std()) if x.numel() > 1 else 1.0)
                     * torch.randn(x.shape, generator=gen, dtype=x.dtype) for x in inputs]
            second = _gradcheck(fn, moved)
            if second is None:
                return FunctionCheck(name, "ok", "one of two checks failed near a kink; taken as "
                                     "chance", inputs=shapes)
            return FunctionCheck(name, "mismatch", first, inputs=shapes)
        except _NotCheckable as exc:
            last_error = str(exc)
            continue
    return FunctionCheck(name, "not-checked", last_error)


class _NotCheckable(Exception):
    pass


def _outputs_in_float64(fn, inputs) -> None:
    """Finite differences in float32 are too coarse to judge a backward: a Function that casts
    to float32 inside cannot be checked this way."""
    try:
        with torch.no_grad():
            out = fn(*inputs)
    except Exception as exc:  # noqa: BLE001
        raise _NotCheckable(f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}") from None
    outs = [out] if isinstance(out, torch.Tensor) else \
        [o for o in out if isinstance(o, torch.Tensor)]
    low = [o.dtype for o in outs if o.is_floating_point() and o.dtype != torch.float64]
    if low:
        raise _NotCheckable(f"it returns {str(low[0]).replace('torch.', '')} for float64 inputs")


def _gradcheck(fn, inputs) -> str | None:
    """None when backward matches finite differences, else the first line of gradcheck's error."""
    xs = tuple(x.detach().clone().requires_grad_(True) for x in inputs)
    try:
        torch.autograd.gradcheck(fn, xs, fast_mode=True, raise_exception=True)
    except GradcheckError as exc:
        text = " ".join(str(exc).split())
        return text.split(" The above quantities")[0][:300]
    except Exception as exc:  # noqa: BLE001 - float64 unsupported, shape needs the whole batch
        raise _NotCheckable(f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}") from None
    return None


def check_functions(ctx, classes: list[type], n: int | None) -> list[FunctionCheck]:
    calls = record_calls(ctx, classes)
    out = []
    for cls in classes:
        if cls not in calls:
            out.append(FunctionCheck(_qualname(cls), "not-called",
                                     "not called again in a second forward"))
            continue
        with rng_guard(ctx.seed):
            out.append(check_function(cls, calls[cls], n, ctx.seed))
    return out
