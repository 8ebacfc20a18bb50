"""Check the backward of the custom torch.autograd.Function classes a model uses.

The shared pass lists the Function classes whose backward the loss runs (their autograd nodes).
Each is then called again with the arguments it really gets inside the model: a forward on a copy
records the first call of each (by wrapping `apply` on the class for the length of that forward,
then restoring it).

The backward is compared with finite differences of the forward the way the fast mode of
torch.autograd.gradcheck does, but without ever building a Jacobian (gradcheck builds two N x N
ones for its error message: 23 GB for a 32 x 32 activation): in float64, along random unit
directions v of an input and u of an output,

    numeric  = u . (f(x + eps v) - f(x - eps v)) / (2 eps)
    analytic = v . (J^T u)          (one backward with grad_output u)

so memory and time grow linearly with the activation, which is cut to the first samples of the
batch (the first sample cropped to 32 x 32 when that is still large; the whole batch when the
Function needs it) and capped. Every floating-point argument the model differentiates is checked,
with the model's requires_grad pattern (what ctx.needs_input_grad says); other arguments (integer
tensors, frozen weights, numbers) are passed as they came; outputs are taken one at a time. Each
call is seeded the same, so a forward that draws random numbers (stochastic rounding) is the same
function every time.

The verdict for one Function:
- ok: every (output, input) pair agrees. When some disagree at the recorded inputs they are
  checked again on inputs moved a little (a correct custom ReLU fed exact zeros sits on its kink)
  and agreeing there is ok.
- surrogate: an input that disagrees is one the forward is flat in: moving one of its values
  leaves every output unchanged, or rescales them all by one factor (round, sign, floor,
  quantizers and binarizers with a scale). Its backward is a surrogate gradient by design (a
  straight-through estimator), and so are the gradients it gives its other inputs (PACT's clip
  value): none of them can be compared.
- scaled: the backward is one constant c times the forward's derivative in every direction and
  that output is the input passed through unchanged: gradient reversal (DANN, c < 0), gradient
  scaling (fairseq's GradMultiply) or blocking (c = 0). A wrong constant in such a layer cannot
  be told from a chosen one; a constant factor off in any other forward (x ** 2 without its 2) is
  a mismatch.
- mismatch: anything else, with the numbers.
- not-checked: the forward fails in float64 or returns float32 for float64, raises on inputs
  moved by eps, draws different numbers for the same seed, returns non-finite values, or the
  inputs are too large or the forward too slow for the bounds below.
"""
from __future__ import annotations

import math
import random
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch

from cvdoctor.model.context import rng_guard
from cvdoctor.model.tensors import iter_tensors, map_tensors

SAMPLES = 2  # tensors that carry the batch are cut to this many samples
CROP = 32  # ... or to one sample cropped to CROP x CROP on its last two axes when still too large
MAX_VALUES = 2_000_000  # float64 values in the checked inputs, or in the outputs (16 MB a copy)
DIRECTIONS = 4  # random (u, v) pairs per input
EPS = 1e-6  # central-difference step along a unit direction (gradcheck's default)
RTOL = 1e-3  # directional derivatives agree within this, relative to the larger
NOISE = 1e-7  # float64 rounding in the differences, relative to the largest |output| or |input|
PROBES = 16  # single values moved to tell a flat (piecewise constant) forward
MOVE = 1e-3  # the confirming check moves every input by this much (relative to its spread)
TIME_LIMIT = 20.0  # seconds for one Function


@dataclass
class FunctionCheck:
    name: str  # qualified name of the Function class
    status: str  # ok | surrogate | scaled | mismatch | not-called | not-checked
    detail: str = ""
    inputs: list[tuple[int, ...]] = field(default_factory=list)  # shapes checked
    scale: float | None = None  # status "scaled": backward = scale x the forward's derivative
    worst: dict[str, Any] = field(default_factory=dict)  # status "mismatch": the numbers


def _qualname(cls: type) -> str:
    return cls.__qualname__


