"""The `cvdoctor model` context of a YOLO target.

The model lives in the contained ultralytics subprocess, not here: the spec carries no module and
no batch, so the classification checks are not part of the run (`target_kind`), and the
model.yolo_* checks read the facts of `cvdoctor.yolo.facts` (plus the machine facts shm,
resources and gpu).
"""
from __future__ import annotations

import os
from typing import Any, Callable

from cvdoctor.model.context import ModelContext, ModelSpec
from cvdoctor.yolo.target import SETTING_KEYS, YoloTarget, parse_target

FAMILY = "yolo"
# Command-line options that are ultralytics train() settings, by option name.
CLI_SETTINGS = {"data": "data", "imgsz": "imgsz", "batch_size": "batch", "workers": "workers"}


class YoloContext(ModelContext):
    fact_packages = ModelContext.fact_packages + ("cvdoctor.yolo.facts",)
    family = FAMILY
    target_kind = FAMILY  # runs the checks registered with targets=["yolo"], only those

    def __init__(self, target: YoloTarget, values: dict[str, Any], *,
                 recorded: dict[str, Any] | None = None,
                 progress: Callable[[str], None] | None = None, device: str = "cpu"):
        hints = {k: v for k, v in values.items() if v is not None}
        hints["family"] = FAMILY
        spec = ModelSpec(model=None, inputs=None, name=target.text, batch_source="none",
                         loss_source="ultralytics", hints=hints)
        super().__init__(spec, device=device, budget_s=values.get("budget"), progress=progress,
                         recorded=recorded, label=target.text)
        self.yolo = target
        self.cwd = os.getcwd()
        self.model_attr = values.get("model_name")
        self.cli_settings = {CLI_SETTINGS[k]: values[k] for k in CLI_SETTINGS
                             if values.get(k) is not None}
        # What is known before anything runs: the command line, then the file's literals.
        static: dict[str, Any] = {}
        for source in (self.cli_settings, target.file_settings,
                       {k: v["literal"] for k, v in target.train_kwargs.items()
                        if "literal" in v}):
            for key, value in source.items():
                if key in SETTING_KEYS and value is not None:
                    static.setdefault(key, value)
        self.static_settings = static


def yolo_context(target: str, values: dict[str, Any], *,
                 recorded: dict[str, Any] | None = None,
                 progress: Callable[[str], None] | None = None) -> YoloContext:
    parsed = parse_target(target)
    return YoloContext(parsed, values, recorded=recorded, progress=progress,
                       device=_device(values.get("device")))


def _device(asked: str | None) -> str:
    if asked:
        return asked
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
