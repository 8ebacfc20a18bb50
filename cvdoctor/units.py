"""Formatting of measured quantities, shared by checks and the pytest plugin (standard library
only: the plugin may call it without loading anything else)."""
from __future__ import annotations


def human_bytes(n: float | None) -> str:
    """64.0 MiB, 23.5 GiB: binary units, as df -h and the kernel's tmpfs size= use."""
    if n is None:
        return "unknown"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
