"""Progress reports from the slow parts: a callback `(stage, done, total)`; total may be None."""
from __future__ import annotations

from collections.abc import Callable

ProgressFn = Callable[[str, int, "int | None"], None]


class Stage:
    """Calls the callback for one stage at most every `every` items (and at the end)."""

    def __init__(self, fn: ProgressFn | None, name: str, total: int | None = None,
                 every: int = 64) -> None:
        self.fn, self.name, self.total, self.every, self.done = fn, name, total, every, 0

    def step(self, n: int = 1) -> None:
        self.done += n
        if self.fn is not None and (self.done % self.every == 0 or self.done == self.total):
            self.fn(self.name, self.done, self.total)

    def set(self, done: int) -> None:
        self.done = done - 1
        self.step()

    def close(self) -> None:
        if self.fn is not None:
            self.fn(self.name, self.done, self.total if self.total is not None else self.done)
