"""Wall time of `cvdoctor.check_model` (every model check) per model at fixture sizes.

    .venv/bin/python bench/bench_model.py [--repeats 5] [--threads N] [--models a,b]

Prints a Markdown table: median (and min/max) seconds per model over the repeats, after one
warm-up run per model that is not counted (first-call costs: imports, allocator), plus the
slowest check and the overfit check's share. The target is a median of at most 4 s per model on
a 2-core CPU. Figures depend on the machine's load: the header records the load average.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # modelzoo: the shared fixture models
sys.path.insert(0, str(HERE))


def models():
    """name -> () -> (model, batch, check_model kwargs). Batch <= 16, 32-64 px."""
    import timm
    import torchvision
    from modelzoo import SmallCNN, TinyUNet, image_batch, mask_batch

    return {
        "SmallCNN (16x3x32x32)": lambda: (SmallCNN(), image_batch(16), {}),
        "torchvision resnet18 (16x3x32x32)": lambda: (
            torchvision.models.resnet18(weights=None, num_classes=10), image_batch(16), {}),
        "torchvision mobilenet_v3_small (16x3x64x64)": lambda: (
            torchvision.models.mobilenet_v3_small(weights=None, num_classes=10),
            image_batch(16, size=64), {}),
        "timm vit_tiny (depth 12, patch 4, 8x3x32x32)": lambda: (
            timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32,
                              patch_size=4, num_classes=10), image_batch(8), {}),
        "TinyUNet (4x3x32x32, masks)": lambda: (TinyUNet(), mask_batch(), {"num_classes": 3}),
    }


def time_one(build, check_model) -> tuple[float, dict]:
    import torch

    torch.manual_seed(0)
    model, batch, kwargs = build()
    start = time.perf_counter()
    report = check_model(model, batch, **kwargs)
    wall = time.perf_counter() - start
    per_check = {f.check: f.duration_s for f in report.findings}
    per_check["_status"] = report.status
    return wall, per_check


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch intra-op threads (default: torch's own choice)")
    ap.add_argument("--models", default="", help="comma-separated substrings of model names")
    args = ap.parse_args(argv)

    import torch

    import cvdoctor

    if args.threads:
        torch.set_num_threads(args.threads)
    chosen = {k: v for k, v in models().items()
              if not args.models or any(s.strip().lower() in k.lower()
                                        for s in args.models.split(","))}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"cvdoctor.check_model, all model checks; {os.cpu_count()} CPUs, torch "
          f"{torch.__version__}, {torch.get_num_threads()} intra-op thread(s), load average "
          f"{load:.1f} at start; {args.repeats} timed runs per model after 1 warm-up.\n")
    print("| model | median s | min s | max s | overfit s (median) | slowest other check | status |")
    print("| --- | ---: | ---: | ---: | ---: | --- | --- |")
    for name, build in chosen.items():
        time_one(build, cvdoctor.check_model)  # warm-up
        walls, overfit, checks, statuses = [], [], {}, set()
        for _ in range(args.repeats):
            wall, per_check = time_one(build, cvdoctor.check_model)
            walls.append(wall)
            statuses.add(per_check.pop("_status"))
            overfit.append(per_check.get("model.overfit_batch", 0.0))
            for check, secs in per_check.items():
                checks.setdefault(check, []).append(secs)
        others = {c: statistics.median(v) for c, v in checks.items()
                  if c != "model.overfit_batch"}
        slowest = max(others, key=others.get) if others else "-"
        print(f"| {name} | {statistics.median(walls):.2f} | {min(walls):.2f} | "
              f"{max(walls):.2f} | {statistics.median(overfit):.2f} | "
              f"{slowest} {others.get(slowest, 0):.2f} s | {'/'.join(sorted(statuses))} |",
              flush=True)
    load_end = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nLoad average at the end: {load_end:.1f}.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
