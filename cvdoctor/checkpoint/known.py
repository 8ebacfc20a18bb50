"""What a file name promises: SAM, YOLOv8 and torch-hub checkpoints by their published names.

SAM's names end in the first 6 hex digits of the file's MD5; torch.hub's ``check_hash`` names end
in the first 8 or more hex digits of the SHA-256 (``resnet18-f37072fd.pth``). YOLOv8's release
weights are re-saved between ultralytics releases, so only an approximate size is meaningful.
"""
from __future__ import annotations

import re
from typing import Any

SAM_URL = "https://dl.fbaipublicfiles.com/segment_anything/{name}"
SAM_CHECKPOINTS = {
    "sam_vit_h_4b8939.pth": ("vit_h", 2564550879),
    "sam_vit_l_0b3195.pth": ("vit_l", 1249524607),
    "sam_vit_b_01ec64.pth": ("vit_b", 375042383),
}
# SAM image encoders by width and depth (segment_anything/build_sam.py).
SAM_VARIANTS = {768: ("vit_b", 12), 1024: ("vit_l", 24), 1280: ("vit_h", 32)}
# Approximate sizes of ultralytics' YOLOv8 detection weights: n ~6.2 MB, s ~21.5 MB, m ~49.7 MB,
# l ~83.7 MB, x ~130.5 MB.
YOLOV8_SIZE_RANGES = {
    "n": (4_500_000, 8_500_000),
    "s": (17_000_000, 27_000_000),
    "m": (40_000_000, 62_000_000),
    "l": (68_000_000, 105_000_000),
    "x": (110_000_000, 165_000_000),
}
YOLO_TASKS = {"DetectionModel": "detect", "SegmentationModel": "segment",
              "ClassificationModel": "classify", "PoseModel": "pose", "OBBModel": "obb",
              "WorldModel": "detect", "RTDETRDetectionModel": "detect"}
_YOLOV8 = re.compile(r"^yolov8([nsmlx])\.pt$")
_HUB_NAME = re.compile(r"^(?P<stem>.+)-(?P<hash>[0-9a-f]{8,64})\.(?:pth|pt)$")


def identify_name(name: str, place: str) -> dict[str, Any] | None:
    """What the file name promises: family, expected size, hash prefix and algorithm."""
    if name in SAM_CHECKPOINTS:
        variant, size = SAM_CHECKPOINTS[name]
        return {"family": "sam", "variant": variant, "expected_size": size,
                "hash_algo": "md5", "hash_prefix": name.rsplit("_", 1)[1].split(".")[0],
                "url": SAM_URL.format(name=name)}
    m = _YOLOV8.match(name)
    if m:
        return {"family": "yolov8", "variant": m.group(1),
                "size_range": list(YOLOV8_SIZE_RANGES[m.group(1)]), "size_is_approximate": True}
    m = _HUB_NAME.match(name)
    if m:
        return {"family": "torch_hub", "variant": m.group("stem"), "hash_algo": "sha256",
                "hash_prefix": m.group("hash"), "in_hub_cache": place == "torch_hub"}
    return None


def yolo_info(meta: Any) -> dict[str, Any] | None:
    """Task, class count and names of an ultralytics checkpoint, from the plain values the
    structure reader extracted (never by loading it)."""
    if not isinstance(meta, dict):
        return None
    for key in ("model", "ema"):
        model = meta.get(key)
        if isinstance(model, dict) and str(model.get("__class__", "")).startswith("ultralytics."):
            cls = model["__class__"].rsplit(".", 1)[-1]
            names = model.get("names")
            yaml = model.get("yaml") if isinstance(model.get("yaml"), dict) else {}
            task = model.get("task") if isinstance(model.get("task"), str) else YOLO_TASKS.get(cls)
            out: dict[str, Any] = {"class": model["__class__"], "task": task}
            if isinstance(names, dict):
                names = {str(k): v for k, v in names.items() if k != "..."}
            elif isinstance(names, list):
                names = {str(i): v for i, v in enumerate(names)}
            if isinstance(names, dict):
                out["nc"] = len(names)
                out["names"] = dict(list(names.items())[:100])
            if isinstance(yaml.get("nc"), int) and "nc" not in out:
                out["nc"] = yaml["nc"]
            if isinstance(yaml.get("yaml_file"), str):
                out["yaml_file"] = yaml["yaml_file"]
            for k in ("epoch", "date", "version"):
                if isinstance(meta.get(k), (int, str)):
                    out[k] = meta[k]
            out["from"] = key
            return out
    return None


def sam_variant(tensors: dict[str, Any]) -> dict[str, Any] | None:
    """SAM encoder variant from its shapes: embedding width (768/1024/1280) and block count."""
    key = next((k for k in tensors if k.endswith("image_encoder.patch_embed.proj.weight")), None)
    if key is None:
        return None
    shape = tensors[key]["shape"] if isinstance(tensors[key], dict) else tensors[key].shape
    width = shape[0] if shape else None
    prefix = key[: -len("patch_embed.proj.weight")]
    blocks = {int(k[len(prefix) + 7:].split(".", 1)[0]) for k in tensors
              if k.startswith(prefix + "blocks.") and k[len(prefix) + 7:].split(".", 1)[0].isdigit()}
    depth = max(blocks) + 1 if blocks else 0
    variant, expected_depth = SAM_VARIANTS.get(width, (None, None))
    return {"variant": variant, "embed_dim": width, "depth": depth,
            "consistent": variant is not None and depth == expected_depth}
