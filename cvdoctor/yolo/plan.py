"""The arithmetic of an ultralytics training run, as its loader and trainer do it (read from
ultralytics' `data/build.py` and `engine/trainer.py`, written here): how many DataLoader workers
really start, how much shared memory their prefetched batches hold, and how much device memory a
batch needs, from what the probe measured on a few images.
"""
from __future__ import annotations

import re
from typing import Any

DEFAULT_BATCH = 16  # ultralytics' default.yaml
DEFAULT_IMGSZ = 640
DEFAULT_WORKERS = 8
PREFETCH_TRAIN = 4  # ultralytics' build_dataloader: prefetch_factor 4 for shuffled loaders
SHM_HEADROOM = 2.0  # the batch in use, pinned copies, other users of /dev/shm (as env.shm)
# Weights, gradients and two optimizer moments in float32, plus the EMA copy ultralytics keeps.
BYTES_PER_PARAM = 4 * 5
# GPUs on which ultralytics' trainer switches AMP off by name (its own list, in check_amp).
AMP_DISABLED_GPUS = re.compile(r"(nvidia|geforce|quadro|tesla).*?(1660|1650|1630|t400|t550|t600|"
                               r"t1000|t1200|t2000|k40m)", re.I)


def loader_workers(workers: int, cpu_count: int, gpus: int, batches: int) -> int:
    """Workers ultralytics' build_dataloader starts: never more than os.cpu_count() per GPU
    (which ignores a container's CPU quota) nor than there are batches; on CPU it uses none."""
    if gpus <= 0:
        return 0
    return max(0, min(cpu_count // max(gpus, 1), workers, 0 if batches <= 1 else batches))


def batch_bytes(batch: int, imgsz: int, channels: int = 3) -> int:
    """One collated training batch as the workers hand it over: uint8 images, imgsz x imgsz."""
    return batch * channels * imgsz * imgsz


def shm_need(workers: int, batch: int, imgsz: int, channels: int = 3) -> dict[str, Any]:
    per = batch_bytes(batch, imgsz, channels)
    need = int(workers * PREFETCH_TRAIN * per * SHM_HEADROOM)
    return {"workers": workers, "prefetch_factor": PREFETCH_TRAIN, "batch_bytes": per,
            "headroom": SHM_HEADROOM, "need_bytes": need,
            "assumption": (f"{workers} workers x prefetch_factor {PREFETCH_TRAIN} x a batch of "
                           f"{batch} uint8 {imgsz}x{imgsz} images x {SHM_HEADROOM:g} headroom")}


def train_memory(saved_bytes: int, images: int, batch: int, params: int,
                 amp: bool) -> dict[str, Any]:
    """Device memory for one training step at `batch`, from the bytes autograd saved for
    backward on `images` images at the same size (float32; AMP keeps most of them in fp16)."""
    per_image = saved_bytes / max(images, 1)
    activations = per_image * batch * (0.5 if amp else 1.0)
    states = params * BYTES_PER_PARAM
    return {"per_image_bytes": int(per_image), "activation_bytes": int(activations),
            "state_bytes": int(states), "need_bytes": int(activations + states),
            "amp": amp, "batch": batch}


def imgsz_value(imgsz: Any) -> int | None:
    """ultralytics trains at a square size: an int, or the largest of a [h, w] pair."""
    if isinstance(imgsz, bool):
        return None
    if isinstance(imgsz, (int, float)):
        return int(imgsz)
    if isinstance(imgsz, (list, tuple)) and imgsz and all(isinstance(v, (int, float))
                                                          for v in imgsz):
        return int(max(imgsz))
    return None
