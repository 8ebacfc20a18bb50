"""Fact provider "gpu_probe": real kernels on the GPU, in a subprocess with a timeout.

Runs only when a GPU is present (per the "gpu" facts) and the installed torch is a CUDA build.
It decides that from torch's ``version.py`` text instead of waiting for the torch probe, so the
two subprocesses run side by side. Without a GPU it returns ``{"ran": False, "reason": ...}``
and starts nothing.
"""
from __future__ import annotations

import importlib.util
import os
import re
from typing import Any

from cvdoctor.factgraph import fact
from cvdoctor.probes import describe_failure, run_probe


def torch_build() -> dict[str, Any]:
    """``{"installed": bool, "cuda": "12.8" | None}`` read from torch/version.py, no import."""
    try:
        spec = importlib.util.find_spec("torch")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return {"installed": False, "cuda": None}
    path = os.path.join(list(spec.submodule_search_locations)[0], "version.py")
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError:
        return {"installed": True, "cuda": None, "unknown": True}
    m = re.search(r"^cuda\s*(?::[^=]*)?=\s*['\"]([^'\"]+)['\"]", text, re.M)
    return {"installed": True, "cuda": m.group(1) if m else None}


def not_run(reason: str) -> dict[str, Any]:
    return {"ran": False, "reason": reason, "ok": None, "devices": []}


@fact("gpu_probe", needs=["gpu"])
def gather(ctx) -> dict[str, Any]:
    gpu = ctx.fact("gpu")
    if not gpu.get("present"):
        return not_run("no NVIDIA GPU found")
    build = torch_build()
    if not build["installed"]:
        return not_run("torch is not installed")
    if not build["cuda"] and not build.get("unknown"):
        return not_run("torch is a CPU-only build")
    payload = run_probe("gpu_probe", timeout_s=ctx.option("timeout_s", 60.0))
    info = payload.pop("_probe", {}) or {}
    if "ran" not in payload:
        return {"ran": True, "ok": False, "devices": [], "cudnn_version": None,
                "error": describe_failure(info, "the GPU probe"),
                "probe": {k: info.get(k) for k in ("reason", "returncode", "signal")}}
    payload["probe"] = {k: info.get(k) for k in ("reason", "returncode", "signal", "duration_s")}
    return payload
