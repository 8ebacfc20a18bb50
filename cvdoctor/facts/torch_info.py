"""Fact provider "torch": what torch is installed and what it can see, from one subprocess probe.

Importing torch can fail, hang or segfault (a missing libtorch_cuda.so, a mismatched
torchvision), so it happens in `cvdoctor.probes.torch_probe`; whatever goes wrong comes back as
facts (``ok=False`` with the error text), never as an exception.
"""
from __future__ import annotations

from typing import Any

from cvdoctor.archcompat import cudnn_version_str
from cvdoctor.factgraph import fact
from cvdoctor.probes import describe_failure, run_probe

# Every key a check may read, with its value when the probe could not say.
DEFAULTS: dict[str, Any] = {
    "ok": False, "error": None, "installed": None, "version": None, "file": None,
    "cuda": None, "hip": None, "cudnn": None, "debug": None, "git_version": None,
    "arch_list": [], "cuda_available": False, "device_count": 0, "devices": [],
    "bf16_supported": None, "sharing_strategy": None, "mps_available": False,
    "cuda_init_error": None, "warnings": [],
    "torchvision_ops": {"found": None, "version": None, "library": None, "ok": False,
                        "error": "not probed"},
}


def from_probe(payload: dict[str, Any]) -> dict[str, Any]:
    """Turn the probe's output (possibly partial, possibly only `_probe`) into the facts dict."""
    info = payload.pop("_probe", {}) or {}
    facts: dict[str, Any] = {k: (v.copy() if isinstance(v, (dict, list)) else v)
                             for k, v in DEFAULTS.items()}
    facts.update(payload)
    facts["probe"] = {k: info.get(k) for k in ("ok", "reason", "returncode", "signal",
                                                "duration_s")}
    if "ok" not in payload:
        # Nothing came back: the import itself hung or killed the process.
        facts["ok"] = False
        facts["error"] = describe_failure(info, "importing torch")
    if not facts["ok"]:
        facts["torchvision_ops"]["error"] = "not probed: torch did not import"
    elif "torchvision_ops" not in payload:
        # Torch facts arrived, then the process died loading torchvision's compiled ops.
        facts["torchvision_ops"] = {
            "found": True, "version": None, "library": None, "ok": False,
            "error": describe_failure(info, "loading torchvision's compiled ops")}
    return facts


def build_text(t: dict) -> str:
    """"CUDA 12.8 build, cuDNN 9.10.2" / "ROCm 6.2 build" / "CPU-only build"."""
    if t.get("cuda"):
        cudnn = cudnn_version_str(t.get("cudnn"))
        return f"CUDA {t['cuda']} build, " + (f"cuDNN {cudnn}" if cudnn else "no cuDNN")
    if t.get("hip"):
        return f"ROCm (HIP {t['hip']}) build"
    return "CPU-only build"


@fact("torch")
def gather(ctx) -> dict[str, Any]:
    return from_probe(run_probe("torch_probe", timeout_s=ctx.option("timeout_s", 60.0)))
