"""The dataset library behind `cvdoctor data`: what is on disk, as plain data for checks to judge.

`inspect_dataset(path)` recognizes a YOLO data.yaml (or a folder holding one), an ImageFolder
tree, or a semantic-segmentation images/ + masks/ pair, and returns a JSON-ready dict: counts per
split, class counts, and `issues` -- for each problem code the number of occurrences and the
first few places (file, line). It reads label text and image headers by default; `deep=True`
decodes every image in worker processes. It never writes into the dataset. Input that cannot be
inspected at all raises `DatasetError` with a one-line message.

Nothing here imports ultralytics (importing it patches PIL.Image.open process-wide) or torch.
"""
from __future__ import annotations

import errno
import os
from typing import Any

from cvdoctor.data import images, imagefolder, masks, walk, yolo
from cvdoctor.data.errors import DatasetError
from cvdoctor.data.progress import ProgressFn

__all__ = ["DatasetError", "detect_kind", "inspect_dataset", "KINDS", "TASKS"]

KINDS = ("yolo", "imagefolder", "masks")
TASKS = ("detect", "segment", "pose", "obb", "classify")
_LOOKED_FOR = ("a YOLO data.yaml (or a folder holding one), an ImageFolder root (train/ and val/ "
               "with class folders), or an images/ + masks/ folder pair")


def _stat(path: str) -> os.stat_result:
    try:
        return os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise DatasetError(f"{path}: symbolic link loop") from None
        if exc.errno == errno.ENOENT:
            raise DatasetError(f"{path}: no such file or directory") from None
        raise DatasetError(f"{path}: {exc.strerror or exc}") from None


def _yaml_in(folder: str) -> str | None:
    names = []
    try:
        with os.scandir(folder) as it:
            names = sorted(e.name for e in it if e.name.endswith((".yaml", ".yml")) and e.is_file())
    except OSError as exc:
        raise DatasetError(f"{folder}: cannot list: {exc.strerror or exc}") from None
    if not names:
        return None
    for preferred in ("data.yaml", "data.yml", "dataset.yaml"):
        if preferred in names:
            return os.path.join(folder, preferred)
    if len(names) == 1:
        return os.path.join(folder, names[0])
    raise DatasetError(f"{folder}: {len(names)} YAML files ({', '.join(names[:4])}); "
                       "pass the data.yaml itself")


def _has_images(folder: str, depth: int = 2) -> bool:
    try:
        with os.scandir(folder) as it:
            for entry in it:
                if entry.is_file() and images.suffix(entry.name) in masks.IMAGE_SUFFIXES:
                    return True
                if depth > 0 and entry.is_dir() and _has_images(entry.path, depth - 1):
                    return True
    except OSError:
        return False
    return False


def detect_kind(path: str, task: str | None = None) -> tuple[str, str]:
    """(kind, the file or folder to scan) for `path`, or DatasetError saying what was looked for."""
    st = _stat(path)
    import stat as _s
    if _s.S_ISREG(st.st_mode):
        if path.lower().endswith((".yaml", ".yml")):
            return "yolo", path
        raise DatasetError(f"{path}: not a data.yaml; expected {_LOOKED_FOR}")
    if not _s.S_ISDIR(st.st_mode):
        raise DatasetError(f"{path}: {walk._kind(path)}, not a file or folder to inspect")
    try:
        os.listdir(path)
    except OSError as exc:
        raise DatasetError(f"{path}: cannot list: {exc.strerror or exc}") from None
    if task == "classify":
        return "imagefolder", path
    found = _yaml_in(path)
    if found:
        return "yolo", found
    if masks.find_pair(path):
        return "masks", path
    if os.path.isdir(os.path.join(path, "images")) and os.path.isdir(os.path.join(path, "labels")):
        raise DatasetError(f"{path}: images/ and labels/ but no data.yaml; ultralytics trains "
                           "from a data.yaml: write one and pass it")
    if imagefolder.find_splits(path) or _has_images(path):
        return "imagefolder", path
    raise DatasetError(f"{path}: nothing recognizable; expected {_LOOKED_FOR}")


def inspect_dataset(path: str, *, task: str | None = None, num_classes: int | None = None,
                    deep: bool = False, progress: ProgressFn | None = None,
                    workers: int | None = None, cwd: str | None = None) -> dict[str, Any]:
    """Inspect the dataset at `path`; see the module docstring. `task` is one of TASKS."""
    if task is not None and task not in TASKS:
        raise DatasetError(f"unknown task {task!r}; one of {', '.join(TASKS)}")
    if num_classes is not None and num_classes < 1:
        raise DatasetError(f"--num-classes must be 1 or more, not {num_classes}")
    kind, target = detect_kind(path, task)
    if kind == "yolo":
        if task == "classify":
            raise DatasetError(f"{path}: classify datasets are ImageFolder trees, not data.yaml")
        return yolo.scan(target, task=task, num_classes=num_classes, deep=deep,
                         progress=progress, cwd=cwd, workers=workers)
    if kind == "masks":
        return masks.scan(target, num_classes=num_classes, deep=deep, progress=progress,
                          workers=workers)
    return imagefolder.scan(target, deep=deep, progress=progress, workers=workers)
