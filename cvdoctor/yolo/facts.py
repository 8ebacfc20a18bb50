"""Facts of a YOLO target (registered for `YoloContext`):

- ``yolo_checkpoint``: the weights file read without running it (cvdoctor.checkpoint): format,
  safety verdict, task, class count and names;
- ``yolo_data``: the data.yaml as the dataset library reads it (names, where the splits resolve);
- ``yolo_probe``: the contained ultralytics run (`cvdoctor.yolo.probe`): the model, the dataset
  as ultralytics resolves it, the trainer's settings and one training step.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from cvdoctor.factgraph import fact
from cvdoctor.yolo.plan import DEFAULT_BATCH

DEFAULT_SAMPLE = 4
DEEP_SAMPLE = 16
PROBE_TIMEOUT_S = 300.0


def checkpoint_path(ctx) -> str | None:
    t = ctx.yolo
    if t.kind == "pt" and t.weights_found:
        return t.value
    if t.kind == "file":
        cwd = Path(ctx.cwd)
        for name in t.file_weights:
            p = Path(os.path.expanduser(name))
            p = p if p.is_absolute() else cwd / p
            if p.is_file():
                return str(p)
    return None


@fact("yolo_checkpoint")
def yolo_checkpoint(ctx) -> dict[str, Any] | None:
    from cvdoctor.checkpoint import inspect_file
    from cvdoctor.checkpoint.known import yolo_info

    path = checkpoint_path(ctx)
    if path is None:
        return None
    rec = inspect_file(path, structure=True)
    structure = rec.pop("structure", None) or {}
    out = {k: rec.get(k) for k in ("path", "name", "size", "kind", "format", "error")}
    out["safety"] = (rec.get("safety") or {}).get("verdict")
    out["unsafe"] = [f for f in (rec.get("safety") or {}).get("findings", [])
                     if f.get("category") == "denied"][:5]
    out["problem"] = rec.get("pickle_problem") or (rec.get("zip") or {}).get("problem") \
        or (rec.get("pickle") or {}).get("problem")
    out["yolo"] = yolo_info(structure.get("meta"))
    out["tensors"] = len(structure.get("tensors") or {})
    if out["yolo"] is None and structure.get("tensors"):
        from cvdoctor.checkpoint.known import sam_variant

        out["sam"] = sam_variant(structure["tensors"])
    return out


@fact("yolo_data")
def yolo_data(ctx) -> dict[str, Any] | None:
    """The data.yaml named on the command line or in the file, read by the dataset library."""
    from cvdoctor.data.errors import DatasetError
    from cvdoctor.data.issues import Issues
    from cvdoctor.data.yolo_yaml import load, resolve

    data = ctx.static_settings.get("data")
    if not isinstance(data, str):
        return None
    path = Path(os.path.expanduser(data))
    path = path if path.is_absolute() else Path(ctx.cwd) / path
    if not path.is_file():
        return {"yaml": str(path), "exists": False}
    issues = Issues()
    try:
        meta = resolve(str(path), load(str(path)), issues, cwd=ctx.cwd)
    except DatasetError as exc:
        return {"yaml": str(path), "exists": True, "error": str(exc)}
    return {"yaml": str(path), "exists": True, "names": meta["names"], "nc": meta["nc"],
            "root": meta["root"], "splits": meta["splits"], "issues": issues.to_dict()}


def probe_request(ctx, ckpt: dict[str, Any] | None) -> dict[str, Any]:
    from cvdoctor.data.yolo_yaml import ultralytics_settings_dir

    t = ctx.yolo
    settings = {k: v for k, v in ctx.cli_settings.items() if v is not None}
    if "data" in settings:
        settings["data"] = str(Path(os.path.expanduser(str(settings["data"]))).resolve())
    batch = settings.get("batch") or ctx.static_settings.get("batch") or DEFAULT_BATCH
    sample = DEEP_SAMPLE if ctx.option("deep", False) else DEFAULT_SAMPLE
    if isinstance(batch, int) and batch > 0:
        sample = min(sample, batch)
    user_settings = ultralytics_settings_dir() / "settings.json"
    return {
        "model": {"kind": t.kind, "value": t.value, "attr": ctx.model_attr},
        "train_kwargs": t.train_kwargs,
        "settings": settings,
        "cwd": ctx.cwd,
        "settings_file": str(user_settings) if user_settings.is_file() else None,
        "device": "cuda" if ctx.device.type == "cuda" else "cpu",
        "sample": max(sample, 2),
        "strict_sockets": bool(os.environ.get("CVDOCTOR_YOLO_STRICT_SOCKETS")),
    }


@fact("yolo_probe", needs=["yolo_checkpoint"])
def yolo_probe(ctx) -> dict[str, Any]:
    from cvdoctor.probes import describe_failure, run_probe

    ckpt = ctx.fact("yolo_checkpoint")
    t = ctx.yolo
    if t.kind == "pt" and not t.weights_found:
        return {"skipped": "weights missing", "model": {"missing_weights": t.weights_name}}
    if ckpt is not None and ckpt.get("safety") == "denied":
        return {"skipped": "unsafe checkpoint", "model": {"refused": ckpt["path"]}}
    if ckpt is not None and ckpt.get("yolo") is None and ckpt.get("kind") in ("zip", "pickle"):
        return {"skipped": "not an ultralytics checkpoint",
                "model": {"error": {"type": "ValueError", "message":
                                    f"{ckpt['name']} holds no ultralytics model"}}}
    request = probe_request(ctx, ckpt)
    timeout = PROBE_TIMEOUT_S
    left = ctx.time_left()
    if left is not None:
        timeout = max(30.0, left)
    ctx.progress("ultralytics: one training step in a contained subprocess ...")
    # The probe's scratch folder (copies of a few images, caches, runs/) is made and removed
    # here: a probe that is killed (timeout, SIGTERM) cannot clean up after itself.
    request["tmp"] = tempfile.mkdtemp(prefix="cvdoctor-yolo-")
    try:
        result = run_probe("yolo_probe", stdin=json.dumps(request), timeout_s=timeout)
    finally:
        shutil.rmtree(request.pop("tmp"), ignore_errors=True)
    info = result.pop("_probe", {})
    if not info.get("ok") and "stage" not in result:
        raise RuntimeError(describe_failure(info, "the ultralytics probe", tail_lines=3))
    result["probe_seconds"] = info.get("duration_s")
    result["request"] = {k: request[k] for k in ("settings", "device", "sample")}
    if not info.get("ok"):
        result["probe_failure"] = describe_failure(info, "the ultralytics probe", tail_lines=3)
    return result