@contextmanager
def _recording(classes: list[type], calls: dict[type, tuple],
               outputs: dict[type, list]) -> Iterator[None]:
    """Record the first (args, kwargs) each class's `apply` gets, and the tensors it returned,
    for the length of the block."""
    saved = []
    for cls in classes:
        own = cls.__dict__.get("apply", None)
        original = cls.apply  # bound classmethod

        def wrapper(_cls, *args, __original=original, __cls=cls, **kwargs):
            first = __cls not in calls
            if first:
                calls[__cls] = (map_tensors(args, lambda t: t.detach().clone()),
                                map_tensors(kwargs, lambda t: t.detach().clone()),
                                map_tensors(args, lambda t: t.requires_grad))
            result = __original(*args, **kwargs)
            if first:
                outputs[__cls] = list(iter_tensors(result))
            return result

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


def _reached(loss: torch.Tensor, outputs: list[torch.Tensor]) -> frozenset[int] | None:
    """Which of a call's outputs (positions in `outputs`) the loss's graph uses; None when that
    cannot be told. A backward that ignores the gradient of an output the loss never reaches
    (statistics returned for logging) is harmless."""
    nodes = {id(t.grad_fn) for t in outputs if t.grad_fn is not None}
    if not nodes or not isinstance(loss, torch.Tensor) or loss.grad_fn is None:
        return None
    used: set[tuple[int, int]] = set()
    if id(loss.grad_fn) in nodes:
        used.add((id(loss.grad_fn), loss.output_nr))
    seen: set[int] = set()
    stack = [loss.grad_fn]
    while stack:
        node = stack.pop()
        if id(node) in seen or id(node) in nodes:
            continue
        seen.add(id(node))
        for child, nr in node.next_functions:
            if child is None:
                continue
            if id(child) in nodes:
                used.add((id(child), nr))
            stack.append(child)
    reached = frozenset(k for k, t in enumerate(outputs)
                        if t.grad_fn is not None and (id(t.grad_fn), t.output_nr) in used)
    return reached or None  # only a later call reaches the loss: check every output of this one


def record_calls(ctx, classes: list[type]) -> dict[type, tuple]:
    """One train-mode forward + loss on a copy, recording the first call of each class:
    (args, kwargs, which args required grad, which outputs the loss reaches or None)."""
    calls: dict[type, tuple] = {}
    outputs: dict[type, list] = {}
    with rng_guard(ctx.seed):
        model = ctx.copy_model(train=True)
        x, y = ctx.batch()
        with _recording(classes, calls, outputs), torch.enable_grad():
            _, loss = ctx.compute_loss(model, x, y)
        return {cls: (*call, _reached(loss, outputs.get(cls, [])))
                for cls, call in calls.items()}


class _NotCheckable(Exception):
    """The Function cannot be judged this way: said, never a failure."""


class _Unusable(Exception):
    """The Function does not run on this cut of its arguments: try the next."""


class _Raised(Exception):
    """The forward raised, or returned non-finite values, on moved inputs."""


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"


def _fmt(shape) -> str:
    return " x ".join(str(s) for s in shape) if len(shape) else "scalar"


# --- which part of the arguments ----------------------------------------------------------------

def _cut(n: int | None, k: int) -> Callable[[torch.Tensor], torch.Tensor]:
    def cut(t: torch.Tensor) -> torch.Tensor:
        return t[:k] if n is not None and t.dim() > 0 and t.shape[0] == n else t
    return cut


def _cropped(n: int | None) -> Callable[[torch.Tensor], torch.Tensor]:
    first = _cut(n, 1)

    def crop(t: torch.Tensor) -> torch.Tensor:
        t = first(t)
        return t[..., :CROP, :CROP] if t.dim() >= 3 else t
    return crop


def _slicings(n: int | None) -> list[tuple[str, Callable]]:
    out = []
    if n is not None and n > SAMPLES:
        out.append((f"the first {SAMPLES} samples", _cut(n, SAMPLES)))
    if n is not None and n > 1:
        out.append(("the first sample", _cut(n, 1)))
    out.append(("the whole batch", lambda t: t))
    return out


# --- calling the Function -----------------------------------------------------------------------

