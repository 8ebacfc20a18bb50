"""Zero-code mode: `--cvdoctor-model TARGET` adds one test item per model check.

TARGET is what `cvdoctor model` takes: a Python file (or `package.module:attr`) or a zoo spec
such as `torchvision:resnet18`. The target is loaded when its first item runs, not at collection
(a broken model file must not stop the rest of the suite from being collected), and every item of
a target shares one `ModelContext`, so the forward/backward pass is done once per process.

Outcomes per finding status: pass -> passed; fail/error -> failed with the measured message, fix
and recipe; skip -> skipped with the check's reason; warn -> passed with a `CvdoctorWarning` in
the warnings summary (failed under --cvdoctor-strict).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import pytest

from pytest_cvdoctor.assertions import CvdoctorWarning, describe_finding

# The model check ids (fixed by the model issue); used only when the registry has none, so that
# the items still appear and fail saying so instead of silently vanishing.
MODEL_CHECK_IDS = ("model.batch_independence", "model.data", "model.dtype", "model.forward",
                   "model.gradients", "model.initial_loss", "model.optimizer", "model.output",
                   "model.overfit_batch", "model.train_eval")
ZOOS = ("torchvision", "timm")  # as cvdoctor.model.loader reads them
_SEVERITY = {"pass": 0, "skip": 0, "warn": 1, "error": 2, "fail": 3}


class ModelCheckFailed(Exception):
    """A check failed (or the target did not load): reported as its message, no traceback."""


def model_check_ids() -> list[str]:
    from cvdoctor.registry import all_checks

    ids = [spec.id for spec in all_checks("model")]
    return ids or list(MODEL_CHECK_IDS)


class ModelTarget(pytest.Collector):
    """One --cvdoctor-model target; holds the loaded spec and the shared context."""

    def __init__(self, *, target: str, load_as: str, check_ids: list[str], budget: float | None,
                 strict: bool, input_shape: str | None = None, num_classes: int | None = None,
                 **kwargs: Any):
        super().__init__(**kwargs)
        self.check_ids = check_ids
        self.target = target  # as the user wrote it: names the items
        self.load_as = load_as  # relative file paths made absolute
        self.input_shape = input_shape
        self.num_classes = num_classes
        self.budget = budget
        self.strict = strict
        self._ctx: Any = None
        self._load_error: str | None = None

    @classmethod
    def for_session(cls, session: pytest.Session, target: str, base: Path, **kwargs: Any
                    ) -> "ModelTarget":
        """`base`: where a relative file target is looked up (the invocation directory for
        --cvdoctor-model, the rootdir for the ini key)."""
        load_as, path = target, session.path
        zoo = ":" in target and target.partition(":")[0] in ZOOS
        if not zoo and (target.endswith(".py") or "/" in target or os.sep in target):
            file = Path(target).expanduser()
            file = file if file.is_absolute() else base / file
            load_as = str(file)
            if file.is_file():
                path = file
        return cls.from_parent(session, name=f"cvdoctor-model[{target}]",
                               nodeid=f"cvdoctor-model:{target}", path=path,
                               target=target, load_as=load_as, **kwargs)

    def collect(self) -> list["ModelCheckItem"]:
        return [ModelCheckItem.from_parent(self, name=check_id, check_id=check_id)
                for check_id in self.check_ids]

    def context(self) -> Any:
        __tracebackhide__ = True
        if self._ctx is None and self._load_error is None:
            try:
                from cvdoctor.api import model_context
                from cvdoctor.model.loader import LoadOptions, load_target, parse_input_shape

                options = LoadOptions(input_shape=parse_input_shape(self.input_shape),
                                      num_classes=self.num_classes)
                spec = load_target(self.load_as, options)
                self._ctx = model_context(spec, budget=self.budget)
            except Exception as exc:  # noqa: BLE001 - TargetError and whatever the file raised
                self._load_error = f"{type(exc).__name__}: {exc}"
        if self._load_error is not None:
            raise ModelCheckFailed(f"cvdoctor could not load the model target {self.target!r}:\n"
                                   f"  {self._load_error}")
        return self._ctx

    def run_check(self, check_id: str) -> list[Any]:
        __tracebackhide__ = True
        from cvdoctor.api import run_model_context

        ctx = self.context()
        report = run_model_context(ctx, select=[check_id], target=self.target)
        return report.get_all(check_id)


class ModelCheckItem(pytest.Item):
    def __init__(self, *, check_id: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.check_id = check_id
        self.add_marker("cvdoctor_model")

    def runtest(self) -> None:
        __tracebackhide__ = True
        target: ModelTarget = self.parent  # type: ignore[assignment]
        findings = target.run_check(self.check_id)
        if not findings:
            raise ModelCheckFailed(f"{self.check_id} gave no finding for {target.target!r}")
        worst = max(findings, key=lambda f: _SEVERITY[f.status]).status
        text = "\n".join(line for f in findings for line in describe_finding(f))
        if worst in ("fail", "error") or (worst == "warn" and target.strict):
            raise ModelCheckFailed(f"cvdoctor {self.check_id} on {target.target}:\n{text}")
        if worst == "warn":
            self.add_report_section("call", "cvdoctor", text)
            # Attributed to the target, not to this file: the summary then shows no source line.
            warnings.warn_explicit(CvdoctorWarning(text), CvdoctorWarning, target.target, 0)
            return
        if all(f.status == "skip" for f in findings):
            from pytest_cvdoctor.plugin import SKIP_AT_ITEM

            self.stash[SKIP_AT_ITEM] = True
            pytest.skip(f"cvdoctor {self.check_id}: {findings[0].message}")

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style=None) -> Any:
        if isinstance(excinfo.value, ModelCheckFailed):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Any, int | None, str]:
        target: ModelTarget = self.parent  # type: ignore[assignment]
        return self.path, None, f"cvdoctor {self.check_id} on {target.target}"
