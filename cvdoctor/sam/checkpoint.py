"""A SAM checkpoint against the model type, from the file's shapes (cvdoctor.checkpoint: nothing
is unpickled or loaded): which variant the weights are (embed width 768/1024/1280, 12/24/32
blocks), whether they fit the model type the code builds, and what the published file of that
name should be (size, MD5 prefix).
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any


@lru_cache(maxsize=4)
def model_specs(model_type: str) -> tuple[dict[str, Any], tuple[str, ...], int]:
    """(state-dict specs, parameter names, parameter count) of sam_model_registry[model_type],
    built on the meta device (no memory, no weights)."""
    import torch
    from segment_anything import sam_model_registry

    from cvdoctor.checkpoint.fit import specs_from_state_dict

    with torch.device("meta"):
        model = sam_model_registry[model_type]()
    params = tuple(n for n, _ in model.named_parameters())
    count = sum(p.numel() for p in model.parameters())
    return specs_from_state_dict(model.state_dict()), params, count


def analyze(path: str | None, model_type: str | None) -> dict[str, Any]:
    from cvdoctor.checkpoint import inspect_file
    from cvdoctor.checkpoint.known import identify_name, sam_variant

    if path is None:
        return {"given": False}
    p = Path(path)
    out: dict[str, Any] = {"given": True, "path": path, "name": p.name,
                           "known": identify_name(p.name, "cwd")}
    if not p.exists():
        out["exists"] = False
        return out
    if p.is_dir():
        out.update(exists=True, error="is a directory")
        return out
    out["exists"] = True
    rec = inspect_file(p, structure=True)
    structure = rec.pop("structure", None) or {}
    tensors = structure.get("tensors") or {}
    out.update(size=rec.get("size"), kind=rec.get("kind"), format=rec.get("format"),
               safety=(rec.get("safety") or {}).get("verdict"), tensors=len(tensors),
               problem=rec.get("pickle_problem") or (rec.get("zip") or {}).get("problem"),
               error=rec.get("error"))
    out["variant"] = sam_variant(tensors) if tensors else None
    known = out["known"]
    if known and known.get("family") == "sam" and out.get("size") is not None:
        out["size_matches_name"] = out["size"] == known.get("expected_size")
    if tensors and model_type:
        from cvdoctor.checkpoint.fit import diagnose, loading_code

        specs, params, _ = model_specs(model_type)
        d = diagnose(tensors, specs, containers=structure.get("containers") or (),
                     top=structure.get("top"), param_keys=params)
        out["fit"] = {"verdict": d.verdict, "summary": d.summary, "container": d.container,
                      "loaded_fraction": d.loaded_fraction, "missing": d.missing[:10],
                      "unexpected": d.unexpected[:10], "mismatched": d.mismatched[:5],
                      "code": loading_code(d, os.path.basename(path),
                                           fmt=rec.get("format") or "torch-zip")}
    return out


def blocks_import(info: dict[str, Any]) -> str | None:
    """Why importing the set-up would fail on its checkpoint (so cvdoctor does not import it)."""
    if not info.get("given"):
        return None
    if info.get("exists") is False:
        return f"its checkpoint {info['path']} does not exist"
    fit = info.get("fit") or {}
    if fit.get("verdict") not in (None, "fits"):
        return f"its checkpoint does not fit the model: {fit.get('summary')}"
    if fit.get("container"):
        return f"its checkpoint holds the weights under {fit['container']!r}, not at the top"
    if info.get("safety") == "denied":
        return "loading its checkpoint would run code (see model.sam_checkpoint)"
    if info.get("kind") not in ("zip", "pickle", None):
        return f"its checkpoint is not a torch file ({info.get('kind')})"
    return None
