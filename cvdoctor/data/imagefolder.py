"""An ImageFolder tree (torchvision's, and ultralytics' classify layout): root/split/class/img.

torchvision's rules, repeated here: the classes are *every* sub-folder of a split, sorted (hidden
ones such as `.ipynb_checkpoints` included); files are found by `os.walk(followlinks=True)` under
each class and kept when `name.lower()` ends with one of its IMG_EXTENSIONS; a class with no such
file raises "Found no valid file for the classes ..."; a split with no sub-folder raises
"Couldn't find any class folder in ...". Class indices come from the sorted names *per split*,
so a class missing from val shifts every index after it.
"""
from __future__ import annotations

import os
from collections import Counter
from typing import Any

from cvdoctor.data import deep as deep_mod, images, walk
from cvdoctor.data.hashing import ContentIndex
from cvdoctor.data.issues import Issues
from cvdoctor.data.progress import ProgressFn, Stage
from cvdoctor.data.stats import DEFAULT_SAMPLE, Reservoir, channel_stats
from cvdoctor.text import plural

SPLIT_NAMES = ("train", "val", "valid", "validation", "test")
VAL_NAMES = ("val", "valid", "validation")


def find_splits(root: str) -> dict[str, str]:
    """{split name: folder} when root holds split folders; {} otherwise."""
    found = {}
    try:
        with os.scandir(root) as it:
            for entry in it:
                if entry.is_dir() and entry.name.lower() in SPLIT_NAMES:
                    found[entry.name] = entry.path
    except OSError:
        return {}
    order = {name: i for i, name in enumerate(SPLIT_NAMES)}
    return dict(sorted(found.items(), key=lambda kv: order[kv[0].lower()]))


def class_folders(folder: str) -> list[tuple[str, str]]:
    """torchvision's find_classes: every sub-folder, sorted by name."""
    with os.scandir(folder) as it:
        return sorted((e.name, e.path) for e in it if e.is_dir())


def scan(root: str, *, deep: bool = False, progress: ProgressFn | None = None,
         sample: int = DEFAULT_SAMPLE, workers: int | None = None) -> dict[str, Any]:
    issues = Issues()
    splits_dirs = find_splits(root) or {"(root)": root}
    index = ContentIndex()
    broken: set[str] = set()  # files the header already reports unreadable: --deep skips them
    reservoir = Reservoir(sample)
    stage = Stage(progress, "image headers", None)
    splits: dict[str, Any] = {}
    unlabelled_ok = _unlabelled_test_ok(splits_dirs)
    for split, folder in splits_dirs.items():
        splits[split] = _scan_split(split, folder, issues, index, stage,
                                    reservoir if not splits or split.lower() == "train" else None,
                                    broken, unlabelled_ok=unlabelled_ok and split.lower() == "test")
    stage.close()
    _compare_classes(splits, issues)
    hash_stage = Stage(progress, "hashing same-size images", index.candidates())
    content = index.finish(progress=hash_stage.set)
    hash_stage.close()
    stats_stage = Stage(progress, "mean/std sample", len(reservoir.items))
    stats = channel_stats(reservoir.items)
    stats_stage.set(len(reservoir.items))
    decoded = 0
    if deep:
        dstage = Stage(progress, "decoding every image", stage.done - len(broken), every=16)
        for split, folder in splits_dirs.items():
            paths = (e.path for _, cpath in _safe_classes(folder)
                     for e in walk.iter_files(cpath, Issues())
                     if e.path.lower().endswith(images.TORCHVISION_EXTENSIONS)
                     and e.path not in broken)
            for path, problems in deep_mod.decode_all(paths, workers=workers):
                decoded += 1
                dstage.step()
                for code, detail in problems:
                    issues.add(code, path, split=split, detail=detail, deep=True)
        dstage.close()
    return {"kind": "imagefolder", "path": os.path.abspath(root), "task": "classify",
            "splits": splits, "content": content, "stats": stats, "deep": deep,
            "decoded": decoded, "issues": issues.to_dict()}


def _unlabelled_test_ok(splits_dirs: dict[str, str]) -> bool:
    """A test/ without class folders is the unlabelled test set of many Kaggle datasets: fine
    while train and a validation split have classes (nothing then reads test/ as ImageFolder;
    without a val split, ultralytics would validate on it)."""
    named = {s.lower(): f for s, f in splits_dirs.items()}
    return bool(_safe_classes(named.get("train", ""))) and \
        any(_safe_classes(named[v]) for v in VAL_NAMES if v in named)


