"""Fact provider "torch": what torch is installed and what it can see, from one subprocess probe.

Importing torch can fail, hang or segfault (a missing libtorch_cuda.so, a mismatched
torchvision), so it happens in `cvdoctor.probes.torch_probe`; whatever goes wrong comes back as
facts (``ok=False`` with the error text), never as an exception.
"""
from __future__ import annotations

from typing import Any

from cvdoctor.facts import provider
from cvdoctor.probes import run_probe

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


def _probe_failure(info: dict[str, Any], what: str) -> str:
    reason = info.get("reason")
    stderr = (info.get("stderr") or "").strip()
    tail = stderr.splitlines()[-1] if stderr else ""
    if reason == "timeout":
        text = f"{what} did not finish within {info.get('timeout_s')} s"
    elif reason == "signal":
        text = f"{what} crashed the process ({info.get('signal')})"
    else:
        text = f"{what} exited with code {info.get('returncode')}"
    return f"{text}: {tail}" if tail else text


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
        facts["error"] = _probe_failure(info, "importing torch")
    if not facts["ok"]:
        facts["torchvision_ops"]["error"] = "not probed: torch did not import"
    elif "torchvision_ops" not in payload:
        # Torch facts arrived, then the process died loading torchvision's compiled ops.
        facts["torchvision_ops"] = {
            "found": True, "version": None, "library": None, "ok": False,
            "error": _probe_failure(info, "loading torchvision's compiled ops")}
    return facts


@provider("torch")
def gather(options) -> dict[str, Any]:
    return from_probe(run_probe("torch_probe", timeout_s=options.timeout_s))
