"""Memory of SAM's image encoder at 1024 x 1024, the size it always works at.

`ENCODER_PEAK_BYTES` is what the encoder adds on top of the weights for one image, measured with
bench/bench_sam_memory.py (random weights, float32, `torch.inference_mode()`, CPU, torch
2.14 / segment-anything 1.0, peak RSS read from the kernel). Parameter counts are a poor guide
here: vit_h has 7x vit_b's parameters but its peak activations are only 1.36x (the same 64x64
token grid, 16 heads instead of 12), so all three were measured. On a CUDA device (or with
--deep) the encoder is run and measured instead.
"""
from __future__ import annotations

import time
from typing import Any

ENCODER_PEAK_BYTES = {"vit_b": 2_639_290_368, "vit_l": 3_471_179_776, "vit_h": 3_580_399_616}
MEASURED_WITH = "CPU, float32, inference_mode, torch 2.14, segment-anything 1.0"
ENCODER_SIDE = 1024
MASKS_PER_PROMPT = 3
# Per output pixel and mask: upsampled float logits, the thresholded bool mask and its NumPy copy.
MASK_BYTES_PER_PIXEL = 4 + 1 + 1


def estimate(model_type: str, params: int, image_hw: tuple[int, int] | None) -> dict[str, Any]:
    weights = params * 4
    activations = ENCODER_PEAK_BYTES[model_type]
    h, w = image_hw or (ENCODER_SIDE, ENCODER_SIDE)
    masks = MASKS_PER_PROMPT * h * w * MASK_BYTES_PER_PIXEL
    return {"model_type": model_type, "weights_bytes": weights, "encoder_bytes": activations,
            "masks_bytes": masks, "need_bytes": weights + activations + masks,
            "image_hw": [h, w], "source": f"measured for {model_type} ({MEASURED_WITH})"}


def smallest_fitting(params_by_type: dict[str, int], free: int) -> str | None:
    for t in ("vit_h", "vit_l", "vit_b"):
        if params_by_type[t] * 4 + ENCODER_PEAK_BYTES[t] < free:
            return t
    return None


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def measure(sam, device: str) -> dict[str, Any]:
    """Run the encoder once at 1024 x 1024 on `device` and measure its peak above the weights.
    On CPU the peak RSS is reset first (Linux /proc/self/clear_refs); elsewhere: no number."""
    import torch

    x = torch.zeros(1, 3, ENCODER_SIDE, ENCODER_SIDE, device=device)
    encoder = sam.image_encoder
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        try:
            with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
                fh.write("5")
        except OSError:
            return {"measured": False, "reason": "peak RSS cannot be reset on this system"}
        base = (_status_kib("VmRSS") or 0) * 1024
    start = time.perf_counter()
    with torch.inference_mode():
        encoder(x)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = (_status_kib("VmHWM") or 0) * 1024
    return {"measured": True, "device": device, "encoder_bytes": max(0, peak - base),
            "seconds": round(time.perf_counter() - start, 2)}