def _safe_classes(folder: str) -> list[tuple[str, str]]:
    try:
        return class_folders(folder)
    except OSError:
        return []


def _scan_split(split: str, folder: str, issues: Issues, index: ContentIndex, stage: Stage,
                reservoir: Reservoir | None, broken: set[str],
                unlabelled_ok: bool = False) -> dict[str, Any]:
    try:
        classes = class_folders(folder)
    except OSError as exc:
        issues.add("fs.unreadable", folder, split=split, detail=exc.strerror or str(exc))
        classes = []
    result: dict[str, Any] = {"folder": folder, "classes": [name for name, _ in classes],
                              "class_counts": {}, "images": 0, "modes": {}, "formats": {}}
    if not classes:
        loose = sum(1 for e in walk.iter_files(folder, Issues())
                    if e.path.lower().endswith(images.TORCHVISION_EXTENSIONS))
        if unlabelled_ok:  # nothing measures on images without labels: no leakage to look for
            result["unlabelled"] = loose
            return result
        issues.add("imagefolder.no_class_folders", folder, split=split,
                   detail=f"Couldn't find any class folder in {folder} "
                          f"({plural(loose, 'image')} {'lies' if loose == 1 else 'lie'} there "
                          "directly)", images=loose)
        return result
    modes: Counter = Counter()
    formats: Counter = Counter()
    empty = []
    for name, cpath in classes:
        if name.startswith("."):
            issues.add("imagefolder.hidden_class", cpath, split=split,
                       detail=f"hidden folder {name!r} is taken as a class by ImageFolder")
        n = 0
        for entry in walk.iter_files(cpath, issues):
            if not entry.path.lower().endswith(images.TORCHVISION_EXTENSIONS):
                kind, what = images.skipped_kind(entry.path)
                if kind == "image":
                    issues.add("imagefolder.ignored_file", entry.path, split=split,
                               detail=(what or f".{images.suffix(entry.path)} is not an "
                                       "ImageFolder image extension") + ": the file is skipped")
                elif kind == "other":  # a README or a CSV: noted, not warned about
                    issues.add("imagefolder.other_file", entry.path, split=split)
                continue
            n += 1
            stage.step()
            index.add(entry.path, entry.size, split)
            info = images.inspect(entry.path)
            if info["format"]:
                formats[info["format"]] += 1
                modes[info["mode"]] += 1
                if info["mode"] != "RGB":
                    issues.add("image.mode_not_rgb", entry.path, split=split,
                               detail=f"mode {info['mode']}", mode=info["mode"])
            for code, detail in info["problems"]:
                issues.add(code, entry.path, split=split, detail=detail)
            if images.unreadable(info):
                broken.add(entry.path)
            if reservoir is not None and not info["problems"]:
                reservoir.offer(entry.path)
        result["class_counts"][name] = n
        result["images"] += n
        if n == 0:
            empty.append(name)
    if empty:
        issues.add("imagefolder.empty_class", folder, split=split,
                   detail=f"Found no valid file for the classes {', '.join(sorted(empty))}",
                   classes=sorted(empty))
    result["modes"], result["formats"] = dict(modes), dict(formats)
    return result


def _compare_classes(splits: dict[str, Any], issues: Issues) -> None:
    names = list(splits)
    if len(names) < 2:
        return
    ref_name = next((n for n in names if n.lower() == "train"), names[0])
    ref = splits[ref_name]["classes"]
    for name in names:
        other = splits[name]["classes"]
        if name == ref_name or other == ref or not other:
            continue
        missing = sorted(set(ref) - set(other))
        extra = sorted(set(other) - set(ref))
        shifted = [c for c in other if c in ref and ref.index(c) != other.index(c)]
        parts = []
        if missing:
            parts.append(f"{name} lacks {', '.join(missing[:5])}")
        if extra:
            parts.append(f"{name} has {', '.join(extra[:5])} that {ref_name} lacks")
        if shifted:
            c = shifted[0]
            parts.append(f"class indices shift: {c!r} is {ref.index(c)} in {ref_name}, "
                         f"{other.index(c)} in {name}")
        issues.add("imagefolder.class_mismatch", splits[name]["folder"], split=name,
                   detail="; ".join(parts), missing=missing, extra=extra,
                   shifted=len(shifted))
