"""Broken (and matching healthy) set-ups for the checks the closest peer has: the output depends
on the input, custom autograd Functions, frozen parameters. Each is one change away from the
healthy SmallCNN of modelzoo."""
from __future__ import annotations

import torch
from torch import nn

from modelzoo import SmallCNN


# --- the output depends on the input ---------------------------------------------------------

class CachedInput(SmallCNN):
    """forward() reads a tensor stored at construction instead of its argument."""

    def __init__(self):
        super().__init__()
        self.register_buffer("example", torch.randn(1, 3, 32, 32))

    def forward(self, x):
        return super().forward(self.example.expand_as(x))


class FirstChannelOnly(SmallCNN):
    """A wrong slice: the model meant RGB and reads one channel of the NCHW batch."""

    def __init__(self):
        super().__init__(in_channels=1)

    def forward(self, x):
        return super().forward(x[:, :1])


class DeadReLUs(SmallCNN):
    """A large negative BatchNorm bias: every ReLU outputs 0 for every sample."""

    def __init__(self):
        super().__init__()
        with torch.no_grad():
            for m in self.features:
                if isinstance(m, nn.BatchNorm2d):
                    m.bias.fill_(-100.0)


class BatchMeanBroadcast(SmallCNN):
    """Every sample gets the prediction for the batch mean (depends on the input, not per
    sample)."""

    def forward(self, x):
        out = super().forward(x.mean(0, keepdim=True))
        return out.expand(x.shape[0], -1)


def zero_init_head(model: SmallCNN) -> SmallCNN:
    """Healthy: torchvision's ViT starts its head at zero; outputs are constant at init only."""
    nn.init.zeros_(model.head.weight)
    nn.init.zeros_(model.head.bias)
    return model


# --- custom autograd Functions ----------------------------------------------------------------

class Square(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        return 2 * grad_output * x


class SquareWrongBackward(torch.autograd.Function):
    """The derivative of x**2 without its factor 2."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        return grad_output * x


class ClampedReLU(torch.autograd.Function):
    """A correct custom ReLU: a kink at 0 (finite differences near it fail by chance)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        return grad_output * (x > 0).to(grad_output.dtype)


class ScaleBy(torch.autograd.Function):
    """Two tensor inputs and a non-tensor one: gradients for both tensors, None for the float."""

    @staticmethod
    def forward(ctx, x, w, eps):
        ctx.save_for_backward(x, w)
        return x * w + eps

    @staticmethod
    def backward(ctx, grad_output):
        x, w = ctx.saved_tensors
        return grad_output * w, (grad_output * x).sum(0), None


class WithFunction(SmallCNN):
    """SmallCNN with a custom Function between the features and the head."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn
        self.scale = nn.Parameter(torch.ones(32))

    def forward(self, x):
        f = torch.flatten(self.features(x), 1)
        if self.fn is ScaleBy:
            f = ScaleBy.apply(f, self.scale, 1e-3)
        else:
            f = self.fn.apply(f)
        return self.head(self.dropout(f))


# --- frozen parameters ------------------------------------------------------------------------

def frozen_features(model: SmallCNN, bn_eval: bool = True) -> SmallCNN:
    """Healthy transfer learning: features frozen (requires_grad False) and, with `bn_eval`,
    their BatchNorm layers in eval mode inside a training model."""
    model.features.requires_grad_(False)
    model.train()
    if bn_eval:
        model.features.eval()
    return model


def attribute_not_freeze(model: SmallCNN) -> SmallCNN:
    """`module.requires_grad = False` sets an attribute and freezes nothing."""
    model.features.requires_grad = False
    return model


def trainable_head_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)


class InPlaceClamp(SmallCNN):
    """forward() clamps a frozen weight in place: it moves although requires_grad is False."""

    def forward(self, x):
        with torch.no_grad():
            self.features[0].weight.clamp_(-0.1, 0.1)
        return super().forward(x)
