"""Start the command and stream its output through, unchanged.

Pipes by default: the command's stdout goes to cvdoctor's stdout and its stderr to cvdoctor's
stderr, byte for byte (`\\r` progress lines included), as the bytes arrive. When cvdoctor's own
stdout is a terminal, the command gets a pseudo-terminal instead (what it would have had without
cvdoctor: tqdm, Lightning and colour behave as usual), and cvdoctor copies between it and the
real terminal like `script` does. Stdin is the command's own in pipe mode; under a
pseudo-terminal cvdoctor forwards it (raw mode when it is a terminal, so Ctrl-C reaches the
command as a keystroke).

The command runs in its own session (its own process group): SIGINT, SIGTERM and SIGHUP sent to
cvdoctor go to that group, and cvdoctor waits for the command to end.
"""
from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Callable

CHUNK = 256 * 1024
PIPE_SIZE = 1024 * 1024  # ask the kernel for bigger pipes: fewer wake-ups on fast output
GRACE_S = 1.0  # after the command exits, how long output of its children is still copied
COALESCE_BELOW = 16 * 1024  # a wake-up that brought less than this ...
COALESCE_S = 0.001  # ... waits this long for more before the next one
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class LaunchError(Exception):
    """The command could not be started; `status` is what a shell would exit with."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


@dataclass
class Outcome:
    returncode: int  # as subprocess reports it: -N when signal N ended the command
    duration_s: float
    pty: bool


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except InterruptedError:  # pragma: no cover - PEP 475 retries, kept for clarity
            continue
        view = view[n:]


def _enlarge_pipe(fd: int) -> None:
    try:
        import fcntl

        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_SIZE)
    except (OSError, ImportError, ValueError):
        pass  # not Linux, or above the system's pipe-max-size: the default pipe works too


def _spawn(argv: list[str], env: dict, **kwargs) -> subprocess.Popen:
    try:
        return subprocess.Popen(argv, env=env, start_new_session=True, **kwargs)
    except FileNotFoundError:
        raise LaunchError(f"cannot run {argv[0]!r}: command not found", 127) from None
    except PermissionError:
        raise LaunchError(f"cannot run {argv[0]!r}: permission denied", 126) from None
    except OSError as exc:
        if exc.errno == errno.ENOEXEC:
            raise LaunchError(f"cannot run {argv[0]!r}: not an executable", 126) from None
        raise LaunchError(f"cannot run {argv[0]!r}: {exc.strerror or exc}", 126) from None


class _Signals:
    """Forward SIGINT/SIGTERM/SIGHUP to the command's process group while it runs."""

    def __init__(self, pgid: int, extra: dict | None = None):
        self.pgid = pgid
        self.extra = extra or {}
        self.saved: dict = {}

    def _forward(self, signum, _frame) -> None:
        try:
            os.killpg(self.pgid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def __enter__(self):
        for sig in FORWARDED:
            self.saved[sig] = signal.signal(sig, self._forward)
        for sig, handler in self.extra.items():
            self.saved[sig] = signal.signal(sig, handler)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)


def _pump(proc: subprocess.Popen, routes: dict[int, int], sink: Callable[[bytes], None],
          stdin_to: int | None = None, on_stdin_eof: Callable[[], None] | None = None) -> None:
    """Copy each readable fd in `routes` to its destination fd and to `sink` until they close
    (or the command has been gone for GRACE_S); copy stdin to `stdin_to` when given.

    The loop runs once per chunk the command writes (often 8 KiB), so it is kept lean: one
    poll() per wake-up, the command's exit checked only when nothing arrived for a while."""
    import select

    poller = select.poll()
    for fd in routes:
        poller.register(fd, select.POLLIN)
    if stdin_to is not None:
        poller.register(0, select.POLLIN)
    open_fds = set(routes)
    exited_at: float | None = None
    next_check = time.monotonic() + 0.5
    read, write = os.read, _write_all
    while open_fds:
        timeout_ms = 200 if exited_at is None else max(
            0, int(1000 * (exited_at + GRACE_S - time.monotonic())))
        events = poller.poll(timeout_ms)
        got = 0
        for fd, _mask in events:
            if fd == 0 and stdin_to is not None:
                try:
                    data = read(0, CHUNK)
                except OSError:
                    data = b""
                if data:
                    try:
                        write(stdin_to, data)
                    except OSError:
                        data = b""
                if not data:
                    poller.unregister(0)
                    stdin_to = None
                    if on_stdin_eof:
                        on_stdin_eof()
                continue
            try:
                data = read(fd, CHUNK)
            except OSError:  # EIO: the pseudo-terminal's other side is gone
                data = b""
            if not data:
                poller.unregister(fd)
                open_fds.discard(fd)
                continue
            got += len(data)
            dest = routes[fd]
            if dest >= 0:
                try:
                    write(dest, data)
                except BrokenPipeError:
                    # Our reader left (`cvdoctor run ... | head`): stop reading this stream, so
                    # the command meets a closed pipe too, as it would have without cvdoctor.
                    routes[fd] = -1
                    poller.unregister(fd)
                    open_fds.discard(fd)
                    os.close(fd)
                except OSError:
                    routes[fd] = -1
            sink(data)
        if 0 < got < COALESCE_BELOW:
            # A command that writes line by line (PYTHONUNBUFFERED=1, flush=True) wakes us for
            # every line; letting a millisecond of output gather costs nothing visible and
            # turns 150,000 small copies of a 50 MB log into a few thousand.
            time.sleep(COALESCE_S)
        if exited_at is None:
            now = time.monotonic() if events else next_check
            if now >= next_check:  # quiet, or half a second of output went by
                next_check = now + 0.5
                if proc.poll() is not None:
                    exited_at = time.monotonic()
        elif not events or time.monotonic() > exited_at + GRACE_S:
            break  # the command is gone; what its children still hold open is not waited for


