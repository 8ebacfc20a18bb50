"""From how the command ended and what it printed, to what `cvdoctor run` says.

- Exit 0: nothing, except the symptoms seen on the way (warnings).
- A Python error (or a launcher reporting one): the recipe that matches the exception that ended
  the run (under torchrun, the root-cause rank's), with the facts read from the message and the
  fix for this case. An exception no recipe knows gets one line and no recipe.
- A death by signal: what the signal means here and where to look (SIGKILL: the OOM killer, with
  this cgroup's `memory.events` read before and after; SIGSEGV: the Python frame the fault
  handler printed; SIGBUS: shared memory; SIGILL: the CPU), and the recipe for it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from cvdoctor.errorfacts import SIGNAL_MEANING, signal_name
from cvdoctor.run.tail import OutputTail, Symptom

SIGNAL_RECIPES = {"SIGKILL": "process-killed-oom", "SIGSEGV": "segmentation-fault",
                  "SIGBUS": "shm-docker-ipc", "SIGILL": "cpu-illegal-instruction"}
QUIET_SIGNALS = ("SIGINT", "SIGPIPE")  # the user pressed Ctrl-C, or the reader went away
_FAULT_FRAME = re.compile(r"Fatal Python error: (\w[\w ]*)[\s\S]{0,4000}?Current thread 0x[0-9a-f]+ "
                          r"\(most recent call first\):\s*\n\s*File \"([^\"]+)\", line (\d+) in "
                          r"(\S+)")


@dataclass
class Report:
    argv: list[str]
    exit_code: int  # what cvdoctor exits with: the command's status, 128+N for signal N
    signal: str | None
    duration_s: float
    pty: bool
    output_bytes: int
    output_lines: int
    matches: list = field(default_factory=list)  # cvdoctor.catalog.Match, the accepted ones
    symptoms: list[Symptom] = field(default_factory=list)
    error_line: str | None = None
    notes: dict = field(default_factory=dict)  # oom_kills_during_run, fault_frame, ...
    block: list[str] = field(default_factory=list)  # what is printed after a failure
    warnings: list[str] = field(default_factory=list)  # what is printed for symptoms

    def to_dict(self) -> dict:
        return {
            "schema_version": 1, "command": "run", "argv": self.argv,
            "exit_code": self.exit_code, "signal": self.signal,
            "duration_s": round(self.duration_s, 3),
            "matches": [{"recipe": m.recipe, "category": m.category,
                         "matched_text": m.matched_text, "line": m.line, "fix": m.fix,
                         "facts": m.facts, "said": m.said} for m in self.matches],
            "symptoms": [s.to_dict() for s in self.symptoms],
            "error_line": self.error_line, "pty": self.pty, "output_bytes": self.output_bytes,
            "output_lines": self.output_lines, "notes": self.notes, "printed": self.block
            + self.warnings,
        }


def memory_events() -> Path | None:
    """The file holding this process's cgroup `oom_kill` counter (the command runs in the same
    cgroup): cgroup v2 `memory.events`, or v1 `memory.oom_control`; in a container the cgroup's
    own path may not be visible, its namespace root is."""
    candidates = []
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            number, controllers, path = (line.split(":", 2) + ["", ""])[:3]
            rel = path.strip().lstrip("/")
            if number == "0" and controllers == "":
                candidates += [Path("/sys/fs/cgroup", rel, "memory.events"),
                               Path("/sys/fs/cgroup/memory.events")]
            elif "memory" in controllers.split(","):
                candidates += [Path("/sys/fs/cgroup/memory", rel, "memory.oom_control"),
                               Path("/sys/fs/cgroup/memory/memory.oom_control")]
    except OSError:
        return None
    return next((c for c in candidates if c.is_file()), None)


def oom_kills() -> int | None:
    """The cgroup's `oom_kill` counter, or None where there is none to read."""
    path = memory_events()
    if path is None:
        return None
    try:
        for line in path.read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
    except (OSError, ValueError):
        pass
    return None


def _signal_number(returncode: int) -> int | None:
    return -returncode if returncode < 0 else None


def diagnose(argv: list[str], returncode: int, duration_s: float, pty: bool, tail: OutputTail,
             *, faulthandler_by_us: bool = False, oom_before: int | None = None) -> Report:
    tail.close()
    sig_no = _signal_number(returncode)
    sig = signal_name(sig_no) if sig_no else None
    report = Report(argv, 128 + sig_no if sig_no else returncode, sig, duration_s, pty,
                    tail.total, tail.lines, symptoms=tail.symptom_list())
    chosen = None
    if returncode != 0:
        chosen = _explain_failure(report, tail, sig, faulthandler_by_us, oom_before)
    shown = {m.recipe for m in report.matches}
    for s in report.symptoms:
        if s.kind.recipe in shown or (chosen and s.kind.recipe == chosen):
            continue
        times = f"{s.count} lines" if s.count > 1 else "1 line"
        report.warnings.append(f"cvdoctor: warning: {s.kind.what} ({times}, first at output line "
                               f"{s.first_line_number}: {s.first_line!r}); see cvdoctor explain "
                               f"{s.kind.recipe}")
    return report


