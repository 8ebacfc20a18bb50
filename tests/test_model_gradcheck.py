"""model.gradcheck on the custom autograd Functions real models use: backward surrogates by design
(straight-through estimators, gradient reversal and scaling) pass and say so, wrong backwards fail
with their numbers, and a large activation costs bounded memory (the check never builds a
Jacobian). The basics (a model without Functions, Square, ClampedReLU, ScaleBy, a user-defined
apply) live in test_model_peer_checks.py."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

import cvdoctor
from broken_models_peer import SquareWrongBackward
from modelzoo import image_batch

pytestmark = pytest.mark.usefixtures("one_thread")
GC = "model.gradcheck"
SEEDS = (0, 1, 2)


def gradcheck(model, batch, seed=0, **kw):
    torch.manual_seed(seed)
    (f,) = cvdoctor.check_model(model, batch, select=[GC], **kw).get_all(GC)
    return f


# --- Functions --------------------------------------------------------------------------------
class StraightThrough(torch.autograd.Function):
    """The straight-through estimator's backward: the gradient passes unchanged (by design)."""

    @staticmethod
    def backward(ctx, g):
        return g


class RoundSTE(StraightThrough):
    """Quantization-aware training: round forward, identity backward (by design)."""

    @staticmethod
    def forward(ctx, x):
        return torch.round(x * 16) / 16


class StochasticRoundSTE(StraightThrough):
    """Stochastic rounding: random inside the forward, identity backward."""

    @staticmethod
    def forward(ctx, x):
        return torch.floor(x * 16 + torch.rand_like(x)) / 16


class MaxScaleQuant(StraightThrough):
    """8-bit fake quantization with a scale taken from the tensor itself (its largest value moves
    every output), identity backward."""

    @staticmethod
    def forward(ctx, x):
        scale = x.abs().max() / 127
        return torch.round(x / scale) * scale


class BinarizeMeanScale(torch.autograd.Function):
    """XNOR-Net style binarization: sign times the mean magnitude, clipped identity backward."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.sign(x) * x.abs().mean()

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * (x.abs() <= 1).to(g.dtype)


class PACT(torch.autograd.Function):
    """PACT: clip at a learned alpha and quantize; straight-through for x, the clip's gradient
    for alpha (the quantization term of alpha's derivative left out by design)."""

    @staticmethod
    def forward(ctx, x, alpha):
        ctx.save_for_backward(x, alpha)
        step = alpha / 15
        return torch.round(torch.minimum(x.clamp(min=0), alpha) / step) * step

    @staticmethod
    def backward(ctx, g):
        x, alpha = ctx.saved_tensors
        inside = ((x >= 0) & (x < alpha)).to(g.dtype)
        return g * inside, (g * (x >= alpha).to(g.dtype)).sum().reshape(alpha.shape)


class GradReverse(torch.autograd.Function):
    """DANN gradient reversal: identity forward, -lambda * grad backward (by design)."""

    @staticmethod
    def forward(ctx, x, lambd):
        ctx.lambd = lambd
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return -ctx.lambd * g, None


class GradMultiply(torch.autograd.Function):
    """fairseq's GradMultiply: identity forward, gradient scaled on purpose."""

    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return g * ctx.scale, None


class Swish(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * torch.sigmoid(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(x)
        return g * (s * (1 + x * (1 - s)))


class SwishForgetsATerm(torch.autograd.Function):
    """The derivative of x * sigmoid(x) without its x * s * (1 - s) term."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * torch.sigmoid(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * torch.sigmoid(x)


class InplaceLeakyReLU(torch.autograd.Function):
    """A memory-saving activation: writes into its input (ctx.mark_dirty)."""

    @staticmethod
    def forward(ctx, x):
        x.mul_(torch.where(x > 0, 1.0, 0.1).to(x.dtype))
        ctx.mark_dirty(x)
        ctx.save_for_backward(x)
        return x

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * torch.where(y > 0, 1.0, 0.1).to(g.dtype)


class GatherScale(torch.autograd.Function):
    """x * w[idx]: a frozen float weight, a long index tensor (never differentiated) and two
    outputs; computes only the gradients ctx.needs_input_grad asks for (w's would need x saved)."""

    @staticmethod
    def forward(ctx, x, w, idx):
        ctx.save_for_backward(w, idx)
        y = x * w[idx].view(1, -1)
        return y, y.pow(2).mean(1)

    @staticmethod
    def backward(ctx, g, g_sq):
        w, idx = ctx.saved_tensors
        assert not ctx.needs_input_grad[1], "w is frozen in the model: no gradient asked for"
        y_over_x = w[idx].view(1, -1)
        return g * y_over_x, None, None  # the second output's gradient is ignored: a bug


class GatherScaleRight(GatherScale):
    @staticmethod
    def forward(ctx, x, w, idx):
        ctx.save_for_backward(x, w, idx)
        y = x * w[idx].view(1, -1)
        return y, y.pow(2).mean(1)

    @staticmethod
    def backward(ctx, g, g_sq):
        x, w, idx = ctx.saved_tensors
        assert not ctx.needs_input_grad[1]
        wi = w[idx].view(1, -1)
        y = x * wi
        return (g + g_sq.unsqueeze(1) * 2 * y / y.shape[1]) * wi, None, None


class Float32Only(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        if x.dtype != torch.float32:
            raise TypeError(f"expected float32, got {x.dtype}")
        return x * 2

    @staticmethod
    def backward(ctx, g):
        return g * 2


class OnTheGrid(torch.autograd.Function):
    """Accepts only values on a 1/16 grid (the output of a quantizer before it): any move off the
    grid raises."""

    @staticmethod
    def forward(ctx, x):
        if not torch.equal(x * 16, torch.round(x * 16)):
            raise ValueError("input is not on the 1/16 grid")
        return x * 3

    @staticmethod
    def backward(ctx, g):
        return g * 2  # wrong, but the forward cannot be moved to show it


# --- models -----------------------------------------------------------------------------------
class ConvWith(nn.Module):
    """conv-bn-relu, a Function on the full-resolution activation, conv-bn-relu, pool, head (the
    audit's quantization-aware model)."""

    def __init__(self, fn, *extra):
        super().__init__()
        self.fn, self.extra = fn, extra
        self.a = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.b = nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, padding=1),
                               nn.BatchNorm2d(32), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))

    def forward(self, x):
        h = self.b(self.fn.apply(self.a(x), *self.extra))
        return self.head(self.fn.apply(h, *self.extra))


class InplaceFirst(ConvWith):
    def __init__(self):
        super().__init__(InplaceLeakyReLU)
        self.a = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16))

    def forward(self, x):
        return self.head(self.b(InplaceLeakyReLU.apply(self.a(x))))


