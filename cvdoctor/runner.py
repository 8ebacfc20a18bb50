"""Runs selected checks against a context; a check that raises becomes an `error` finding.

Each check sees the context through a view that lets it read only the facts it declares, so a
check's `needs=` is the truth; a fact that could not be gathered turns its readers into `error`
findings that name the fact, and every other check still runs.
"""
from __future__ import annotations

import json
import os
import time
import traceback
from typing import Any, Callable, Iterable

from cvdoctor.factgraph import Context, FactError
from cvdoctor.finding import ERROR, FAIL, SKIP, WARN, Finding
from cvdoctor.registry import CheckSpec, all_checks, select_checks
from cvdoctor.report import Report
from cvdoctor.watchdog import Stalled, time_limit

# Set (by the test suite) to a directory: every finding a run emits is appended there as one
# JSON line per process, so the suite can prove each declared finding has a fixture.
FINDINGS_LOG_ENV = "CVDOCTOR_FINDINGS_LOG"


class CheckContract(RuntimeError):
    """A check returned something its registration does not allow (a bug in cvdoctor)."""


def _recipe_allowed(spec: CheckSpec, recipe: str) -> bool:
    if recipe in spec.recipes:
        return True
    if spec.error_recipes:
        from cvdoctor.catalog import error_recipe_ids

        return recipe in error_recipe_ids()
    return False


STALLED_FIX = ("Run the forward (or the model file) by hand on one batch and interrupt it "
               "(Ctrl-C) to see where it loops or waits; -v shows where cvdoctor stopped it")


def run_check(spec: CheckSpec, ctx: Any, timeout_s: float | None = None) -> list[Finding]:
    start = time.perf_counter()
    view = ctx.view(spec.needs, f"check {spec.id}") if isinstance(ctx, Context) else ctx
    try:
        with time_limit(timeout_s, f"the check {spec.id}"):
            out = spec.func(view)
        findings = [out] if isinstance(out, Finding) else list(out or [])
        if not findings:
            raise CheckContract(f"{spec.id} returned no finding")
        for f in findings:
            if not isinstance(f, Finding):
                raise CheckContract(f"{spec.id} returned {type(f).__name__}, not a Finding")
            if f.recipe and not _recipe_allowed(spec, f.recipe):
                raise CheckContract(f"{spec.id} emitted recipe {f.recipe!r}, not in its registration")
    except FactError as exc:
        if isinstance(exc.cause, Stalled):  # stopped while gathering a fact this check needs
            return _finish(spec, start, [_stalled(spec, exc.cause, exc.fact)])
        findings = [Finding(
            ERROR, spec.title, f"the check could not run: {exc}",
            evidence={"fact": exc.fact, "exception": type(exc.cause).__name__,
                      "error": str(exc.cause),
                      "traceback": "".join(traceback.format_exception(
                          type(exc.cause), exc.cause, exc.cause.__traceback__, limit=8))})]
    except Stalled as exc:
        findings = [_stalled(spec, exc)]
    except SystemExit as exc:  # the user's code (a model's forward, a loader) called sys.exit()
        findings = [Finding(
            ERROR, spec.title,
            f"the code under check called sys.exit({exc.code!r}) while this check ran it; "
            "nothing after that could be measured",
            "Remove the sys.exit() from the code the model file runs (forward, loss, loader)",
            evidence={"exception": "SystemExit", "code": repr(exc.code),
                      "traceback": traceback.format_exc(limit=8)})]
    except Exception as exc:  # noqa: BLE001 - isolating checks is the point
        findings = [Finding(
            ERROR, spec.title,
            f"the check itself broke: {type(exc).__name__}: {exc}",
            evidence={"exception": type(exc).__name__, "error": str(exc),
                      "traceback": traceback.format_exc(limit=8)},
        )]
    return _finish(spec, start, findings)


def _finish(spec: CheckSpec, start: float, findings: list[Finding]) -> list[Finding]:
    elapsed = time.perf_counter() - start
    for f in findings:
        f.check = f.check or spec.id
        f.duration_s = elapsed / len(findings)
    _log_findings(findings)
    return findings