class _Calls:
    """The Function on float64 copies of (a cut of) its recorded arguments; the differentiable
    ones are handed in per call. Every call gets fresh copies (a forward may write into its
    inputs) and the same seed (a forward may draw random numbers)."""

    def __init__(self, cls: type, args: tuple, kwargs: dict, positions: list[int],
                 shrink: Callable, seed: int, deadline: float,
                 reached: frozenset[int] | None = None):
        def prepare(t: torch.Tensor) -> torch.Tensor:
            t = shrink(t)
            return t.double() if t.is_floating_point() else t.clone()

        self.cls, self.positions, self.seed, self.deadline = cls, positions, seed, deadline
        self.args = [prepare(a) if isinstance(a, torch.Tensor) else a for a in args]
        self.kwargs = map_tensors(kwargs, prepare)
        self.point = {i: self.args[i] for i in positions}
        self.reached = reached  # the outputs the model's loss uses (None: all)

    def __call__(self, point: dict[int, torch.Tensor], grad: bool = False) -> list:
        """The floating-point outputs the model's loss uses, in order (None for the others)."""
        if time.monotonic() > self.deadline:
            raise _NotCheckable(f"stopped after {TIME_LIMIT:g} s (the time one Function gets)")
        args = [(point[i] if i in point else a).clone() if isinstance(a, torch.Tensor) else a
                for i, a in enumerate(self.args)]
        kwargs = map_tensors(self.kwargs, lambda t: t.clone())
        torch.manual_seed(self.seed)
        random.seed(self.seed)
        with torch.set_grad_enabled(grad):
            out = self.cls.apply(*args, **kwargs)
        return [t if t.is_floating_point() and (self.reached is None or k in self.reached)
                else None for k, t in enumerate(iter_tensors(out))]

    def moved(self, point: dict[int, torch.Tensor]) -> list:
        """A call on moved inputs: what goes wrong there is _Raised, said as such."""
        try:
            outs = self(point)
        except _NotCheckable:
            raise
        except Exception as exc:  # noqa: BLE001 - the user's forward
            raise _Raised(f"its forward raised on inputs moved by {EPS:g}: {_error(exc)}") \
                from None
        if any(o is not None and not bool(torch.isfinite(o).all()) for o in outs):
            raise _Raised(f"its forward returns non-finite values on inputs moved by {EPS:g}")
        return outs


def _values(ts) -> int:
    return sum(t.numel() for t in ts if t is not None)


def _start(cls, args, kwargs, positions, n, seed, deadline, reached) -> tuple[_Calls, list]:
    """The first cut of the arguments the Function runs on in float64 with finite outputs,
    within MAX_VALUES."""
    errors: list[str] = []
    too_large = ""
    candidates = _slicings(n)

    def smaller():  # the whole batch is larger still: the first sample, cropped, instead
        nonlocal candidates
        if not any(label == "the cropped first sample" for label, _ in candidates):
            candidates = [c for c in candidates if c[0] != "the whole batch"] + [
                ("the cropped first sample", _cropped(n))]

    while candidates:
        label, shrink = candidates.pop(0)
        size = sum(shrink(args[i]).numel() for i in positions)
        if size > MAX_VALUES:
            too_large = too_large or f"its inputs hold {size:,} values on {label}"
            if label != "the cropped first sample":
                smaller()
            continue
        calls = _Calls(cls, args, kwargs, positions, shrink, seed, deadline, reached)
        try:
            outs = calls(dict(calls.point))
        except _NotCheckable:
            raise
        except Exception as exc:  # noqa: BLE001 - the user's forward: float64, a cut batch
            errors.append(_error(exc))
            continue
        low = [o.dtype for o in outs if o is not None and o.dtype != torch.float64]
        if low:
            raise _NotCheckable(f"it returns {str(low[0]).replace('torch.', '')} for float64 "
                                "inputs: finite differences in lower precision are too coarse "
                                "to judge a backward")
        if not any(o is not None for o in outs):
            raise _NotCheckable("it returns no floating-point tensor")
        if _values(outs) > MAX_VALUES:
            too_large = too_large or f"its outputs hold {_values(outs):,} values on {label}"
            if label != "the cropped first sample":
                smaller()
            continue
        if any(o is not None and not bool(torch.isfinite(o).all()) for o in outs):
            errors.append(f"its forward returns non-finite values on {label}")
            continue
        again = calls(dict(calls.point))
        if any(o is not None and not torch.allclose(o, p, rtol=1e-12, atol=0.0)
               for o, p in zip(outs, again)):
            raise _NotCheckable("its forward returns different values for the same input with "
                                "the same seed")
        return calls, outs
    if errors:
        raise _NotCheckable(_why_it_does_not_run(cls, args, kwargs, seed, errors[-1]))
    raise _NotCheckable(f"{too_large}, over the {MAX_VALUES:,} this check handles")


