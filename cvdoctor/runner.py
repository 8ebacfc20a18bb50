"""Runs selected checks against a context; a check that raises becomes an `error` finding."""
from __future__ import annotations

import time
import traceback
from typing import Any, Callable, Iterable

from cvdoctor.finding import ERROR, Finding
from cvdoctor.registry import CheckSpec, all_checks, select_checks
from cvdoctor.report import Report


class CheckContract(RuntimeError):
    """A check returned something its registration does not allow (a bug in cvdoctor)."""


def run_check(spec: CheckSpec, ctx: Any) -> list[Finding]:
    start = time.perf_counter()
    try:
        out = spec.func(ctx)
        findings = [out] if isinstance(out, Finding) else list(out or [])
        if not findings:
            raise CheckContract(f"{spec.id} returned no finding")
        for f in findings:
            if not isinstance(f, Finding):
                raise CheckContract(f"{spec.id} returned {type(f).__name__}, not a Finding")
            if f.recipe and f.recipe not in spec.recipes:
                raise CheckContract(f"{spec.id} emitted recipe {f.recipe!r}, not in its registration")
    except Exception as exc:  # noqa: BLE001 - isolating checks is the point
        findings = [Finding(
            ERROR, spec.title,
            f"the check itself broke: {type(exc).__name__}: {exc}",
            evidence={"exception": type(exc).__name__, "error": str(exc),
                      "traceback": traceback.format_exc(limit=8)},
        )]
    elapsed = time.perf_counter() - start
    for f in findings:
        f.check = f.check or spec.id
        f.duration_s = elapsed / len(findings)
    return findings


def run(command: str, ctx: Any, *, select: Iterable[str] | None = None,
        ignore: Iterable[str] | None = None, target: Any = None,
        progress: Callable[[str], None] | None = None) -> Report:
    """Select checks of `command`, let the context start gathering what they need, run them."""
    start = time.perf_counter()
    specs = select_checks(all_checks(command), select, ignore)
    prepare = getattr(ctx, "prepare", None)
    if prepare is not None:
        prepare(sorted({n for s in specs for n in s.needs}))
    findings: list[Finding] = []
    for spec in specs:
        if progress:
            progress(f"{spec.id} ...")
        findings.extend(run_check(spec, ctx))
    return Report(command=command, target=target, findings=findings,
                  duration_s=time.perf_counter() - start)
