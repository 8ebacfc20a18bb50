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

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}")
        if self.status in (WARN, FAIL) and not self.recipe:
            raise ValueError(f"a {self.status} finding needs a recipe: {self.title!r}")
        if self.status == SKIP and not self.message:
            raise ValueError(f"a skip must say why: {self.title!r}")

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
        }


def passed(title: str, message: str, **evidence: Any) -> Finding:
    return Finding(PASS, title, message, evidence=evidence)


def skipped(title: str, why: str, **evidence: Any) -> Finding:
    return Finding(SKIP, title, why, evidence=evidence)


def warned(title: str, message: str, fix: str, recipe: str, **evidence: Any) -> Finding:
    return Finding(WARN, title, message, fix=fix, recipe=recipe, evidence=evidence)


def failed(title: str, message: str, fix: str, recipe: str, **evidence: Any) -> Finding:
    return Finding(FAIL, title, message, fix=fix, recipe=recipe, evidence=evidence)


def worst_status(findings) -> str:
    """Overall status of a run: pass | warn | fail | error (fail outranks error)."""
    worst = PASS
    for f in findings:
        if SEVERITY[f.status] > SEVERITY[worst]:
            worst = f.status
    return worst
