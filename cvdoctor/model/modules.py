"""Which module holds which parameter, and module names collapsed to their highest common
ancestor: how gradient and optimizer findings name what is wrong."""
from __future__ import annotations

from typing import Callable

from torch import nn

from cvdoctor.model.trace import ROOT


def param_owners(model: nn.Module) -> dict[str, str]:
    """Parameter name -> name of the module that holds it directly ("" for the root)."""
    owners = {}
    for mname, module in model.named_modules():
        for pname, _ in module.named_parameters(recurse=False):
            full = f"{mname}.{pname}" if mname else pname
            owners.setdefault(full, mname)
    return owners


def collapse_modules(names: set[str], covered: Callable[[str], bool]) -> list[str]:
    """Replace module names by their highest ancestor for which `covered(ancestor)` holds."""
    out = set()
    for name in names:
        best = name
        parts = name.split(".")
        for i in range(len(parts) - 1, 0, -1):
            ancestor = ".".join(parts[:i])
            if covered(ancestor):
                best = ancestor
        out.add(best)
    return sorted(n for n in out
                  if not any(n != o and n.startswith(o + ".") for o in out))


def all_trainable_in(model: nn.Module, prefix: str, names: set[str]) -> bool:
    """Every trainable parameter under module `prefix` is among `names` (and there is one)."""
    ps = [f"{prefix}.{n}" for n, p in model.get_submodule(prefix).named_parameters()
          if p.requires_grad]
    return bool(ps) and all(p in names for p in ps)


def no_gradient(grad) -> bool:
    """A parameter's gradient after backward is missing or exactly zero everywhere."""
    return grad is None or not bool(grad.any())


def held_by_optimizer(model: nn.Module, optimizer) -> set[str] | None:
    """Names of `model`'s parameters that `optimizer` holds (by identity); None without one."""
    if optimizer is None:
        return None
    held = {id(p) for g in optimizer.param_groups for p in g["params"]}
    return {n for n, p in model.named_parameters() if id(p) in held}


def run_before_all(trace_order: list[str], owners: set[str], others: set[str]) -> bool:
    """Every module in `owners` that ran finished (first) before any module in `others` did:
    they feed the others, nothing of theirs runs after. False when either side never ran."""
    pos: dict[str, int] = {}
    for i, m in enumerate(trace_order):
        pos.setdefault(m, i)

    def ran_as(module: str) -> int | None:
        """When `module` finished, or its nearest ancestor that ran (a parameter read as
        `embedding.weight` belongs to a module that is never called)."""
        parts = module.split(".") if module else []
        for i in range(len(parts), -1, -1):
            name = ".".join(parts[:i]) or ROOT
            if name in pos:
                return pos[name]
        return None

    mine = [t for t in map(ran_as, owners) if t is not None]
    theirs = [t for t in map(ran_as, others) if t is not None]
    return bool(mine) and bool(theirs) and max(mine) < min(theirs)


def module_names(model: nn.Module, names: set[str]) -> list[str]:
    """Parameter `names` as the highest modules whose trainable parameters they all are, plus
    any parameters held by the root itself: how findings name a set of parameters."""
    owners = param_owners(model)
    modules = collapse_modules({owners[n] for n in names if owners.get(n)},
                               lambda prefix: all_trainable_in(model, prefix, names))
    return modules + sorted(n for n in names if not owners.get(n))
