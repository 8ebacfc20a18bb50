"""The prompts of `SamPredictor.predict`: `point_coords` an (N, 2) array of (x, y) pixels in the
original image, `point_labels` an (N,) array of 1 (object) / 0 (background), `box` one
[x1, y1, x2, y2] array in pixels, `mask_input` a 1x256x256 low-resolution mask, and
`multimask_output`. Each rule below says what SAM does otherwise: raise (fail), or answer with a
mask for the wrong place (warn: the guide's "SAM predictions are empty masks").
"""
from __future__ import annotations

from typing import Any

from cvdoctor.finding import Problem

RECIPE = "sam-empty-masks"


def as_array(value: Any):
    """A literal from the source ("array", value, dtype) or a runtime value, as numpy (or None
    for what numpy cannot hold); the second item says whether it was a NumPy array."""
    import numpy as np

    if isinstance(value, tuple) and len(value) == 3 and value[0] == "array":
        try:
            return np.array(value[1]), True
        except (ValueError, TypeError):
            return None, True
    if isinstance(value, np.ndarray):
        return value, True
    if hasattr(value, "detach") and hasattr(value, "numpy"):
        return value.detach().cpu().numpy(), False
    try:
        return np.array(value), False
    except (ValueError, TypeError):
        return None, False


def describe(prompts: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in prompts.items():
        if key.startswith("_"):
            continue
        if key == "multimask_output":
            out[key] = value
            continue
        if value is None:
            out[key] = None
            continue
        arr, is_np = as_array(value)
        out[key] = {"numpy": is_np, "type": type(value).__name__,
                    "shape": list(arr.shape) if arr is not None else None,
                    "values": arr.reshape(-1)[:12].tolist() if arr is not None and arr.size
                    else []}
    return out


def problems(prompts: dict[str, Any], image_hw: tuple[int, int] | None,
             mask_side: int = 256) -> list[Problem]:
    """Every way these prompts break SAM or point at nothing, as problems of `RECIPE`."""
    import numpy as np

    out: list[Problem] = []
    coords_v, labels_v = prompts.get("point_coords"), prompts.get("point_labels")
    box_v, mask_v = prompts.get("box"), prompts.get("mask_input")
    multimask = prompts.get("multimask_output", True)

    def fail(msg: str, fix: str, **ev: Any) -> None:
        out.append(Problem("fail", RECIPE, msg, fix, ev))

    def warn(msg: str, fix: str, **ev: Any) -> None:
        out.append(Problem("warn", RECIPE, msg, fix, ev))

    if coords_v is None and box_v is None and mask_v is None:
        warn("no prompt at all (no point_coords, box or mask_input): SAM has nothing to "
             "segment and returns an arbitrary mask",
             "Give a point: point_coords=np.array([[x, y]]), point_labels=np.array([1]).")
        return out
    n = None
    if coords_v is not None:
        coords, is_np = as_array(coords_v)
        if not is_np:
            fail(f"point_coords is a {type(coords_v).__name__}, not a NumPy array: SAM calls "
                 "coords.astype(...) and raises AttributeError",
                 "point_coords = np.array([[x, y]]).")
        if coords is None or coords.ndim != 2 or coords.shape[-1] != 2:
            shape = None if coords is None else tuple(coords.shape)
            fix = ("point_coords = np.array([[x, y]]): shape (1, 2), not (2,)."
                   if shape == (2,) else "point_coords must have shape (N, 2): one (x, y) row "
                   "per point.")
            fail(f"point_coords has shape {shape}; SAM needs (N, 2)", fix, shape=shape)
        else:
            n = coords.shape[0]
            out += _coords_in_image(coords, image_hw)
        if labels_v is None:
            fail("point_coords without point_labels: SAM asserts 'point_labels must be supplied "
                 "if point_coords is supplied'", "point_labels = np.array([1] * N) (1 = object).")
        else:
            labels, _ = as_array(labels_v)
            if labels is None or labels.ndim != 1 or (n is not None and labels.shape[0] != n):
                fail(f"point_labels has shape {None if labels is None else tuple(labels.shape)} "
                     f"for {n} points; SAM needs ({n},)",
                     f"point_labels = np.array([...]) with one 1/0 per point, shape ({n},).")
            else:
                values = set(np.unique(labels).tolist())
                if not values <= {0, 1, -1}:
                    fail(f"point_labels holds {sorted(values)}; SAM knows 1 (object), 0 "
                         "(background) and -1 (padding)", "Use 1 for object points, 0 for "
                         "background points.")
                elif values == {0} or values == {-1} or values == {0, -1}:
                    warn("every point is labelled background (0) or padding (-1): SAM is asked "
                         "for the region that contains none of them", "Label object points 1.")
    if box_v is not None:
        box, is_np = as_array(box_v)
        if not is_np:
            fail(f"box is a {type(box_v).__name__}, not a NumPy array: SAM calls box.reshape(...) "
                 "and raises AttributeError", "box = np.array([x1, y1, x2, y2]).")
        if box is None or box.size != 4:
            fail(f"box has shape {None if box is None else tuple(box.shape)}; predict takes one "
                 "box [x1, y1, x2, y2] (use predict_torch for several)",
                 "box = np.array([x1, y1, x2, y2]).")
        else:
            out += _box(box.reshape(-1).astype(float), image_hw)
    if mask_v is not None:
        mask, _ = as_array(mask_v)
        want = (1, mask_side, mask_side)
        if mask is None or tuple(mask.shape) != want:
            fail(f"mask_input has shape {None if mask is None else tuple(mask.shape)}; SAM takes "
                 f"{want}, the low-resolution logits of a previous predict()",
                 "Pass logits[np.argmax(scores)][None, :, :] from the previous call.")
    if multimask is False and n == 1 and box_v is None:
        warn("one point with multimask_output=False: a single click is ambiguous (part, object or "
             "group) and SAM's one mask may be the wrong level",
             "Use multimask_output=True and keep masks[np.argmax(scores)].")
    return out


def _coords_in_image(coords, image_hw) -> list[Problem]:
    import numpy as np

    if image_hw is None or not coords.size:
        return []
    h, w = image_hw
    xs, ys = coords[:, 0], coords[:, 1]
    if np.all((coords >= 0) & (coords <= 1)) and max(h, w) > 4 and coords.max() > 0:
        return [Problem("warn", RECIPE,
                        f"point_coords are all within 0-1 ({coords[:2].tolist()}): normalized "
                        f"coordinates, but SAM takes pixels of the {w}x{h} image",
                        "Multiply by the image size: x * W, y * H.", {"coords": coords.tolist()})]
    outside = ~((xs >= 0) & (xs < w) & (ys >= 0) & (ys < h))
    if not outside.any():
        return []
    swapped_inside = ((ys >= 0) & (ys < w) & (xs >= 0) & (xs < h))[outside].all()
    hint = (" (as (row, col) they would be inside: NumPy's order, not SAM's (x, y))"
            if swapped_inside else "")
    first = coords[outside][0].tolist()
    return [Problem("warn", RECIPE,
                    f"{int(outside.sum())} of {len(coords)} points lie outside the {w}x{h} image, "
                    f"e.g. {first}{hint}",
                    "Give (x, y) pixels of the image passed to set_image: x = column, y = row.",
                    {"outside": coords[outside].tolist()[:10], "image_hw": [h, w]})]


def _box(box, image_hw) -> list[Problem]:
    x1, y1, x2, y2 = box.tolist()
    out = []
    if x2 <= x1 or y2 <= y1:
        looks = " it looks like [x, y, w, h]" if x2 > 0 and y2 > 0 else " an empty box"
        out.append(Problem("warn", RECIPE,
                           f"box {[x1, y1, x2, y2]} has x2 <= x1 or y2 <= y1:{looks}",
                           "box = np.array([x1, y1, x2, y2]) with x2 > x1, y2 > y1 "
                           "(from [x, y, w, h]: [x, y, x + w, y + h]).", {"box": box.tolist()}))
    if image_hw is not None:
        h, w = image_hw
        if min(x1, y1) < 0 or max(x1, x2) > w or max(y1, y2) > h:
            out.append(Problem("warn", RECIPE,
                               f"box {[x1, y1, x2, y2]} reaches outside the {w}x{h} image",
                               "Give the box in pixels of the image passed to set_image.",
                               {"box": box.tolist(), "image_hw": [h, w]}))
        elif max(x1, y1, x2, y2) <= 1 and max(h, w) > 4:
            out.append(Problem("warn", RECIPE,
                               f"box {[x1, y1, x2, y2]} is within 0-1: normalized, but SAM "
                               "takes pixels", "Multiply by the image size.",
                               {"box": box.tolist()}))
    return out


def runtime_kwargs(prompts: dict[str, Any]) -> dict[str, Any]:
    """The prompts as predict() receives them (source literals become arrays)."""
    import numpy as np

    out = {}
    for key, value in prompts.items():
        if key.startswith("_"):
            continue
        if isinstance(value, tuple) and len(value) == 3 and value[0] == "array":
            try:
                value = np.array(value[1], dtype=None)
            except (ValueError, TypeError):
                value = value[1]
        out[key] = value
    return out


def run_predict(predictor, prompts: dict[str, Any], mask_side: int) -> dict[str, Any]:
    """predict(**prompts) on an image already set (a mask_input of the real size is skipped on
    the tiny model: its shape was judged above)."""
    kwargs = runtime_kwargs(prompts)
    if mask_side != 256:
        kwargs.pop("mask_input", None)
    try:
        masks, scores, _ = predictor.predict(**kwargs)
    except Exception as exc:  # noqa: BLE001 - SAM's refusal is the finding
        return {"ok": False, "error": f"{type(exc).__name__}: {str(exc).strip()[:400]}"}
    return {"ok": True, "masks": list(masks.shape), "scores": [round(float(s), 4)
                                                               for s in scores]}
