"""env.packages: the optional CV packages are present, versioned and importable, and
torchvision's compiled ops really run against this torch (the torch probe says so; versions are
evidence, never the verdict)."""
from __future__ import annotations

from cvdoctor.finding import failed, passed, warned
from cvdoctor.registry import register

TITLE = "CV packages"
MISMATCH = "torchvision-torch-mismatch"
MISSING_RECIPE = {"torchvision": "missing-torchvision", "timm": "missing-timm",
                  "ultralytics": "missing-ultralytics",
                  "segment_anything": "missing-segment-anything", "lap": "missing-lap",
                  "cv2": "missing-opencv"}
USED_FOR = {"torchvision": "models, transforms and detection ops",
            "timm": "pretrained backbones such as ViT and DeiT",
            "ultralytics": "YOLOv8 detection", "segment_anything": "SAM segmentation",
            "lap": "YOLO tracking", "cv2": "image I/O in ultralytics and SAM examples"}
# What the doctor says when torchvision's wheel and torch disagree; the versions it prints are
# the installed ones, the fix names the pair pip resolves together.
PAIR_FIX = ("reinstall both from one index so pip picks a matching pair: pip install "
            "--force-reinstall torch torchvision")


def reinstall(install: str) -> str:
    """'pip install timm' -> 'pip install --force-reinstall timm'."""
    return install.replace("pip install ", "pip install --force-reinstall ", 1)


def _name(info: dict) -> str:
    return "opencv (cv2)" if info["module"] == "cv2" else info["module"]


def missing_finding(info: dict, evidence: dict):
    module, install = info["module"], info["install"]
    recipe = MISSING_RECIPE[module]
    if info.get("distributions"):
        # Metadata says installed, the import system cannot find it: a half-removed package.
        dist = info["distributions"][0]
        return warned(TITLE, f"{_name(info)}: {dist} is recorded as installed but "
                      f"`import {module}` cannot find it"
                      + (f" ({info['error']})" if info.get("error") else ""),
                      reinstall(install), recipe, **evidence)
    why = f" ({info['error']})" if info.get("error") else ""
    return warned(TITLE, f"{_name(info)} is not installed{why}; needed for "
                  f"{USED_FOR[module]}", install, recipe, **evidence)


def import_failure(info: dict, result: dict, evidence: dict):
    module = info["module"]
    version = f" {info['version']}" if info.get("version") else ""
    error = (result.get("error") or "unknown error").strip().splitlines()[-1][:400]
    if module == "torchvision":
        return failed(TITLE, f"torchvision{version} is installed but `import torchvision` fails: "
                      f"{error}", PAIR_FIX, MISMATCH, **evidence)
    return failed(TITLE, f"{_name(info)}{version} is installed but `import {module}` fails: "
                  f"{error}", reinstall(info["install"]), MISSING_RECIPE[module],
                  **evidence)


def ops_text(ops: dict) -> str:
    where = f" (built with CUDA {ops['cuda_version']})" if ops.get("cuda_version") else ""
    return f"compiled ops load and nms runs{where}"


@register("env.packages", order=60, title=TITLE,
          recipes=[MISMATCH, *MISSING_RECIPE.values()], needs=["packages", "torch"])
def check(ctx):
    """Finds torchvision, timm, ultralytics, segment_anything, lap and OpenCV without importing
    them (--deep imports each in its own subprocess), with their versions; torchvision's compiled
    ops are loaded and nms run against the installed torch by the torch probe.

    Fails (torchvision-torch-mismatch) when torchvision's ops do not run with this torch; warns
    for each missing or non-importing package (missing-<package>) with its install command: they
    are optional until your code imports them."""
    facts = ctx.fact("packages")
    packages: dict = facts.get("packages", {})
    torch = ctx.optional_fact("torch")
    ops = torch.get("torchvision_ops") or {}
    pairing = facts.get("pairing") or {}
    evidence = {"packages": packages, "pairing": pairing, "torchvision_ops": ops,
                "torch_probe_ok": torch.get("ok"), "deep": facts.get("deep")}
    findings, healthy = [], []
    for module, info in packages.items():
        if not info.get("present"):
            findings.append(missing_finding(info, evidence))
            continue
        result = info.get("import")
        if result is not None and not result.get("imported"):
            findings.append(import_failure(info, result, evidence))
            continue
        label = f"{_name(info)} {info.get('version') or '(no version metadata)'}"
        if info.get("shadowed_by"):
            label += f" (import gets {info['shadowed_by']}, not the installed copy)"
        if result is not None:
            label += ", imports"
        if module == "torchvision":
            if torch.get("ok") and ops.get("found") and not ops.get("ok"):
                pair = ""
                if pairing.get("requires"):
                    pair = (f"; its metadata asks for torch {pairing['requires']}, torch "
                            f"{pairing.get('torch')} is installed")
                findings.append(failed(
                    TITLE, f"torchvision {info.get('version') or '?'} does not work with torch "
                    f"{torch.get('version') or pairing.get('torch')}: {ops.get('error')}{pair}",
                    PAIR_FIX, MISMATCH, **evidence))
                continue
            if ops.get("ok"):
                label += f": {ops_text(ops)}"
            elif not torch.get("ok"):
                label += ": compiled ops not checked (torch does not import; see env.torch)"
        healthy.append(label)
    if healthy:
        pair = ""
        if pairing.get("torchvision") and pairing.get("requires"):
            pair = (f"; torchvision {pairing['torchvision']} asks for torch "
                    f"{pairing['requires']}, torch {pairing.get('torch')} is installed")
        findings.insert(0, passed(TITLE, "; ".join(healthy) + pair, **evidence))
    return findings
