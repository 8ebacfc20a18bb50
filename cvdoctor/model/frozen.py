"""What the user says must stay frozen, and whether it does.

`frozen = ["backbone.*", "stem"]` in the model file, `--frozen backbone.*` on the command line or
`check_model(..., frozen=[...])` names parameters (and modules) by glob: `backbone.*` matches
every name under `backbone`, and a plain name matches itself and everything under it (torchtest2's
prefix convention). Parameters with requires_grad=False are frozen too, without being named.
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

import torch
from torch import nn

from cvdoctor.model.context import call_model, rng_guard


def parse_frozen(value: Any) -> tuple[str, ...] | None:
    """'backbone.*,stem' / ('backbone.*', 'stem') / ['backbone.*'] -> ('backbone.*', 'stem')."""
    if value is None:
        return None
    items = [value] if isinstance(value, str) else list(value)
    out: list[str] = []
    for item in items:
        out += [p for p in re.split(r"[,\s]+", str(item)) if p]
    return tuple(dict.fromkeys(out)) or None


def matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatchcase(name, p) or name == p or name.startswith(p.rstrip(".") + ".")
               for p in patterns)


@dataclass
class FrozenSet:
    declared: list[str] = field(default_factory=list)  # parameters named by the patterns
    no_grad: list[str] = field(default_factory=list)  # requires_grad=False (named or not)
    unmatched: list[str] = field(default_factory=list)  # patterns that match no name
    norms: list[str] = field(default_factory=list)  # BatchNorm modules under the patterns

    @property
    def all(self) -> list[str]:
        return sorted(set(self.declared) | set(self.no_grad))


def frozen_set(model: nn.Module, patterns: tuple[str, ...] | None) -> FrozenSet:
    patterns = patterns or ()
    params = [n for n, _ in model.named_parameters()]
    modules = [n for n, _ in model.named_modules() if n]
    out = FrozenSet()
    out.declared = [n for n in params if matches(n, patterns)]
    out.no_grad = [n for n, p in model.named_parameters() if not p.requires_grad]
    out.unmatched = [p for p in patterns if not any(matches(n, (p,)) for n in params + modules)]
    out.norms = [n for n, m in model.named_modules()
                 if n and isinstance(m, nn.modules.batchnorm._BatchNorm) and matches(n, patterns)]
    return out


@dataclass
class Drift:
    module: str
    buffer: str
    change: float  # largest absolute change of the running statistic


def norm_drift(ctx, names: list[str]) -> tuple[list[Drift], str]:
    """BatchNorm running statistics of `names` after one train-time forward of the batch on a
    copy, with each module in the mode the user's model has it (a root handed over in eval mode
    is put in train mode first, as a training loop's model.train() does). Returns the drifts and
    how the modes were taken."""
    user = ctx.spec.model
    model = copy.deepcopy(user).to(ctx.device)
    how = "modes as handed over"
    if not user.training:
        model.train(True)
        how = "after model.train() (the model was handed over in eval mode)"
    inputs, _ = ctx.batch()
    with rng_guard(ctx.seed), torch.no_grad():
        call_model(model, inputs)
    before = dict(user.named_buffers())
    drifts = []
    for name in names:
        module = model.get_submodule(name)
        for bname in ("running_mean", "running_var"):
            after = getattr(module, bname, None)
            was = before.get(f"{name}.{bname}")
            if isinstance(after, torch.Tensor) and isinstance(was, torch.Tensor):
                change = float((after.float() - was.to(after.device).float()).abs().max())
                if change > 0:
                    drifts.append(Drift(name, bname, change))
    return drifts, how


def moved_after_step(user: nn.Module, stepped: nn.Module, names: list[str]) -> list[str]:
    """Parameters of `names` that differ between the user's model and the stepped copy."""
    after = dict(stepped.named_parameters())
    return [n for n, p in user.named_parameters()
            if n in names and n in after and not torch.equal(p.detach().to(after[n].device),
                                                             after[n].detach())]
