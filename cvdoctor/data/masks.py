"""Semantic segmentation pairs: `images/` and `masks/` (or VOC's JPEGImages/SegmentationClass).

Each image is paired with the mask of the same relative path and stem (any image suffix). The
mask is decoded (it is the label: values matter) and checked: same size as its image, values are
class indices below `num_classes` (255 allowed as the conventional ignore index, and said so),
stored losslessly (a JPEG mask invents values at every edge), single-channel (an RGB colour mask
needs a colour-to-index mapping before a loss can read it). Images get the header checks.
"""
from __future__ import annotations

import os
from collections import Counter
from typing import Any

from PIL import Image, ImageChops

from cvdoctor.data import deep as deep_mod, images, walk
from cvdoctor.data.issues import Issues
from cvdoctor.data.images import pil_open
from cvdoctor.data.progress import ProgressFn, Stage
from cvdoctor.text import plural

PAIRS = (("images", "masks"), ("images", "mask"), ("images", "annotations"),
         ("JPEGImages", "SegmentationClass"))
IGNORE = 255
MASK_SUFFIXES = ("png", "PNG", "tif", "tiff", "bmp", "gif", "jpg", "jpeg", "JPG", "webp")
IMAGE_SUFFIXES = images.YOLO_SUFFIXES | {"ppm", "pgm", "gif"}
_MAX_VALUES = 65536


def find_pair(root: str) -> tuple[str, str] | None:
    for img, msk in PAIRS:
        a, b = os.path.join(root, img), os.path.join(root, msk)
        if os.path.isdir(a) and os.path.isdir(b):
            return a, b
    return None


def _mask_for(image_path: str, image_dir: str, mask_dir: str) -> str | None:
    rel = os.path.relpath(image_path, image_dir)
    stem = os.path.splitext(rel)[0]
    for extra in ("", "_mask"):
        for ext in MASK_SUFFIXES:
            candidate = os.path.join(mask_dir, f"{stem}{extra}.{ext}")
            if os.path.isfile(candidate):
                return candidate
    return None


