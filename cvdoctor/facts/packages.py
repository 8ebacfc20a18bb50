"""Provider "packages": the optional CV packages, found without importing them.

Presence comes from ``importlib.util.find_spec`` (it honours ``sys.path`` and ``sys.meta_path``,
so a package hidden by an import hook is reported missing, as an import would find it), the
version from ``importlib.metadata``. Importing happens only under ``--deep``, each package in its
own subprocess (``cvdoctor.probes.import_probe``), so a crash or a hang in one is reported and
the doctor goes on.
"""
from __future__ import annotations

import importlib.util
import re
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path

from cvdoctor.archcompat import parse_version
from cvdoctor.factgraph import fact

# module name -> (distributions that provide it, the install command cvdoctor suggests).
PACKAGES: dict[str, tuple[tuple[str, ...], str]] = {
    "torchvision": (("torchvision",), "pip install torchvision"),
    "timm": (("timm",), "pip install timm"),
    "ultralytics": (("ultralytics",), "pip install ultralytics"),
    # The troubleshooting guide installs from git; PyPI's segment-anything is the same code.
    "segment_anything": (("segment-anything", "segment_anything"), "pip install segment-anything"),
    "lap": (("lap", "lapx"), "pip install lap"),
    "cv2": (("opencv-python", "opencv-python-headless", "opencv-contrib-python",
             "opencv-contrib-python-headless"), "pip install opencv-python-headless"),
}

def version_tuple(version: str | None) -> tuple[int, ...]:
    """'2.15.0+cu128' -> (2, 15, 0); anything unparsable -> () (comparable, unlike None)."""
    return parse_version(version) or ()


def _cmp(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    n = max(len(a), len(b))
    a, b = a + (0,) * (n - len(a)), b + (0,) * (n - len(b))
    return (a > b) - (a < b)


def satisfies(version: str, specifier: str | None) -> bool | None:
    """Whether `version` meets a PEP 440 specifier like '>=3.10,!=3.14.1'. Covers the
    operators metadata uses (>=, <=, >, <, ==, !=, ~=, '.*' wildcards); None if unparsable."""
    v = version_tuple(version)
    if not v:
        return None
    for clause in (specifier or "").split(","):
        clause = clause.strip()
        if not clause:
            continue
        m = re.match(r"^(~=|==|!=|<=|>=|<|>)\s*([\w.*+!-]+)$", clause)
        if not m:
            return None
        op, target = m.groups()
        if target.endswith(".*"):
            prefix = version_tuple(target[:-2])
            same = v[:len(prefix)] == prefix
            if (op == "==" and not same) or (op == "!=" and same):
                return False
            continue
        t = version_tuple(target)
        if not t:
            return None
        c = _cmp(v, t)
        ok = {"==": c == 0, "!=": c != 0, "<=": c <= 0, ">=": c >= 0, "<": c < 0, ">": c > 0,
              "~=": c >= 0 and v[:len(t) - 1] == t[:len(t) - 1]}[op]
        if not ok:
            return False
    return True


def _distribution(names: tuple[str, ...]) -> list[metadata.Distribution]:
    found = []
    for name in names:
        try:
            found.append(metadata.distribution(name))
        except metadata.PackageNotFoundError:
            continue
    return found


def _requirement_on(dist: metadata.Distribution, package: str) -> str | None:
    """The specifier `dist` puts on `package` ('>=2.14.0', '==2.8.0'), '' if unpinned."""
    for req in dist.requires or []:
        m = re.match(rf"^{re.escape(package)}\s*(?:\((.*?)\)|([^;]*))?\s*(;.*)?$", req.strip())
        if m and not (m.group(3) or "").strip().startswith("; extra"):
            return (m.group(1) or m.group(2) or "").strip()
    return None


def inspect_package(module: str) -> dict:
    dists, install = PACKAGES[module]
    info: dict = {"module": module, "install": install, "present": False, "origin": None,
                  "version": None, "distribution": None, "distributions": [], "shadowed_by": None,
                  "error": None}
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError) as exc:  # an import hook refusing, a broken __spec__
        spec = None
        info["error"] = f"{type(exc).__name__}: {exc}"
    found = _distribution(dists)
    info["distributions"] = [f"{d.metadata['Name']} {d.version}" for d in found]
    if found:
        info["distribution"] = found[0].metadata["Name"]
        info["version"] = found[0].version
    if spec is None:
        return info
    info["present"] = True
    locations = list(spec.submodule_search_locations or [])
    info["origin"] = spec.origin if spec.origin not in (None, "namespace") else \
        (locations[0] if locations else None)
    if found and info["origin"]:
        # The metadata says where the installed copy lives; a different copy earlier on
        # sys.path (a source checkout, a stray folder) is what `import` will actually get.
        site = Path(str(found[0].locate_file(""))).resolve()
        origin = Path(info["origin"]).resolve()
        if site not in origin.parents:
            info["shadowed_by"] = str(origin)
    return info


def torchvision_pairing(torch_version: str | None) -> dict:
    """What the installed torchvision's metadata asks of torch, next to the torch installed.
    Evidence only: wheels from other indexes pin differently, and the ops probe is the truth."""
    dists = _distribution(("torchvision",))
    if not dists:
        return {"torchvision": None, "torch": torch_version, "requires": None, "satisfied": None}
    requires = _requirement_on(dists[0], "torch")
    satisfied = (satisfies(torch_version, requires) if torch_version and requires else None)
    return {"torchvision": dists[0].version, "torch": torch_version, "requires": requires,
            "satisfied": satisfied}


def import_in_subprocess(module: str, timeout_s: float) -> dict:
    from cvdoctor.probes import describe_failure, run_probe

    out = run_probe("import_probe", [module], timeout_s=timeout_s)
    probe = out.get("_probe", {})
    if "imported" not in out:
        # The probe died before answering: a crash in an extension module, or a hang.
        return {"imported": False, "error": describe_failure(probe, f"import {module}", 3),
                "probe": probe}
    return {"imported": out["imported"], "error": out.get("error"), "version": out.get("version"),
            "file": out.get("file"), "duration_s": probe.get("duration_s")}


def gather_packages(deep: bool = False, timeout_s: float = 60.0) -> dict:
    from cvdoctor.facts.platform_info import torch_distribution

    packages = {m: inspect_package(m) for m in PACKAGES}
    if deep:
        present = [m for m, p in packages.items() if p["present"]]
        with ThreadPoolExecutor(max_workers=3) as pool:
            results = pool.map(lambda m: import_in_subprocess(m, timeout_s), present)
            for module, result in zip(present, results):
                packages[module]["import"] = result
    torch_version = torch_distribution()["version"]
    return {"packages": packages, "deep": deep, "torch_version": torch_version,
            "pairing": torchvision_pairing(torch_version)}


@fact("packages")
def gather(ctx) -> dict:
    return gather_packages(deep=ctx.option("deep", False), timeout_s=ctx.option("timeout_s", 60.0))
