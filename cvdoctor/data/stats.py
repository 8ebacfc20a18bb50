"""Per-channel mean and std of a dataset, from a reproducible sample, as a Normalize(...) line.

A reservoir sample (fixed seed) keeps memory flat however many files stream past. Each sampled
image is decoded with Pillow (JPEG draft mode at a reduced size: statistics, not pixels, are
wanted), converted to RGB as torchvision's loader does, and its per-band sums accumulated.
"""
from __future__ import annotations

import math
import random
import warnings
from typing import Any

from PIL import ImageStat

from cvdoctor.data.images import pil_open

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_SAMPLE = 64
_MAX_SIDE = 256


class Reservoir:
    def __init__(self, k: int = DEFAULT_SAMPLE, seed: int = 0) -> None:
        self.k, self.seen, self.items = k, 0, []  # type: ignore[var-annotated]
        self._rng = random.Random(seed)

    def offer(self, item: str) -> None:
        self.seen += 1
        if len(self.items) < self.k:
            self.items.append(item)
        else:
            j = self._rng.randrange(self.seen)
            if j < self.k:
                self.items[j] = item


def channel_stats(paths: list[str]) -> dict[str, Any] | None:
    """Mean/std per RGB channel on a 0-1 scale over the decodable images in `paths`."""
    n = 0
    s = [0.0, 0.0, 0.0]
    s2 = [0.0, 0.0, 0.0]
    used = 0
    for path in paths:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with pil_open(path) as im:
                    im.draft("RGB", (_MAX_SIDE, _MAX_SIDE))
                    rgb = im.convert("RGB")
        except Exception:  # noqa: BLE001 - a bad image is reported by the header checks
            continue
        if max(rgb.size) > _MAX_SIDE:
            rgb.thumbnail((_MAX_SIDE, _MAX_SIDE))
        st = ImageStat.Stat(rgb)
        count = st.count[0]
        for c in range(3):
            s[c] += st.sum[c]
            s2[c] += st.sum2[c]
        n += count
        used += 1
    if not n:
        return None
    mean = [s[c] / n / 255 for c in range(3)]
    std = [math.sqrt(max(s2[c] / n / 255 ** 2 - mean[c] ** 2, 0.0)) for c in range(3)]
    mean_r = [round(v, 3) for v in mean]
    std_r = [round(v, 3) for v in std]
    diff = max(max(abs(a - b) for a, b in zip(mean, IMAGENET_MEAN)),
               max(abs(a - b) for a, b in zip(std, IMAGENET_STD)))
    return {
        "images": used, "mean": mean_r, "std": std_r,
        "normalize": f"transforms.Normalize(mean={mean_r}, std={std_r})",
        "imagenet": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
        "max_diff_from_imagenet": round(diff, 3),
        "grayscale": all(abs(mean[0] - mean[c]) < 1e-3 and abs(std[0] - std[c]) < 1e-3
                         for c in (1, 2)),
    }
