"""Fact providers for `cvdoctor env`: gathered once, in parallel, shared by every check.

A provider is a function ``(options) -> dict`` registered with ``@provider("name")``. Checks
declare the facts they read (``needs=``) and read them with ``ctx.fact("name")``. Tests and the
hidden ``--facts FILE`` option feed *recorded* facts instead (the seam for what this machine
cannot produce: GPUs, aarch64, drivers), and then no provider runs for those names.
"""
from __future__ import annotations

import importlib
import pkgutil
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

_PROVIDERS: dict[str, Callable[["EnvOptions"], dict]] = {}


def provider(name: str):
    def wrap(func: Callable[["EnvOptions"], dict]):
        if name in _PROVIDERS and _PROVIDERS[name] is not func:
            raise ValueError(f"fact provider {name!r} is registered twice")
        _PROVIDERS[name] = func
        return func

    return wrap


def _load_providers() -> None:
    import cvdoctor.facts as pkg

    for mod in pkgutil.iter_modules(pkg.__path__):
        if not mod.name.startswith("_"):
            importlib.import_module(f"{pkg.__name__}.{mod.name}")


@dataclass
class EnvOptions:
    deep: bool = False
    require_gpu: bool = False
    checkpoint_dirs: list[Path] = field(default_factory=list)
    cwd: Path = field(default_factory=Path.cwd)
    timeout_s: float = 60.0


class EnvContext:
    def __init__(self, options: EnvOptions | None = None, recorded: dict[str, Any] | None = None):
        self.options = options or EnvOptions()
        self.recorded = dict(recorded or {})
        self._futures: dict[str, Future] = {}
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def prepare(self, needs: list[str]) -> None:
        """Start every needed provider at once so slow subprocess probes overlap."""
        for name in needs:
            self._start(name)

    def _start(self, name: str) -> Future:
        with self._lock:
            if name in self._futures:
                return self._futures[name]
            fut: Future = Future()
            if name in self.recorded:
                fut.set_result(self.recorded[name])
            else:
                if name not in _PROVIDERS:
                    _load_providers()
                if name not in _PROVIDERS:
                    # Only the checks that read this fact break (as `error` findings).
                    fut.set_exception(KeyError(f"no fact provider named {name!r}"))
                    self._futures[name] = fut
                    return fut
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="cvdoctor-fact")
                fut = self._pool.submit(_PROVIDERS[name], self.options)
            self._futures[name] = fut
            return fut

    def fact(self, name: str) -> dict:
        """The gathered (or recorded) facts of `name`; a provider that raised re-raises here,
        so the check reading it becomes an `error` finding and the others still run."""
        return self._start(name).result()

    def optional_fact(self, name: str) -> dict:
        """Facts another check owns: a broken provider there must not break the reader."""
        try:
            return self.fact(name) or {}
        except Exception:  # noqa: BLE001 - that provider's own check reports the breakage
            return {}

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
