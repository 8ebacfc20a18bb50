"""YOLO label rows: every line of a label file checked against its task, with file:line places.

The rules follow what ultralytics' verify_image_label enforces (it drops the whole image on the
first bad row, with one log line) plus what it silently accepts: zero-size boxes, boxes that run
past the frame (it clips them), duplicate rows (it removes them), box rows in a segment set.
Row shapes by task: detect `cls cx cy w h` (polygon rows are accepted and turned into boxes,
unless a file mixes them with box rows: then the image is dropped, whatever the task but pose);
segment `cls x1 y1 x2 y2 x3 y3 ...` (three points or more); pose `cls cx cy w h` + `nkpt * ndim`
keypoint values; obb `cls x1 y1 x2 y2 x3 y3 x4 y4`. Coordinates are normalized to [0, 1]
(ultralytics allows 1% slack).
"""
from __future__ import annotations

import math
from typing import Any

from cvdoctor.data.issues import Issues
from cvdoctor.text import plural

TASKS = ("detect", "segment", "pose", "obb")
SLACK = 0.01  # ultralytics: points.max() <= 1.01, lb.min() >= -0.01
PIXELS_HINT = 1.5  # values this far past 1 are pixel coordinates, not rounding


class RowChecker:
    def __init__(self, task: str, nc: int | None, kpt_shape: tuple[int, int] | None = None):
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}")
        self.task = task
        self.nc = nc
        self.kpt = kpt_shape
        self.class_counts = [0] * nc if nc else []
        self.extra_classes: dict[int, int] = {}  # ids past nc (or all ids when nc is unknown)
        self.shapes = {"box": 0, "polygon": 0, "obb": 0, "pose": 0}
        self.rows = 0

    def check(self, text: str, file: str, issues: Issues) -> int:
        """Check one label file's text; return the number of non-empty rows."""
        seen: set[tuple[str, ...]] = set()
        kinds: set[str] = set()
        n_rows = 0
        for line_no, line in enumerate(text.splitlines(), 1):
            tokens = tuple(line.split())
            if not tokens:
                continue
            n_rows += 1
            if tokens in seen:
                issues.add("row.duplicate", file, line_no, detail=line.strip()[:80])
                continue
            seen.add(tokens)
            kind = self._row(tokens, file, line_no, issues)
            if kind:
                kinds.add(kind)
        if self.task != "pose" and "box" in kinds and "polygon" in kinds:
            # verify_image_label, for every task but pose: a file with any row of more than 6
            # columns is read as polygons, and a 5-column row beside them fails its assert
            issues.add("row.mixed", file, detail="box rows (5 columns) and polygon rows in one "
                                                 "file: ultralytics drops the image ('labels mix "
                                                 "segment and detection rows')")
        self.rows += n_rows
        return n_rows

    def _row(self, tokens: tuple[str, ...], file: str, line_no: int, issues: Issues) -> str | None:
        try:
            values = [float(t) for t in tokens]
        except ValueError:
            bad = next(t for t in tokens if not _is_float(t))
            issues.add("row.not_number", file, line_no, detail=f"{bad!r} is not a number")
            return None
        if not all(math.isfinite(v) for v in values):
            issues.add("row.not_number", file, line_no, detail="nan or inf in the row")
            return None
        kind = self._shape(len(values), file, line_no, issues)
        if kind is None:
            return None
        self._class(values[0], file, line_no, issues)
        coords = values[1:]
        if kind == "pose":
            nkpt, ndim = self.kpt  # type: ignore[misc]
            kpts = coords[4:]
            points = [v for i, v in enumerate(kpts) if i % ndim < 2]
            if not self._range(coords[:4] + points, file, line_no, issues):
                return kind
            self._box(coords[:4], file, line_no, issues)
            if ndim == 3:
                vis = kpts[2::3]
                odd = [v for v in vis if v not in (0.0, 1.0, 2.0)]
                if odd:
                    issues.add("row.kpt_visibility", file, line_no,
                               detail=f"keypoint visibility {odd[0]:g}; expected 0, 1 or 2")
        elif kind == "box":
            if self._range(coords, file, line_no, issues):
                self._box(coords, file, line_no, issues)
        else:
            if self._range(coords, file, line_no, issues):
                if _polygon_area(coords) <= 1e-12:
                    issues.add("row.zero_size", file, line_no,
                               detail=f"the {len(coords) // 2} points enclose no area")
        return kind

    def _shape(self, n: int, file: str, line_no: int, issues: Issues) -> str | None:
        task = self.task
        if task == "pose":
            nkpt, ndim = self.kpt  # type: ignore[misc]
            want = 5 + nkpt * ndim
            if n == want:
                self.shapes["pose"] += 1
                return "pose"
            issues.add("row.columns", file, line_no,
                       detail=f"pose rows need 5 + {nkpt}x{ndim} = {want} columns, found {n}")
            return None
        if task == "obb":
            if n == 9:
                self.shapes["obb"] += 1
                return "obb"
            issues.add("row.columns", file, line_no,
                       detail=f"obb rows need 9 columns (class x1 y1 ... x4 y4), found {n}")
            return None
        if n == 5:
            self.shapes["box"] += 1
            if task == "segment":
                issues.add("row.box_for_segment", file, line_no,
                           detail="a box row (5 columns) where segment labels need polygons")
            return "box"
        if self.kpt and task == "detect" and n == 5 + self.kpt[0] * self.kpt[1]:
            self.shapes["pose"] += 1
            return "box"  # ultralytics keeps the box of a pose row for detection
        if n >= 7 and (n - 1) % 2 == 0:
            self.shapes["polygon" if n != 9 or task == "segment" else "obb"] += 1
            return "polygon"
        if task == "segment":
            detail = (f"segment rows need a class and 3 or more x y points (an odd number of "
                      f"columns, 7 or more), found {n}")
        else:
            detail = f"detect rows need 5 columns (class cx cy w h), found {n}"
        issues.add("row.columns", file, line_no, detail=detail)
        return None

    def _class(self, value: float, file: str, line_no: int, issues: Issues) -> None:
        if value != int(value):
            issues.add("row.class_not_int", file, line_no, detail=f"class {value:g}")
            return
        cls = int(value)
        if cls < 0 or (self.nc is not None and cls >= self.nc):
            issues.add("row.class_out_of_range", file, line_no,
                       detail=f"class {cls}, dataset has "
                              f"{plural(self.nc or 0, 'class', 'classes')} "
                              f"(0-{(self.nc or 1) - 1})",
                       value=cls)
            self.extra_classes[cls] = self.extra_classes.get(cls, 0) + 1
        elif self.nc is None:
            self.extra_classes[cls] = self.extra_classes.get(cls, 0) + 1
        else:
            self.class_counts[cls] += 1

    def _range(self, coords: list[float], file: str, line_no: int, issues: Issues) -> bool:
        """True when every coordinate is normalized (within ultralytics' 1% slack)."""
        hi, lo = max(coords), min(coords)
        if hi > 1 + SLACK:
            hint = ": pixel coordinates? YOLO wants them divided by the image size" \
                if hi > PIXELS_HINT else ""
            issues.add("row.not_normalized", file, line_no,
                       detail=f"coordinate {hi:g} is past 1{hint}", value=hi)
            return False
        if lo < -SLACK:
            issues.add("row.negative", file, line_no, detail=f"coordinate {lo:g} is negative",
                       value=lo)
            return False
        return True

    def _box(self, box: list[float], file: str, line_no: int, issues: Issues) -> None:
        cx, cy, w, h = box
        if w <= 0 or h <= 0:
            issues.add("row.zero_size", file, line_no, detail=f"width {w:g}, height {h:g}")
            return
        x1, x2, y1, y2 = cx - w / 2, cx + w / 2, cy - h / 2, cy + h / 2
        if x1 < -SLACK or y1 < -SLACK or x2 > 1 + SLACK or y2 > 1 + SLACK:
            issues.add("row.box_past_frame", file, line_no,
                       detail=f"box spans x {x1:.3f}..{x2:.3f}, y {y1:.3f}..{y2:.3f}")

    def summary(self) -> dict[str, Any]:
        return {"rows": self.rows, "row_shapes": dict(self.shapes),
                "class_counts": list(self.class_counts),
                "classes_past_nc": {str(k): v for k, v in sorted(self.extra_classes.items())}}


def _is_float(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _polygon_area(coords: list[float]) -> float:
    xs, ys = coords[0::2], coords[1::2]
    n = len(xs)
    return abs(sum(xs[i] * ys[(i + 1) % n] - xs[(i + 1) % n] * ys[i] for i in range(n))) / 2
