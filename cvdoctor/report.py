"""The result of a run: findings plus what was run, with a readable str()."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cvdoctor.finding import ERROR, FAIL, WARN, Finding, worst_status
from cvdoctor.render import render_text

SCHEMA_VERSION = 1


@dataclass
class Report:
    command: str
    target: Any
    findings: list[Finding] = field(default_factory=list)
    duration_s: float = 0.0
    facts: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> seconds, ok, error

    @property
    def status(self) -> str:
        return worst_status(self.findings)

    @property
    def ok(self) -> bool:
        """True when nothing failed and no check broke (warnings are allowed)."""
        return not any(f.status in (FAIL, ERROR) for f in self.findings)

    @property
    def failures(self) -> list[Finding]:
        return [f for f in self.findings if f.status in (FAIL, ERROR)]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.status == WARN]

    def __getitem__(self, check_id: str) -> Finding:
        for f in self.findings:
            if f.check == check_id:
                return f
        raise KeyError(f"no finding for {check_id!r}; ran: {', '.join(self.check_ids())}")

    def get_all(self, check_id: str) -> list[Finding]:
        return [f for f in self.findings if f.check == check_id]

    def check_ids(self) -> list[str]:
        return list(dict.fromkeys(f.check for f in self.findings))

    def to_dict(self) -> dict[str, Any]:
        from cvdoctor import __version__

        return {
            "schema_version": SCHEMA_VERSION,
            "tool": "cvdoctor",
            "version": __version__,
            "command": self.command,
            "target": self.target,
            "status": self.status,
            "duration_s": round(self.duration_s, 3),
            "findings": [f.to_dict() for f in self.findings],
            "facts": self.facts,
        }

    def __repr__(self) -> str:
        target = f" {self.target}" if self.target else ""
        bad = ", ".join(f.check for f in self.findings if f.status in (FAIL, ERROR))
        return f"<Report {self.command}{target}: {self.status}{f' ({bad})' if bad else ''}>"

    def __str__(self) -> str:
        return render_text(self, color=False)
