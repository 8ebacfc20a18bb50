"""env.cuda: is there a GPU, can this torch build run on it, and does a real kernel run?

Tells apart: no GPU at all (warn; fail with --require-gpu), a CUDA build that cannot see a GPU
the machine has, a CPU-only build on a GPU machine, a driver too old for the wheel's CUDA, a GPU
the build has no kernels for, a GPU that needs PTX JIT, and a probe that fails on the device.
"""
from __future__ import annotations

import re
from typing import Any

from cvdoctor.archcompat import (NATIVE, NONE, PTX, check_arch, check_driver,
                                 cudnn_version_str, ptx_jit_possible, torch_install_command)
from cvdoctor.facts.torch_info import build_text
from cvdoctor.finding import FAIL, Finding, failed, passed, skipped, warned
from cvdoctor.registry import register

TITLE = "CUDA and GPU"
RECIPES = ["no-gpu", "gpu-arch-unsupported", "gpu-arch-ptx-jit", "cuda-driver-too-old",
           "cpu-torch-on-gpu-machine", "cuda-build-no-gpu", "gpu-probe-failed"]
_DRIVER_TEXT = re.compile(r"driver on your system is too old|driver version is insufficient|"
                          r"forward compatibility was attempted on non supported HW", re.I)


def _gpu_names(gpu: dict) -> str:
    names = [d.get("name") or "GPU" for d in gpu.get("devices") or []]
    if not names:
        return "an NVIDIA GPU" if gpu.get("present") else "no GPU"
    return ", ".join(names) if len(names) <= 2 else f"{len(names)} GPUs ({names[0]}, ...)"


def _hidden_by_env(value: str | None) -> bool:
    """CUDA_VISIBLE_DEVICES set to nothing usable ("", "-1", "none") hides every device."""
    if value is None:
        return False
    first = value.split(",")[0].strip().lower()
    return first in ("", "-1", "none", "nodevfiles")


def _why_no_gpu(gpu: dict, plat: dict) -> str:
    reasons = []
    if not [n for n in gpu.get("device_nodes") or [] if re.match(r"^/dev/nvidia\d+$", n)]:
        reasons.append("no /dev/nvidia* device nodes")
    if gpu.get("nvml_error") and gpu.get("smi_error"):
        reasons.append("no NVIDIA driver: neither the NVML library nor nvidia-smi found")
    if _hidden_by_env(gpu.get("cuda_visible_devices")):
        reasons.append(f"CUDA_VISIBLE_DEVICES={gpu.get('cuda_visible_devices')!r}")
    if plat.get("container") and (gpu.get("nvidia_visible_devices") or plat.get("ngc")):
        reasons.append(f"inside a {plat['container']} container: if the host has a GPU, "
                       "start it with --gpus all")
    return "; ".join(reasons) or "no NVIDIA GPU or driver found"


def _no_gpu(t: dict, gpu: dict, plat: dict, require: bool, **evidence: Any) -> Finding:
    build = build_text(t)
    runs = "will run on the CPU" if t.get("cuda") else "runs on the CPU"
    message = f"no NVIDIA GPU visible ({_why_no_gpu(gpu, plat)}); torch {t.get('version')} " \
              f"({build}) {runs}"
    fix = ("run on a machine with an NVIDIA GPU and its driver (nvidia-smi must list it)"
           if require else "nothing to do for CPU work; for GPU training run on a machine "
           "whose nvidia-smi lists a GPU")
    make = failed if require else warned
    return make(TITLE, message, fix, "no-gpu", require_gpu=require, **evidence)


