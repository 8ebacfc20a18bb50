"""data.label_format, data.class_ids, data.coordinates: every YOLO label row, by file and line."""
from __future__ import annotations

from cvdoctor.data import wording as w
from cvdoctor.finding import FAIL, WARN, Problem, report_problems, skipped
from cvdoctor.registry import register
from cvdoctor.text import plural

NEEDS = ["dataset"]


def _rows_line(ds) -> str:
    total = sum(i.get("rows", 0) for i in ds["splits"].values())
    shapes: dict[str, int] = {}
    for info in ds["splits"].values():
        for k, v in info.get("row_shapes", {}).items():
            shapes[k] = shapes.get(k, 0) + v
    kinds = ", ".join(f"{v:,} {k}" for k, v in shapes.items() if v)
    return f"{plural(total, 'label row')} checked ({kinds or 'none'})"


def _skip(ds, title):
    if ds.get("kind") != "yolo":
        return skipped(title, f"only for YOLO label files; this is {ds.get('kind')}")
    reason = w.no_rows(ds)
    if reason:
        return skipped(title, f"no label row to check: {reason}")
    return None


FORMAT_TITLE = "Label rows have the task's columns"


@register("data.label_format", order=40, targets=["yolo"], title=FORMAT_TITLE,
          recipes=["yolo-label-format", "yolo-duplicate-labels"], needs=NEEDS)
def check_label_format(ctx):
    """Counts the columns of every label row against the task: detect 5 (polygon rows are
    accepted and boxed), segment a class and 3+ points, obb 9, pose 5 + kpt_shape values. Fails
    on rows ultralytics drops (wrong columns, text that is not a number, box and polygon rows
    mixed in one file) and on box rows in a segment set; warns on keypoint visibilities other
    than 0/1/2 and on duplicate rows (ultralytics removes them)."""
    ds = ctx.fact("dataset")
    skip = _skip(ds, FORMAT_TITLE)
    if skip:
        return skip
    fix = f"Write {ds['task']} rows: " + {
        "detect": "class cx cy w h", "segment": "class x1 y1 x2 y2 x3 y3 ...",
        "obb": "class x1 y1 x2 y2 x3 y3 x4 y4",
        "pose": "class cx cy w h + keypoints (kpt_shape)"}.get(ds["task"], "") + "."
    problems = []
    for code, noun, status in (("row.columns", "label row", FAIL),
                               ("row.not_number", "label row", FAIL),
                               ("row.mixed", "label file", FAIL),
                               ("row.box_for_segment", "box row", FAIL),
                               ("row.kpt_visibility", "keypoint row", WARN)):
        if w.count(ds, code):
            problems.append(Problem(status, "yolo-label-format", w.describe(ds, code, noun), fix,
                                    w.evidence(ds, code)))
    if w.count(ds, "row.duplicate"):
        problems.append(Problem(WARN, "yolo-duplicate-labels",
                                w.describe(ds, "row.duplicate", "duplicate row"),
                                "Remove the repeated rows from these label files.",
                                w.evidence(ds, "row.duplicate")))
    ok = _rows_line(ds)
    if ds["task"] == "detect" and ds["task_source"].startswith("the default"):
        polys = sum(i.get("row_shapes", {}).get("polygon", 0) for i in ds["splits"].values())
        if polys:
            ok += "; polygon rows are boxed for detect: pass --task segment to check masks"
    return report_problems(FORMAT_TITLE, problems, ok)


CLASS_TITLE = "Class ids within the dataset's classes"


@register("data.class_ids", order=50, targets=["yolo"], title=CLASS_TITLE,
          recipes=["yolo-class-out-of-range"], needs=NEEDS)
def check_class_ids(ctx):
    """Reads the class id of every label row. Fails on ids past the number of names in
    data.yaml (or --num-classes), negative ids and ids that are not whole numbers: ultralytics
    drops the whole image for each."""
    ds = ctx.fact("dataset")
    skip = _skip(ds, CLASS_TITLE)
    if skip:
        return skip
    if ds["nc"] is None:
        return skipped(CLASS_TITLE, "data.yaml names no classes (see data.yaml)")
    problems = []
    fix = f"Remap the class ids to 0..{ds['nc'] - 1} or add the missing names to data.yaml."
    for code in ("row.class_out_of_range", "row.class_not_int"):
        if w.count(ds, code):
            problems.append(Problem(FAIL, "yolo-class-out-of-range",
                                    w.describe(ds, code, "label row"), fix, w.evidence(ds, code)))
    past = {}
    for split, info in ds["splits"].items():
        for cls, n in info.get("classes_past_nc", {}).items():
            past[cls] = past.get(cls, 0) + n
    return report_problems(CLASS_TITLE, problems,
                           f"every class id is in 0..{ds['nc'] - 1} "
                           f"({plural(ds['nc'], 'name')})",
                           classes_past_nc=past)


COORD_TITLE = "Coordinates normalized and inside the image"


@register("data.coordinates", order=60, targets=["yolo"], title=COORD_TITLE,
          recipes=["yolo-coordinates"], needs=NEEDS)
def check_coordinates(ctx):
    """Checks every coordinate is a fraction of the image size. Fails on values past 1.01 (pixel
    coordinates) or below -0.01: ultralytics drops those images. Warns on zero-width or
    zero-height boxes and boxes whose centre and size put them past the frame, which ultralytics
    keeps or clips without a word."""
    ds = ctx.fact("dataset")
    skip = _skip(ds, COORD_TITLE)
    if skip:
        return skip
    fix = "Divide x and w by the image width, y and h by its height; boxes are centre and size."
    problems = []
    for code, noun, tail, status in (("row.not_normalized", "label row", "", FAIL),
                                     ("row.negative", "label row", "", FAIL),
                                     ("row.zero_size", "shape", "of zero size", WARN),
                                     ("row.box_past_frame", "box", "past the frame", WARN)):
        if w.count(ds, code):
            problems.append(Problem(status, "yolo-coordinates",
                                    w.describe(ds, code, noun, tail=tail), fix,
                                    w.evidence(ds, code)))
    return report_problems(COORD_TITLE, problems, "every coordinate is within 0-1")
