"""The facts of `cvdoctor data`: one inspection of the dataset, shared by every data check.

`data_context` checks the target before anything runs (a missing path, a YAML that does not
parse, a folder with nothing recognizable: one line, exit 2); the `dataset` fact then runs
`cvdoctor.data.inspect_dataset` once, reporting progress of its slow parts.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Callable

from cvdoctor.data import TASKS, DatasetError, detect_kind, inspect_dataset, yolo_yaml
from cvdoctor.errors import TargetError, UsageError
from cvdoctor.factgraph import Context, fact


@dataclass
class DataOptions:
    path: str = ""
    task: str | None = None
    num_classes: int | None = None
    deep: bool = False
    kind: str | None = None
    cwd: str | None = None


class DataContext(Context):
    fact_packages = ("cvdoctor.data.facts",)
    parallel = False

    def __init__(self, options: DataOptions, recorded: dict[str, Any] | None = None,
                 progress: Callable[[str], None] | None = None):
        super().__init__(options, recorded)
        self.label = options.path
        self.progress = progress
        self.target_kind = options.kind  # yolo | imagefolder | masks

    def applies(self, check: Any) -> bool | str:
        """A data check runs on the kinds of dataset it declares (`targets=`), all when it
        declares none: a YOLO report has no ImageFolder or mask lines, and the reverse."""
        return not check.targets or self.target_kind in check.targets


def preflight(path: str, task: str | None, num_classes: int | None) -> str:
    """The kind of dataset at `path`, or TargetError/UsageError with one line saying why not."""
    if task is not None and task not in TASKS:
        raise UsageError(f"--task {task!r} is not one of {', '.join(TASKS)}")
    if num_classes is not None and num_classes < 1:
        raise UsageError(f"--num-classes must be 1 or more, not {num_classes}")
    try:
        kind, target = detect_kind(path, task)
        if kind == "yolo":
            if task == "classify":
                raise DatasetError(f"{path}: --task classify reads an ImageFolder tree, "
                                   "not a data.yaml")
            yolo_yaml.load(target)  # a YAML that does not parse stops here, not in a check
    except DatasetError as exc:
        raise TargetError(str(exc)) from None
    return kind


def data_context(target: Any, values: dict[str, Any], *,
                 recorded: dict[str, Any] | None = None,
                 progress: Callable[[str], None] | None = None) -> DataContext:
    """The context of `cvdoctor data PATH` (declared in cvdoctor/commands/data.py)."""
    path = os.fspath(target) if target is not None else ""
    if not path:
        raise UsageError("cvdoctor data needs a PATH: a data.yaml, an ImageFolder root or an "
                         "images/ + masks/ folder")
    task, num_classes = values.get("task"), values.get("num_classes")
    if recorded and isinstance(recorded.get("dataset"), dict):
        kind = recorded["dataset"].get("kind")
    else:
        kind = preflight(path, task, num_classes)
    options = DataOptions(path=path, task=task, num_classes=num_classes,
                          deep=bool(values.get("deep")), kind=kind, cwd=os.getcwd())
    return DataContext(options, recorded=recorded, progress=progress)


BAR_WIDTH = 20


def progress_reporter(emit: Callable[[str], None] | None, every_s: float = 2.0):
    """Adapt the library's (stage, done, total) callback to progress lines: a text bar per
    stage, at most one line every `every_s` seconds, and one when a stage ends."""
    if emit is None:
        return None
    if getattr(emit, "tty", False):
        every_s = min(every_s, 0.25)  # redrawn in place: a live bar costs nothing
    last = {"t": 0.0, "stage": None, "line": None}

    def report(stage: str, done: int, total: int | None) -> None:
        now = time.monotonic()
        finished = total is not None and done >= total
        if stage == last["stage"] and not finished and now - last["t"] < every_s:
            return
        if total:
            filled = min(BAR_WIDTH, int(BAR_WIDTH * done / total))
            line = f"{stage} [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done:,}/{total:,}"
        else:
            line = f"{stage}: {done:,}"
        if line != last["line"]:
            try:  # the command line's Progress redraws a bar in place on a terminal
                emit(line, transient=not finished)
            except TypeError:
                emit(line)
        last.update(t=now, stage=stage, line=line)

    return report


@fact("dataset")
def gather_dataset(ctx) -> dict[str, Any]:
    """Everything `cvdoctor.data.inspect_dataset` finds at the target, as plain data."""
    opts = ctx.options
    return inspect_dataset(opts.path, task=opts.task, num_classes=opts.num_classes,
                           deep=opts.deep, cwd=opts.cwd,
                           progress=progress_reporter(getattr(ctx, "progress", None)))