def _why_it_does_not_run(cls, args, kwargs, seed, error: str) -> str:
    if error.startswith("its forward returns non-finite"):
        return error
    try:  # as the model called it: does it fail only in float64?
        torch.manual_seed(seed)
        with torch.no_grad():
            cls.apply(*map_tensors(args, lambda t: t.clone()),
                      **map_tensors(kwargs, lambda t: t.clone()))
    except Exception:  # noqa: BLE001 - the user's forward
        return f"its forward raised on its recorded inputs: {error}"
    return f"its forward fails in float64: {error}"


# --- directional derivatives ----------------------------------------------------------------

@dataclass
class _Pair:
    """Directional derivatives of one output with respect to one input along DIRECTIONS random
    directions: finite differences and the backward's."""

    output: int
    input: int
    numeric: list[float] = field(default_factory=list)
    analytic: list[float] = field(default_factory=list)
    floor: float = 0.0  # what float64 rounding alone makes of a difference

    def norms(self) -> tuple[float, float, float]:
        n, a = self.numeric, self.analytic
        return (math.hypot(*n), math.hypot(*a), math.hypot(*(x - y for x, y in zip(a, n))))

    def agree(self) -> bool:
        numeric, analytic, diff = self.norms()
        return diff <= self.floor + RTOL * max(numeric, analytic)

    def numeric_zero(self) -> bool:
        return self.norms()[0] <= self.floor

    def relative(self) -> float:
        numeric, analytic, diff = self.norms()
        return diff / max(numeric, analytic, 1e-300)

    def scale(self) -> float | None:
        """c when the backward is c times the forward's derivative in every direction."""
        numeric, analytic, _ = self.norms()
        if numeric <= self.floor:
            return None
        c = sum(a * n for a, n in zip(self.analytic, self.numeric)) / numeric ** 2
        rest = math.hypot(*(a - c * n for a, n in zip(self.analytic, self.numeric)))
        if rest > self.floor + RTOL * max(analytic, abs(c) * numeric):
            return None
        c = float(f"{c:.6g}")
        return 0.0 if abs(c) <= RTOL else c

    def worst_direction(self) -> tuple[float, float]:
        k = max(range(len(self.numeric)), key=lambda j: abs(self.analytic[j] - self.numeric[j]))
        return self.numeric[k], self.analytic[k]


