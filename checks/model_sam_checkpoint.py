"""model.sam_checkpoint: the SAM checkpoint is there, whole, safe, and of the model type built."""
from __future__ import annotations

from pathlib import Path

from cvdoctor.finding import failed, passed, skipped, warned
from cvdoctor.registry import register
from cvdoctor.text import file_size

TITLE = "SAM checkpoint and model type"
MISSING = "sam-checkpoint-missing"
VARIANT = "checkpoint-wrong-variant"
RECIPES = [MISSING, VARIANT, "checkpoint-truncated", "checkpoint-unsafe-pickle",
           "state-dict-mismatch", "sam-empty-masks"]


@register("model.sam_checkpoint", targets=["sam"], order=12, title=TITLE, recipes=RECIPES,
          needs=["sam_checkpoint"])
def check(ctx):
    """Reads the checkpoint without loading it (cvdoctor.checkpoint): its variant from the
    shapes (embed width 768/1024/1280, 12/24/32 blocks), whether every key fits the model type the
    code builds, whether it is whole and safe, and what the published file of that name is.

    Fails when the file is missing, truncated, would run code when loaded, holds another
    variant's weights (vit_h weights built as vit_b and the reverse: the most reported SAM
    failure) or weights under a container or prefix that `sam_model_registry` cannot load. Warns
    when the code builds SAM without any checkpoint (random weights: meaningless masks)."""
    info = ctx.fact("sam_checkpoint")
    t = ctx.sam_target
    mt = ctx.model_type
    if not info.get("given"):
        src = t.source
        if t.kind == "file" and src.checkpoint_given is False and not src.loads_state_dict:
            return warned(TITLE, f"the file builds SAM {mt or ''} without a checkpoint "
                          "(sam_model_registry[...]() with no checkpoint=): random weights, so "
                          "every mask is meaningless", "Pass the checkpoint that matches the "
                          "model type: sam_model_registry['vit_b'](checkpoint='sam_vit_b_01ec64"
                          ".pth').", "sam-empty-masks")
        return skipped(TITLE, "no checkpoint named (segment_anything:TYPE --checkpoint FILE, or "
                       "checkpoint = \"...\" in the file)")
    name = info["name"]
    known = info.get("known") or {}
    if info.get("exists") is False:
        extra = ""
        if known.get("family") == "sam":
            extra = (f" (the published {known['variant']} checkpoint, "
                     f"{file_size(known['expected_size'])}: {known['url']})")
        return failed(TITLE, f"{info['path']} does not exist{extra}; building the model raises "
                      "FileNotFoundError", "Download it once and pass its absolute path"
                      + (f": wget {known['url']}" if known.get("url") else "") + ".", MISSING,
                      path=info["path"], known=known)
    if info.get("error"):
        return failed(TITLE, f"{name}: {info['error']}", "Point at the checkpoint file itself.",
                      MISSING, path=info["path"])
    if info.get("safety") == "denied":
        return failed(TITLE, f"{name}: loading it would run code (torch.load in segment-anything "
                      "unpickles it); cvdoctor did not load it", "Use the published checkpoint "
                      "from the segment-anything README, or one you saved yourself.",
                      "checkpoint-unsafe-pickle")
    if info.get("problem") or info.get("kind") not in ("zip", "pickle"):
        size = f"{file_size(info.get('size'))}"
        want = f"; the published file is {file_size(known['expected_size'])}" if known.get(
            "expected_size") else ""
        return failed(TITLE, f"{name} is not a whole torch checkpoint ({info.get('kind')}, "
                      f"{size}{want}): {info.get('problem') or 'unreadable'}",
                      "Download it again (the transfer stopped early) and compare the size.",
                      "checkpoint-truncated", size=info.get("size"), known=known)
    variant = info.get("variant") or {}
    fit = info.get("fit") or {}
    named = known.get("variant") if known.get("family") == "sam" else None
    shape_variant = variant.get("variant")
    name_note = (f"; the file is named like {named} but holds {shape_variant} weights"
                 if named and shape_variant and named != shape_variant else "")
    if fit.get("verdict") == "variant":
        code = fit.get("code") or []
        return failed(TITLE, f"{name}: {fit['summary']}{name_note}: sam_model_registry['{mt}'] "
                      "raises 'size mismatch' on every block", f"Build the model the weights "
                      f"belong to: {code[-1] if code else 'the matching registry key'}.", VARIANT,
                      variant=variant, fit=fit)
    if fit.get("verdict") not in (None, "fits") or fit.get("container"):
        where = (f"the weights sit under {fit['container']!r} ({fit.get('summary')})"
                 if fit.get("container") and fit.get("verdict") == "fits" else fit.get("summary"))
        return failed(TITLE, f"{name}: {where}; sam_model_registry loads the file as a plain "
                      "state dict (strict), so it raises", "Build the model without checkpoint= "
                      "and load it yourself: " + "; ".join(fit.get("code") or []),
                      "state-dict-mismatch", fit=fit)
    size = info.get("size")
    published = ""
    if known.get("expected_size"):
        published = ("; the published file's size" if size == known["expected_size"] else
                     f"; not the published file ({file_size(known['expected_size'])}): a "
                     "re-saved or fine-tuned checkpoint under its name")
    what = (f"SAM {shape_variant} weights (embed {variant.get('embed_dim')}, "
            f"{variant.get('depth')} blocks)" if shape_variant else "weights")
    fits = f"; every key fits sam_model_registry['{mt}']" if fit else ""
    return passed(TITLE, f"{Path(name).name}: {what}, {file_size(size)}{fits}{published}"
                  f"{name_note}", variant=variant, size=size)
