"""Tiny datasets made on the fly for the data tests (coco8-style: a handful of 64 px images).

Every generator writes into a folder the test owns (tmp_path) and returns its root. Images are
seeded noise with a coloured block, so no two images share content unless a test makes them.
"""
from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

import yaml
from PIL import Image

SIZE = 64


def make_image(path: Path, seed: int, size: tuple[int, int] = (SIZE, SIZE), mode: str = "RGB",
               fmt: str | None = None, **save) -> Path:
    rng = random.Random(seed)
    w, h = size
    im = Image.frombytes("RGB", size, rng.randbytes(w * h * 3))
    block = Image.new("RGB", (max(1, w // 3), max(1, h // 3)),
                      (rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    at = (rng.randrange(max(1, w - block.width)), rng.randrange(max(1, h - block.height)))
    im.paste(block, at)
    if mode != "RGB":
        im = im.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, format=fmt, **save)
    return path


def _box_row(rng: random.Random, cls: int) -> str:
    w, h = rng.uniform(0.1, 0.4), rng.uniform(0.1, 0.4)
    cx, cy = rng.uniform(w / 2, 1 - w / 2), rng.uniform(h / 2, 1 - h / 2)
    return f"{cls} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}"


def _polygon_row(rng: random.Random, cls: int, corners: int = 5) -> str:
    cx, cy, r = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7), rng.uniform(0.1, 0.25)
    import math
    pts = []
    for i in range(corners):
        a = 2 * math.pi * i / corners
        pts += [cx + r * math.cos(a), cy + r * math.sin(a)]
    return f"{cls} " + " ".join(f"{v:.6f}" for v in pts)


def _pose_row(rng: random.Random, cls: int, nkpt: int, ndim: int) -> str:
    box = _box_row(rng, cls)
    _, cx, cy, w, h = (float(v) for v in box.split())
    vals = []
    for _ in range(nkpt):
        vals += [rng.uniform(cx - w / 2, cx + w / 2), rng.uniform(cy - h / 2, cy + h / 2)]
        if ndim == 3:
            vals.append(rng.choice([0, 1, 2]))
    return box + " " + " ".join(f"{v:.6f}" if isinstance(v, float) else str(v) for v in vals)


def label_rows(task: str, rng: random.Random, classes: list[int], kpt=(4, 3)) -> list[str]:
    if task == "detect":
        return [_box_row(rng, c) for c in classes]
    if task == "segment":
        return [_polygon_row(rng, c) for c in classes]
    if task == "obb":
        return [_polygon_row(rng, c, corners=4) for c in classes]
    if task == "pose":
        return [_pose_row(rng, c, *kpt) for c in classes]
    raise ValueError(task)


def yolo_dataset(root: Path, task: str = "detect", n_train: int = 6, n_val: int = 2,
                 nc: int = 3, kpt=(4, 3), names_as_dict: bool = False,
                 yaml_extra: dict | None = None) -> Path:
    """root/data.yaml (no `path:`: resolves to its own folder), images/{train,val}, labels/..."""
    rng = random.Random(f"{task}-{nc}")
    seed = 0
    for split, n in (("train", n_train), ("val", n_val)):
        for i in range(n):
            seed += 1
            make_image(root / "images" / split / f"im{i:03d}.jpg", seed)
            classes = [(i + k) % nc for k in range(1 + i % 2)]
            rows = label_rows(task, rng, classes, kpt)
            lbl = root / "labels" / split / f"im{i:03d}.txt"
            lbl.parent.mkdir(parents=True, exist_ok=True)
            lbl.write_text("\n".join(rows) + "\n")
    names = [f"c{i}" for i in range(nc)]
    data: dict = {"train": "images/train", "val": "images/val",
                  "names": dict(enumerate(names)) if names_as_dict else names}
    if task == "pose":
        data["kpt_shape"] = list(kpt)
    data.update(yaml_extra or {})
    (root / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return root


def imagefolder_dataset(root: Path, classes=("cat", "dog", "fish"), per_class: int = 3,
                        splits=("train", "val")) -> Path:
    seed = 1000
    for split in splits:
        for cls in classes:
            for i in range(per_class):
                seed += 1
                make_image(root / split / cls / f"{cls}{i}.jpg", seed)
    return root


def mask_dataset(root: Path, n: int = 6, num_classes: int = 3) -> Path:
    for i in range(n):
        make_image(root / "images" / f"s{i}.jpg", 2000 + i)
        mask = Image.new("L", (SIZE, SIZE), 0)
        mask.paste(1 + i % (num_classes - 1), (8, 8, 40, 40))
        mask.paste(i % num_classes, (40, 40, 60, 60))
        (root / "masks").mkdir(parents=True, exist_ok=True)
        mask.save(root / "masks" / f"s{i}.png")
    return root


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """{relative path: (sha256, mode)} of every entry under root, links and folders included."""
    out: dict[str, tuple[str, int]] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            if os.path.isfile(path) and not os.path.islink(path):
                digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            else:
                digest = "dir-or-link"
            out[rel] = (digest, st.st_mode)
    return out


def codes(result: dict) -> set[str]:
    return set(result["issues"])


def examples(result: dict, code: str) -> list[dict]:
    return result["issues"][code]["examples"]


# Worker functions for the --deep pool tests (module level: spawned workers import them).
def hanging_decoder(path: str):
    import time
    if "hang" in os.path.basename(path):
        time.sleep(600)
    return []


def crashing_decoder(path: str):
    if "crash" in os.path.basename(path):
        os._exit(9)
    return []
