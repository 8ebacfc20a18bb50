"""The model command's `checkpoint_fit` fact: does the checkpoint the model file names (its
`checkpoint` or `weights` path, or `--checkpoint PATH`) fit the model it builds? The same library
as `cvdoctor ckpt --model` (inspection, safety, fit), on the model object itself."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from cvdoctor.checkpoint import fit, records
from cvdoctor.checkpoint.discovery import EXTENSIONS
from cvdoctor.checkpoint.facts import loading_code_for
from cvdoctor.factgraph import fact


def named_checkpoint(ctx) -> str | None:
    """The path the model file or the command line names; a string that is not a checkpoint
    file name (`weights = "IMAGENET1K_V1"`) is not one."""
    spec = getattr(ctx, "spec", None)
    hints = getattr(spec, "hints", None) or {}
    for key in ("checkpoint", "weights"):
        value = hints.get(key)
        if isinstance(value, (str, Path)) and str(value):
            text = str(value)
            if text.lower().endswith(EXTENSIONS) or "/" in text:
                return text
    return None


def _resolve(path: str, label: str | None) -> Path:
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists() or not label or not label.endswith(".py"):
        return p
    beside = Path(label).parent / p  # relative to the model file, as the file's own code sees it
    return beside if beside.exists() else p


@fact("checkpoint_fit")
def gather(ctx) -> dict[str, Any] | None:
    """The checkpoint's record and its fit to the model, or None when none is named."""
    named = named_checkpoint(ctx)
    if named is None:
        return None
    path = _resolve(named, getattr(ctx, "label", None))
    rec = records.file_records([(path, "model")])[0]
    out: dict[str, Any] = {"named": named, "record": rec}
    st = rec.get("structure") or {}
    model = ctx.spec.model
    if st.get("tensors"):
        from cvdoctor.checkpoint.models import state_specs

        specs = state_specs(model)
        d = fit.diagnose(st["tensors"], specs["tensors"], containers=st.get("containers", []),
                         top=st.get("top"), param_keys=specs["params"])
        result = d.to_dict()
        result["code"] = loading_code_for(rec, d, str(path))
        result["model"] = type(model).__name__
        out["fit"] = result
    return out
