"""A YOLO dataset (detect, segment, pose, obb) from its data.yaml: one streamed pass per split.

For every image the split lists: its label file by ultralytics' rule (the last `/images/` in the
path becomes `/labels/`, the extension becomes `.txt`), the label rows (yolo_rows), the image
header (images.inspect) and its size for the content index. Then label files no image claims,
ultralytics' `.cache` files, duplicates and train/val leakage. Nothing is written anywhere.
"""
from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

from cvdoctor.data import cache, deep as deep_mod, images, walk, yolo_yaml
from cvdoctor.data.hashing import ContentIndex
from cvdoctor.data.issues import Issues
from cvdoctor.data.progress import ProgressFn, Stage
from cvdoctor.data.yolo_rows import TASKS, RowChecker
from cvdoctor.text import plural

LABEL_DIR = "labels"


def label_path(image_path: str) -> str:
    """ultralytics' img2label_paths for one path."""
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}{LABEL_DIR}{os.sep}"
    return sb.join(image_path.rsplit(sa, 1)).rsplit(".", 1)[0] + ".txt"


def image_candidates(label_file: str) -> Iterator[str]:
    """Image paths a label file can belong to (the inverse rule), most common suffixes first."""
    sa, sb = f"{os.sep}{LABEL_DIR}{os.sep}", f"{os.sep}images{os.sep}"
    stem = sb.join(label_file.rsplit(sa, 1)).rsplit(".", 1)[0]
    for ext in ("jpg", "png", "jpeg", *sorted(images.YOLO_SUFFIXES - {"jpg", "png", "jpeg"})):
        yield f"{stem}.{ext}"
        yield f"{stem}.{ext.upper()}"


def _list_images(spec: str, split: str, issues: Issues) -> Iterator[walk.FileEntry]:
    """The images one split entry names: a folder (recursive, hidden names skipped, as
    glob('**/*.*')), a .txt list of paths, or one image."""
    if os.path.isdir(spec):
        for entry in walk.iter_files(spec, issues, include_hidden=False):
            suf = images.suffix(entry.path)
            if suf in images.YOLO_SUFFIXES:
                yield entry
                continue
            kind, what = images.skipped_kind(entry.path)
            if kind == "image":  # other files (a README, labels beside images) are harmless
                issues.add("image.ignored_suffix", entry.path, split=split,
                           detail=what or f".{suf} is not an image suffix ultralytics lists")
        return
    try:
        text = walk.read_text(spec)
    except (OSError, ValueError) as exc:
        detail, kind = walk.read_failure(exc)
        issues.add("list.unreadable", spec, split=split, detail=detail, tally=kind)
        return
    parent = os.path.dirname(spec) + os.sep
    for line_no, line in enumerate(text.splitlines(), 1):
        name = line.strip()
        if not name:
            continue
        path = name.replace("./", parent, 1) if name.startswith("./") else name
        if images.suffix(path) not in images.YOLO_SUFFIXES:
            continue
        try:
            st = os.stat(path)
        except OSError:
            issues.add("list.missing_image", spec, line_no, split=split,
                       detail=f"{name} does not exist")
            continue
        if not os.path.isfile(path):
            walk.report_special(path, issues, split=split)
            continue
        yield walk.FileEntry(path, st.st_size, st.st_mtime_ns)


def _count_images(specs: list[str]) -> int:
    n = 0
    scratch = Issues()
    for spec in specs:
        if os.path.isdir(spec):
            n += sum(1 for e in walk.iter_files(spec, scratch, include_hidden=False)
                     if images.suffix(e.path) in images.YOLO_SUFFIXES)
    return n


def choose_task(task: str | None, meta: dict[str, Any]) -> tuple[str, str]:
    if task:
        if task not in TASKS:
            raise ValueError(f"task {task!r} is not one of {', '.join(TASKS)}")
        return task, "option"
    if meta.get("kpt_shape") is not None:
        return "pose", "kpt_shape in data.yaml"
    return "detect", "the default; detect accepts box and polygon rows"


