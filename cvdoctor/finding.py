"""The one shape every check returns: a Finding."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PASS, WARN, FAIL, SKIP, ERROR = "pass", "warn", "fail", "skip", "error"
STATUSES = (PASS, WARN, FAIL, SKIP, ERROR)
# Worst first: used to fold many findings into one overall status.
SEVERITY = {PASS: 0, SKIP: 0, WARN: 1, ERROR: 2, FAIL: 3}


@dataclass
class Finding:
    status: str
    title: str
    message: str
    fix: str = ""
    recipe: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    check: str = ""  # filled in by the runner from the registered id
    duration_s: float = 0.0
    caused_by: str | None = None  # the check whose finding explains this one (its root cause)
    # Recipes of other checks' findings that, when present, explain this one (a plateau in the
    # overfit run follows from softmax-twice); the runner links it to the first such finding.
    follows: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}")
        if self.status in (WARN, FAIL) and not self.recipe:
            raise ValueError(f"a {self.status} finding needs a recipe: {self.title!r}")
        if self.status == SKIP and not self.message:
            raise ValueError(f"a skip must say why: {self.title!r}")

    @property
    def is_bug(self) -> bool:
        """An error with no fix is cvdoctor's own breakage; an error with a fix is the code under
        check stopping the check (a forward that never returns, sys.exit())."""
        return self.status == ERROR and not self.fix

    @property
    def is_problem(self) -> bool:
        return self.status in (WARN, FAIL, ERROR)

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "status": self.status,
            "title": self.title,
            "message": self.message,
            "fix": self.fix,
            "recipe": self.recipe,
            "evidence": self.evidence,
            "duration_s": round(self.duration_s, 4),
            **({"caused_by": self.caused_by} if self.caused_by else {}),
        }


def passed(title: str, message: str, **evidence: Any) -> Finding:
    return Finding(PASS, title, message, evidence=evidence)


def skipped(title: str, why: str, **evidence: Any) -> Finding:
    return Finding(SKIP, title, why, evidence=evidence)


def warned(title: str, message: str, fix: str, recipe: str, **evidence: Any) -> Finding:
    return Finding(WARN, title, message, fix=fix, recipe=recipe, evidence=evidence)


def failed(title: str, message: str, fix: str, recipe: str, **evidence: Any) -> Finding:
    return Finding(FAIL, title, message, fix=fix, recipe=recipe, evidence=evidence)


@dataclass
class Problem:
    """One thing a check found wrong, before it becomes a finding (see `report_problems`)."""

    status: str  # warn | fail
    recipe: str
    message: str
    fix: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in (WARN, FAIL):
            raise ValueError(f"a problem is a warn or a fail, not {self.status!r}")


def report_problems(title: str, problems: list[Problem], ok_message: str,
                    **evidence: Any) -> list[Finding]:
    """The findings of a check that looks for several problems: a pass when there is none,
    otherwise one finding per independent cause (per recipe), fails first, each with its own fix
    and recipe. Problems that share a recipe are variants of one cause: they fold into one
    finding whose message names the first and counts the rest (all of them in `variants`).
    """
    if not problems:
        return [passed(title, ok_message, **evidence)]
    by_recipe: dict[str, list[Problem]] = {}
    for p in sorted(problems, key=lambda p: p.status != FAIL):  # stable: fails first
        by_recipe.setdefault(p.recipe, []).append(p)
    findings = []
    for recipe, group in by_recipe.items():
        first, rest = group[0], group[1:]
        message = first.message
        if rest:
            message += f" (and {len(rest)} more: {'; '.join(p.message for p in rest)})"
        ev = dict(evidence)
        ev.update(first.evidence)
        if rest:
            ev["variants"] = [{"status": p.status, "message": p.message, "fix": p.fix,
                               **p.evidence} for p in rest]
        findings.append(Finding(first.status, title, message, fix=first.fix, recipe=recipe,
                                evidence=ev))
    return findings


def worst_status(findings) -> str:
    """Overall status of a run: pass | warn | fail | error (fail outranks error)."""
    worst = PASS
    for f in findings:
        if SEVERITY[f.status] > SEVERITY[worst]:
            worst = f.status
    return worst