def _explain_failure(report: Report, tail: OutputTail, sig: str | None,
                     faulthandler_by_us: bool, oom_before: int | None) -> str | None:
    from cvdoctor.catalog import error_line, get_recipe, match_text

    text = tail.text()
    try:
        matches = match_text(text)
        report.error_line = error_line(text)
    except Exception as exc:  # noqa: BLE001 - a broken recipe must not hide the command's status
        report.block.append(f"cvdoctor: the command failed (exit status {report.exit_code}); "
                            f"its output could not be matched ({type(exc).__name__}: {exc})")
        return None
    # With an exception that ended the run, only a recipe for that exception explains it (an
    # earlier warning that matched something does not); without one, the best match does.
    accepted = [m for m in matches if m.on_error] if report.error_line else matches[:1]
    best = accepted[0] if accepted else None
    launcher = next((m for m in matches if m.recipe == "torchrun-child-failed"), None)

    lines: list[str] = []
    recipe_id = best.recipe if best else None
    if sig and sig not in QUIET_SIGNALS:
        lines.append(f"cvdoctor: the command was killed by {sig} (signal "
                     f"{report.exit_code - 128}, exit status {report.exit_code}): "
                     f"{SIGNAL_MEANING.get(sig, 'a signal')}.")
        lines += _signal_details(report, sig, text, faulthandler_by_us, oom_before)
        if sig in SIGNAL_RECIPES and (best is None or not best.on_error
                                      or best.recipe == "torchrun-child-failed"):
            recipe_id = SIGNAL_RECIPES[sig]
            best = None
    elif sig in QUIET_SIGNALS:
        return None
    elif best:
        lines.append(f"cvdoctor: the command failed (exit status {report.exit_code}); a known "
                     "problem:")
    else:
        what = f": {report.error_line}" if report.error_line else ""
        report.block.append(f"cvdoctor: the command failed (exit status {report.exit_code}); no "
                            f"cvdoctor recipe matches its error{what}")
        return None
    if best:
        report.matches.append(best)
        lines.append(f"  error:   {best.line}")
        if launcher and launcher is not best and launcher.said:
            lines.append(f"  ranks:   {launcher.said} (torchrun's summary)")
        if best.facts.get("signal") == "SIGKILL":  # a rank killed under torchrun
            lines += [ln for ln in _signal_details(report, "SIGKILL", text, faulthandler_by_us,
                                                   oom_before) if ln.startswith("  seen")]
    if recipe_id:
        recipe = get_recipe(recipe_id)
        if recipe is None:
            report.block += lines
            return None
        if best is None:
            from cvdoctor.catalog import Match

            report.matches.append(Match(recipe.id, recipe.category, 0.0, sig or "", sig or "",
                                        recipe.fix))
        lines.append(f"  recipe:  {recipe.title}")
        if best and best.said:
            lines.append(f"  facts:   {best.said}")
        lines.append(f"  fix:     {best.fix if best else recipe.fix}")
        lines.append(f"  more:    cvdoctor explain {recipe.id}")
    report.block += lines
    return recipe_id


def _signal_details(report: Report, sig: str, text: str, faulthandler_by_us: bool,
                    oom_before: int | None) -> list[str]:
    lines = []
    if sig == "SIGKILL":
        after = oom_kills()
        where = memory_events()
        if oom_before is not None and after is not None:
            report.notes["oom_kills_during_run"] = after - oom_before
            if after > oom_before:
                lines.append(f"  seen:    this cgroup's OOM killer fired during the run "
                             f"({where.name} oom_kill {oom_before} -> {after})")
            else:
                lines.append(f"  seen:    this cgroup's OOM killer did not fire ({where.name} "
                             f"oom_kill stayed {after}): look at the host's kernel log, or at who "
                             "else sends SIGKILL (a scheduler's memory or time limit)")
        lines.append("  look:    dmesg -T | grep -i -E 'killed process|out of memory'"
                     + (f"; cat {where}" if where else ""))
    elif sig in ("SIGSEGV", "SIGBUS", "SIGABRT", "SIGILL", "SIGFPE"):
        frame = _FAULT_FRAME.search(text)
        if frame:
            report.notes["fault_frame"] = {"file": frame.group(2), "line": int(frame.group(3)),
                                           "function": frame.group(4)}
            lines.append(f"  where:   File \"{frame.group(2)}\", line {frame.group(3)}, in "
                         f"{frame.group(4)} (Python's fault handler)")
        elif faulthandler_by_us:
            lines.append("  where:   the command printed no Python stack (it is not Python, or "
                         "crashed outside the interpreter)")
        else:
            lines.append("  where:   rerun with PYTHONFAULTHANDLER=1 to get the Python stack")
        if sig == "SIGABRT":
            cpp = re.search(r"terminate called after throwing an instance of [^\n]+(?:\n\s*what\(\):"
                            r"[^\n]*)?", text)
            if cpp:
                lines.append(f"  error:   {' '.join(cpp.group(0).split())[:300]}")
    elif sig == "SIGTERM":
        lines.append("  who:     another process: a scheduler's time or memory limit, `kill`, "
                     "`docker stop`, or a launcher stopping the other ranks")
    return lines


def faulthandler_env(env: dict) -> bool:
    """Set PYTHONFAULTHANDLER=1 for the command unless the user set it; True when we did."""
    if "PYTHONFAULTHANDLER" in env:
        return False
    env["PYTHONFAULTHANDLER"] = "1"
    return True
