"""Targets of `cvdoctor model` that are not a classification set-up get a context of their own:
YOLO (ultralytics) targets and SAM (segment-anything) set-ups. Which one a target is comes from
its prefix, its suffix or, for a Python file, what it imports and calls (read with `ast`)."""
from __future__ import annotations

from typing import Any, Callable


def family_of(target: Any) -> str | None:
    if not isinstance(target, str):
        return None
    from cvdoctor.sam.target import is_sam_target
    from cvdoctor.yolo.target import is_yolo_target

    if is_sam_target(target):
        return "sam"
    if is_yolo_target(target):
        return "yolo"
    return None


def family_context(target: Any, values: dict[str, Any], *,
                   recorded: dict[str, Any] | None = None,
                   progress: Callable[[str], None] | None = None):
    """The YOLO or SAM context for `target`, or None for an ordinary model target."""
    family = family_of(target)
    if family == "yolo":
        from cvdoctor.yolo.context import yolo_context

        return yolo_context(target, values, recorded=recorded, progress=progress)
    if family == "sam":
        from cvdoctor.sam.context import sam_context

        return sam_context(target, values, recorded=recorded, progress=progress)
    return None
