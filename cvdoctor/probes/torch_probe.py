"""Probe: import torch once and report its build, CUDA state and torchvision's compiled ops.

Run as ``python -m cvdoctor.probes.torch_probe``. Everything torch-related that `cvdoctor env`
needs happens in this one process, so the run costs about one ``import torch``.

Output: a first JSON line with the torch facts, then (after loading torchvision's C++ ops, the
step that can segfault on a mismatched build) the final line with ``torchvision_ops`` added. If
the process dies in between, the caller still has the first line.
"""
from __future__ import annotations

import importlib.util
import os
import re
import sys
import traceback
import warnings
from typing import Any

from cvdoctor.probes import emit

# Three boxes, the second overlapping the first (IoU 0.68): NMS at 0.5 keeps [0, 2].
NMS_BOXES = [[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0], [50.0, 50.0, 60.0, 60.0]]
NMS_SCORES = [0.9, 0.8, 0.7]
NMS_EXPECTED = [0, 2]


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip()


def torchvision_location() -> dict[str, Any]:
    """Find torchvision's package dir, version and compiled extension without importing it."""
    out: dict[str, Any] = {"found": False, "version": None, "library": None, "dir": None}
    try:
        spec = importlib.util.find_spec("torchvision")
    except (ImportError, ValueError) as exc:
        out["error"] = _error_text(exc)
        return out
    if spec is None or not spec.submodule_search_locations:
        return out
    pkg_dir = list(spec.submodule_search_locations)[0]
    out.update(found=True, dir=pkg_dir)
    try:
        with open(os.path.join(pkg_dir, "version.py"), encoding="utf-8") as fh:
            m = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", fh.read(), re.M)
            out["version"] = m.group(1) if m else None
    except OSError:
        pass
    if out["version"] is None:
        try:
            from importlib.metadata import version

            out["version"] = version("torchvision")
        except Exception:  # noqa: BLE001 - metadata may be missing for a source checkout
            pass
    out["library"] = _extension_path(pkg_dir)
    return out


def _extension_path(pkg_dir: str) -> str | None:
    """The compiled ops library torchvision itself loads: `_C_stable` in new releases, `_C` in
    older ones (named in its extension.py), with any ABI tag in the file name."""
    names: list[str] = []
    try:
        with open(os.path.join(pkg_dir, "extension.py"), encoding="utf-8") as fh:
            names = re.findall(r"_load_library\(\s*['\"](\w+)['\"]", fh.read())
    except OSError:
        pass
    names += [n for n in ("_C_stable", "_C") if n not in names]
    try:
        files = sorted(os.listdir(pkg_dir))
    except OSError:
        return None
    for name in names:
        for f in files:
            if f.startswith(name + ".") and f.endswith((".so", ".pyd", ".dylib")):
                return os.path.join(pkg_dir, f)
    return None


def load_torchvision_ops(torch: Any) -> dict[str, Any]:
    """Load torchvision's compiled ops into `torch` and check `torchvision::nms` on CPU boxes."""
    out = torchvision_location()
    out.update(ok=False, error=out.get("error"))
    if not out["found"]:
        out["error"] = out["error"] or "torchvision is not installed"
        return out
    if out["library"] is None:
        out["error"] = f"no compiled extension (_C*.so) in {out['dir']}"
        return out
    try:
        torch.ops.load_library(out["library"])
    except Exception as exc:  # noqa: BLE001 - OSError, RuntimeError: undefined symbol, ...
        out["error"] = f"loading {os.path.basename(out['library'])} failed: {_error_text(exc)}"
        return out
    try:
        keep = torch.ops.torchvision.nms(torch.tensor(NMS_BOXES), torch.tensor(NMS_SCORES), 0.5)
        kept = [int(i) for i in keep.tolist()]
    except Exception as exc:  # noqa: BLE001 - "operator torchvision::nms does not exist"
        out["error"] = f"torchvision::nms failed: {_error_text(exc)}"
        return out
    if kept != NMS_EXPECTED:
        out["error"] = f"torchvision::nms kept boxes {kept}, expected {NMS_EXPECTED}"
        return out
    try:
        v = int(torch.ops.torchvision._cuda_version())
        out["cuda_version"] = None if v < 0 else f"{v // 1000}.{(v % 1000) // 10}"
    except Exception:  # noqa: BLE001 - older builds lack the op
        out["cuda_version"] = None
    out["ok"] = True
    return out


