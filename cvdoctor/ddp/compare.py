"""Comparing digests (see `cvdoctor.ddp.state`) across ranks; standard library only."""
from __future__ import annotations

from typing import Any


def same(a: list | None, b: list | None, rtol: float = 1e-5) -> bool:
    """Whether two digests describe the same tensor, up to `rtol` of its magnitude (GPU kernels
    need not be bitwise reproducible; on CPU equal tensors give equal digests)."""
    if a is None or b is None:
        return a is b
    if len(a) != len(b) or a[0] != b[0]:
        return False
    scale = max(abs(a[2] or 0.0), abs(b[2] or 0.0), 1e-12)
    for x, y in zip(a[1:], b[1:]):
        if x is None or y is None:
            if (x is None) != (y is None):
                return False
            continue
        if abs(x - y) > rtol * scale + 1e-12:
            return False
    return True


def relative_difference(a: list | None, b: list | None) -> float | None:
    """How far apart two digests are, relative to the tensor's magnitude (for messages)."""
    if not a or not b or a[0] != b[0]:
        return None
    scale = max(abs(a[2] or 0.0), abs(b[2] or 0.0), 1e-12)
    diffs = [abs(x - y) for x, y in zip(a[1:], b[1:]) if x is not None and y is not None]
    return max(diffs) / scale if diffs else None


def differing(mine: dict[str, Any], theirs: dict[str, Any], rtol: float = 1e-5) -> list[str]:
    """Names whose digests differ between two {name: digest} maps (or exist in only one)."""
    names = list(dict.fromkeys([*mine, *theirs]))
    return [n for n in names if n not in mine or n not in theirs
            or not same(mine[n], theirs[n], rtol)]
