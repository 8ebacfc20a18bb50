"""env.torch: torch imports, and its build (CUDA / ROCm / CPU-only, cuDNN) suits the machine."""
from __future__ import annotations


from cvdoctor.archcompat import JETSON_WHEEL, NGC_RUN, cudnn_version_str
from cvdoctor.facts.torch_info import build_text
from cvdoctor.finding import failed, passed
from cvdoctor.registry import register

TITLE = "PyTorch build"


def import_error_summary(t: dict) -> str:
    error = (t.get("error") or "unknown error").strip()
    first = error.splitlines()[0]
    return first if len(first) <= 300 else first[:297] + "..."


@register("env.torch", order=20, title=TITLE, recipes=["torch-import-failed", "aarch64-cpu-torch"],
          needs=["torch", "platform", "gpu"])
def check(ctx):
    """Imports torch in a subprocess (a broken install cannot take cvdoctor down) and reads its
    version, build (CUDA, ROCm or CPU-only; cuDNN; debug) and where it is installed.

    Fails (torch-import-failed) when torch is missing or does not import, quoting the error.
    Fails (aarch64-cpu-torch) for a CPU-only build on an aarch64 machine with signs of an NVIDIA
    GPU (a GPU, Jetson, DGX or NGC markers): the default aarch64 wheel has no CUDA. A CPU-only
    build on an aarch64 server without a GPU passes."""
    t = ctx.fact("torch")
    if not t.get("ok"):
        if t.get("installed") is False:
            return failed(TITLE, "torch is not installed in this Python environment",
                          "pip install torch (see `cvdoctor explain torch-import-failed` for the "
                          "right index)", "torch-import-failed", error=t.get("error"))
        return failed(TITLE, f"import torch failed: {import_error_summary(t)}",
                      "reinstall torch into a clean environment: pip install --force-reinstall "
                      "--no-cache-dir torch torchvision", "torch-import-failed",
                      error=t.get("error"), traceback=t.get("traceback"), probe=t.get("probe"))
    plat = ctx.optional_fact("platform")
    machine = str(plat.get("machine") or "").lower()
    cpu_only = not t.get("cuda") and not t.get("hip")
    where = f" from {t['file']}" if t.get("file") else ""
    debug = ", debug build (slow)" if t.get("debug") else ""
    evidence = {"version": t.get("version"), "cuda": t.get("cuda"), "hip": t.get("hip"),
                "cudnn": cudnn_version_str(t.get("cudnn")), "file": t.get("file"),
                "machine": machine or None, "debug": t.get("debug")}
    message = f"torch {t.get('version')} ({build_text(t)}{debug}){where}"
    if cpu_only and machine == "aarch64":
        gpu = ctx.optional_fact("gpu")
        nvidia_machine = bool(gpu.get("present") or plat.get("jetson") or plat.get("dgx")
                              or plat.get("ngc") or gpu.get("device_nodes"))
        gpu_unknown = not gpu  # no GPU facts: assume the DGX / Jetson case the FAQ describes
        if nvidia_machine or gpu_unknown:
            jetson = bool(plat.get("jetson") or gpu.get("jetson"))
            fix = (JETSON_WHEEL if jetson else f"run inside NVIDIA's NGC PyTorch container: {NGC_RUN}")
            return failed(TITLE, f"torch {t.get('version')} is a CPU-only build on an aarch64 "
                          "machine with an NVIDIA GPU (the default aarch64 wheel on PyPI has no CUDA), "
                          "so the GPU goes unused",
                          fix, "aarch64-cpu-torch", gpu_present=gpu.get("present"), **evidence)
        message += "; CPU-only is expected on this aarch64 machine without an NVIDIA GPU"
    return passed(TITLE, message, **evidence)
