"""model.yolo_amp: mixed precision (AMP) on this GPU gives the float32 loss."""
from __future__ import annotations

from cvdoctor.finding import failed, passed, skipped, warned
from cvdoctor.registry import register
from cvdoctor.yolo.plan import AMP_DISABLED_GPUS
from cvdoctor.yolo.report import model_missing, skip_unless_yolo

TITLE = "YOLO mixed precision (AMP)"
AMP = "ultralytics-amp-check"
TOLERANCE = 0.05  # relative difference of the loss between float32 and fp16 autocast


@register("model.yolo_amp", targets=["yolo"], order=34, title=TITLE, recipes=[AMP],
          needs=["yolo_probe", "gpu"])
def check(ctx):
    """On a CUDA device, runs the probe's training batch through the model in float32 and
    under fp16 autocast (ultralytics trains with AMP on GPUs by default; its own AMP check needs
    a download and is skipped offline) and compares the losses.

    Fails when the fp16 loss is NaN/inf; warns when it differs from the float32 loss by more
    than 5%, or when the GPU is one on which ultralytics switches AMP off by name (training then
    runs in float32: slower, twice the activation memory; told from the GPU facts, so a recorded
    machine says it too). Otherwise skips without a CUDA device."""
    skip = skip_unless_yolo(ctx, TITLE)
    if skip:
        return skip
    gpu = ctx.fact("gpu") or {}
    devices = (gpu.get("devices") or []) if gpu.get("present") else []
    name = devices[0].get("name", "") if devices else ""
    if AMP_DISABLED_GPUS.search(name or ""):
        return warned(TITLE, f"ultralytics switches AMP off on {name} by name: training runs in "
                      "float32 (slower, about twice the activation memory)",
                      "Expect float32 speed and memory on this GPU; lower batch if it runs out.",
                      AMP, gpu=name)
    if ctx.device.type != "cuda":
        return skipped(TITLE, "no CUDA device in this run: AMP only runs on a GPU (ultralytics "
                       "trains in float32 on CPU)")
    probe = ctx.fact("yolo_probe")
    why = model_missing(probe)
    if why:
        return skipped(TITLE, why)
    amp = probe.get("amp")
    if not amp:
        return skipped(TITLE, "the probe did not reach the training step (see "
                       "model.yolo_train_step)")
    if amp.get("error"):
        return failed(TITLE, f"the fp16 autocast forward raised {amp['error']['type']}: "
                      f"{amp['error']['message'][:200]}", "Train with amp=False.", AMP, amp=amp)
    if not amp.get("finite"):
        return failed(TITLE, f"the loss is {amp.get('loss_fp16')} under fp16 autocast on {name} "
                      f"(float32: {amp['loss_fp32']:.4g})", "Train with amp=False.", AMP, amp=amp)
    diff = amp.get("relative_difference") or 0.0
    if diff > TOLERANCE:
        return warned(TITLE, f"the fp16 loss differs from float32 by {diff:.1%} on {name} "
                      f"({amp['loss_fp16']:.4g} vs {amp['loss_fp32']:.4g})",
                      "Watch the first epochs for NaN or zero mAP; amp=False if they appear.",
                      AMP, amp=amp)
    return passed(TITLE, f"fp16 autocast loss {amp['loss_fp16']:.4g} vs float32 "
                  f"{amp['loss_fp32']:.4g} ({diff:.2%}) on {name}", amp=amp)
