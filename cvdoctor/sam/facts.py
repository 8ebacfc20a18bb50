"""Facts of a SAM set-up (registered for `SamContext`):

- ``sam_checkpoint``: the checkpoint against the model type, from its shapes (read when the
  context is made: it decides whether the file can be imported);
- ``sam_image``: what `get_image()` returns, what the source says about its colour order, and
  what `set_image` does with it (on a tiny SAM; the real model under --deep or on a GPU);
- ``sam_prompts``: the prompts of `get_prompts()` and the literal ones of `predict(...)` calls,
  and what `predict` does with them;
- ``sam_memory``: the encoder's memory for this model type against the device's free memory.
"""
from __future__ import annotations

from typing import Any

from cvdoctor.factgraph import fact
from cvdoctor.sam import image as image_mod
from cvdoctor.sam import prompts as prompts_mod


@fact("sam_checkpoint")
def sam_checkpoint(ctx) -> dict[str, Any]:
    return ctx.checkpoint_info


def _call(fn, what: str) -> tuple[Any, str | None]:
    try:
        return fn(), None
    except Exception as exc:  # noqa: BLE001 - the user's function failing is reported
        return None, f"{what} raised {type(exc).__name__}: {str(exc).strip()[:300]}"


def image_format(ctx) -> str:
    formats = {c.image_format for c in ctx.sam_target.source.set_image_calls}
    return "BGR" if formats == {"BGR"} else "RGB"


@fact("sam_image")
def sam_image(ctx) -> dict[str, Any]:
    setup, t = ctx.setup, ctx.sam_target
    out: dict[str, Any] = {
        "imread_lines": t.source.imread_lines,
        "set_image_calls": [c.__dict__ for c in t.source.set_image_calls],
        "get_image_source": t.source.get_image_source,
        "image_format": image_format(ctx),
    }
    if setup.get_image is None:
        out["given"] = False
        if setup.not_imported and t.kind == "file":
            out["not_imported"] = setup.not_imported
        return out
    image, error = _call(setup.get_image, "get_image()")
    if error:
        out.update(given=True, error=error)
        return out
    out.update(given=True, describe=image_mod.describe(image))
    predictor, which = ctx.predictor_for_checks()
    out["predictor"] = which
    out["wrap"] = image_mod.float_wrap(image, predictor)
    out["set_image"] = image_mod.run_set_image(predictor, image, out["image_format"])
    return out


@fact("sam_prompts", needs=["sam_image"])
def sam_prompts(ctx) -> dict[str, Any]:
    setup, t = ctx.setup, ctx.sam_target
    img = ctx.fact("sam_image")
    shape = (img.get("describe") or {}).get("shape")
    hw = tuple(shape[:2]) if shape and len(shape) >= 2 and (img.get("set_image") or {}).get("ok") \
        else None
    sources: list[tuple[str, dict[str, Any]]] = []
    if setup.get_prompts is not None:
        prompts, error = _call(setup.get_prompts, "get_prompts()")
        if error:
            return {"error": error, "image_hw": hw}
        if not isinstance(prompts, dict):
            return {"error": f"get_prompts() returned {type(prompts).__name__}, not the dict of "
                             "keyword arguments for predictor.predict(...)", "image_hw": hw}
        sources.append(("get_prompts()", prompts))
    for literal in t.source.predict_prompts:
        sources.append((f"predict(...) at line {literal['_line']}", literal))
    predictor, which = ctx.predictor_for_checks()
    ready = bool((img.get("set_image") or {}).get("ok"))
    mask_side = ctx.mask_input_side(predictor)
    runs = []
    for origin, prompts in sources:
        entry = {"from": origin, "prompts": prompts, "describe": prompts_mod.describe(prompts)}
        if ready:
            entry["run"] = prompts_mod.run_predict(predictor, prompts, mask_side)
        runs.append(entry)
    return {"sources": runs, "image_hw": list(hw) if hw else None, "predictor": which,
            "not_imported": setup.not_imported if t.kind == "file" else None}


@fact("sam_memory", needs=["gpu", "resources", "sam_image"])
def sam_memory(ctx) -> dict[str, Any]:
    from cvdoctor.sam import memory
    from cvdoctor.sam.checkpoint import model_specs

    mt = ctx.model_type
    if mt is None:
        return {"model_type": None}
    params = {t: model_specs(t)[2] for t in ("vit_b", "vit_l", "vit_h")}
    img = ctx.fact("sam_image")
    shape = (img.get("describe") or {}).get("shape")
    hw = tuple(shape[:2]) if shape and len(shape) == 3 else None
    out: dict[str, Any] = {"model_type": mt, "params": params[mt], "params_by_type": params,
                           "estimate": memory.estimate(mt, params[mt], hw)}
    out["device"] = device_memory(ctx)
    if ctx.run_real_encoder():
        sam = ctx.real_sam()
        if sam is not None:
            ctx.progress(f"SAM {mt}: measuring the image encoder at 1024x1024 ...")
            out["measured"] = memory.measure(sam, str(ctx.device))
    return out


def device_memory(ctx) -> dict[str, Any]:
    gpu = ctx.fact("gpu") or {}
    devices = gpu.get("devices") or []
    mem = (ctx.fact("resources") or {}).get("memory") or {}
    if gpu.get("present") and devices:
        d = devices[0]
        if d.get("free_memory") is not None:
            return {"kind": "gpu", "name": d.get("name"), "free": d["free_memory"],
                    "total": d.get("total_memory")}
        return {"kind": "unified", "name": d.get("name"), "free": mem.get("available"),
                "total": mem.get("total")}
    return {"kind": "cpu", "name": "this machine's memory", "free": mem.get("available"),
            "total": mem.get("total")}
