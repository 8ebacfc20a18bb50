"""Zero-code mode: `--cvdoctor-<command> TARGET` adds one test item per check of that command.

TARGET is what the command takes (`cvdoctor model`: a Python file, `package.module:attr` or a zoo
spec such as `torchvision:resnet18`). The target is loaded when its items are collected, so only
the checks that apply to it become items (a YOLO set-up gets the YOLO checks); a target that does
not load still gets one item per check, each failing with the loader's message, and the rest of
the suite is collected and runs as usual. Every item of a target shares one context, so shared
facts (the model's forward/backward pass) are computed once per process.

Outcomes per finding status: pass -> passed; fail/error -> failed with the measured message, fix
and recipe; skip -> skipped with the check's reason; warn -> passed with a `CvdoctorWarning` in
the warnings summary (failed under --cvdoctor-strict).
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest

from pytest_cvdoctor._state import SKIP_AT_ITEM, CvdoctorSession
from pytest_cvdoctor.assertions import CvdoctorWarning, describe_finding

_SEVERITY = {"pass": 0, "skip": 0, "warn": 1, "error": 2, "fail": 3}


class CheckFailed(Exception):
    """A check failed (or the target did not load): reported as its message, no traceback."""


ModelCheckFailed = CheckFailed  # the name earlier versions used


def check_ids(command: str) -> list[str]:
    from cvdoctor.registry import check_index

    return sorted(e.id for e in check_index() if e.command == command)


class CommandTarget(pytest.Collector):
    """One --cvdoctor-<command> target; holds the shared context once loaded."""

    def __init__(self, *, command: str, target: str, load_as: str, state: CvdoctorSession,
                 **kwargs: Any):
        super().__init__(**kwargs)
        self.command = command
        self.target = target  # as the user wrote it: names the items
        self.load_as = load_as  # relative file paths made absolute
        self.state = state
        self._ctx: Any = None
        self._load_error: str | None = None

    @classmethod
    def for_session(cls, session: pytest.Session, command: str, target: str, load_as: str,
                    state: CvdoctorSession) -> "CommandTarget":
        path = Path(load_as) if Path(load_as).is_file() else session.path
        return cls.from_parent(session, name=f"cvdoctor-{command}[{target}]",
                               nodeid=f"cvdoctor-{command}:{target}", path=path,
                               command=command, target=target, load_as=load_as, state=state)

    def collect(self) -> list["CheckItem"]:
        ids = check_ids(self.command)
        try:
            ctx = self.context()
        except CheckFailed:
            ctx = None  # every item reports the load error
        if ctx is not None:
            from cvdoctor.registry import get_check

            ids = [i for i in ids if ctx.applies(get_check(i)) is not False]
        return [CheckItem.from_parent(self, name=check_id, check_id=check_id)
                for check_id in ids]

    def context(self) -> Any:
        __tracebackhide__ = True
        if self._ctx is None and self._load_error is None:
            try:
                from cvdoctor import api
                from cvdoctor.commands import get_command

                declared = get_command(self.command)
                values = {o.name: self.state.values.get(
                    f"{self.command}.{o.name}", self.state.values.get(o.name))
                    for o in declared.options}
                target = (self.load_as,) if declared.target and declared.target.many \
                    else self.load_as
                self._ctx = api.make_context(declared, target, values)
            except Exception as exc:  # noqa: BLE001 - UsageError and whatever the file raised
                self._load_error = f"{type(exc).__name__}: {exc}"
        if self._load_error is not None:
            raise CheckFailed(f"cvdoctor could not load the {self.command} target "
                              f"{self.target!r}:\n  {self._load_error}")
        return self._ctx

    def run_check(self, check_id: str) -> list[Any]:
        __tracebackhide__ = True
        from cvdoctor.api import run_context

        report = run_context(self.command, self.context(), select=[check_id],
                             target=self.target)
        return report.get_all(check_id)


class CheckItem(pytest.Item):
    def __init__(self, *, check_id: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.check_id = check_id
        self.add_marker(f"cvdoctor_{self.parent.command}")

    def runtest(self) -> None:
        __tracebackhide__ = True
        target: CommandTarget = self.parent  # type: ignore[assignment]
        findings = target.run_check(self.check_id)
        if not findings:
            raise CheckFailed(f"{self.check_id} gave no finding for {target.target!r}")
        worst = max(findings, key=lambda f: _SEVERITY[f.status]).status
        text = "\n".join(line for f in findings for line in describe_finding(f))
        if worst in ("fail", "error") or (worst == "warn" and target.state.strict):
            raise CheckFailed(f"cvdoctor {self.check_id} on {target.target}:\n{text}")
        if worst == "warn":
            self.add_report_section("call", "cvdoctor", text)
            # Attributed to the target, not to this file: the summary then shows no source line.
            warnings.warn_explicit(CvdoctorWarning(text), CvdoctorWarning, target.target, 0)
            return
        if all(f.status == "skip" for f in findings):
            self.stash[SKIP_AT_ITEM] = True
            pytest.skip(f"cvdoctor {self.check_id}: {findings[0].message}")

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style=None) -> Any:
        if isinstance(excinfo.value, CheckFailed):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Any, int | None, str]:
        target: CommandTarget = self.parent  # type: ignore[assignment]
        return self.path, None, f"cvdoctor {self.check_id} on {target.target}"
