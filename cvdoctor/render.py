"""Renderers: the report as text for people or as one JSON object for machines."""
from __future__ import annotations

import json
import os
import sys
from typing import Any, TextIO

from cvdoctor.finding import ERROR, FAIL, PASS, SKIP, WARN
from cvdoctor.report import Report

MARKS = {PASS: "✓", WARN: "!", FAIL: "✗", SKIP: "–", ERROR: "E"}
_COLORS = {PASS: "32", WARN: "33", FAIL: "31", SKIP: "2", ERROR: "35"}


def use_color(stream: TextIO) -> bool:
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return bool(getattr(stream, "isatty", lambda: False)())


def _paint(text: str, status: str, color: bool) -> str:
    return f"\x1b[{_COLORS[status]}m{text}\x1b[0m" if color else text


def _mark(status: str) -> str:
    # Fall back to ASCII where the terminal cannot encode the marks.
    enc = (getattr(sys.stdout, "encoding", None) or "utf-8").lower()
    if "utf" in enc:
        return MARKS[status]
    return {PASS: "ok", WARN: "!", FAIL: "X", SKIP: "-", ERROR: "E"}[status]


def summary_line(report: Report) -> str:
    counts = {s: 0 for s in MARKS}
    for f in report.findings:
        counts[f.status] += 1
    n_checks = len(report.check_ids())
    parts = [f"{n_checks} check{'s' if n_checks != 1 else ''}"]
    if len(report.findings) != n_checks:  # the counts below are of findings
        parts[0] += f" ({len(report.findings)} findings)"
    for status, word in ((FAIL, "failed"), (ERROR, "broke"), (WARN, "warned"), (SKIP, "skipped")):
        if counts[status]:
            parts.append(f"{counts[status]} {word}")
    target = f" {report.target}" if report.target else ""
    return f"cvdoctor {report.command}{target}: {', '.join(parts)} ({report.duration_s:.1f} s)"


def render_text(report: Report, *, color: bool = False, verbose: bool = False) -> str:
    width = max((len(f.check) for f in report.findings), default=0)
    lines = [summary_line(report), ""]
    previous = None
    for f in report.findings:
        mark = _paint(_mark(f.status), f.status, color)
        # A check with several findings reads as one block: its id only on the first line.
        shown_id = f.check if f.check != previous else ""
        previous = f.check
        lines.append(f"{mark} {shown_id.ljust(width)}  {f.title}: {f.message}")
        if f.status in (WARN, FAIL) and f.fix:
            lines.append(f"  {' ' * width}   fix: {f.fix}")
        if f.recipe and f.status in (WARN, FAIL):
            lines.append(f"  {' ' * width}   more: cvdoctor explain {f.recipe}")
        if f.status == ERROR:
            lines.append(f"  {' ' * width}   this is a cvdoctor bug; run with -v for the traceback")
        if verbose and f.evidence:
            for key, value in f.evidence.items():
                lines.extend(_evidence_lines(key, value, indent=" " * (width + 5)))
    if report.findings and all(f.status in (PASS, SKIP) for f in report.findings):
        lines += ["", "No problems found."]
    return "\n".join(lines) + "\n"


def _evidence_lines(key: str, value: Any, indent: str) -> list[str]:
    if isinstance(value, str) and "\n" in value:
        return [f"{indent}{key}:"] + [f"{indent}  {ln}" for ln in value.rstrip().splitlines()]
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return [f"{indent}{key}: {text}"]


def render_json(report: Report) -> str:
    return json.dumps(report.to_dict(), indent=2, default=str) + "\n"