def _unit(like: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    r = torch.randn(like.shape, generator=gen, dtype=torch.float64)
    return (r / r.norm().clamp_min(1e-300)).to(like.device)


def _biggest(t: torch.Tensor) -> float:
    return float(t.abs().max()) if t.numel() else 0.0


def _directional(calls: _Calls, point: dict[int, torch.Tensor], outs: list,
                 gen: torch.Generator) -> list[_Pair]:
    pairs: dict[tuple[int, int], _Pair] = {}
    for _ in range(DIRECTIONS):
        leaves = {i: x.detach().clone().requires_grad_(True) for i, x in point.items()}
        try:
            with torch.enable_grad():
                ys = calls({i: x.clone() for i, x in leaves.items()}, grad=True)
        except _NotCheckable:
            raise
        except Exception as exc:  # noqa: BLE001 - it ran without grad: the user's forward
            raise _NotCheckable(f"its forward raised with gradients on: {_error(exc)}") from None
        live = [(k, y) for k, y in enumerate(ys) if y is not None and y.requires_grad]
        if not live:
            raise _NotCheckable("none of the outputs the loss uses carries a gradient")
        us = {k: _unit(y, gen) for k, y in live}
        vs = {i: _unit(x, gen) for i, x in point.items()}
        for k, y in live:
            try:
                grads = torch.autograd.grad(y, [leaves[i] for i in point], us[k],
                                            retain_graph=True, allow_unused=True)
            except Exception as exc:  # noqa: BLE001 - the user's backward
                raise _NotCheckable(f"its backward raised in float64: {_error(exc)}") from None
            for i, g in zip(point, grads):
                pair = pairs.setdefault((k, i), _Pair(k, i, floor=NOISE * math.sqrt(DIRECTIONS)
                                                      * (_biggest(outs[k]) + _biggest(point[i]))))
                pair.analytic.append(0.0 if g is None else float(torch.dot(
                    g.double().reshape(-1), vs[i].reshape(-1))))
            del grads
        del ys, leaves, live
        for i, x in point.items():
            plus = calls.moved({**point, i: torch.add(x, vs[i], alpha=EPS)})
            minus = calls.moved({**point, i: torch.add(x, vs[i], alpha=-EPS)})
            for k, u in us.items():
                if plus[k].shape != outs[k].shape or minus[k].shape != outs[k].shape:
                    raise _NotCheckable("the shape of its output changes when its input moves "
                                        f"by {EPS:g}")
                difference = (plus[k] - minus[k]).reshape(-1)
                pairs[(k, i)].numeric.append(float(torch.dot(u.reshape(-1), difference))
                                             / (2 * EPS))
            del plus, minus
    return list(pairs.values())


def _flat(calls: _Calls, point: dict[int, torch.Tensor], i: int, gen: torch.Generator) -> bool:
    """Moving any one value of input i leaves every output unchanged or rescales each as a whole:
    a piecewise constant forward (round, sign, floor), or one times a scale (a quantizer whose
    scale is the tensor's largest value, a binarizer times its mean magnitude)."""
    x = point[i]
    if x.numel() == 0:
        return False
    flat = x.detach().reshape(-1)
    for j in torch.randint(flat.numel(), (PROBES,), generator=gen).tolist():
        h = EPS * max(1.0, abs(float(flat[j])))
        moved = []
        for step in (h, -h):
            y = flat.clone()
            y[j] += step
            moved.append(calls.moved({**point, i: y.reshape(x.shape)}))
        if not all(_rescaled(a, b) for a, b in zip(*moved) if a is not None):
            return False
    return True


def _rescaled(a: torch.Tensor, b: torch.Tensor) -> bool:
    """a is b times one number (1 when nothing moved)."""
    if a.shape != b.shape:
        return False
    if torch.equal(a, b):
        return True
    bb = float((b * b).sum())
    if bb == 0.0:
        return False
    c = float((a * b).sum()) / bb
    return float((a - c * b).norm()) <= 1e-12 * math.sqrt(bb)


def _passes_through(y: torch.Tensor, x: torch.Tensor) -> bool:
    return y.numel() == x.numel() and torch.equal(y.reshape(-1), x.reshape(-1))


def _moved(point: dict[int, torch.Tensor], gen: torch.Generator) -> dict[int, torch.Tensor]:
    out = {}
    for i, x in point.items():
        spread = float(x.std()) if x.numel() > 1 else 0.0
        spread = spread if spread > 0 else max(1.0, _biggest(x))
        out[i] = x + MOVE * spread * torch.randn(x.shape, generator=gen,
                                                 dtype=x.dtype).to(x.device)
    return out


# --- the verdict ----------------------------------------------------------------------------

def _judge(name: str, calls: _Calls, outs: list, shapes: dict[int, tuple],
           gen: torch.Generator) -> FunctionCheck:
    shape_list = list(shapes.values())
    point = dict(calls.point)
    try:
        pairs = _directional(calls, point, outs, gen)
    except _Raised as exc:
        raise _NotCheckable(str(exc)) from None
    if all(p.agree() for p in pairs):
        return FunctionCheck(name, "ok", inputs=shape_list)
    try:  # the recorded inputs may sit on a kink (a custom ReLU fed exact zeros): move them
        moved = _moved(point, gen)
        moved_outs = calls.moved(moved)
        moved_pairs = _directional(calls, moved, moved_outs, gen)
    except _Raised:
        moved_pairs = None
    if moved_pairs is not None:
        if all(p.agree() for p in moved_pairs):
            return FunctionCheck(name, "ok", f"agrees on inputs moved by {MOVE:g} of their "
                                 "spread (the recorded ones sit on a kink)", inputs=shape_list)
        point, outs, pairs = moved, moved_outs, moved_pairs
    wrong = [p for p in pairs if not p.agree()]
    try:
        for i in dict.fromkeys(p.input for p in wrong):
            if all(p.numeric_zero() for p in wrong if p.input == i) or _flat(calls, point, i,
                                                                              gen):
                return FunctionCheck(
                    name, "surrogate", f"its forward is flat in input {i} (piecewise constant: "
                    "round, sign, floor, a quantizer) and its backward passes a surrogate "
                    "gradient instead (straight-through estimator)", inputs=shape_list)
    except _Raised:
        pass  # a quantizer's forward does not raise on a moved value: judged as it stands
    scaled = []
    mismatched = []
    for p in wrong:
        c = p.scale()
        if c is not None and _passes_through(outs[p.output], point[p.input]):
            scaled.append((p, c))
        else:
            mismatched.append((p, c))
    if mismatched:
        p, c = max(mismatched, key=lambda pc: pc[0].relative())
        numeric, analytic = p.worst_direction()
        where = (f"Jacobian mismatch for output {p.output} with respect to input {p.input} "
                 f"({_fmt(shapes[p.input])})")
        if c == 0.0:
            what = (f"no gradient of output {p.output} reaches input {p.input} through its "
                    "backward, although the forward makes one depend on the other")
        elif c is not None:
            what = (f"its backward is {c:g} × the derivative of its forward in every direction "
                    "checked (a constant factor missing or extra, such as the 2 of x ** 2; only "
                    "a Function that passes its input through unchanged scales gradients by "
                    "design)")
        else:
            what = "its backward is not the derivative of its forward"
        detail = (f"{where}: {what}; largest relative difference {p.relative():.3g} over "
                  f"{DIRECTIONS} random directions (along one: finite differences "
                  f"{numeric:.6g}, backward {analytic:.6g})")
        return FunctionCheck(name, "mismatch", detail, inputs=shape_list, worst={
            "output": p.output, "input": p.input, "relative_difference": p.relative(),
            "numeric": numeric, "analytic": analytic, "factor": c})
    p, c = scaled[0]
    return FunctionCheck(name, "scaled", f"output {p.output} is input {p.input} passed through; "
                         f"its gradient is scaled by {c:g}", inputs=shape_list, scale=c)


def check_function(cls: type, call: tuple, n: int | None, seed: int) -> FunctionCheck:
    args, kwargs, grad_flags = call[:3]
    reached = call[3] if len(call) > 3 else None
    name = _qualname(cls)
    positions = [i for i, a in enumerate(args) if isinstance(a, torch.Tensor)
                 and a.is_floating_point() and grad_flags[i] and a.numel() > 0]
    if not positions:
        return FunctionCheck(name, "not-checked", "no floating-point argument needs a gradient")
    deadline = time.monotonic() + TIME_LIMIT
    gen = torch.Generator().manual_seed(seed)
    shapes: dict[int, tuple] = {}
    try:
        started = time.monotonic()
        calls, outs = _start(cls, args, kwargs, positions, n, seed, deadline, reached)
        shapes = {i: tuple(calls.point[i].shape) for i in positions}
        one = (time.monotonic() - started) / 2  # two forwards so far
        needed = 2 * DIRECTIONS * (1 + 2 * len(positions))
        if one * needed > TIME_LIMIT:
            raise _NotCheckable(f"one forward takes {one:.2g} s and the check needs about "
                                f"{needed} (over the {TIME_LIMIT:g} s one Function gets)")
        return _judge(name, calls, outs, shapes, gen)
    except _NotCheckable as exc:
        return FunctionCheck(name, "not-checked", str(exc), inputs=list(shapes.values()))


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
