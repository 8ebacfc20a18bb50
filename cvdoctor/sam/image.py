"""The image contract of `SamPredictor.set_image`: an HxWx3 uint8 NumPy array, RGB unless
`image_format="BGR"` is passed.

What happens otherwise, measured on segment-anything's own code (see the tests): a grayscale
(HxW) or single-channel image raises in `permute`, RGBA raises the BCHW assertion, CHW layouts and
tensors raise in torchvision's `to_pil_image`, uint16 raises "Input type uint16 is not
supported"; floats do not raise: torchvision multiplies them by 255 and casts to uint8, so floats
in 0-1 work and floats in 0-255 wrap around into noise. A BGR image (cv2.imread) passed as RGB
swaps red and blue without a word.
"""
from __future__ import annotations

from typing import Any

WRAP_TOLERANCE = 2  # grey levels: rounding differences between two correct conversions


def describe(image: Any) -> dict[str, Any]:
    import numpy as np

    out: dict[str, Any] = {"type": f"{type(image).__module__}.{type(image).__name__}"}
    if isinstance(image, np.ndarray):
        out.update(kind="ndarray", shape=list(image.shape), dtype=str(image.dtype))
        if image.size and (np.issubdtype(image.dtype, np.number) or image.dtype == bool):
            finite = image[np.isfinite(image)] if np.issubdtype(image.dtype, np.floating) \
                else image
            if finite.size:
                out.update(min=float(finite.min()), max=float(finite.max()),
                           mean=float(finite.mean()))
            out["nonfinite"] = int(image.size - finite.size)
        return out
    if hasattr(image, "shape") and hasattr(image, "dtype"):  # a torch tensor
        out.update(kind="tensor", shape=list(image.shape), dtype=str(image.dtype))
        return out
    if hasattr(image, "mode") and hasattr(image, "size"):  # a PIL image
        out.update(kind="pil", mode=image.mode, size=list(image.size))
        return out
    if isinstance(image, (str, bytes)) or hasattr(image, "__fspath__"):
        out.update(kind="path", value=str(image)[:200])
        return out
    out["kind"] = "other"
    return out


def float_wrap(image: Any, predictor) -> dict[str, Any] | None:
    """For a float image with values above 1: the share of pixels SAM's own preprocessing
    (predictor.transform.apply_image) turns into something else than the intended uint8 image."""
    import numpy as np

    if not (isinstance(image, np.ndarray) and np.issubdtype(image.dtype, np.floating)
            and image.ndim == 3 and image.shape[-1] == 3):
        return None
    finite = np.nan_to_num(image.astype(np.float64))
    if finite.max() <= 1.0:
        return {"range": "0-1", "changed_share": 0.0}
    intended = np.clip(np.round(finite), 0, 255).astype(np.uint8)
    seen = predictor.transform.apply_image(image)
    wanted = predictor.transform.apply_image(intended)
    changed = np.abs(seen.astype(np.int16) - wanted.astype(np.int16)) > WRAP_TOLERANCE
    return {"range": "0-255", "changed_share": round(float(changed.mean()), 4)}


def run_set_image(predictor, image: Any, image_format: str) -> dict[str, Any]:
    """Call set_image as the user would; the exception (if any) as text."""
    try:
        predictor.set_image(image, image_format=image_format)
    except Exception as exc:  # noqa: BLE001 - the user's input breaking SAM is the finding
        return {"ok": False, "error": f"{type(exc).__name__}: {str(exc).strip()[:400]}"}
    return {"ok": True, "original_size": list(predictor.original_size),
            "input_size": list(predictor.input_size)}
