"""Fact provider "gpu": NVIDIA GPUs on this machine, found without torch.

Sources, cheapest first: NVML through `pynvml` (nvidia-ml-py), else one ``nvidia-smi --query-gpu``
call, plus ``/dev/nvidia*`` device nodes, ``CUDA_VISIBLE_DEVICES``, Jetson's
``/etc/nv_tegra_release`` and, only where a GPU is present, ``libcuda``'s driver CUDA version and
the local ``nvcc`` (information only). On a machine without a GPU this costs a few milliseconds:
no process is started when neither the NVML library nor ``nvidia-smi`` exists.
"""
from __future__ import annotations

import ctypes
import glob
import os
import re
import shutil
import subprocess
from typing import Any

from cvdoctor.factgraph import fact

SMI_FIELDS = "name,compute_cap,driver_version,memory.total,memory.used,memory.free,uuid"
JETSON_RELEASE = "/etc/nv_tegra_release"
NVCC_CANDIDATES = ("/usr/local/cuda/bin/nvcc",)
_MIB = 1024 * 1024


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _nvml() -> dict[str, Any]:
    """Devices, driver and processes from NVML; ``{"error": ...}`` when NVML is unusable."""
    try:
        import pynvml
    except ImportError:
        return {"error": "pynvml (nvidia-ml-py) is not installed"}
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - NVMLError_LibraryNotFound, DriverNotLoaded, ...
        return {"error": f"NVML: {exc}"}
    try:
        out: dict[str, Any] = {"devices": []}
        out["driver_version"] = _text(pynvml.nvmlSystemGetDriverVersion())
        try:
            from cvdoctor.archcompat import cuda_int_to_str

            out["cuda_driver_version"] = cuda_int_to_str(pynvml.nvmlSystemGetCudaDriverVersion())
        except Exception:  # noqa: BLE001
            out["cuda_driver_version"] = None
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            dev: dict[str, Any] = {"index": i, "name": _text(pynvml.nvmlDeviceGetName(h))}
            try:
                dev["capability"] = list(pynvml.nvmlDeviceGetCudaComputeCapability(h))
            except Exception:  # noqa: BLE001
                dev["capability"] = None
            try:
                dev["uuid"] = _text(pynvml.nvmlDeviceGetUUID(h))
            except Exception:  # noqa: BLE001
                dev["uuid"] = None
            try:
                mem = pynvml.nvmlDeviceGetMemoryInfo(h)
                dev.update(total_memory=int(mem.total), used_memory=int(mem.used),
                           free_memory=int(mem.free))
            except Exception:  # noqa: BLE001 - "Not Supported" on unified-memory GB10 / Jetson
                dev.update(total_memory=None, used_memory=None, free_memory=None)
            dev["processes"] = _nvml_processes(pynvml, h)
            out["devices"].append(dev)
        return out
    except Exception as exc:  # noqa: BLE001
        return {"error": f"NVML: {exc}"}
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass


def _nvml_processes(pynvml: Any, handle: Any) -> list[dict[str, Any]] | None:
    """Processes holding memory on the device; None when NVML cannot say (e.g. other PID
    namespaces in a container make the list empty or unavailable)."""
    procs: dict[int, int | None] = {}
    known = False
    for fn in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
        try:
            for p in getattr(pynvml, fn)(handle):
                used = getattr(p, "usedGpuMemory", None)
                procs[int(p.pid)] = int(used) if isinstance(used, int) else procs.get(int(p.pid))
            known = True
        except Exception:  # noqa: BLE001
            continue
    if not known:
        return None
    return [{"pid": pid, "used_memory": used} for pid, used in sorted(procs.items())]


def parse_smi(stdout: str) -> dict[str, Any]:
    """Parse ``nvidia-smi --query-gpu=SMI_FIELDS --format=csv,noheader,nounits`` output."""
    devices, driver = [], None
    for i, line in enumerate(ln for ln in stdout.splitlines() if ln.strip()):
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 7:
            continue
        name, cap, drv, total, used, free, uuid = parts[:7]

        def mib(v: str) -> int | None:
            return int(float(v)) * _MIB if re.match(r"^\d+(\.\d+)?$", v) else None

        m = re.match(r"^(\d+)\.(\d+)$", cap)
        devices.append({"index": i, "name": name,
                        "capability": [int(m.group(1)), int(m.group(2))] if m else None,
                        "total_memory": mib(total), "used_memory": mib(used),
                        "free_memory": mib(free), "uuid": uuid or None, "processes": None})
        driver = driver or drv
    return {"devices": devices, "driver_version": driver, "cuda_driver_version": None}


