"""TCP ports for the rank processes' rendezvous: a free one, and whether a given one is free."""
from __future__ import annotations

import errno
import socket


def port_is_free(port: int, host: str = "") -> bool:
    """Whether a listening socket can bind `port` now, as the TCPStore of rank 0 will (with
    SO_REUSEADDR, so a port left in TIME_WAIT by a finished run counts as free)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def free_port(host: str = "") -> int:
    """A port the kernel has no listener on right now (another process may still take it before
    the store binds it: the runner retries on EADDRINUSE)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
