"""A time limit for work done in this process on the user's code (a forward that never returns, a
model file that loops at import): SIGALRM interrupts it with `Stalled`, in the main thread only.

`Stalled` derives from BaseException so that the user's own `except Exception` cannot swallow
it. The CLI turns the limit on; the Python API and the pytest plugin leave it off (pytest-timeout
and the caller own SIGALRM there).
"""
from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Stalled(BaseException):
    """The guarded work ran past its time limit."""


@contextmanager
def time_limit(seconds: float | None, what: str) -> Iterator[None]:
    usable = (seconds and hasattr(signal, "setitimer")
              and threading.current_thread() is threading.main_thread()
              and signal.getitimer(signal.ITIMER_REAL)[0] == 0)  # nobody else's alarm pending
    if not usable:
        yield
        return

    def on_alarm(signum, frame):
        raise Stalled(f"{what} did not finish within {seconds:g} s and was stopped")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
