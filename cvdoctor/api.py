"""Python API: the same checks as the command line, returning a Report."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable

from cvdoctor.report import Report


def check_env(*, select: Iterable[str] | None = None, ignore: Iterable[str] | None = None,
              deep: bool = False, require_gpu: bool = False,
              checkpoint_dirs: Iterable[str | Path] = (), recorded: dict[str, Any] | None = None,
              progress: Callable[[str], None] | None = None) -> Report:
    """Run the `env` checks. `recorded` replaces gathered facts by name (tests, replays)."""
    from cvdoctor import runner
    from cvdoctor.facts import EnvContext, EnvOptions

    options = EnvOptions(deep=deep, require_gpu=require_gpu,
                         checkpoint_dirs=[Path(d) for d in checkpoint_dirs])
    ctx = EnvContext(options, recorded=recorded)
    try:
        return runner.run("env", ctx, select=select, ignore=ignore, target=None,
                          progress=progress)
    finally:
        ctx.close()
