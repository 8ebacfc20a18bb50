"""Probe: write the repaired state dict of a checkpoint (`cvdoctor ckpt --fix OUT`) and verify it.

stdin: one JSON object: ``path``, ``out``, ``format`` ("safetensors" | "torch"), ``container``
(dotted path of the state dict inside the file), ``container_kind``, ``strip``/``add`` (the key
prefix change), ``drop`` (keys to leave out: the head, when asked), ``keep`` (the model's keys),
``model_shapes`` (key -> shape), ``safe_globals`` ("module:name" classes the scan judged library
code, allowed for this one load), ``model_target`` (a zoo spec to load into on the meta device).
stdout (last line): ``{"ok": true, "written": ..., "tensors": N, "bytes": B, "verified": ...}`` or
``{"ok": false, "error": ...}``.

The input is read with ``weights_only=True`` (or safetensors), after the parent's static scan;
the output goes to a temporary file next to OUT and becomes OUT only once it reads back with
exactly the model's keys and shapes; the input is never written.
"""
from __future__ import annotations

import importlib
import json
import os
import sys
import tempfile
from typing import Any

from cvdoctor.probes import emit


def _resolve(ref: str) -> Any:
    module, _, name = ref.partition(":")
    obj = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def _descend(obj: Any, path: str) -> Any:
    for part in [p for p in path.split(".") if p] if path else []:
        if isinstance(obj, dict):
            match = [v for k, v in obj.items() if str(k) == part]
            if not match:
                raise KeyError(f"no key {part!r} in the checkpoint")
            obj = match[0]
        elif isinstance(obj, (list, tuple)):
            obj = obj[int(part)]
        else:
            obj = getattr(obj, part)
    return obj


def _load(req: dict[str, Any]) -> Any:
    path = req["path"]
    if req.get("input_format") == "safetensors":
        from safetensors.torch import load_file

        return load_file(path, device="cpu")
    import torch

    classes = [_resolve(r) for r in req.get("safe_globals", [])]
    with torch.serialization.safe_globals(classes):
        return torch.load(path, map_location="cpu", weights_only=True)


def _state(obj: Any, req: dict[str, Any]) -> dict[str, Any]:
    import torch

    obj = _descend(obj, req.get("container", ""))
    if req.get("container_kind") == "module" or isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    if not isinstance(obj, dict):
        raise TypeError(f"the state dict at {req.get('container') or 'the top level'} is a "
                        f"{type(obj).__name__}, not a dict")
    strip, add = req.get("strip", ""), req.get("add", "")
    keep, drop = set(req["keep"]), set(req.get("drop", []))
    out = {}
    for k, v in obj.items():
        if not isinstance(k, str) or not k.startswith(strip) or not torch.is_tensor(v):
            continue
        new = add + k[len(strip):]
        if new in keep and new not in drop:
            out[new] = v.detach().clone().contiguous()
    return out


def _write(state: dict[str, Any], out: str, fmt: str) -> str:
    """Write to a temporary file next to OUT; the caller moves it into place once verified."""
    folder = os.path.dirname(os.path.abspath(out))
    fd, tmp = tempfile.mkstemp(prefix=".cvdoctor-fix-", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        if fmt == "safetensors":
            from safetensors.torch import save_file

            save_file(state, tmp, metadata={"format": "pt", "written_by": "cvdoctor ckpt --fix"})
        else:
            import torch

            torch.save(state, tmp)
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def _verify(req: dict[str, Any], path: str) -> dict[str, Any]:
    """Read OUT back and hold it against the model: exactly its keys and shapes (less the
    dropped head; a missing num_batches_tracked BatchNorm fills in itself)."""
    import torch

    if req["format"] == "safetensors":
        from safetensors.torch import load_file

        back = load_file(path, device="cpu")
    else:
        back = torch.load(path, map_location="cpu", weights_only=True)
    shapes = {k: list(v) for k, v in req["model_shapes"].items()}
    drop = set(req.get("drop", []))
    missing = sorted(k for k in shapes if k not in back and k not in drop
                     and not k.endswith("num_batches_tracked"))
    unexpected = sorted(k for k in back if k not in shapes)
    wrong = sorted(k for k, v in back.items() if k in shapes and list(v.shape) != shapes[k])
    result = {"missing": missing, "unexpected": unexpected, "wrong_shape": wrong,
              "tensors": len(back)}
    if req.get("model_target"):
        from cvdoctor.checkpoint.models import build_meta

        model = build_meta(req["model_target"], req.get("num_classes"))
        meta_state = {k: v.to("meta") for k, v in back.items()}
        res = model.load_state_dict(meta_state, strict=not drop, assign=True)
        left = sorted(set(res.missing_keys) - drop) if drop else []
        if left or (drop and res.unexpected_keys):
            result["load_state_dict"] = f"missing {left}, unexpected {res.unexpected_keys}"
        else:
            result["load_state_dict"] = "strict" if not drop else "head skipped"
    return result


def main() -> None:
    import warnings

    warnings.simplefilter("ignore")
    req = json.loads(sys.stdin.read())
    tmp = None
    try:
        state = _state(_load(req), req)
        if not state:
            emit({"ok": False, "error": "no tensor of the checkpoint maps onto the model"})
            return
        tmp = _write(state, req["out"], req["format"])
        check = _verify(req, tmp)
        ok = not (check["missing"] or check["unexpected"] or check["wrong_shape"]) and \
            check.get("load_state_dict", "strict") in ("strict", "head skipped")
        if ok:
            os.replace(tmp, req["out"])
            tmp = None
    except Exception as exc:  # noqa: BLE001 - the error text is the result
        emit({"ok": False, "error": f"{type(exc).__name__}: {str(exc)[:1500]}"})
        return
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)  # a file that does not verify never becomes OUT
    out = {"ok": ok, "format": req["format"], **check}
    if ok:
        out.update(written=req["out"], bytes=os.path.getsize(req["out"]))
    emit(out)


if __name__ == "__main__":
    main()
