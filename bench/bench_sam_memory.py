"""Peak memory of SAM's image encoder at 1024 x 1024 (the size it always works at), per variant.

Each variant runs in its own process: random weights (no checkpoint, no download), one image
through `sam.image_encoder` under `torch.inference_mode()` in float32. On CPU the peak is read
from the kernel (VmHWM reset through /proc/self/clear_refs after the model is built), so the
figure is what the encoder adds on top of the weights; on a CUDA device it is
`torch.cuda.max_memory_allocated()` minus the weights. The numbers feed
cvdoctor/sam/memory.py (ENCODER_PEAK_BYTES); rerun this when segment-anything changes.

    .venv/bin/python bench/bench_sam_memory.py [vit_b vit_l vit_h] [--device cuda]
"""
from __future__ import annotations

import json
import subprocess
import sys
import time


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def measure(variant: str, device: str) -> dict:
    import torch
    from segment_anything import sam_model_registry

    torch.manual_seed(0)
    sam = sam_model_registry[variant]().to(device).eval()
    params = sum(p.numel() for p in sam.image_encoder.parameters())
    weights = sum(p.numel() * p.element_size() for p in sam.image_encoder.parameters())
    x = torch.randn(1, 3, 1024, 1024, device=device)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset VmHWM to the current RSS
        base = _status_kib("VmRSS") * 1024
    start = time.perf_counter()
    with torch.inference_mode():
        out = sam.image_encoder(x)
    if device == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = _status_kib("VmHWM") * 1024
    return {"variant": variant, "device": device, "encoder_params": params,
            "encoder_weight_bytes": weights, "peak_above_weights_bytes": peak - base,
            "seconds": round(time.perf_counter() - start, 2), "output": list(out.shape),
            "torch": torch.__version__, "threads": torch.get_num_threads()}


def main(argv: list[str]) -> None:
    device = "cuda" if "--device" in argv and argv[argv.index("--device") + 1] == "cuda" else "cpu"
    if "--one" in argv:
        print(json.dumps(measure(argv[argv.index("--one") + 1], device)))
        return
    variants = [a for a in argv if a.startswith("vit_")] or ["vit_b", "vit_l", "vit_h"]
    for v in variants:
        out = subprocess.run([sys.executable, __file__, "--one", v, "--device", device],
                             capture_output=True, text=True)
        print(out.stdout.strip() or out.stderr.strip()[-500:], flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