def _stalled(spec: CheckSpec, exc: Stalled, fact: str | None = None) -> Finding:
    """A check that ran past its time limit: the user's code it ran never returned."""
    where = f" (gathering {fact!r}, which this check needs)" if fact else ""
    return Finding(ERROR, spec.title, f"{exc}{where}: the code it runs (the model's forward, "
                   "the loss, the loader) did not return", STALLED_FIX,
                   evidence={"exception": "Stalled", "error": str(exc),
                             "traceback": "".join(traceback.format_exception(
                                 type(exc), exc, exc.__traceback__, limit=-8))})


def _log_findings(findings: list[Finding]) -> None:
    folder = os.environ.get(FINDINGS_LOG_ENV)
    if not folder:
        return
    try:
        with open(os.path.join(folder, f"{os.getpid()}.jsonl"), "a", encoding="utf-8") as fh:
            for f in findings:
                fh.write(json.dumps({"check": f.check, "status": f.status,
                                     "recipe": f.recipe}) + "\n")
    except OSError:
        pass


def _why_not(spec: CheckSpec, ctx: Context) -> str:
    names = spec.opt_in_names
    if names and not any(ctx.option(n) for n in names) and \
            ctx.target_kind in (spec.targets or (None,)):
        from cvdoctor.commands import all_commands

        declared = all_commands().get(spec.command)
        option = next((o for o in declared.options if o.name == names[0]), None) \
            if declared else None
        how = f"give {option.cli_flag}" if option and option.cli else f"set {names[0]}"
        if spec.command == "model":
            how += " (or " + " or ".join(f"`{n} = ...`" for n in names) + " in the model file)"
        return f"runs only when asked for: {how}; `cvdoctor explain {spec.id}` says more"
    return "does not apply to this target"


def link_root_causes(findings: list[Finding]) -> None:
    """One root cause, one failure: a warn/fail whose recipe an earlier check already emitted
    is a consequence of that finding (off-by-one labels fail model.data, and the forward pass
    then raises on them), and so is one that names an earlier finding's recipe in `follows`
    (the overfit run's plateau follows from softmax-twice). It keeps its status (exit codes and
    JSON are unchanged) and gains `caused_by`; the text report shows it under its cause. Checks
    run cause first (`order=`)."""
    first: dict[str, Finding] = {}
    for f in findings:
        if f.status not in (WARN, FAIL) or not f.recipe:
            continue
        causes = [first[r] for r in (f.recipe, *f.follows)
                  if r in first and first[r].check != f.check]
        if causes:
            f.caused_by = causes[0].check
        first.setdefault(f.recipe, f)


def run(command: str, ctx: Any, *, select: Iterable[str] | None = None,
        ignore: Iterable[str] | None = None, target: Any = None,
        progress: Callable[[str], None] | None = None,
        check_timeout_s: float | None = None) -> Report:
    """Select checks of `command`, let the context start gathering what they need, run them."""
    start = time.perf_counter()
    specs = select_checks(all_checks(command), select, ignore)
    declined: dict[str, str] = {}
    if isinstance(ctx, Context):
        kept = []
        for spec in specs:
            verdict = ctx.applies(spec)
            if verdict is True:
                kept.append(spec)
            elif isinstance(verdict, str) or select:  # asked for by name: say why not
                declined[spec.id] = verdict if isinstance(verdict, str) else _why_not(spec, ctx)
                kept.append(spec)
        specs = kept
        ctx.prepare(sorted({n for s in specs if s.id not in declined for n in s.needs}))
    findings: list[Finding] = []
    stalled_in: str | None = None
    for spec in specs:
        if spec.id in declined:
            findings.append(Finding(SKIP, spec.title, declined[spec.id], check=spec.id))
            continue
        if stalled_in:  # every later check would wait on the same code for as long again
            findings.append(Finding(SKIP, spec.title, f"not run: the code under check stopped "
                                    f"responding in {stalled_in} (see there)", check=spec.id))
            continue
        if progress:
            progress(f"{spec.id} ...")
        done = run_check(spec, ctx, check_timeout_s)
        if any(f.evidence.get("exception") == "Stalled" for f in done):
            stalled_in = spec.id
        findings.extend(done)
    link_root_causes(findings)
    facts = ctx.fact_timings() if isinstance(ctx, Context) else {}
    return Report(command=command, target=target, findings=findings,
                  duration_s=time.perf_counter() - start, facts=facts)