def scan(yaml_path: str, *, task: str | None = None, num_classes: int | None = None,
         deep: bool = False, progress: ProgressFn | None = None, cwd: str | None = None,
         workers: int | None = None) -> dict[str, Any]:
    issues = Issues()
    data = yolo_yaml.load(yaml_path)
    meta = yolo_yaml.resolve(yaml_path, data, issues, cwd=cwd)
    task, task_source = choose_task(task, meta)
    kpt = None
    if task == "pose":
        kpt = yolo_yaml.pose_shape(meta.get("kpt_shape"))
        if kpt is None:
            issues.add("yaml.kpt_shape", meta["yaml"],
                       detail=f"kpt_shape {yolo_yaml.short(meta.get('kpt_shape'))}: pose needs "
                              "[keypoints, 2 or 3]")
    nc = meta["nc"]
    if num_classes is not None:
        if nc is not None and nc != num_classes:
            issues.add("yaml.nc_option_mismatch", meta["yaml"],
                       detail=f"data.yaml has {plural(nc, 'class', 'classes')}, --num-classes "
                              f"says {num_classes}")
        nc = nc if nc is not None else num_classes
    row_task = task if kpt is not None or task != "pose" else "detect"

    index = ContentIndex()
    broken: set[str] = set()  # files the header already reports unreadable: --deep skips them
    splits: dict[str, Any] = {}
    total = None
    if progress is not None:
        total = _count_images([p for s in meta["splits"].values() for p in s["paths"]])
    stage = Stage(progress, "labels and image headers", total)
    for split, spec in meta["splits"].items():
        if spec["missing"] and len(spec["missing"]) == len(spec["paths"]):
            continue
        splits[split] = _scan_split(split, spec["paths"], row_task, nc, kpt, index, issues, stage,
                                    broken)
        if not splits[split]["images"] and split in yolo_yaml.REQUIRED_SPLITS:
            there = [p for p in spec["paths"] if p not in spec["missing"]]
            issues.add("yaml.split_empty", meta["yaml"], split=split, paths=there,
                       detail=f"'{split}:' lists no images ({', '.join(there)}): ultralytics "
                              "stops with 'No images found'")
    stage.close()

    hash_stage = Stage(progress, "hashing same-size images", index.candidates())
    content = index.finish(progress=hash_stage.set)
    hash_stage.close()

    decoded = 0
    if deep:
        dstage = Stage(progress, "decoding every image",
                       None if total is None else total - len(broken), every=16)
        for split, spec in meta["splits"].items():
            if split not in splits:
                continue
            paths = (e.path for p in spec["paths"] if os.path.exists(p)
                     for e in _list_images(p, split, Issues()) if e.path not in broken)
            for path, problems in deep_mod.decode_all(paths, workers=workers):
                decoded += 1
                dstage.step()
                for code, detail in problems:
                    issues.add(code, path, split=split, detail=detail, deep=True)
        dstage.close()

    return {
        "kind": "yolo", "path": meta["yaml"], "task": task, "task_source": task_source,
        "nc": nc, "names": meta["names"], "kpt_shape": list(kpt) if kpt else None,
        "yaml": meta, "splits": splits, "content": content,
        "deep": deep, "decoded": decoded, "issues": issues.to_dict(),
    }


def _scan_split(split: str, specs: list[str], task: str, nc: int | None,
                kpt: tuple[int, int] | None, index: ContentIndex, issues: Issues,
                stage: Stage, broken: set[str]) -> dict[str, Any]:
    rows = RowChecker(task, nc, kpt)
    counts = Counter()
    formats: Counter = Counter()
    modes: Counter = Counter()
    first_label: str | None = None
    newest = 0
    label_dirs: list[tuple[str, str]] = []
    for spec in specs:
        if not os.path.exists(spec):
            continue
        if os.path.isdir(spec):
            ldir = label_path(os.path.join(spec, "x.jpg"))[: -len("x.txt")].rstrip(os.sep)
            if os.path.normpath(ldir) != os.path.normpath(spec):
                label_dirs.append((spec, ldir))
        for entry in _list_images(spec, split, issues):
            stage.step()
            counts["images"] += 1
            newest = max(newest, entry.mtime_ns)
            index.add(entry.path, entry.size, split)
            info = images.inspect(entry.path, images.YOLO_PIL_FORMATS)
            if info["format"]:
                formats[info["format"]] += 1
                modes[info["mode"]] += 1
            for code, detail in info["problems"]:
                issues.add(code, entry.path, split=split, detail=detail)
            if images.unreadable(info):
                broken.add(entry.path)
            lpath = label_path(entry.path)
            try:
                lst = os.stat(lpath)
            except OSError:
                lst = None
            if lst is None:
                counts["missing_labels"] += 1
                beside = os.path.splitext(entry.path)[0] + ".txt"
                if beside != lpath and os.path.isfile(beside):
                    issues.add("label.beside_image", beside, split=split,
                               detail=f"ultralytics looks for {lpath}")
                else:
                    issues.add("label.missing", entry.path, split=split,
                               detail=f"no {lpath}: trained as background")
                continue
            first_label = first_label or lpath
            newest = max(newest, lst.st_mtime_ns)
            try:
                text = walk.read_text(lpath)
            except (OSError, ValueError) as exc:
                detail, kind = walk.read_failure(exc)
                issues.add("label.unreadable", lpath, split=split, detail=detail, tally=kind)
                continue
            counts["labels"] += 1
            if rows.check(text, lpath, issues) == 0:
                counts["empty_labels"] += 1
    orphans = 0
    for _, ldir in label_dirs:
        if not os.path.isdir(ldir):
            continue
        for entry in walk.iter_files(ldir, Issues(), include_hidden=False):
            if not entry.path.endswith(".txt") or os.path.basename(entry.path) == "classes.txt":
                continue
            if not any(os.path.isfile(c) for c in image_candidates(entry.path)):
                orphans += 1
                issues.add("label.orphan", entry.path, split=split,
                           detail="no image with this name: the label is never used")
    result: dict[str, Any] = {
        "images": counts["images"], "labels": counts["labels"],
        "missing_labels": counts["missing_labels"], "empty_labels": counts["empty_labels"],
        "orphan_labels": orphans, "formats": dict(formats), "modes": dict(modes),
        "label_dirs": [d for _, d in label_dirs],
    }
    result.update(rows.summary())
    if first_label is not None:
        result["cache"] = cache.inspect_cache(first_label, newest, split, issues)
    return result
