"""Small readings of the YOLO facts that several model.yolo_* checks share."""
from __future__ import annotations

import os
from typing import Any

from cvdoctor.finding import Finding, skipped
from cvdoctor.text import first_line

NOT_YOLO = ("not a YOLO target (ultralytics:MODEL.yaml, a .pt, or a file that builds "
            "YOLO(...))")


def skip_unless_yolo(ctx, title: str) -> Finding | None:
    if getattr(ctx, "family", None) != "yolo":
        return skipped(title, NOT_YOLO)
    return None


def model_missing(probe: dict[str, Any]) -> str | None:
    """Why there is no model to work with (model.yolo_weights reports it), or None."""
    model = probe.get("model") or {}
    if model.get("missing_weights"):
        return f"{model['missing_weights']} is missing (see model.yolo_weights)"
    if model.get("refused"):
        return "the checkpoint was not loaded: loading it would run code (see model.yolo_weights)"
    if model.get("error"):
        return "the model could not be built (see model.yolo_weights)"
    if "task" not in model:
        return "the model was not built"
    return None


def data_missing(probe: dict[str, Any]) -> str | None:
    data = probe.get("data") or {}
    if data.get("missing"):
        return ("no dataset named: pass --data data.yaml, or set data = \"...\" (or "
                "model.train(data=...)) in the file")
    if data.get("error"):
        return "ultralytics cannot use the dataset (see model.yolo_classes)"
    if data.get("no_images"):
        return "the training split lists no images (see model.yolo_classes)"
    return None


def names_list(names: Any) -> list[str]:
    if isinstance(names, dict):
        try:
            return [str(names[k]) for k in sorted(names, key=lambda k: int(k))]
        except (TypeError, ValueError):
            return [str(v) for v in names.values()]
    if isinstance(names, list):
        return [str(v) for v in names]
    return []


def short_names(names: list[str], shown: int = 4) -> str:
    """'cat', 'dog' and 3 more."""
    if not names:
        return "none"
    text = ", ".join(repr(n) for n in names[:shown])
    return text + (f" and {len(names) - shown} more" if len(names) > shown else "")


def log_lines(probe: dict[str, Any], *needles: str) -> list[str]:
    return [ln["text"] for ln in probe.get("log") or []
            if any(n.lower() in ln["text"].lower() for n in needles)]


def error_text(err: dict[str, Any]) -> str:
    return f"{err.get('type')}: {first_line(err.get('message') or '')}"


def rel(path: str, cwd: str) -> str:
    try:
        r = os.path.relpath(path, cwd)
    except ValueError:
        return path
    return path if r.startswith("../..") else r
