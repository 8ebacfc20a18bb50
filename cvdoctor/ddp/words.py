"""Wording shared by the model.ddp* checks."""
from __future__ import annotations

from typing import Any, Iterable

from cvdoctor.text import quoted_names


def ranks(numbers: Iterable[int]) -> str:
    """'rank 1', 'ranks 1 and 2', 'ranks 1, 2 and 3'."""
    items = sorted(set(numbers))
    if len(items) == 1:
        return f"rank {items[0]}"
    return "ranks " + ", ".join(str(i) for i in items[:-1]) + f" and {items[-1]}"


def how_it_ran(run: dict[str, Any]) -> str:
    """'2 ranks, gloo on CPU' / '4 ranks, NCCL, one GPU each'."""
    device = {"cpu": "on CPU", "cuda": "one GPU each",
              "cuda-shared": "all on cuda:0"}.get(run.get("device"), run.get("device"))
    backend = {"nccl": "NCCL", "gloo": "gloo"}.get(run.get("backend"), run.get("backend"))
    n = run.get("world_size")
    return f"{n} rank{'s' if n != 1 else ''}, {backend} {device}"


def not_run(ddp: dict[str, Any]) -> str | None:
    """Why there is nothing to judge (the DDP run did not happen), or None."""
    if ddp.get("ran"):
        return None
    return ddp.get("reason") or "the DDP run did not happen"


def modules(params: Iterable[str]) -> list[str]:
    """The modules owning these parameters, in order, once each ('' is the model itself)."""
    out = []
    for p in params:
        owner = p.rsplit(".", 1)[0] if "." in p else "(the model itself)"
        if owner not in out:
            out.append(owner)
    return out


def names(items: Iterable[str], limit: int = 3) -> str:
    return quoted_names(list(items), limit)
