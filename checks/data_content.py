"""data.classes, data.duplicates, data.cache: what the dataset holds as a whole."""
from __future__ import annotations

from cvdoctor.data import wording as w
from cvdoctor.finding import FAIL, WARN, Problem, report_problems, skipped
from cvdoctor.registry import register
from cvdoctor.text import plural, quoted_names

NEEDS = ["dataset"]
IMBALANCE_RATIO = 50  # largest / smallest class in train ...
IMBALANCE_SMALL = 100  # ... when the smallest has fewer examples than this

CLASSES_TITLE = "Every class present in train, none drowned out"


def _train_split(splits: dict) -> str | None:
    for name in splits:
        if name.lower() == "train":
            return name
    return next(iter(splits), None)


@register("data.classes", order=90, targets=["yolo", "imagefolder"], title=CLASSES_TITLE,
          recipes=["dataset-class-balance"], needs=NEEDS)
def check_classes(ctx):
    """Counts instances per class in the training split (label rows for YOLO, images per class
    folder for ImageFolder). Warns when a class in data.yaml has no training instance, and when
    the largest class outnumbers the smallest 50 times or more while the smallest has under 100
    examples (a long tail can be real; then plan for it)."""
    ds = ctx.fact("dataset")
    kind = ds.get("kind")
    if kind not in ("yolo", "imagefolder"):
        return skipped(CLASSES_TITLE, "class counts need labels per image (YOLO or ImageFolder)")
    if kind == "yolo" and "train" not in ds["splits"]:
        return skipped(CLASSES_TITLE, "the train split did not resolve (see data.yaml)")
    split = _train_split(ds["splits"])
    if split is None:
        return skipped(CLASSES_TITLE, "no training split")
    info = ds["splits"][split]
    if kind == "yolo":
        if not ds.get("nc") or not info.get("rows"):
            return skipped(CLASSES_TITLE, "no class names or no label rows in train")
        names = ds.get("names") or [str(i) for i in range(ds["nc"])]
        counts = dict(zip(names, info["class_counts"]))
        unit = "instance"
    else:
        counts = {k: v for k, v in info["class_counts"].items() if v}  # empty: data.imagefolder
        unit = "image"
    if not counts:
        return skipped(CLASSES_TITLE, "no labelled examples in train")
    problems = []
    absent = [name for name, n in counts.items() if n == 0]
    if absent:
        elsewhere = [s for s, i in ds["splits"].items() if s != split and kind == "yolo" and
                     any(i["class_counts"][names.index(a)] for a in absent)]
        problems.append(Problem(WARN, "dataset-class-balance",
                                f"{plural(len(absent), 'class', 'classes')} with no {unit} in "
                                f"{split}: {quoted_names(absent)}"
                                + (f" (present in {', '.join(elsewhere)})" if elsewhere else ""),
                                "Label examples of these classes, or remove them from names.",
                                {"absent": absent}))
    present = {k: v for k, v in counts.items() if v}
    hi = max(present, key=present.get)
    lo = min(present, key=present.get)
    ratio = present[hi] / present[lo]
    if ratio >= IMBALANCE_RATIO and present[lo] < IMBALANCE_SMALL:
        problems.append(Problem(WARN, "dataset-class-balance",
                                f"{hi!r} has {present[hi]:,} {unit}s, {lo!r} {present[lo]:,} "
                                f"({ratio:.0f}x)",
                                "Add examples of the rare classes, or resample/weight them.",
                                {"ratio": round(ratio, 1)}))
    ok = (f"{split}: {plural(len(present), 'class', 'classes')}, {present[lo]:,}-"
          f"{present[hi]:,} {unit}s per class (ratio {ratio:.1f})")
    return report_problems(CLASSES_TITLE, problems, ok, counts=counts)


DUP_TITLE = "No duplicate images, no train/val leakage"


@register("data.duplicates", order=95, targets=["yolo", "imagefolder"], title=DUP_TITLE,
          recipes=["dataset-duplicate-images"], needs=NEEDS)
