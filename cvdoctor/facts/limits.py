"""Provider "limits": the locked-memory (RLIMIT_MEMLOCK) and stack (RLIMIT_STACK) limits this
process got, and the RDMA devices that make the locked-memory limit matter outside containers.

`docker run --ulimit memlock=-1 --ulimit stack=67108864` (NVIDIA's recommended flags for its
PyTorch containers) sets exactly these two; Docker's defaults are a few MiB of locked memory and
an 8 MiB stack. InfiniBand and RoCE adapters show up under /sys/class/infiniband.
"""
from __future__ import annotations

import os
import platform
from pathlib import Path

from cvdoctor.factgraph import fact

# name in the report -> resource constant
RLIMITS = {"memlock": "RLIMIT_MEMLOCK", "stack": "RLIMIT_STACK"}


def read_limits() -> dict:
    """{"memlock": {"soft": bytes|None, "hard": bytes|None}, "stack": {...}}; None means
    unlimited (RLIM_INFINITY). A limit the platform does not have reads {"soft": None,
    "hard": None, "unknown": True}."""
    out: dict = {}
    try:
        import resource
    except ImportError:  # Windows
        return {name: {"soft": None, "hard": None, "unknown": True} for name in RLIMITS}
    infinity = getattr(resource, "RLIM_INFINITY", -1)
    for name, constant in RLIMITS.items():
        which = getattr(resource, constant, None)
        try:
            soft, hard = resource.getrlimit(which) if which is not None else (None, None)
        except (OSError, ValueError):
            soft = hard = None
        if which is None or soft is None:
            out[name] = {"soft": None, "hard": None, "unknown": True}
            continue
        out[name] = {"soft": None if soft == infinity else int(soft),
                     "hard": None if hard == infinity else int(hard)}
    return out


def rdma_devices(root: Path = Path("/")) -> list[str]:
    """InfiniBand / RoCE adapters (mlx5_0, ...): what NCCL's IB transport would use."""
    folder = root / "sys/class/infiniband"
    try:
        return sorted(p.name for p in folder.iterdir())
    except OSError:
        return []


def gather_limits(root: Path = Path("/")) -> dict:
    # root outside a container holds CAP_IPC_LOCK, which lifts the locked-memory limit for RDMA
    # registrations; root inside Docker does not (the capability is dropped by default).
    euid = os.geteuid() if hasattr(os, "geteuid") else None
    return {"system": platform.system(), **read_limits(), "rdma_devices": rdma_devices(root),
            "euid": euid}


@fact("limits")
def gather(ctx) -> dict:
    return gather_limits()
