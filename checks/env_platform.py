"""env.platform: OS, CPU architecture, container (Docker, NGC PyTorch), Python version."""
from __future__ import annotations

from cvdoctor.facts.packages import satisfies, version_tuple
from cvdoctor.finding import passed, warned
from cvdoctor.registry import register

TITLE = "Platform"
# torch 2.9 (October 2025) raised its floor to Python 3.10. Used only when torch is not
# installed; otherwise the installed torch's own Requires-Python decides.
CURRENT_TORCH_MIN_PYTHON = (3, 10)
# The newest Python cvdoctor knows torch publishes wheels for (torch 2.9 added 3.14). Newer
# interpreters may simply be ahead of cvdoctor: that is a warning, never a failure.
NEWEST_KNOWN_TORCH_PYTHON = (3, 14)
NGC_IMAGE = "nvcr.io/nvidia/pytorch:25.11-py3"


def describe(p: dict) -> str:
    parts = [f"{p.get('system') or '?'} {p.get('release') or ''}".strip(),
             p.get("machine") or "unknown arch"]
    if p.get("ngc"):
        parts.append(f"NGC PyTorch container {p['ngc']}")
    elif p.get("container"):
        parts.append(f"{p['container']} container")
    else:
        parts.append("no container")
    if p.get("jetson"):
        parts.append(f"Jetson L4T {p['jetson']}")
    if p.get("dgx"):
        parts.append(str(p["dgx"]))
    if p.get("wsl"):
        parts.append("WSL")
    parts.append(f"{p.get('python_implementation') or 'Python'} {p.get('python') or '?'}")
    return ", ".join(parts)


def python_problem(p: dict) -> str | None:
    """Why torch cannot be (or soon cannot be) installed on this interpreter, or None."""
    python = p.get("python") or ""
    impl = p.get("python_implementation") or "CPython"
    v = version_tuple(python)[:2]
    if impl != "CPython":
        return f"{impl} {python}: torch publishes wheels for CPython only"
    torch_version, requires = p.get("torch_version"), p.get("torch_requires_python")
    if torch_version and requires:
        if satisfies(python, requires) is False:
            return (f"the installed torch {torch_version} requires Python {requires}, this is "
                    f"Python {python}")
        return None  # the installed torch supports this interpreter: its metadata says so
    if v and v < CURRENT_TORCH_MIN_PYTHON:
        floor = ".".join(map(str, CURRENT_TORCH_MIN_PYTHON))
        return (f"Python {python} is older than {floor}, the minimum of current torch releases "
                f"(2.9 and later); pip will only find an old torch, or none")
    if v and v > NEWEST_KNOWN_TORCH_PYTHON:
        newest = ".".join(map(str, NEWEST_KNOWN_TORCH_PYTHON))
        return (f"Python {python} is newer than {newest}, the newest Python cvdoctor knows torch "
                f"wheels for, and torch is not installed yet; pip may find no wheel")
    return None


@register("env.platform", order=10, title=TITLE,
          recipes=["platform-python-unsupported", "platform-aarch64-no-container"],
          needs=["platform"])
def check(ctx):
    """Reads the OS, CPU architecture, container (Docker, Podman, Kubernetes, NVIDIA's NGC PyTorch
    container), Jetson and DGX markers and the Python interpreter.

    Warns (platform-python-unsupported) when the interpreter is not one torch publishes wheels
    for: the installed torch's own Requires-Python decides when torch is installed, otherwise the
    3.10 floor of current releases and the newest Python cvdoctor knows wheels for. Warns
    (platform-aarch64-no-container) on aarch64 Linux outside a container, where pip's torch wheels
    are often CPU-only. Never fails: the platform itself is not a bug."""
    p = ctx.fact("platform")
    evidence = {k: p.get(k) for k in ("system", "release", "machine", "python",
                                      "python_implementation", "libc", "container",
                                      "container_hints", "ngc", "jetson", "dgx", "wsl",
                                      "torch_version", "torch_requires_python")}
    findings = []
    problem = python_problem(p)
    if problem:
        findings.append(warned(
            TITLE, problem, "use CPython 3.11 or 3.12 in a fresh virtual environment "
            "(python3.12 -m venv .venv), or the NGC PyTorch container",
            "platform-python-unsupported", **evidence))
    machine = str(p.get("machine") or "").lower()
    if (p.get("system") == "Linux" and machine in ("aarch64", "arm64") and not p.get("container")
            and not p.get("ngc") and not p.get("jetson")):
        host = f"{p['dgx']} " if p.get("dgx") else ""
        findings.append(warned(
            TITLE, f"{host}aarch64 Linux outside a container: pip's torch wheels for ARM64 are "
            "often CPU-only or lack this GPU's kernels; the course runs PyTorch from the NGC "
            "container, built for ARM64 with CUDA",
            f"docker run --gpus all --ipc=host -it --rm {NGC_IMAGE}",
            "platform-aarch64-no-container", **evidence))
    return findings or passed(TITLE, describe(p), **evidence)