def _nvidia_smi(timeout_s: float) -> dict[str, Any]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return {"error": "nvidia-smi not found"}
    try:
        proc = subprocess.run([exe, f"--query-gpu={SMI_FIELDS}", "--format=csv,noheader,nounits"],
                              capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"error": f"nvidia-smi did not answer within {timeout_s:g} s"}
    except OSError as exc:
        return {"error": f"nvidia-smi: {exc}"}
    if proc.returncode != 0:
        msg = (proc.stdout + proc.stderr).strip().splitlines()
        return {"error": f"nvidia-smi exited {proc.returncode}: {msg[0] if msg else ''}".strip()}
    return parse_smi(proc.stdout)


def _libcuda_driver_cuda() -> str | None:
    """Highest CUDA version the installed driver supports, straight from libcuda (no cuInit)."""
    try:
        lib = ctypes.CDLL("libcuda.so.1")
        v = ctypes.c_int(0)
        if lib.cuDriverGetVersion(ctypes.byref(v)) == 0:
            from cvdoctor.archcompat import cuda_int_to_str

            return cuda_int_to_str(v.value)
    except (OSError, AttributeError):
        pass
    return None


def _nvcc(timeout_s: float) -> dict[str, Any] | None:
    exe = shutil.which("nvcc") or next((p for p in NVCC_CANDIDATES if os.path.exists(p)), None)
    if exe is None:
        return None
    try:
        proc = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"path": exe, "version": None, "error": str(exc)}
    m = re.search(r"release (\d+\.\d+)", proc.stdout)
    return {"path": exe, "version": m.group(1) if m else None}


def _jetson() -> str | None:
    try:
        with open(JETSON_RELEASE, encoding="utf-8", errors="replace") as fh:
            return fh.readline().strip() or "present"
    except OSError:
        return None


def _own_pids() -> list[int]:
    """This process and its children (cvdoctor's own probes), to tell their GPU memory apart."""
    pids = [os.getpid()]
    try:
        import psutil

        pids += [c.pid for c in psutil.Process().children(recursive=True)]
    except Exception:  # noqa: BLE001
        pass
    return pids


def collect(options: Any) -> dict[str, Any]:
    timeout = min(float(getattr(options, "timeout_s", 60.0)), 15.0)
    nodes = sorted(glob.glob("/dev/nvidia*"))
    facts: dict[str, Any] = {
        "present": False, "source": None, "count": 0, "devices": [],
        "driver_version": None, "cuda_driver_version": None,
        "device_nodes": nodes,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "nvidia_visible_devices": os.environ.get("NVIDIA_VISIBLE_DEVICES"),
        "jetson": False, "jetson_release": None, "nvcc": None,
        "nvml_error": None, "smi_error": None,
    }
    found = _nvml()
    source = "nvml"
    if "error" in found:
        facts["nvml_error"] = found["error"]
        found = _nvidia_smi(timeout)
        source = "nvidia-smi"
        if "error" in found:
            facts["smi_error"] = found["error"]
            found, source = {}, None
    if found.get("devices"):
        facts.update(present=True, source=source, count=len(found["devices"]),
                     devices=found["devices"])
        facts["own_pids"] = _own_pids()
    facts["driver_version"] = found.get("driver_version")
    facts["cuda_driver_version"] = found.get("cuda_driver_version")
    release = _jetson()
    if release is not None:
        facts.update(jetson=True, jetson_release=release)
        if not facts["present"]:
            facts.update(present=True, source="jetson")  # every Jetson has an integrated GPU
    if facts["present"] or any(re.match(r"^/dev/nvidia\d+$", n) for n in nodes):
        if facts["cuda_driver_version"] is None:
            facts["cuda_driver_version"] = _libcuda_driver_cuda()
        facts["nvcc"] = _nvcc(timeout)
    return facts


@fact("gpu")
def gather(ctx) -> dict[str, Any]:
    return collect(ctx.options)