def mask_values(path: str) -> dict[str, Any]:
    """Decode a mask: mode, size, format, distinct values (index masks) or colours (RGB)."""
    out: dict[str, Any] = {"mode": None, "size": None, "format": None, "values": None,
                           "colours": None, "gray_rgb": False, "error": None}
    try:
        with pil_open(path) as im:
            out.update(mode=im.mode, size=im.size, format=im.format)
            im.load()
            if im.mode in ("RGB", "RGBA"):
                rgb = im.convert("RGB")
                r, g, b = rgb.split()
                if ImageChops.difference(r, g).getbbox() is None and \
                        ImageChops.difference(r, b).getbbox() is None:
                    out["gray_rgb"] = True
                    out["values"] = _values(r)
                else:
                    colours = rgb.getcolors(maxcolors=4096)
                    out["colours"] = (sorted(c for _, c in colours) if colours is not None
                                      else "more than 4096")
            elif im.mode == "LA":
                out["values"] = _values(im.getchannel(0))
            elif im.mode == "1":
                out["values"] = sorted({v // 255 for v in _values(im.convert("L"))})
            else:
                out["values"] = _values(im)
    except Exception as exc:  # noqa: BLE001 - any decode failure is this mask's problem
        out["error"] = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
    return out


def _values(im: Image.Image) -> list[int]:
    if im.mode in ("L", "P"):
        return [v for v, n in enumerate(im.histogram()[:256]) if n]
    if im.mode.startswith("I;16"):
        im = im.convert("I")
    colours = im.getcolors(maxcolors=_MAX_VALUES)
    if colours is None:
        return []
    return sorted(int(v) for _, v in colours)


def scan(root: str, *, num_classes: int | None = None, deep: bool = False,
         progress: ProgressFn | None = None, workers: int | None = None) -> dict[str, Any]:
    pair = find_pair(root)
    if pair is None:
        raise ValueError(f"{root} has no images/ + masks/ pair")
    image_dir, mask_dir = pair
    issues = Issues()
    stage = Stage(progress, "masks", None, every=16)
    counts: Counter = Counter()
    value_union: set[int] = set()
    masks_with_255 = 0
    broken: set[str] = set()  # files the header already reports unreadable: --deep skips them
    for entry in walk.iter_files(image_dir, issues, include_hidden=False):
        if images.suffix(entry.path) not in IMAGE_SUFFIXES:
            continue
        counts["images"] += 1
        stage.step()
        info = images.inspect(entry.path)
        for code, detail in info["problems"]:
            issues.add(code, entry.path, detail=detail)
        if images.unreadable(info):
            broken.add(entry.path)
        mpath = _mask_for(entry.path, image_dir, mask_dir)
        if mpath is None:
            issues.add("mask.missing", entry.path,
                       detail=f"no mask under {mask_dir} with this name")
            continue
        counts["masks"] += 1
        m = mask_values(mpath)
        if m["error"]:
            issues.add("mask.unreadable", mpath, detail=m["error"])
            continue
        if m["format"] == "JPEG":
            n = len(m["values"] or m["colours"] or [])
            issues.add("mask.jpeg", mpath, detail=f"JPEG mask ({n} distinct values): lossy "
                                                  "compression invents values at edges")
        if m["colours"] is not None:
            shown = m["colours"] if isinstance(m["colours"], str) else \
                f"{len(m['colours'])} colours, e.g. {m['colours'][:3]}"
            issues.add("mask.rgb_colour", mpath, detail=f"RGB colour mask ({shown})")
        elif m["gray_rgb"]:
            issues.add("mask.rgb_gray", mpath,
                       detail="3 identical channels: a class-index mask saved as RGB")
        if info["width"] is not None and m["size"] != (info["width"], info["height"]):
            swapped = m["size"] == (info["height"], info["width"])
            note = " (matches after the image's EXIF rotation)" if swapped and \
                info.get("orientation") in (5, 6, 7, 8) else ""
            issues.add("mask.size_mismatch", mpath,
                       detail=f"mask {m['size'][0]}x{m['size'][1]}, image "
                              f"{info['width']}x{info['height']}{note}")
        values = m["values"] or []
        if values and m["format"] != "JPEG":
            value_union.update(values)
            if IGNORE in values:
                masks_with_255 += 1
            if num_classes is not None:
                bad = [v for v in values if v >= num_classes and v != IGNORE]
                if bad:
                    issues.add("mask.values_out_of_range", mpath,
                               detail=f"values {bad[:8]} with --num-classes {num_classes}",
                               values=bad[:8])
    stage.close()
    orphans = 0
    for entry in walk.iter_files(mask_dir, Issues(), include_hidden=False):
        rel = os.path.splitext(os.path.relpath(entry.path, mask_dir))[0]
        stems = {rel, rel[:-5]} if rel.endswith("_mask") else {rel}
        found = any(os.path.isfile(os.path.join(image_dir, f"{s}.{ext}"))
                    for s in stems
                    for ext in (*IMAGE_SUFFIXES, *(e.upper() for e in IMAGE_SUFFIXES)))
        if not found:
            orphans += 1
            issues.add("mask.orphan", entry.path, detail="no image with this name")
    binary_255 = bool(value_union) and value_union <= {0, IGNORE} and IGNORE in value_union
    if binary_255:
        issues.add("mask.binary_0_255", mask_dir,
                   detail="every mask holds only 0 and 255: a 0/255 binary mask, not class ids")
    elif masks_with_255:
        issues.add("mask.ignore_255", mask_dir,
                   detail=f"{plural(masks_with_255, 'mask')} "
                          f"{'uses' if masks_with_255 == 1 else 'use'} 255: read as the ignore "
                          "index (CrossEntropyLoss(ignore_index=255))", masks=masks_with_255)
    decoded = 0
    if deep:
        dstage = Stage(progress, "decoding every image", counts["images"] - len(broken),
                       every=16)
        paths = (e.path for e in walk.iter_files(image_dir, Issues(), include_hidden=False)
                 if images.suffix(e.path) in IMAGE_SUFFIXES and e.path not in broken)
        for path, problems in deep_mod.decode_all(paths, workers=workers):
            decoded += 1
            dstage.step()
            for code, detail in problems:
                issues.add(code, path, detail=detail, deep=True)
        dstage.close()
    real = sorted(v for v in value_union if v != IGNORE)
    return {"kind": "masks", "path": os.path.abspath(root), "task": "semantic",
            "image_dir": image_dir, "mask_dir": mask_dir, "num_classes": num_classes,
            "images": counts["images"], "masks": counts["masks"], "orphan_masks": orphans,
            "values": sorted(value_union)[:300], "classes_seen": len(real),
            "num_classes_guess": (real[-1] + 1) if real else None,
            "deep": deep, "decoded": decoded, "issues": issues.to_dict()}
