"""Renderers: the report as text for people or as one JSON object for machines.

`finding_lines` is the one layout of a finding (mark, id, measured message, fix, recipe): the
text report, the pytest plugin's header and its assertion messages all call it.
"""
from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, Any, TextIO

from cvdoctor.finding import ERROR, FAIL, PASS, SKIP, WARN, Finding
from cvdoctor.text import truncate

if TYPE_CHECKING:  # the report imports this module, never the other way round at run time
    from cvdoctor.report import Report

MARKS = {PASS: "✓", WARN: "!", FAIL: "✗", SKIP: "–", ERROR: "E"}
ASCII_MARKS = {PASS: "ok", WARN: "!", FAIL: "X", SKIP: "-", ERROR: "E"}
CONSEQUENCE_MARK, ASCII_CONSEQUENCE_MARK = "↳", "->"
_COLORS = {PASS: "32", WARN: "33", FAIL: "31", SKIP: "2", ERROR: "35"}
BUG_NOTE = "the check itself broke: a cvdoctor bug, not your setup; -v shows the traceback"


def use_color(stream: TextIO) -> bool:
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return bool(getattr(stream, "isatty", lambda: False)())


def _paint(text: str, status: str, color: bool) -> str:
    return f"\x1b[{_COLORS[status]}m{text}\x1b[0m" if color else text


def mark(status: str) -> str:
    """The status mark, in ASCII where the terminal cannot encode the Unicode ones."""
    enc = (getattr(sys.stdout, "encoding", None) or "utf-8").lower()
    return MARKS[status] if "utf" in enc else ASCII_MARKS[status]


def finding_lines(f: Finding, *, label: str | None = None, sep: str = "  ",
                  indent: str | None = None, title: bool = True, color: bool = False,
                  verbose: bool = False, one_line_width: int | None = None,
                  marks: dict[str, str] | None = None) -> list[str]:
    """The lines that tell one finding.

    label: what stands after the mark (the check id, padded to a column, or blank for a
    check's second finding); indent: where fix/more lines start. With `one_line_width` the
    finding is a single line of at most that width: the message, fitted, and the recipe in
    brackets (the pytest header).
    """
    label = f.check if label is None else label
    shown = (marks or {}).get(f.status) or mark(f.status)
    if f.caused_by and one_line_width is None:
        # A consequence reads under its cause: no second fix, no second recipe.
        utf = shown == MARKS.get(f.status)
        shown = CONSEQUENCE_MARK if utf else ASCII_CONSEQUENCE_MARK
        return [f"{_paint(shown, f.status, color)} {label}{sep}follows from {f.caused_by}: "
                f"{f.title}: {f.message}"]
    head = f"{_paint(shown, f.status, color)} {label}{sep}"
    if one_line_width is not None:
        more = f" [cvdoctor explain {f.recipe}]" if f.recipe and f.is_problem else ""
        room = max(one_line_width - len(head) - len(more), 10)
        return [f"{head}{truncate(' '.join(f.message.split()), room)}{more}"]
    lines = [f"{head}{f.title + ': ' if title else ''}{f.message}"]
    indent = " " * (len(label) + 5) if indent is None else indent
    if f.status in (WARN, FAIL) and f.fix:
        lines.append(f"{indent}fix: {f.fix}")
    if f.recipe and f.status in (WARN, FAIL):
        lines.append(f"{indent}more: cvdoctor explain {f.recipe}")
    if f.status == ERROR:
        if f.is_bug:
            lines.append(f"{indent}{BUG_NOTE}")
        if verbose and f.evidence.get("traceback"):
            lines.extend(f"{indent}  {ln}" for ln in
                         str(f.evidence["traceback"]).rstrip().splitlines()[-6:])
    if verbose and f.evidence:
        for key, value in f.evidence.items():
            if f.status == ERROR and key == "traceback":
                continue
            lines.extend(_evidence_lines(key, value, indent=indent))
    return lines


def summary_line(report: "Report") -> str:
    counts = {s: 0 for s in MARKS}
    consequences = 0
    for f in report.findings:
        if f.caused_by:
            consequences += 1
        else:
            counts[f.status] += 1
    n_checks = len(report.check_ids())
    parts = [f"{n_checks} check{'s' if n_checks != 1 else ''}"]
    if len(report.findings) != n_checks:  # the counts below are of findings
        parts[0] += f" ({len(report.findings)} findings)"
    for status, word in ((FAIL, "failed"), (ERROR, "broke"), (WARN, "warned"), (SKIP, "skipped")):
        if counts[status]:
            parts.append(f"{counts[status]} {word}")
    if consequences:
        parts.append(f"{consequences} more follow{'s' if consequences == 1 else ''} from "
                     "those")
    target = f" {report.target}" if report.target else ""
    return f"cvdoctor {report.command}{target}: {', '.join(parts)} ({report.duration_s:.1f} s)"


def render_text(report: "Report", *, color: bool = False, verbose: bool = False) -> str:
    width = max((len(f.check) for f in report.findings), default=0)
    lines = [summary_line(report), ""]
    previous = None
    for f in _causes_first(report.findings):
        # A check with several findings reads as one block: its id only on the first line.
        shown_id = f.check if f.check != previous else ""
        previous = f.check
        if f.caused_by:  # indented under its cause
            previous = None
            lines.extend("  " + line for line in finding_lines(f, label=f.check, color=color))
            continue
        lines.extend(finding_lines(f, label=shown_id.ljust(width), color=color,
                                   verbose=verbose))
    if report.findings and all(f.status in (PASS, SKIP) for f in report.findings):
        lines += ["", "No problems found."]
    if verbose and report.facts:
        lines += ["", "facts: " + ", ".join(
            f"{name} {t.get('seconds', 0):.2f} s" + ("" if t.get("ok", True) else " (failed)")
            + (" (recorded)" if t.get("recorded") else "")
            for name, t in report.facts.items())]
    return "\n".join(lines) + "\n"


def _causes_first(findings: list[Finding]) -> list[Finding]:
    """Report order, with each consequence moved right under the block of its cause."""
    consequences: dict[str, list[Finding]] = {}
    for f in findings:
        if f.caused_by:
            consequences.setdefault(f.caused_by, []).append(f)
    out: list[Finding] = []
    for i, f in enumerate(findings):
        if f.caused_by:
            continue
        out.append(f)
        last_of_block = i + 1 == len(findings) or findings[i + 1].check != f.check
        if last_of_block:
            out.extend(consequences.pop(f.check, []))
    for rest in consequences.values():  # a cause that was not shown (not selected)
        out.extend(rest)
    return out


def _evidence_lines(key: str, value: Any, indent: str) -> list[str]:
    if isinstance(value, str) and "\n" in value:
        return [f"{indent}{key}:"] + [f"{indent}  {ln}" for ln in value.rstrip().splitlines()]
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return [f"{indent}{key}: {text}"]


def render_json(report: "Report") -> str:
    return json.dumps(report.to_dict(), indent=2, default=str) + "\n"