def run_pipes(argv: list[str], env: dict, sink: Callable[[bytes], None]) -> Outcome:
    start = time.monotonic()
    proc = _spawn(argv, env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
    out, err = proc.stdout.fileno(), proc.stderr.fileno()
    for fd in (out, err):
        _enlarge_pipe(fd)
    with _Signals(proc.pid):
        try:
            _pump(proc, {out: 1, err: 2}, sink)
        finally:
            returncode = proc.wait()
    for stream in (proc.stdout, proc.stderr):
        try:
            stream.close()
        except OSError:
            pass
    return Outcome(returncode, time.monotonic() - start, pty=False)


def run_pty(argv: list[str], env: dict, sink: Callable[[bytes], None]) -> Outcome:
    import fcntl
    import pty
    import termios

    start = time.monotonic()
    master, slave = pty.openpty()
    try:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, fcntl.ioctl(1, termios.TIOCGWINSZ, b"\0" * 8))
    except OSError:
        pass
    # The command's terminal takes the real terminal's modes, except output processing: the
    # real terminal already turns "\n" into "\r\n", so the bytes the command writes must pass
    # this one untouched (byte for byte what it would have written to the terminal itself).
    try:
        mode = termios.tcgetattr(1)
    except termios.error:
        mode = termios.tcgetattr(slave)
    mode[1] &= ~termios.OPOST
    termios.tcsetattr(slave, termios.TCSANOW, mode)

    def controlling_terminal() -> None:  # runs in the child, after setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    try:
        proc = _spawn(argv, env, stdin=slave, stdout=slave, stderr=slave,
                      preexec_fn=controlling_terminal)
    finally:
        os.close(slave)

    def resize(_signum, _frame) -> None:
        try:
            fcntl.ioctl(master, termios.TIOCSWINSZ, fcntl.ioctl(1, termios.TIOCGWINSZ, b"\0" * 8))
        except OSError:
            pass

    # Forward stdin. A terminal goes to raw mode (its keys, Ctrl-C included, reach the command's
    # own terminal) only when cvdoctor is in its foreground; in the background it is not read.
    saved_mode = None
    stdin_to: int | None = master
    try:
        os.fstat(0)
    except OSError:
        stdin_to = None
    if stdin_to is not None and os.isatty(0):
        try:
            if os.tcgetpgrp(0) == os.getpgrp():
                saved_mode = termios.tcgetattr(0)
                termios.tcsetattr(0, termios.TCSAFLUSH, _raw_input(saved_mode))
            else:
                stdin_to = None
        except OSError:
            stdin_to = None

    def stdin_eof() -> None:  # piped stdin ended: the command reads end-of-file too
        try:
            eof = termios.tcgetattr(master)[6][termios.VEOF]
            os.write(master, eof if isinstance(eof, bytes) else b"\x04")
        except OSError:
            pass

    try:
        with _Signals(proc.pid, {signal.SIGWINCH: resize}):
            try:
                _pump(proc, {master: 1}, sink, stdin_to=stdin_to, on_stdin_eof=stdin_eof)
            finally:
                returncode = proc.wait()
    finally:
        if saved_mode is not None:
            termios.tcsetattr(0, termios.TCSAFLUSH, saved_mode)
        os.close(master)
    return Outcome(returncode, time.monotonic() - start, pty=True)


def _raw_input(mode: list) -> list:
    """`mode` with the input side raw (keys, Ctrl-C included, go to the command's terminal as
    bytes; no echo, the command's terminal echoes) and output processing left as it is."""
    import termios

    mode = [list(x) if isinstance(x, list) else x for x in mode]
    mode[0] &= ~(termios.BRKINT | termios.ICRNL | termios.INPCK | termios.ISTRIP | termios.IXON)
    mode[2] = (mode[2] & ~(termios.CSIZE | termios.PARENB)) | termios.CS8
    mode[3] &= ~(termios.ECHO | termios.ICANON | termios.IEXTEN | termios.ISIG)
    mode[6][termios.VMIN] = 1
    mode[6][termios.VTIME] = 0
    return mode


def use_pty() -> bool:
    """A pseudo-terminal when cvdoctor runs in a terminal (POSIX only): stdout and stderr both a
    terminal, and stdin a terminal or closed. The command then writes to one terminal as it
    would have. With stderr redirected (`2> err.log`) or stdin piped, pipes keep the streams
    apart and the piped input is not echoed into the output."""
    if os.name != "posix" or sys.platform == "cygwin":
        return False
    if not (os.isatty(1) and os.isatty(2)):
        return False
    try:
        os.fstat(0)
    except OSError:
        return True  # no stdin at all
    return os.isatty(0)


def run(argv: list[str], env: dict, sink: Callable[[bytes], None],
        pty: bool | None = None) -> Outcome:
    if pty is None:
        pty = use_pty()
    return (run_pty if pty else run_pipes)(argv, env, sink)
