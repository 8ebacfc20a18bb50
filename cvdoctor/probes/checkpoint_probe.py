"""Probe: load checkpoints with ``torch.load(weights_only=True, map_location="cpu")``.

stdin: a JSON list of ``{"path": ..., "kind": "zip" | "pickle" | "safetensors"}``.
stdout (last line): ``{"results": {path: {"status": "ok" | "error" | "refused", ...}},
"cuda_available": bool}``.

The parent only sends files whose pickle globals are all plain data; this probe scans them again
right before loading (the file may have changed in between) and refuses anything else, so no
pickle here can name code to run.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from cvdoctor.checkpoint.loading import is_loadable
from cvdoctor.checkpoint.scan import inspect_file
from cvdoctor.probes import emit


def _summarize(obj: Any) -> dict[str, Any]:
    import torch

    tensors = 0
    numel = 0
    stack = [obj]
    seen = 0
    while stack and seen < 100_000:
        seen += 1
        item = stack.pop()
        if isinstance(item, torch.Tensor):
            tensors += 1
            numel += item.numel()
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set)):
            stack.extend(item)
    out: dict[str, Any] = {"type": type(obj).__name__, "tensors": tensors, "numel": numel}
    if isinstance(obj, dict):
        out["top_keys"] = [str(k) for k in list(obj)[:8]]
        out["n_keys"] = len(obj)
    return out


def load_one(path: str, kind: str) -> dict[str, Any]:
    rec = inspect_file(Path(path), structure_wanted=False)
    if not is_loadable(rec):
        return {"status": "refused",
                "reason": "the file no longer passes the pickle scan; not loaded"}
    try:
        if kind == "safetensors":
            try:
                from safetensors.torch import load_file
            except ImportError:
                return {"status": "skipped", "reason": "safetensors not installed; header checked"}
            obj = load_file(path, device="cpu")
        else:
            import torch

            obj = torch.load(path, weights_only=True, map_location="cpu",
                             mmap=rec.get("kind") == "zip")
    except Exception as exc:  # noqa: BLE001 - the error text is the result
        out = {"status": "error", "error_type": type(exc).__name__,
               "error": (str(exc) or repr(exc))[:2000]}
        # torch names the first global it refuses; a fix that allows only that one meets the
        # next refusal. torch >= 2.5 lists them all by reading the pickle (nothing is run).
        lister = getattr(sys.modules.get("torch.serialization"), "get_unsafe_globals_in_checkpoint",
                         None)
        if "unsupported global" in out["error"].lower() and lister is not None:
            try:
                out["unsafe_globals"] = [str(g) for g in lister(path)][:50]
            except Exception:  # noqa: BLE001 - the first refusal is still reported
                pass
        return out
    return {"status": "ok", "summary": _summarize(obj)}


def main() -> None:
    import warnings

    warnings.simplefilter("ignore")
    items = json.loads(sys.stdin.read() or "[]")
    results = {it["path"]: load_one(it["path"], it.get("kind", "")) for it in items}
    out: dict[str, Any] = {"results": results}
    if "torch" in sys.modules:
        out["cuda_available"] = bool(sys.modules["torch"].cuda.is_available())
    emit(out)


if __name__ == "__main__":
    main()