class WithPACT(ConvWith):
    def __init__(self):
        super().__init__(PACT)
        self.alpha = nn.Parameter(torch.tensor(1.5))

    def forward(self, x):
        return self.head(self.b(PACT.apply(self.a(x), self.alpha)))


class DANN(nn.Module):
    """Domain-adversarial training: a domain head behind a gradient reversal layer."""

    def __init__(self, lambd=0.5, layer=GradReverse):
        super().__init__()
        self.lambd, self.layer = lambd, layer
        self.features = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.cls = nn.Linear(32, 10)
        self.dom = nn.Sequential(nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 2))

    def forward(self, x):
        f = self.features(x)
        return self.cls(f), self.dom(self.layer.apply(f, self.lambd))


def dann_loss(out, y):
    logits, dom = out
    domain = torch.arange(y.shape[0]) % 2
    return nn.functional.cross_entropy(logits, y) + nn.functional.cross_entropy(dom, domain)


class Gathered(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.w = nn.Parameter(torch.rand(12) + 0.5, requires_grad=False)
        self.register_buffer("idx", torch.tensor([3, 1, 4, 1, 5, 9, 2, 6]))
        self.head = nn.Linear(9, 10)

    def forward(self, x):
        y, sq = self.fn.apply(self.features(x), self.w, self.idx)
        return self.head(torch.cat([y, sq.unsqueeze(1)], 1))


class GatheredFirstOnly(Gathered):
    """Uses only the first output: the second (returned for logging, say) never gets a gradient
    in training, so a backward ignoring it is harmless."""

    def __init__(self, fn):
        super().__init__(fn)
        self.head = nn.Linear(8, 10)

    def forward(self, x):
        y, _sq = self.fn.apply(self.features(x), self.w, self.idx)
        return self.head(y)


class Drifting(torch.autograd.Function):
    """A forward that changes from call to call whatever the seed (a counter inside)."""

    calls = 0

    @staticmethod
    def forward(ctx, x):
        Drifting.calls += 1
        return x * (1 + 0.01 * Drifting.calls)

    @staticmethod
    def backward(ctx, g):
        return g * (1 + 0.01 * Drifting.calls)


# --- surrogate gradients by design pass -------------------------------------------------------
@pytest.mark.parametrize("fn", [RoundSTE, StochasticRoundSTE, MaxScaleQuant, BinarizeMeanScale])
@pytest.mark.parametrize("size", [8, 16])
def test_straight_through_estimators_pass(fn, size):
    for seed in SEEDS:
        torch.manual_seed(seed)
        f = gradcheck(ConvWith(fn), image_batch(16, size=size, seed=seed), seed)
        assert f.status == "pass", f"seed {seed}: {f.message}"
        assert "straight-through estimator" in f.message, f.message
        assert f.evidence["functions"][fn.__qualname__]["status"] == "surrogate"


def test_pact_learned_clip_passes_as_a_straight_through_quantizer():
    for seed in SEEDS:
        torch.manual_seed(seed)
        f = gradcheck(WithPACT(), image_batch(16, size=16, seed=seed), seed)
        assert f.status == "pass", f"seed {seed}: {f.message}"
        assert "straight-through estimator" in f.message


@pytest.mark.parametrize("lambd", [0.5, 1.0, 0.0])  # a DANN schedule starts at lambda = 0
def test_gradient_reversal_passes_and_names_its_factor(lambd):
    for seed in SEEDS:
        torch.manual_seed(seed)
        f = gradcheck(DANN(lambd), image_batch(16, seed=seed), seed, loss_fn=dann_loss)
        assert f.status == "pass", f"seed {seed}: {f.message}"
        c = -lambd or 0.0
        entry = f.evidence["functions"]["GradReverse"]
        assert entry["status"] == "scaled" and entry["scale"] == pytest.approx(c, abs=1e-6)
        assert f"{c:g} × its forward's derivative" in f.message, f.message
        assert ("gradient reversal" if lambd else "gradient blocked") in f.message


def test_gradient_scaling_passes():
    f = gradcheck(DANN(0.1, GradMultiply), image_batch(16), loss_fn=dann_loss)
    assert f.status == "pass", f.message
    assert "0.1 × its forward's derivative" in f.message and "gradient scaling" in f.message


# --- healthy Functions pass -------------------------------------------------------------------
@pytest.mark.parametrize("size", [8, 32])
def test_correct_swish_passes(size):
    for seed in SEEDS:
        torch.manual_seed(seed)
        f = gradcheck(ConvWith(Swish), image_batch(16, size=size, seed=seed), seed)
        assert f.status == "pass", f"seed {seed}: {f.message}"
        assert "(`Swish`) matches finite differences" in f.message


def test_a_function_writing_into_its_input_passes():
    for seed in SEEDS:
        torch.manual_seed(seed)
        f = gradcheck(InplaceFirst(), image_batch(16, size=16, seed=seed), seed)
        assert f.status == "pass", f"seed {seed}: {f.message}"
        assert "(`InplaceLeakyReLU`) matches finite differences" in f.message


def test_frozen_weight_long_index_and_two_outputs_pass():
    f = gradcheck(Gathered(GatherScaleRight), image_batch(16))
    assert f.status == "pass", f.message
    # only the input the model differentiates is checked: the frozen weight and the index not
    assert f.evidence["functions"]["GatherScaleRight"]["input_shapes"] == [[2, 8]]


def test_an_output_the_loss_never_uses_is_not_checked():
    f = gradcheck(GatheredFirstOnly(GatherScale), image_batch(16))
    assert f.status == "pass", f.message


# --- wrong backwards fail ---------------------------------------------------------------------
@pytest.mark.parametrize("size", [8, 16])
def test_swish_missing_a_term_fails(size):
    for seed in SEEDS:
        torch.manual_seed(seed)
        f = gradcheck(ConvWith(SwishForgetsATerm), image_batch(16, size=size, seed=seed), seed)
        assert (f.status, f.recipe) == ("fail", "custom-function-gradient"), f.message
        assert "(`SwishForgetsATerm`) returns gradients that disagree" in f.message
        assert "output 0 with respect to input 0" in f.message
        assert "largest relative difference" in f.message
        worst = f.evidence["functions"]["SwishForgetsATerm"]["worst"]
        assert worst["input"] == 0 and worst["relative_difference"] > 0.01


def test_a_missing_constant_factor_fails_when_the_forward_is_not_a_pass_through():
    f = gradcheck(ConvWith(SquareWrongBackward), image_batch(16, size=8))
    assert (f.status, f.recipe) == ("fail", "custom-function-gradient"), f.message
    assert "0.5 × the derivative of its forward" in f.message, f.message


def test_an_ignored_second_output_fails():
    f = gradcheck(Gathered(GatherScale), image_batch(16))
    assert (f.status, f.recipe) == ("fail", "custom-function-gradient"), f.message
    assert "output 1 with respect to input 0" in f.message, f.message


# --- Functions that cannot be checked are named, not failed -----------------------------------
def test_forward_failing_in_float64_is_skipped_and_said():
    f = gradcheck(ConvWith(Float32Only), image_batch(16, size=8))
    assert f.status == "skip", f.message
    assert "`Float32Only` (its forward fails in float64: TypeError: expected float32" in f.message


class OnGridModel(ConvWith):
    def __init__(self):
        super().__init__(OnTheGrid)

    def forward(self, x):
        h = self.a(x)
        q = h + (torch.round(h * 16) / 16 - h).detach()
        return self.head(self.b(OnTheGrid.apply(q)))


def test_forward_raising_on_moved_inputs_is_skipped_and_said():
    f = gradcheck(OnGridModel(), image_batch(16, size=8))
    assert f.status == "skip", f.message
    assert "its forward raised on inputs moved by 1e-06" in f.message
    assert "ValueError: input is not on the 1/16 grid" in f.message


def test_a_forward_that_drifts_under_a_fixed_seed_is_skipped_and_said():
    f = gradcheck(ConvWith(Drifting), image_batch(16, size=8))
    assert f.status == "skip", f.message
    assert "`Drifting` (its forward returns different values for the same input" in f.message


def test_large_inputs_are_cropped_to_one_sample_and_then_refused(monkeypatch):
    from cvdoctor.model import gradcheck as module

    monkeypatch.setattr(module, "MAX_VALUES", 20_000)  # 1 x 16 x 64 x 64 is 65,536 values
    f = gradcheck(ConvWith(SwishForgetsATerm), image_batch(8, size=64))
    assert f.status == "fail", f.message
    assert f.evidence["functions"]["SwishForgetsATerm"]["input_shapes"] == [[1, 16, 32, 32]]
    monkeypatch.setattr(module, "MAX_VALUES", 1_000)
    f = gradcheck(ConvWith(SwishForgetsATerm), image_batch(8, size=64))
    assert f.status == "skip", f.message
    assert "its inputs hold 131,072 values on the first 2 samples, over the 1,000" in f.message


def test_a_function_over_its_time_is_skipped_and_said(monkeypatch):
    from cvdoctor.model import gradcheck as module

    monkeypatch.setattr(module, "TIME_LIMIT", 0.0)
    f = gradcheck(ConvWith(SwishForgetsATerm), image_batch(16, size=8))
    assert f.status == "skip", f.message
    assert "(the time one Function gets)" in f.message


# --- bounded memory ---------------------------------------------------------------------------
MEMORY_SCRIPT = textwrap.dedent("""
    import json, resource, sys, time
    import torch
    sys.path[:0] = {paths!r}
    import cvdoctor
    from test_model_gradcheck import ConvWith, SwishForgetsATerm
    from modelzoo import image_batch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model, batch = ConvWith(SwishForgetsATerm), image_batch(16, size=32)
    cvdoctor.check_model(model, batch, select=["model.forward"])  # warm up everything else
    # never let a regression take the machine: 3 GB of address space above what is mapped now
    mapped = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    soft = mapped + 3_000_000_000
    resource.setrlimit(resource.RLIMIT_AS,
                       (soft if hard == resource.RLIM_INFINITY else min(soft, hard), hard))
    before, start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.monotonic()
    (f,) = cvdoctor.check_model(model, batch, select=["model.gradcheck"]).get_all(
        "model.gradcheck")
    print(json.dumps({{"status": f.status, "message": f.message,
                      "seconds": time.monotonic() - start, "rss_before_mb": before / 1024,
                      "rss_growth_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                                        - before) / 1024}}))
""")


def test_a_32px_activation_with_a_wrong_backward_fails_in_bounded_memory():
    """16 channels of 32 x 32 on 2 samples are 32,768 values: a float64 Jacobian of them is
    8.6 GB, what the check built before (and a MemoryError it swallowed passed the Function)."""
    here = Path(__file__).parent
    script = MEMORY_SCRIPT.format(paths=[str(here)])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["status"] == "fail", result["message"]
    assert "SwishForgetsATerm" in result["message"]
    assert result["rss_growth_mb"] < 300, result