def _cuda_without_device(t: dict, gpu: dict, plat: dict, require: bool,
                         evidence: dict) -> Finding:
    init_error = t.get("cuda_init_error") or ""
    said = " ".join([init_error, *(t.get("warnings") or [])])
    driver = check_driver(t.get("cuda"), gpu.get("driver_version"))
    if driver.ok is False or _DRIVER_TEXT.search(said):
        if driver.ok is False:
            detail = driver.reason
            fix = (f"update the NVIDIA driver to R{driver.minimum.split('.')[0]}+, or install "
                   "a torch built for the driver's CUDA: "
                   + torch_install_command(plat, gpu.get("cuda_driver_version")))
        else:
            detail = (_DRIVER_TEXT.search(said) and said.strip().splitlines()[0])[:300]
            fix = ("update the NVIDIA driver to one that supports CUDA "
                   f"{t.get('cuda')} (nvidia-smi shows the CUDA version it supports)")
        return failed(TITLE, f"torch {t.get('version')} (CUDA {t.get('cuda')}) cannot use "
                      f"{_gpu_names(gpu)}: {detail}", fix,
                      "cuda-driver-too-old", driver_minimum=driver.minimum,
                      cuda_init_error=init_error or None, **evidence)
    nodes = [n for n in gpu.get("device_nodes") or [] if re.match(r"^/dev/nvidia\d+$", n)]
    if not gpu.get("present") and not nodes:
        return _no_gpu(t, gpu, plat, require, cuda_init_error=init_error or None, **evidence)
    seen = (f"{gpu.get('source')} sees {_gpu_names(gpu)}" if gpu.get("present")
            else f"{', '.join(nodes)} exist")
    cvd = gpu.get("cuda_visible_devices")
    if _hidden_by_env(cvd):
        make = failed if require else warned
        return make(TITLE, f"{seen}, but CUDA_VISIBLE_DEVICES={cvd!r} hides it from torch "
                    "(fine if you meant to run on the CPU)",
                    "unset CUDA_VISIBLE_DEVICES (or set it to the GPU index, e.g. 0)",
                    "cuda-build-no-gpu", cuda_init_error=init_error or None, **evidence)
    why = init_error or "torch.cuda.is_available() is False"
    return failed(TITLE, f"{seen}, but torch {t.get('version')} (CUDA {t.get('cuda')}) "
                  f"sees no CUDA device: {why}",
                  "check that `nvidia-smi` works here; in a container start it with "
                  "--gpus all (NVIDIA Container Toolkit)",
                  "cuda-build-no-gpu", cuda_init_error=init_error or None, **evidence)


def _probe_error(device: dict) -> tuple[str, str] | None:
    for step, result in (device.get("steps") or {}).items():
        if not result.get("ok"):
            return step, result.get("error") or "failed"
    return None


def _devices(t: dict, gpu: dict) -> list[dict]:
    """Devices as torch sees them, capability filled from NVML where torch could not say."""
    nvml = gpu.get("devices") or []
    out = []
    for i, d in enumerate(t.get("devices") or []):
        d = dict(d)
        if not d.get("capability") and i < len(nvml) and nvml[i].get("capability"):
            d["capability"] = nvml[i]["capability"]
        out.append(d)
    return out


def _arch_findings(t: dict, gpu: dict, devices: list[dict], probe: dict,
                   evidence: dict) -> tuple[list[Finding], list[str]]:
    findings, notes = [], []
    arch_list = list(t.get("arch_list") or [])
    for d in devices:
        name, cap = d.get("name") or f"GPU {d.get('index')}", d.get("capability")
        if not cap:
            notes.append(f"{name}: capability unknown")
            continue
        v = check_arch(cap, arch_list)
        ev = dict(evidence, device=name, capability=list(cap), verdict=v.status,
                  matched=list(v.matched))
        if v.status == NONE:
            findings.append(failed(
                TITLE, f"{name} (capability {cap[0]}.{cap[1]}): torch {t.get('version')} has no "
                f"kernels for it; built for {' '.join(arch_list)} (CUDA will say \"no kernel "
                "image is available for execution on the device\")",
                "install a torch built for this GPU: "
                + torch_install_command({}, gpu.get("cuda_driver_version"), [tuple(cap)]),
                "gpu-arch-unsupported", **ev))
        elif v.status == PTX:
            jit = ptx_jit_possible(t.get("cuda"), gpu.get("cuda_driver_version"))
            if jit is False:
                findings.append(failed(
                    TITLE, f"{name} (capability {cap[0]}.{cap[1]}) can only run torch's "
                    f"{', '.join(v.matched)} PTX, which needs a driver supporting CUDA "
                    f"{t.get('cuda')}; the driver supports CUDA {gpu.get('cuda_driver_version')}",
                    "update the NVIDIA driver, or install a torch with cubins for this GPU: "
                    + torch_install_command({}, gpu.get("cuda_driver_version"), [tuple(cap)]),
                    "cuda-driver-too-old", **ev))
            else:
                ran = _probe_ran_ok(probe, d.get("index"))
                findings.append(warned(
                    TITLE, f"{name} (capability {cap[0]}.{cap[1]}) has no cubin in torch "
                    f"{t.get('version')} ({' '.join(arch_list)}); it runs "
                    f"{', '.join(v.matched)} PTX JIT-compiled by the driver: slow first run"
                    + (", and the GPU probe passed" if ran else "")
                    + "; libraries without PTX (some cuDNN/cuBLAS kernels) may still fail",
                    "install a torch with native kernels for this GPU: "
                    + torch_install_command({}, gpu.get("cuda_driver_version"), [tuple(cap)]),
                    "gpu-arch-ptx-jit", **ev))
        elif v.status == NATIVE:
            note = f"{name} ({cap[0]}.{cap[1]}) runs the {', '.join(v.matched)} cubin"
            warned_about = any("capability" in w.lower() for w in t.get("warnings") or [])
            if warned_about and f"sm_{cap[0]}{cap[1]}" not in v.matched:
                # torch compares capabilities exactly; cubins run on later minors of one major.
                note += (f" (torch's warning that this GPU is unsupported is wrong: an "
                         f"{v.matched[0]} cubin runs on {cap[0]}.{cap[1]})")
            notes.append(note)
        else:
            notes.append(f"{name} ({cap[0]}.{cap[1]}): torch lists no CUDA archs; "
                         "relying on the probe")
    return findings, notes


