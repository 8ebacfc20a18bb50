"""Facts about the machine, for `cvdoctor env` (and any command that asks): gathered once per
run, in parallel threads, shared by every check.

Each module registers its facts with ``@fact("name", needs=[...])`` (`cvdoctor.factgraph`); a fact
reads the run's options with ``ctx.option("deep")`` and other facts with ``ctx.fact("gpu")``.
Tests and the hidden ``--facts FILE`` option feed *recorded* facts instead (the seam for what this
machine cannot produce: GPUs, aarch64, drivers), and then nothing is gathered for those names.
Nothing here imports torch: everything torch says comes from a subprocess probe.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from cvdoctor.factgraph import Context, fact


@dataclass
class EnvOptions:
    deep: bool = False
    require_gpu: bool = False
    checkpoint_dirs: list[Path] = field(default_factory=list)
    cwd: Path = field(default_factory=Path.cwd)
    timeout_s: float = 60.0


class EnvContext(Context):
    fact_packages = ("cvdoctor.facts",)
    parallel = True  # subprocess probes that take seconds each: overlap them
    label = None

    def __init__(self, options: EnvOptions | None = None, recorded: dict[str, Any] | None = None):
        super().__init__(options or EnvOptions(), recorded)


def env_context(target: Any, values: dict[str, Any], *, recorded: dict[str, Any] | None = None,
                progress: Callable[[str], None] | None = None) -> EnvContext:
    """The context of `cvdoctor env` (declared in cvdoctor/commands/env.py)."""
    options = EnvOptions(deep=bool(values.get("deep")),
                         require_gpu=bool(values.get("require_gpu")),
                         checkpoint_dirs=[Path(d) for d in values.get("checkpoint_dirs") or ()])
    return EnvContext(options, recorded=recorded)


def provider(name: str, *, needs=()):
    """Older spelling: a fact computed from the options alone (``func(options) -> dict``)."""
    def wrap(func):
        fact(name, needs=needs)(_from_options(func))
        return func

    return wrap


def _from_options(func):
    def gather(ctx):
        return func(ctx.options)

    gather.__qualname__ = f"{func.__qualname__}.<from options>"
    gather.__module__ = func.__module__
    return gather
