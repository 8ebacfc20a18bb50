"""What a path is when it is not a regular file: every command refuses FIFOs, sockets and devices
before opening them (opening a FIFO blocks forever, reading /dev/zero never ends)."""
from __future__ import annotations

import stat


def special_kind(mode: int) -> str | None:
    """None for a regular file; otherwise a few words saying what `mode` describes."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    return "not a regular file"