def _try(facts: dict[str, Any], key: str, func, default=None) -> None:
    try:
        facts[key] = func()
    except Exception as exc:  # noqa: BLE001 - one broken query must not hide the others
        facts[key] = default
        facts.setdefault("query_errors", {})[key] = _error_text(exc)


def gather_torch_facts(torch: Any) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "ok": True, "error": None, "installed": True,
        "version": getattr(torch, "__version__", None),
        "file": os.path.dirname(getattr(torch, "__file__", "") or "") or None,
        "cuda": getattr(torch.version, "cuda", None),
        "hip": getattr(torch.version, "hip", None),
        "debug": bool(getattr(torch.version, "debug", False)),
        "git_version": getattr(torch.version, "git_version", None),
    }
    _try(facts, "cudnn", lambda: torch.backends.cudnn.version())
    _try(facts, "arch_list", lambda: list(torch.cuda.get_arch_list()), [])
    _try(facts, "sharing_strategy", lambda: torch.multiprocessing.get_sharing_strategy())
    _try(facts, "mps_available", lambda: bool(torch.backends.mps.is_available()), False)
    caught: list[str] = []
    with warnings.catch_warnings(record=True) as wlist:
        warnings.simplefilter("always")
        _try(facts, "cuda_available", lambda: bool(torch.cuda.is_available()), False)
        _try(facts, "device_count", lambda: int(torch.cuda.device_count()), 0)
        facts["cuda_init_error"] = None
        if facts["cuda"] and not facts["cuda_available"]:
            # is_available() only returns False; init() says why ("Found no NVIDIA driver").
            try:
                torch.cuda.init()
            except Exception as exc:  # noqa: BLE001
                facts["cuda_init_error"] = _error_text(exc)
        devices = []
        for i in range(facts["device_count"] if facts["cuda_available"] else 0):
            dev: dict[str, Any] = {"index": i}
            try:
                p = torch.cuda.get_device_properties(i)
                dev.update(name=p.name, capability=[p.major, p.minor],
                           total_memory=int(p.total_memory),
                           multi_processor_count=getattr(p, "multi_processor_count", None),
                           integrated=bool(getattr(p, "is_integrated", False)))
            except Exception as exc:  # noqa: BLE001
                dev["error"] = _error_text(exc)
            try:
                free, total = torch.cuda.mem_get_info(i)
                dev.update(free_memory=int(free), total_memory=int(total))
            except Exception as exc:  # noqa: BLE001
                dev["free_memory"] = None
                dev["mem_error"] = _error_text(exc)
            devices.append(dev)
        facts["devices"] = devices
        facts["bf16_supported"] = None
        if facts["cuda_available"]:
            _try(facts, "bf16_supported", lambda: bool(torch.cuda.is_bf16_supported()))
        caught = [str(w.message).strip() for w in wlist]
    facts["warnings"] = caught
    return facts


def main() -> int:
    installed = importlib.util.find_spec("torch") is not None
    try:
        import torch
    except BaseException as exc:  # noqa: BLE001 - ImportError, OSError from a missing .so, ...
        emit({"ok": False, "installed": installed, "error": _error_text(exc),
              "traceback": traceback.format_exc(limit=-6), "python": sys.executable})
        return 0
    facts = gather_torch_facts(torch)
    emit(facts)
    facts["torchvision_ops"] = load_torchvision_ops(torch)
    emit(facts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