def check_duplicates(ctx):
    """Compares image contents (a hash of every file that shares its size with another). Fails
    when images of val or test are byte-identical to training images (validation then measures
    memory); warns when a split points at the same folder as train (demo sets do this on
    purpose) and on duplicates inside one split. Re-encoded or resized copies are not detected."""
    ds = ctx.fact("dataset")
    if ds.get("kind") not in ("yolo", "imagefolder"):
        return skipped(DUP_TITLE, "compared for YOLO and ImageFolder splits")
    if w.nothing_scanned(ds):
        return skipped(DUP_TITLE, f"no image to compare: {w.nothing_scanned(ds)}")
    content = ds["content"]
    problems = []
    fix = "Remove from val/test every image that is also in train."
    same_folder = set()
    if ds.get("kind") == "yolo":
        paths = {s: tuple(i["paths"]) for s, i in ds["yaml"]["splits"].items()}
        for s, p in paths.items():
            if s != "train" and p == paths.get("train"):
                same_folder.add(f"train/{s}")
                problems.append(Problem(WARN, "dataset-duplicate-images",
                                        f"{s}: points at the same images as train: every {s} "
                                        "image is a training image (fine for a demo, not for "
                                        "measuring)", f"Give {s} its own images.", {"split": s}))
    for pair, entry in content["leakage"].items():
        if pair in same_folder:
            continue
        ex = entry["examples"][0]
        problems.append(Problem(FAIL, "dataset-duplicate-images",
                                f"{plural(entry['count'], pair.split('/')[1] + ' image')} "
                                f"identical to {pair.split('/')[0]} images: "
                                f"{w.rel(ds, ex['file'])} = {w.rel(ds, ex['same_as'])}"
                                + (f" and {entry['count'] - 1:,} more" if entry["count"] > 1
                                   else ""), fix, {"leakage": {pair: entry}}))
    for split, entry in content["duplicates"].items():
        if any(split in pair for pair in same_folder):
            continue
        ex = entry["examples"][0]
        problems.append(Problem(WARN, "dataset-duplicate-images",
                                f"{plural(entry['count'], 'duplicate')} inside {split}: "
                                f"{w.rel(ds, ex['file'])} = {w.rel(ds, ex['same_as'])}"
                                + (f" and {entry['count'] - 1:,} more" if entry["count"] > 1
                                   else ""), "Keep one copy of each image.",
                                {"duplicates": {split: entry}}))
    return report_problems(DUP_TITLE, problems,
                           f"no two images share content ({plural(content['hashed'], 'file')} "
                           "of equal size hashed)")


CACHE_TITLE = "ultralytics label caches"


@register("data.cache", order=99, targets=["yolo"], title=CACHE_TITLE,
          recipes=["yolo-label-cache"], needs=NEEDS)
def check_cache(ctx):
    """Looks at the `.cache` file ultralytics keeps beside each label folder, without unpickling
    it. Warns when ultralytics cannot write it (a read-only folder: it rescans every run and
    cannot replace a stale cache). A stale or unreadable cache in a writable folder is only
    noted: ultralytics rebuilds it."""
    ds = ctx.fact("dataset")
    if ds.get("kind") != "yolo":
        return skipped(CACHE_TITLE, "ultralytics caches belong to YOLO datasets")
    caches = {s: i["cache"] for s, i in ds["splits"].items() if i.get("cache")}
    if not caches:
        return skipped(CACHE_TITLE, "no label files, so no cache to look at")
    problems = []
    if w.count(ds, "cache.unwritable"):
        stale = w.count(ds, "cache.stale")
        problems.append(Problem(WARN, "yolo-label-cache",
                                w.describe(ds, "cache.unwritable", "label folder",
                                           tail="ultralytics cannot write its cache in")
                                + (f"; {plural(stale, 'cache')} there already stale" if stale
                                   else ""),
                                "Make the labels folder writable, or train on a writable copy.",
                                w.evidence(ds, "cache.unwritable", "cache.stale")))
    notes = []
    for split, c in caches.items():
        name = w.rel(ds, c["path"])
        if not c["exists"]:
            notes.append(f"{split}: none yet ({name} is written on the first run)")
        elif c.get("stale"):
            notes.append(f"{split}: {name} is older than the files (rebuilt on the next run)")
        else:
            notes.append(f"{split}: {name}")
    if w.count(ds, "cache.unreadable"):
        notes.append(f"not a cache: {w.where(ds, 'cache.unreadable')} (rebuilt)")
    return report_problems(CACHE_TITLE, problems, "; ".join(notes), caches=caches)
