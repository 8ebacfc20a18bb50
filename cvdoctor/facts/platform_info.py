"""Provider "platform": OS, CPU architecture, Python, container, NGC / Jetson / DGX / WSL.

Reads a few small files and environment variables; imports nothing heavy. Other checks
(env.torch, env.cuda, env.shm) read `machine`, `container`, `ngc` and `jetson`: keep the names.
"""
from __future__ import annotations

import os
import platform
import re
from pathlib import Path
from typing import Mapping

from cvdoctor.factgraph import fact

# Variables the NGC PyTorch container sets in its image (docker inspect nvcr.io/nvidia/pytorch).
NGC_VARIABLES = ("NVIDIA_PYTORCH_VERSION", "PYTORCH_BUILD_VERSION", "PYTORCH_VERSION",
                 "NVIDIA_BUILD_ID", "NVIDIA_PRODUCT_NAME", "CUDA_VERSION")


def _read(root: Path, path: str, limit: int = 65536) -> str | None:
    try:
        with open(root / path.lstrip("/"), "r", encoding="utf-8", errors="replace") as fh:
            return fh.read(limit)
    except OSError:
        return None


def _root_is_overlay(mountinfo: str) -> bool:
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        fields = left.split()
        if len(fields) >= 5 and fields[4] == "/" and right.split()[:1] == ["overlay"]:
            return True
    return False


def detect_container(root: Path = Path("/"), environ: Mapping[str, str] = os.environ
                     ) -> tuple[str | None, list[str]]:
    """(runtime name or None, every hint seen). The most specific hint names the runtime;
    a generic one (an overlay root filesystem) gives 'unknown'."""
    cgroup = _read(root, "/proc/1/cgroup") or ""
    systemd_container = environ.get("container", "")  # set by podman, lxc, systemd-nspawn
    rules = [
        (bool(environ.get("KUBERNETES_SERVICE_HOST")), "KUBERNETES_SERVICE_HOST is set",
         "kubernetes"),
        ("kubepods" in cgroup, "/proc/1/cgroup mentions kubepods", "kubernetes"),
        ((root / "run/.containerenv").exists(), "/run/.containerenv exists", "podman"),
        ("libpod" in cgroup, "/proc/1/cgroup mentions libpod", "podman"),
        ((root / ".dockerenv").exists(), "/.dockerenv exists", "docker"),
        ("docker" in cgroup, "/proc/1/cgroup mentions docker", "docker"),
        ("containerd" in cgroup, "/proc/1/cgroup mentions containerd", "containerd"),
        ("lxc" in cgroup, "/proc/1/cgroup mentions lxc", "lxc"),
        (bool(systemd_container), f"container={systemd_container}", systemd_container),
        (_root_is_overlay(_read(root, "/proc/self/mountinfo", 1 << 20) or ""),
         "/ is an overlay filesystem", "unknown"),
    ]
    hits = [(hint, name) for cond, hint, name in rules if cond]
    return (hits[0][1] if hits else None), [hint for hint, _ in hits]


def detect_ngc(environ: Mapping[str, str] = os.environ) -> tuple[str | None, dict[str, str]]:
    """NGC PyTorch container version (e.g. '25.11') from its image environment, or None."""
    seen = {k: environ[k] for k in NGC_VARIABLES if environ.get(k)}
    if seen.get("NVIDIA_PYTORCH_VERSION"):
        return seen["NVIDIA_PYTORCH_VERSION"], seen
    if seen.get("PYTORCH_BUILD_VERSION") and seen.get("NVIDIA_BUILD_ID"):
        return "unknown", seen  # NGC's build variables without the release tag
    if seen.get("NVIDIA_PRODUCT_NAME", "").lower() == "pytorch":
        return "unknown", seen
    return None, seen


def detect_jetson(root: Path = Path("/")) -> str | None:
    """L4T release ('R36.4.0') from /etc/nv_tegra_release, or None on anything but Jetson."""
    text = _read(root, "/etc/nv_tegra_release")
    if text is None:
        return None
    m = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    if m:
        return f"R{m.group(1)}.{m.group(2)}"
    return text.splitlines()[0].strip() if text.strip() else "unknown"


def detect_dgx(root: Path = Path("/")) -> str | None:
    text = _read(root, "/etc/dgx-release")
    if text is not None:
        m = re.search(r'^DGX_(?:PRETTY_NAME|NAME)="?([^"\n]+)"?', text, re.M)
        return m.group(1).strip() if m else "DGX"
    product = (_read(root, "/sys/class/dmi/id/product_name") or "").strip()
    return product if "DGX" in product.upper() else None


def detect_wsl(release: str, root: Path = Path("/"),
               environ: Mapping[str, str] = os.environ) -> bool:
    return ("microsoft" in release.lower() or bool(environ.get("WSL_DISTRO_NAME"))
            or (root / "proc/sys/fs/binfmt_misc/WSLInterop").exists())


def torch_distribution() -> dict:
    """torch's installed version and Requires-Python, from metadata only (no import)."""
    from importlib import metadata

    try:
        meta = metadata.metadata("torch")
    except metadata.PackageNotFoundError:
        return {"version": None, "requires_python": None}
    return {"version": meta.get("Version"), "requires_python": meta.get("Requires-Python")}


def gather_platform(root: Path = Path("/"), environ: Mapping[str, str] = os.environ) -> dict:
    libc_name, libc_version = platform.libc_ver()
    release = platform.release()
    container, hints = detect_container(root, environ)
    ngc, ngc_env = detect_ngc(environ)
    torch_dist = torch_distribution()
    return {
        "system": platform.system(),
        "release": release,
        "machine": platform.machine(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "libc": f"{libc_name} {libc_version}".strip() or None,
        "container": container,
        "container_hints": hints,
        "ngc": ngc,
        "ngc_env": ngc_env,
        "jetson": detect_jetson(root),
        "dgx": detect_dgx(root),
        "wsl": detect_wsl(release, root, environ),
        "torch_version": torch_dist["version"],
        "torch_requires_python": torch_dist["requires_python"],
    }


@fact("platform")
def gather(ctx) -> dict:
    return gather_platform()
