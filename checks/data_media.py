"""data.images, data.masks, data.normalization: the image and mask files themselves."""
from __future__ import annotations

from cvdoctor.data import wording as w
from cvdoctor.finding import FAIL, WARN, Problem, passed, report_problems, skipped
from cvdoctor.registry import register
from cvdoctor.text import plural

NEEDS = ["dataset"]

UNREADABLE = (("image.empty", "empty file"), ("image.not_image", "file"),
              ("image.unreadable", "unreadable image"), ("image.corrupt", "corrupt image"),
              ("image.truncated", "truncated image"), ("image.too_large", "oversized image"),
              ("image.decode_timeout", "image"), ("image.decoder_crashed", "image"),
              ("image.unsupported_format", "image"))
IMAGES_TITLE = "Image files readable and usable"


def _modes(ds) -> dict[str, int]:
    out: dict[str, int] = {}
    splits = ds.get("splits") or {}
    for info in splits.values():
        for mode, n in (info.get("modes") or {}).items():
            out[mode] = out.get(mode, 0) + n
    return out


def _formats(ds) -> dict[str, int]:
    out: dict[str, int] = {}
    for info in (ds.get("splits") or {}).values():
        for fmt, n in (info.get("formats") or {}).items():
            out[fmt] = out.get(fmt, 0) + n
    return out


@register("data.images", order=70, title=IMAGES_TITLE, recipes=["image-corrupt", "image-too-small",
          "image-exif-orientation", "dataset-ignored-files", "image-mode-not-rgb"], needs=NEEDS)
def check_images(ctx):
    """Reads every image's header with Pillow (and, with --deep, decodes every pixel in worker
    processes). Fails on files that are not images (Git LFS pointers, HTML pages, macOS '._'
    files), cannot be identified, are cut short (a JPEG without its end marker), fail their
    checksums or decoding, or have a format the loader refuses; on images under 10 px in a YOLO
    set (ultralytics drops them). Warns on JPEGs with bytes after the end marker (ultralytics
    rewrites them in place), tiny images elsewhere, EXIF-rotated images, images the loader skips
    for their name (a .gif, .jfif or .heic, or image content without an image extension), and a
    mix of RGB and other modes (grayscale, RGBA, CMYK). Files that are not images (a README, a
    CSV) are only noted, and OS files (.DS_Store, Thumbs.db, desktop.ini, hidden files) not at
    all: the loaders skip them without harm."""
    ds = ctx.fact("dataset")
    if w.nothing_scanned(ds):
        return skipped(IMAGES_TITLE, f"no image to read: {w.nothing_scanned(ds)}")
    problems = []
    fix = "Re-copy or re-export the listed files (git lfs pull for LFS pointers); delete " \
        "non-images."
    for code, noun in UNREADABLE:
        if w.count(ds, code):
            problems.append(Problem(FAIL, "image-corrupt", w.describe(ds, code, noun), fix,
                                    w.evidence(ds, code)))
    if w.count(ds, "image.jpeg_trailing_bytes"):
        problems.append(Problem(WARN, "image-corrupt",
                                w.describe(ds, "image.jpeg_trailing_bytes", "JPEG",
                                           tail="that ultralytics rewrites in place"),
                                "Re-save these JPEGs yourself (or train on a copy).",
                                w.evidence(ds, "image.jpeg_trailing_bytes")))
    if w.count(ds, "image.too_small"):
        dropped = ds.get("kind") == "yolo"
        problems.append(Problem(FAIL if dropped else WARN, "image-too-small",
                                w.describe(ds, "image.too_small", "image", tail="under 10 px"
                                           + (" (ultralytics drops them)" if dropped else "")),
                                "Remove or re-export images under 10 px a side.",
                                w.evidence(ds, "image.too_small")))
    if w.count(ds, "image.exif_rotated"):
        problems.append(Problem(WARN, "image-exif-orientation",
                                w.describe(ds, "image.exif_rotated", "image",
                                           tail="with an EXIF rotation"),
                                "Bake the rotation into the pixels (ImageOps.exif_transpose) "
                                "and re-check their labels.", w.evidence(ds, "image.exif_rotated")))
    for code in ("image.ignored_suffix", "imagefolder.ignored_file"):
        if w.count(ds, code):
            problems.append(Problem(WARN, "dataset-ignored-files",
                                    w.describe(ds, code, "image", tail="skipped by the loader"),
                                    "Convert them to JPEG or PNG, or move them out.",
                                    w.evidence(ds, code)))
    modes = _modes(ds)
    if w.count(ds, "image.mode_not_rgb") and modes.get("RGB") and len(modes) > 1:
        others = ", ".join(f"{m} {n:,}" for m, n in sorted(modes.items()) if m != "RGB")
        problems.append(Problem(WARN, "image-mode-not-rgb",
                                f"{modes['RGB']:,} RGB images and {others}: "
                                f"{w.where(ds, 'image.mode_not_rgb')}",
                                'Convert to RGB when loading: Image.open(p).convert("RGB").',
                                {**w.evidence(ds, "image.mode_not_rgb"), "modes": modes}))
    formats = _formats(ds)
    n = sum(formats.values())
    how = f"decoded all {n:,}" if ds.get("deep") else "headers read; --deep decodes every pixel"
    ok = (f"{plural(n, 'image')} ({', '.join(f'{k} {v:,}' for k, v in sorted(formats.items()))}; "
          f"modes {', '.join(f'{k} {v:,}' for k, v in sorted(modes.items()))}); {how}") \
        if n else f"no image listed ({how})"
    if ds.get("kind") == "masks":
        ok = f"{plural(ds.get('images', 0), 'image')} checked ({how})"
    if w.count(ds, "imagefolder.other_file"):
        ok += (f"; {plural(w.count(ds, 'imagefolder.other_file'), 'other file')} (not images) "
               f"left out by ImageFolder: {w.where(ds, 'imagefolder.other_file')}")
    return report_problems(IMAGES_TITLE, problems, ok, formats=formats, modes=modes)


