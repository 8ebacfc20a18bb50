"""Digests of a model's state in one rank process, small enough to log and compare across ranks.

A tensor's digest is (number of elements, mean, root mean square, position-weighted mean) in
float64: equal tensors give equal digests, and two tensors that differ anywhere give different
ones except by coincidence. Ranks are compared with a relative tolerance
(`cvdoctor.ddp.compare.same`), since GPU kernels need not be bitwise reproducible.

What DDP keeps in step is the module's parameters (gradients averaged) and buffers (broadcast
from rank 0 at construction and before each forward). `outside_state` digests what it does not
see: tensors kept as plain attributes of a module, or in lists and dicts there, and simple
attribute values (numbers, strings) that may differ per rank.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from cvdoctor.model.tensors import iter_tensors

_STANDARD = frozenset({"_parameters", "_buffers", "_modules", "_non_persistent_buffers_set",
                       "training", "_forward_hooks", "_forward_pre_hooks", "_backward_hooks",
                       "_backward_pre_hooks", "_state_dict_hooks", "_load_state_dict_pre_hooks",
                       "_state_dict_pre_hooks", "_load_state_dict_post_hooks",
                       "_forward_hooks_with_kwargs", "_forward_hooks_always_called",
                       "_forward_pre_hooks_with_kwargs", "_is_full_backward_hook"})
_MAX_ITEMS = 64  # tensors per list/dict attribute


def digest(t: torch.Tensor) -> list[float | None]:
    """[numel, mean, rms, weighted mean] of `t` in float64 (None for a non-finite value)."""
    with torch.no_grad():
        x = t.detach()
        if x.is_complex():
            x = torch.view_as_real(x)
        x = x.reshape(-1).to(device="cpu", dtype=torch.float64)
        n = x.numel()
        if n == 0:
            return [0, 0.0, 0.0, 0.0]
        weights = (torch.arange(n, dtype=torch.float64) * 0.618033988749895) % 1.0
        values = [float(x.mean()), float(x.pow(2).mean().sqrt()), float((x * weights).mean())]
    return [n] + [v if math.isfinite(v) else None for v in values]


def named_digests(named: Any) -> dict[str, list]:
    return {name: digest(t) for name, t in named}


def outside_state(model: nn.Module) -> dict[str, Any]:
    """{"tensors": {path: digest}, "values": {path: repr}} for what a module keeps outside its
    parameters and buffers (plain tensor attributes, tensors in list/dict attributes, numbers
    and strings)."""
    tensors: dict[str, list] = {}
    values: dict[str, str] = {}
    for mod_name, module in model.named_modules():
        prefix = f"{mod_name}." if mod_name else ""
        for attr, value in vars(module).items():
            if attr in _STANDARD:
                continue
            path = prefix + attr
            if isinstance(value, torch.Tensor):
                tensors[path] = digest(value)
            elif isinstance(value, (list, tuple, dict)) and not isinstance(value, nn.Module):
                items = value.items() if isinstance(value, dict) else enumerate(value)
                for i, (key, item) in enumerate(items):
                    if i >= _MAX_ITEMS:
                        break
                    if isinstance(item, torch.Tensor):
                        tensors[f"{path}[{key!r}]"] = digest(item)
            elif isinstance(value, (int, float, str)) and not attr.startswith("__"):
                text = repr(value)
                values[path] = text if len(text) <= 80 else text[:77] + "..."
    return {"tensors": tensors, "values": values}


def output_digests(outputs: Any) -> list[list]:
    return [digest(t) for t in iter_tensors(outputs)]


def batch_digest(batch: Any) -> list[list]:
    return [digest(t) for t in iter_tensors(batch)]