def _probe_ran_ok(probe: dict, index: Any) -> bool:
    for d in probe.get("devices") or []:
        if d.get("index") == index:
            return bool(d.get("ok"))
    return False


@register("env.cuda", order=30, title=TITLE, recipes=RECIPES, error_recipes=True,
          needs=["torch", "gpu", "gpu_probe", "platform"])
def check(ctx):
    """Finds NVIDIA GPUs without torch (NVML, nvidia-smi, /dev/nvidia*, CUDA_VISIBLE_DEVICES),
    compares each GPU's compute capability with the installed torch's arch list (cubins, PTX,
    sm_XYa/f families) and the driver with the wheel's CUDA, and runs a real probe on the device
    (tensor op, matmul, cuDNN conv, torchvision.ops.nms) in a subprocess.

    Warns (no-gpu) when there is no GPU (fails with --require-gpu), (gpu-arch-ptx-jit) when the
    GPU only runs torch's PTX through the driver's JIT. Fails when the GPU has no kernels in this
    build (gpu-arch-unsupported), the driver is too old for the wheel's CUDA
    (cuda-driver-too-old), the build is CPU-only on a GPU machine (cpu-torch-on-gpu-machine), a
    CUDA build cannot see a GPU the machine has (cuda-build-no-gpu), or the probe fails on the
    device (gpu-probe-failed). A GB10 (12.1) with an sm_120 build passes, whatever torch's own
    warning says: cubins run on later minors of one major."""
    t, gpu = ctx.fact("torch"), ctx.fact("gpu")
    plat = ctx.optional_fact("platform")
    require = bool(getattr(ctx.options, "require_gpu", False))
    evidence: dict[str, Any] = {
        "torch": t.get("version"), "torch_cuda": t.get("cuda"), "arch_list": t.get("arch_list"),
        "driver": gpu.get("driver_version"), "driver_cuda": gpu.get("cuda_driver_version"),
        "gpus": [{"name": d.get("name"), "capability": d.get("capability")}
                 for d in gpu.get("devices") or []],
        "gpu_source": gpu.get("source"), "cuda_visible_devices": gpu.get("cuda_visible_devices"),
    }
    if gpu.get("nvcc"):
        evidence["nvcc"] = gpu["nvcc"].get("version")
    if not t.get("ok"):
        return skipped(TITLE, f"torch does not import (see env.torch); GPU: {_gpu_names(gpu)}",
                       **evidence)
    if t.get("hip"):
        if t.get("device_count"):
            return passed(TITLE, f"ROCm build (HIP {t['hip']}) sees {t['device_count']} "
                          "GPU(s); cvdoctor's arch rules cover NVIDIA CUDA only", **evidence)
        return _no_gpu(t, gpu, plat, require, **evidence)
    if not t.get("cuda"):
        if gpu.get("present"):
            caps = [tuple(d["capability"]) for d in gpu.get("devices") or [] if d.get("capability")]
            return failed(TITLE, f"torch {t.get('version')} is a CPU-only build but this "
                          f"machine has {_gpu_names(gpu)}: training will not use the GPU",
                          torch_install_command(plat, gpu.get("cuda_driver_version"), caps),
                          "cpu-torch-on-gpu-machine", **evidence)
        if t.get("mps_available"):
            return passed(TITLE, f"torch {t.get('version')} uses Apple's MPS GPU backend "
                          "(no CUDA on this machine)", **evidence)
        return _no_gpu(t, gpu, plat, require, **evidence)
    if not t.get("cuda_available") or not t.get("device_count"):
        return _cuda_without_device(t, gpu, plat, require, evidence)

    probe = ctx.fact("gpu_probe")
    devices = _devices(t, gpu)
    findings: list[Finding] = []
    driver = check_driver(t.get("cuda"), gpu.get("driver_version"))
    if driver.ok is False:
        findings.append(failed(
            TITLE, f"torch {t.get('version')} needs a CUDA {t['cuda'].split('.')[0]}.x driver: "
            f"{driver.reason}",
            f"update the NVIDIA driver to R{driver.minimum.split('.')[0]}+ (or install a torch "
            f"built for CUDA {gpu.get('cuda_driver_version') or 'your driver'})",
            "cuda-driver-too-old", driver_minimum=driver.minimum, **evidence))
    arch_findings, notes = _arch_findings(t, gpu, devices, probe, evidence)
    findings += arch_findings
    unsupported = {f.evidence.get("device") for f in findings if f.recipe == "gpu-arch-unsupported"}
    if probe.get("ran"):
        broken = [(d, _probe_error(d)) for d in probe.get("devices") or [] if not d.get("ok")]
        if not probe.get("devices") and probe.get("error"):
            broken = [({"name": "GPU", "index": None}, ("start", probe["error"]))]
        for d, (step, error) in [(d, e) for d, e in broken if e]:
            if d.get("name") in unsupported:
                continue  # the arch finding already explains this failure
            # A busy GPU, a cuDNN status, an OOM: the catalog knows the error better than a
            # generic "the probe failed" (whose fix is about the libraries the probe loads).
            from cvdoctor.catalog import recipe_for_error  # only on a failure: 30 ms to import

            match = recipe_for_error(error)
            findings.append(failed(
                TITLE, f"the GPU probe failed on {d.get('name') or 'the GPU'} at {step}: "
                f"{error.splitlines()[0][:300]}",
                match.fix if match and match.fix else
                "run `cvdoctor explain \"<the error above>\"` for the matching fix",
                match.recipe if match else "gpu-probe-failed", probe=probe, **evidence))
    if findings:
        return sorted(findings, key=lambda f: f.status != FAIL)
    cudnn = cudnn_version_str(probe.get("cudnn_version") or t.get("cudnn"))
    parts = ["; ".join(notes)]
    if driver.ok:
        parts.append(f"driver {gpu.get('driver_version')} meets the R"
                     f"{driver.minimum.split('.')[0]} minimum for CUDA {t['cuda']}")
    if probe.get("ran"):
        nms_ok = all((d.get("steps") or {}).get("nms", {}).get("ok")
                     for d in probe.get("devices") or [])
        parts.append("probe ran tensor op, matmul, conv2d" + (f" (cuDNN {cudnn})" if cudnn else "")
                     + (", nms" if nms_ok else "; nms skipped (torchvision ops, see env.packages)"))
    else:
        parts.append(f"probe not run: {probe.get('reason')}")
    if t.get("bf16_supported") is not None:
        parts.append("bf16 supported" if t["bf16_supported"] else "no bf16 (use fp16 autocast)")
    nvcc = (gpu.get("nvcc") or {}).get("version")
    if nvcc and t.get("cuda") and nvcc != ".".join(t["cuda"].split(".")[:2]):
        parts.append(f"local nvcc {nvcc} differs from torch's CUDA {t['cuda']} (only matters "
                     "when compiling extensions)")
    return passed(TITLE, "; ".join(p for p in parts if p), cudnn=cudnn, probe=probe, **evidence)
