"""Pin the image's own torch builds while cvdoctor and its vision extras are installed.

NGC containers ship torch and torchvision built by NVIDIA for the image's CUDA (and for ARM64 on
DGX Spark). A dependency that asks for `torch>=X` must never swap them for a PyPI build: on
aarch64 that build is CPU-only, elsewhere it may lack the GPU's kernels or mismatch torchvision.

    python3 constraints.py write FILE    pin the installed torch family (pip constraints format)
    python3 constraints.py verify FILE   after the install: same versions, nothing new (exit 1)

The Dockerfile runs `write`, then `pip install -c FILE ...`, then `verify`; tests/test_docker.py
runs this same script against the test's own environment. Standard library only: it runs with
whatever Python the base image has, before anything is installed.
"""
from __future__ import annotations

import sys
from importlib import metadata

# The packages NVIDIA builds together in its PyTorch containers. torchaudio is pinned only when
# the image has it; verify fails if the install pulled in one that was not there.
TORCH_FAMILY = ("torch", "torchvision", "torchaudio")


def installed_versions(names=TORCH_FAMILY) -> dict[str, str]:
    """{name: exact installed version} for the names that are installed."""
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def constraint_lines(versions: dict[str, str]) -> list[str]:
    # The full version, local label included (2.10.0a0+b558c986e8.nv25.11): `==` with a local
    # label matches only that build, and pip accepts the installed pre-release it names.
    return [f"{name}=={version}" for name, version in versions.items()]


def read_constraints(text: str) -> dict[str, str]:
    pins = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        if not sep or not name.strip() or not version.strip():
            raise ValueError(f"not a name==version pin: {line!r}")
        pins[name.strip()] = version.strip()
    return pins


def differences(pins: dict[str, str], now: dict[str, str]) -> list[str]:
    """What changed since `pins` were written; empty when nothing did."""
    problems = []
    for name, version in pins.items():
        if name not in now:
            problems.append(f"{name} {version} was removed")
        elif now[name] != version:
            problems.append(f"{name} {version} was replaced by {now[name]}")
    for name in now.keys() - pins.keys():
        problems.append(f"{name} {now[name]} was installed but the base image had none: a build "
                        "from the package registry, not one made for this image")
    return problems


def write(path: str) -> int:
    versions = installed_versions()
    if "torch" not in versions:
        print(f"constraints.py: torch is not installed for {sys.executable}: this image needs a "
              "base with a CUDA build of torch (NGC PyTorch, or a CUDA base the Dockerfile "
              "bootstraps)", file=sys.stderr)
        return 1
    lines = constraint_lines(versions)
    with open(path, "w", encoding="utf-8") as out:
        out.write("# The torch builds of the base image; written by docker/constraints.py.\n")
        out.write("# pip install -c this-file ... keeps them.\n")
        out.write("\n".join(lines) + "\n")
    print("pinned: " + ", ".join(lines))
    return 0


def verify(path: str) -> int:
    try:
        with open(path, encoding="utf-8") as handle:
            pins = read_constraints(handle.read())
    except (OSError, ValueError) as exc:
        print(f"constraints.py: cannot read {path}: {exc}", file=sys.stderr)
        return 1
    problems = differences(pins, installed_versions())
    if problems:
        print("constraints.py: the install changed the base image's torch: "
              + "; ".join(problems), file=sys.stderr)
        return 1
    print("unchanged: " + ", ".join(constraint_lines(pins)))
    return 0


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("write", "verify"):
        print("usage: constraints.py write|verify FILE", file=sys.stderr)
        return 2
    return write(argv[1]) if argv[0] == "write" else verify(argv[1])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
