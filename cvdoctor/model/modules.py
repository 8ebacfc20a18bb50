"""Which module holds which parameter, and module names collapsed to their highest common
ancestor: how gradient and optimizer findings name what is wrong."""
from __future__ import annotations

from typing import Callable

from torch import nn


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