MASKS_TITLE = "Segmentation masks match their images"


@register("data.masks", order=85, targets=["masks"], title=MASKS_TITLE, recipes=["mask-missing",
          "mask-size-mismatch", "mask-values-exceed-classes", "mask-jpeg", "mask-rgb-colour",
          "image-corrupt"], needs=NEEDS)
def check_masks(ctx):
    """Pairs images/x.* with masks/x.png and decodes every mask. Fails on an image without a mask,
    a mask of another size than its image, values at or past --num-classes (255 is allowed as the
    ignore index and said so), masks holding only 0 and 255 when --num-classes is given (a 0/255
    binary mask), JPEG masks, RGB colour masks and masks that cannot be read. Warns on masks
    without an image, RGB masks whose three channels are equal, and 0/255 masks when the number
    of classes is not given."""
    ds = ctx.fact("dataset")
    if ds.get("kind") != "masks":
        return skipped(MASKS_TITLE, f"only for images/ + masks/ folders; this is {ds.get('kind')}")
    nc = ds.get("num_classes")
    problems = []
    rules = (("mask.missing", FAIL, "mask-missing", "image", "without a mask",
              "Give every image a mask with the same name (a .png)."),
             ("mask.orphan", WARN, "mask-missing", "mask", "without an image",
              "Remove masks whose image is gone, or restore the image."),
             ("mask.size_mismatch", FAIL, "mask-size-mismatch", "mask", "of another size than "
              "its image", "Re-export the masks at their image's size."),
             ("mask.values_out_of_range", FAIL, "mask-values-exceed-classes", "mask",
              f"with values past {nc}", "Map mask values to class indices 0..N-1 (255: ignore)."),
             ("mask.jpeg", FAIL, "mask-jpeg", "mask", "stored as JPEG",
              "Re-export the masks as PNG."),
             ("mask.rgb_colour", FAIL, "mask-rgb-colour", "mask", "in RGB colours",
              "Map each colour to its class index and save single-channel PNGs."),
             ("mask.rgb_gray", WARN, "mask-rgb-colour", "mask", "saved as RGB with equal channels",
              'Save them single-channel (Image.open(p).convert("L")).'),
             ("mask.unreadable", FAIL, "image-corrupt", "mask", "that cannot be read",
              "Re-export the unreadable masks."))
    for code, status, recipe, noun, tail, fix in rules:
        if w.count(ds, code):
            problems.append(Problem(status, recipe, w.describe(ds, code, noun, tail=tail), fix,
                                    w.evidence(ds, code)))
    if w.count(ds, "mask.binary_0_255"):
        problems.append(Problem(FAIL if nc else WARN, "mask-values-exceed-classes",
                                "every mask holds only 0 and 255: a 0/255 binary mask, not "
                                "class indices",
                                "Divide by 255 (mask > 127) to get classes 0 and 1.",
                                w.evidence(ds, "mask.binary_0_255")))
    values = ds.get("values") or []
    shown = f"{values[0]}-{values[-1]}" if len(values) > 1 else ", ".join(map(str, values))
    ok = (f"{plural(ds['masks'], 'mask')} for {plural(ds['images'], 'image')}; "
          f"values {shown or 'none'}")
    if w.count(ds, "mask.ignore_255"):
        ok += (f"; 255 in {w.issue(ds, 'mask.ignore_255')['examples'][0].get('masks', 0):,} "
               "masks is taken as the ignore index: use CrossEntropyLoss(ignore_index=255)")
    ok += f" (checked against --num-classes {nc})" if nc else \
        f"; pass --num-classes to check the values (they suggest {ds['num_classes_guess']})"
    return report_problems(MASKS_TITLE, problems, ok, values=values[:50],
                           num_classes_guess=ds.get("num_classes_guess"))


NORM_TITLE = "Per-channel mean and std (Normalize)"


@register("data.normalization", order=97, targets=["imagefolder"], title=NORM_TITLE, recipes=[],
          needs=NEEDS)
def check_normalization(ctx):
    """Measures the per-channel mean and standard deviation of a fixed sample of training images
    (converted to RGB, as torchvision loads them) and gives the `transforms.Normalize(...)` line
    for them, next to ImageNet's values. Never warns: ImageNet's values are right for pretrained
    backbones, the measured ones for training from scratch."""
    ds = ctx.fact("dataset")
    if ds.get("kind") != "imagefolder":
        return skipped(NORM_TITLE, "measured for ImageFolder trees (ultralytics scales YOLO "
                                   "images to 0-1 itself)")
    stats = ds.get("stats")
    if not stats:
        return skipped(NORM_TITLE, "no readable training image to sample")
    gray = " (grayscale: equal channels)" if stats["grayscale"] else ""
    msg = (f"{stats['normalize']} from {plural(stats['images'], 'image')}{gray}; ImageNet's is "
           f"mean={stats['imagenet']['mean']}, std={stats['imagenet']['std']} (largest "
           f"difference {stats['max_diff_from_imagenet']}): keep ImageNet's for pretrained "
           "weights, use these when training from scratch")
    return passed(NORM_TITLE, msg, **stats)
