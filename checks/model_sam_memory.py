"""model.sam_memory: SAM's image encoder fits the memory of the device it runs on."""
from __future__ import annotations

from cvdoctor.finding import passed, skipped, warned
from cvdoctor.registry import register
from cvdoctor.sam.memory import smallest_fitting
from cvdoctor.text import human_bytes

TITLE = "SAM memory"
RECIPE = "sam-oom"


@register("model.sam_memory", targets=["sam"], order=18, title=TITLE, recipes=[RECIPE],
          needs=["sam_memory"])
def check(ctx):
    """Peak memory of SAM's image encoder for this model type at 1024x1024 (measured per variant
    on a CPU in float32 and stored; run and measured under --deep or on a GPU), plus the weights
    and the masks upsampled to the image's own size, against the free memory of the device SAM
    runs on (the GPU; the system memory on CPU and on unified-memory GPUs).

    Warns when it does not fit, naming the variant that would."""
    facts = ctx.fact("sam_memory")
    mt = facts.get("model_type")
    if mt is None:
        return skipped(TITLE, "the model type is unknown (model_type = \"vit_b\" in the file, or "
                       "segment_anything:vit_b)")
    est = dict(facts["estimate"])
    measured = facts.get("measured") or {}
    how = est["source"]
    if measured.get("measured"):
        est["encoder_bytes"] = measured["encoder_bytes"]
        est["need_bytes"] = est["weights_bytes"] + est["encoder_bytes"] + est["masks_bytes"]
        how = f"measured now on {measured['device']} in {measured['seconds']} s"
    dev = facts.get("device") or {}
    free = dev.get("free")
    need = est["need_bytes"]
    h, w = est["image_hw"]
    parts = (f"weights {human_bytes(est['weights_bytes'])} + encoder "
             f"{human_bytes(est['encoder_bytes'])} + 3 masks at {w}x{h} "
             f"{human_bytes(est['masks_bytes'])}")
    if free is None:
        return passed(TITLE, f"SAM {mt} needs about {human_bytes(need)} ({parts}; {how}); free "
                      "memory unknown here", estimate=est)
    if need <= free:
        return passed(TITLE, f"SAM {mt} needs about {human_bytes(need)} ({parts}; {how}); "
                      f"{dev.get('name')} has {human_bytes(free)} free", estimate=est, device=dev)
    other = smallest_fitting(facts["params_by_type"], free)
    swap = f"use {other}" if other and other != mt else "free memory first"
    big = max(h, w) > 1024
    resize = " and resize the image to 1024 on its long side" if big else ""
    return warned(TITLE, f"SAM {mt} needs about {human_bytes(need)} ({parts}; {how}); "
                  f"{dev.get('name')} has {human_bytes(free)} free",
                  f"{swap[0].upper() + swap[1:]}{resize}; run inference under "
                  "torch.inference_mode().", RECIPE, estimate=est, device=dev)
