"""Wording of measured quantities in messages: bytes, counts, plurals, name lists, truncation.

The one place these live (checks, facts, renderers and the pytest plugin all use them). Standard
library only: the plugin may call it without loading anything else.
"""
from __future__ import annotations

from typing import Iterable

_BINARY_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def human_bytes(n: float | None, unit: str | None = None, *, suffix: bool = True) -> str:
    """64.0 MiB, 23.5 GiB: binary units, as df -h and the kernel's tmpfs size= use.

    `unit` fixes the unit ("GiB" -> "12.3 GiB"); `suffix=False` leaves it off ("12.3"), for
    "12.3 of 80.0 GiB free".
    """
    if n is None:
        return "?" if unit else "unknown"
    value = float(n)
    if unit is None:
        for unit in _BINARY_UNITS:
            if abs(value) < 1024 or unit == _BINARY_UNITS[-1]:
                break
            value /= 1024
    else:
        value /= 1024 ** _BINARY_UNITS.index(unit)
    number = f"{value:.0f}" if unit == "B" else f"{value:.1f}"
    return f"{number} {unit}" if suffix else number


def file_size(n: int | None) -> str:
    """A file's size as people compare it with a download page: exact bytes while small,
    then MiB, then GiB with two decimals ("1,234 bytes", "12.3 MiB", "2.39 GiB")."""
    if n is None:
        return "?"
    if n < 1024 ** 2:
        return f"{n:,} bytes"
    return f"{n / 1024 ** 2:,.1f} MiB" if n < 1024 ** 3 else f"{n / 1024 ** 3:,.2f} GiB"


def fmt_int(n: int) -> str:
    """11,689,512."""
    return f"{n:,}"


def plural(n: int, word: str, plural_form: str | None = None) -> str:
    """'1 tensor', '3 tensors', '1,000 parameters'."""
    return f"{fmt_int(n)} {word if n == 1 else (plural_form or word + 's')}"


def quoted_names(names: Iterable[str], limit: int = 3) -> str:
    """`a`, `b`, `c` and 2 more: module or parameter names for a one-line message."""
    names = list(names)
    shown = ", ".join(f"`{n}`" for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def first_line(text: str | None, limit: int = 300) -> str:
    """The first non-empty line of `text`, cut to `limit` characters."""
    for line in (text or "").splitlines():
        if line.strip():
            return truncate(line.strip(), limit)
    return ""


def truncate(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, marked with '...' when cut."""
    return text if len(text) <= limit else text[:max(limit - 3, 0)].rstrip() + "..."


def one_line(text: str, limit: int | None = None) -> str:
    """Whitespace runs (newlines included) collapsed to single spaces; cut to `limit`."""
    flat = " ".join(text.split())
    return truncate(flat, limit) if limit else flat
