"""model.sam_image: the image handed to SamPredictor.set_image is what SAM expects."""
from __future__ import annotations

from cvdoctor.catalog import recipe_for_error
from cvdoctor.finding import Problem, report_problems, skipped
from cvdoctor.registry import register

TITLE = "SAM image (set_image)"
FORMAT = "sam-input-format"
COLORS = "sam-image-colors"
RECIPES = [FORMAT, COLORS]


@register("model.sam_image", targets=["sam"], order=14, title=TITLE, recipes=RECIPES,
          needs=["sam_image"], error_recipes=True)
def check(ctx):
    """Calls the file's `get_image()` and hands the result to `SamPredictor.set_image` (with
    the `image_format` the file uses) on a tiny SAM built from segment-anything's modules (the
    real model under --deep or on a GPU). Reads the source for `cv2.imread` images that reach
    `set_image` without a conversion to RGB.

    Fails when set_image raises or would (a path, a PIL image, a tensor, grayscale, RGBA, CHW,
    uint16) and when a float image holds values in 0-255 (torchvision multiplies floats by 255:
    they wrap into noise, silently). Warns when an OpenCV (BGR) image is passed as RGB."""
    img = ctx.fact("sam_image")
    problems: list[Problem] = []
    problems += _bgr(img)
    if not img.get("given"):
        if problems:
            return report_problems(TITLE, problems, "")
        if img.get("not_imported"):
            return skipped(TITLE, f"the set-up was not imported: {img['not_imported']} (see "
                           "model.sam_checkpoint)")
        return skipped(TITLE, "no get_image() in the set-up: add one that returns the image "
                       "you pass to set_image (an HxWx3 array)")
    if img.get("error"):
        match = recipe_for_error(img["error"])
        recipe = match.recipe if match else FORMAT
        problems.append(Problem("fail", recipe, img["error"], "Fix get_image() so it returns "
                                "the image (-v shows the message).", {"error": img["error"]}))
        return report_problems(TITLE, problems, "")
    d = img.get("describe") or {}
    problems += _form(d)
    wrap = img.get("wrap") or {}
    if wrap.get("range") == "0-255":
        problems.append(Problem(
            "fail", COLORS,
            f"get_image() returns {d.get('dtype')} values in {d.get('min', 0):.0f}-"
            f"{d.get('max', 0):.0f}: torchvision multiplies float images by 255 and casts to "
            f"uint8, so {wrap['changed_share']:.0%} of the pixels SAM encodes are wrapped noise "
            "(no error is raised)",
            "Pass uint8: image.astype(np.uint8) (or floats divided by 255).",
            {"describe": d, "wrap": wrap}))
    run = img.get("set_image") or {}
    if not run.get("ok") and not any(p.status == "fail" for p in problems):
        match = recipe_for_error(run.get("error") or "")
        recipe = match.recipe if match else FORMAT
        problems.append(Problem("fail", recipe, f"set_image raised {run.get('error')}",
                                "Pass an HxWx3 uint8 RGB NumPy array.", {"run": run}))
    note = _ok_message(img, d)
    return report_problems(TITLE, problems, note, image=d)


def _form(d: dict) -> list[Problem]:
    kind, shape, dtype = d.get("kind"), d.get("shape") or [], d.get("dtype")
    fix = "Pass an HxWx3 uint8 RGB NumPy array: np.array(Image.open(p).convert('RGB'))."
    if kind == "path":
        return [Problem("fail", FORMAT, f"get_image() returns a path ({d.get('value')!r}), not "
                        "pixels: set_image reads image.shape and raises", fix, d)]
    if kind == "pil":
        return [Problem("fail", FORMAT, f"get_image() returns a PIL image ({d.get('mode')}): "
                        "set_image needs a NumPy array", "np.array(image.convert('RGB')).", d)]
    if kind == "tensor":
        return [Problem("fail", FORMAT, f"get_image() returns a tensor of shape {shape}: "
                        "set_image takes a NumPy HxWx3 array (set_torch_image takes a tensor "
                        "made by predictor.transform.apply_image_torch)", fix, d)]
    if kind != "ndarray":
        return [Problem("fail", FORMAT, f"get_image() returns {d.get('type')}, not an image "
                        "array", fix, d)]
    if len(shape) == 2:
        return [Problem("fail", FORMAT, f"a grayscale image ({shape[0]}x{shape[1]}): set_image "
                        "needs 3 channels and raises in permute", "np.stack([gray] * 3, axis=-1),"
                        " or .convert('RGB') when reading.", d)]
    if len(shape) != 3:
        return [Problem("fail", FORMAT, f"an array of shape {shape}: set_image takes one HxWx3 "
                        "image", fix, d)]
    if shape[-1] == 4:
        return [Problem("fail", FORMAT, f"an RGBA image ({shape}): SAM's predictor asserts "
                        "'set_torch_image input must be BCHW'", "image[..., :3], or "
                        ".convert('RGB') when reading.", d)]
    if shape[0] in (1, 3) and shape[-1] not in (1, 3):
        return [Problem("fail", FORMAT, f"a channels-first array ({shape}): set_image takes "
                        "HxWx3 and raises in to_pil_image", "image.transpose(1, 2, 0).", d)]
    if shape[-1] != 3:
        return [Problem("fail", FORMAT, f"{shape[-1]} channels ({shape}): set_image needs 3",
                        fix, d)]
    if dtype and dtype != "uint8" and not dtype.startswith("float"):
        return [Problem("fail", FORMAT, f"dtype {dtype}: torchvision's to_pil_image refuses it "
                        "(only uint8 and float images convert)", "image.astype(np.uint8) after "
                        "scaling to 0-255 (uint16: image >> 8).", d)]
    if d.get("nonfinite"):
        return [Problem("fail", COLORS, f"{d['nonfinite']} NaN/inf pixels", "Fix the image "
                        "loading; SAM encodes NaN as garbage.", d)]
    return []


def _bgr(img: dict) -> list[Problem]:
    out = []
    calls = [c for c in img.get("set_image_calls") or [] if c.get("source") == "bgr"
             and c.get("image_format") != "BGR"]
    fix = ("Convert once: image = cv2.cvtColor(cv2.imread(p), cv2.COLOR_BGR2RGB), or pass "
           "set_image(image, image_format='BGR').")
    if calls:
        lines = ", ".join(str(c["line"]) for c in calls[:3])
        out.append(Problem("warn", COLORS, f"set_image gets an image read with cv2.imread (BGR) "
                           f"as RGB (line {lines}): red and blue are swapped, silently",
                           fix, {"calls": calls}))
    elif img.get("get_image_source") == "bgr" and img.get("image_format") != "BGR":
        out.append(Problem("warn", COLORS, "get_image() returns an image read with cv2.imread "
                           "(BGR) and set_image is called with image_format='RGB' (the default): "
                           "red and blue are swapped, silently", fix,
                           {"imread_lines": img.get("imread_lines")}))
    return out


def _ok_message(img: dict, d: dict) -> str:
    if not img.get("given"):
        return ""
    shape = "x".join(str(s) for s in d.get("shape") or [])
    rng = f", values {d.get('min', 0):.3g}-{d.get('max', 0):.3g}" if "min" in d else ""
    note = ""
    if (img.get("wrap") or {}).get("range") == "0-1":
        note = "; float 0-1 works (torchvision scales it by 255), uint8 is the documented input"
    return (f"get_image(): {shape} {d.get('dtype')}{rng}, {img.get('image_format')}; set_image "
            f"accepts it (run on {img.get('predictor')}){note}")
