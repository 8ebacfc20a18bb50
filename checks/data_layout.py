"""data.files, data.yaml, data.labels, data.imagefolder: is the dataset where and what the
loaders expect it to be."""
from __future__ import annotations

from cvdoctor.data import wording as w
from cvdoctor.finding import FAIL, WARN, Problem, report_problems, skipped
from cvdoctor.registry import register
from cvdoctor.text import plural

NEEDS = ["dataset"]


def _yolo_only(ds, title):
    if ds.get("kind") != "yolo":
        return skipped(title, f"only for YOLO data.yaml datasets; this is {ds.get('kind')}")
    return None


FILES_TITLE = "Files the loaders can open"


@register("data.files", order=10, title=FILES_TITLE, recipes=["dataset-special-files"],
          needs=NEEDS)
def check_files(ctx):
    """Looks for entries that are not regular files in the dataset folders. Fails on FIFOs,
    sockets and devices (opening a FIFO with an image name hangs a loader forever); warns on
    broken symbolic links, link loops and folders or files it may not read."""
    ds = ctx.fact("dataset")
    if ds.get("kind") == "yolo" and not ds.get("splits"):
        return skipped(FILES_TITLE, f"nothing walked: {w.nothing_scanned(ds)}")
    problems = []
    recipe = "dataset-special-files"
    fix = "Replace pipes, broken or looping links with real files and make every file readable."
    if w.count(ds, "fs.special"):
        problems.append(Problem(FAIL, recipe, w.special_files(ds), fix,
                                w.evidence(ds, "fs.special")))
    for code, noun in (("fs.broken_link", "broken symbolic link"),
                       ("fs.symlink_loop", "symbolic link loop"),
                       ("fs.unreadable", "unreadable entry")):
        if w.count(ds, code):
            problems.append(Problem(WARN, recipe, w.describe(ds, code, noun), fix,
                                    w.evidence(ds, code)))
    return report_problems(FILES_TITLE, problems, "every entry is a regular file or folder")


YAML_TITLE = "data.yaml: names, splits and where they resolve"
_YAML_FAIL = {"yaml.missing_key": "missing key", "yaml.no_names": "no class names",
              "yaml.names_bad_ids": "class ids in names", "yaml.nc_names_mismatch": "nc vs names",
              "yaml.nc_not_int": "nc", "yaml.bad_type": "value of the wrong type",
              "yaml.kpt_shape": "kpt_shape", "yaml.names_not_scalar": "class name"}
ONLY_SPLIT_TEST = "only `yolo val split=test` reads it"


def _split_line(ds) -> str:
    parts = []
    for split, info in ds["yaml"]["splits"].items():
        shown = ", ".join(w.rel(ds, p) for p in info["paths"])
        n = ds["splits"].get(split, {}).get("images")
        if info["missing"] and len(info["missing"]) == len(info["paths"]):
            note = "does not exist" + (f": {ONLY_SPLIT_TEST}" if split == "test" else "")
        elif info["missing"]:
            gone = ", ".join(w.rel(ds, p) for p in info["missing"])
            note = f"{plural(n or 0, 'image')}; {gone} does not exist"
        elif n == 0 and split == "test":
            note = f"no images: {ONLY_SPLIT_TEST}"
        else:
            note = plural(n, "image") if n is not None else ""
        parts.append(f"{split} -> {shown}" + (f" ({note})" if note else ""))
    return "; ".join(parts)


def _root_line(ds) -> str:
    root = ds["yaml"]["root"]
    if root["raw"] is None:
        return "root: the yaml's folder (no path:)"
    text = f"path: {root['raw']!r} -> {root['resolved']} (via {root['via']})"
    if root["via"] in ("current directory", "datasets_dir") and root["yaml_relative"] and \
            root["yaml_relative"] != root["resolved"]:
        text += f"; relative to the yaml it would be {root['yaml_relative']}" + \
            ("" if root["yaml_relative_exists"] else " (missing)")
    return text


@register("data.yaml", order=20, targets=["yolo"], title=YAML_TITLE, recipes=["yolo-data-yaml",
          "yolo-dataset-path"], needs=NEEDS)
def check_yaml(ctx):
    """Reads data.yaml as ultralytics does: names (list or {id: name}) against nc, the train
    and val keys, kpt_shape for pose, and where each split resolves (a relative `path:` is taken
    from the current directory, then ultralytics' datasets_dir -- not from the yaml's folder).
    Fails when ultralytics would refuse the yaml (a class name that is a list or null, a split
    entry that is not a path), when the train or val split does not exist there or lists no
    images; warns when --num-classes disagrees with the names. A test split that is missing or
    empty is only noted: ultralytics reads it for `yolo val split=test` alone."""
    ds = ctx.fact("dataset")
    skip = _yolo_only(ds, YAML_TITLE)
    if skip:
        return skip
    problems = []
    for code in _YAML_FAIL:
        if w.count(ds, code):
            problems.append(Problem(FAIL, "yolo-data-yaml",
                                    f"{w.first_detail(ds, code)} in {w.rel(ds, ds['path'])}",
                                    "Give one name per class id 0..n-1 and train/val keys; drop "
                                    "nc or make it match.", w.evidence(ds, code)))
    if w.count(ds, "yaml.nc_option_mismatch"):
        problems.append(Problem(WARN, "yolo-data-yaml",
                                w.first_detail(ds, "yaml.nc_option_mismatch"),
                                "Pass the --num-classes your model has, or fix names in "
                                "data.yaml.", w.evidence(ds, "yaml.nc_option_mismatch")))
    if w.count(ds, "yaml.split_missing"):
        problems.append(Problem(FAIL, "yolo-dataset-path",
                                f"{w.first_detail(ds, 'yaml.split_missing')}; {_root_line(ds)}",
                                "Make path: absolute (or drop it to use the yaml's folder) and "
                                "check the split folders exist.",
                                {**w.evidence(ds, "yaml.split_missing"),
                                 "root": ds["yaml"]["root"]}))
    if w.count(ds, "yaml.split_empty"):
        empty = [f"'{ex['split']}:' -> {', '.join(w.rel(ds, p) for p in ex['paths'])}"
                 for ex in w.issue(ds, "yaml.split_empty")["examples"]]
        problems.append(Problem(FAIL, "yolo-dataset-path",
                                f"{' and '.join(empty)} list{'s' if len(empty) == 1 else ''} "
                                "no images: ultralytics stops with "
                                "'No images found'; " + _root_line(ds),
                                "Point the split at the folder that holds its images (or a list "
                                "file of image paths).", w.evidence(ds, "yaml.split_empty")))
    ok = (f"{plural(ds['nc'] or 0, 'class', 'classes')}; {_split_line(ds)}; {_root_line(ds)}; "
          f"task {ds['task']} ({ds['task_source']})")
    return report_problems(YAML_TITLE, problems, ok, root=ds["yaml"]["root"],
                           splits=ds["yaml"]["splits"])


LABELS_TITLE = "Label files found for the images"
MISSING_SHARE_WARN = 0.5


@register("data.labels", order=30, targets=["yolo"], title=LABELS_TITLE,
          recipes=["yolo-labels-not-found", "yolo-dataset-path"], needs=NEEDS)
def check_labels(ctx):
    """Finds each image's label file by ultralytics' rule (the last /images/ becomes /labels/,
    the extension .txt). Fails when no train image has a label, when labels sit beside the images
    (ultralytics never reads them there), when a label file cannot be read, or when a list file
    names images that do not exist; warns when over half of a split has no label (trained as
    backgrounds; ultralytics suggests up to 10%) and on label files no image uses."""
    ds = ctx.fact("dataset")
    skip = _yolo_only(ds, LABELS_TITLE)
    if skip:
        return skip
    if w.nothing_scanned(ds):
        return skipped(LABELS_TITLE, f"no image to find labels for: {w.nothing_scanned(ds)}")
    fix = "Put each label at labels/<same path>.txt (the image path with /images/ -> /labels/)."
    problems = []
    for split, info in ds["splits"].items():
        n, missing = info["images"], info["missing_labels"]
        if n and missing == n:
            status = FAIL if split == "train" else WARN
            where = ", ".join(w.rel(ds, d) for d in info["label_dirs"]) or "beside the images"
            problems.append(Problem(status, "yolo-labels-not-found",
                                    f"none of the {plural(n, split + ' image')} has a label file "
                                    f"(looked in {where})", fix, {"split": split}))
        elif n and missing / n > MISSING_SHARE_WARN:
            problems.append(Problem(WARN, "yolo-labels-not-found",
                                    f"{missing:,} of {n:,} {split} images ({missing / n:.0%}) have "
                                    "no label file: trained as backgrounds", fix,
                                    {"split": split}))
    if w.count(ds, "label.beside_image"):
        problems.append(Problem(FAIL, "yolo-labels-not-found",
                                w.describe(ds, "label.beside_image", "label file",
                                           detail=False, tail="beside the images, where "
                                           "ultralytics does not look"), fix,
                                w.evidence(ds, "label.beside_image")))
    if w.count(ds, "label.unreadable"):
        problems.append(Problem(FAIL, "yolo-labels-not-found",
                                w.describe(ds, "label.unreadable", "unreadable label file"),
                                "Make the label files readable text files.",
                                w.evidence(ds, "label.unreadable")))
    if w.count(ds, "label.orphan"):
        problems.append(Problem(WARN, "yolo-labels-not-found",
                                w.describe(ds, "label.orphan", "label file",
                                           tail="without an image (never used)"),
                                "Rename the label to its image's name, or delete it.",
                                w.evidence(ds, "label.orphan")))
    for code, noun in (("list.missing_image", "listed image"), ("list.unreadable", "list file")):
        if w.count(ds, code):
            problems.append(Problem(FAIL, "yolo-dataset-path", w.describe(ds, code, noun),
                                    "Fix the paths in the list file (./ is relative to it).",
                                    w.evidence(ds, code)))
    counts = "; ".join(f"{s}: {i['labels']:,} of {plural(i['images'], 'image')} labelled"
                       + (f", {i['empty_labels']:,} empty" if i["empty_labels"] else "")
                       for s, i in ds["splits"].items())
    return report_problems(LABELS_TITLE, problems, counts,
                           splits={s: {k: i[k] for k in ("images", "labels", "missing_labels",
                                                           "empty_labels", "orphan_labels")}
                                   for s, i in ds["splits"].items()})


FOLDER_TITLE = "ImageFolder classes"


@register("data.imagefolder", order=80, targets=["imagefolder"], title=FOLDER_TITLE,
          recipes=["imagefolder-no-class-folders", "imagefolder-empty-class",
          "imagefolder-class-mismatch"], needs=NEEDS)
def check_imagefolder(ctx):
    """Applies torchvision's ImageFolder rules to each split: every sub-folder is a class
    (hidden ones too), a class needs at least one file with a supported extension, classes are
    numbered by sorted name per split. Fails on a split without class folders, an empty or hidden
    class folder, and splits whose class lists differ (the same index means different classes).
    A test/ folder without class folders next to train/ and a validation split that have them
    (unlabelled test images, a common Kaggle layout) is only noted."""
    ds = ctx.fact("dataset")
    if ds.get("kind") != "imagefolder":
        return skipped(FOLDER_TITLE, f"only for ImageFolder trees; this is {ds.get('kind')}")
    problems = []
    if w.count(ds, "imagefolder.no_class_folders"):
        problems.append(Problem(FAIL, "imagefolder-no-class-folders",
                                w.describe(ds, "imagefolder.no_class_folders", "split"),
                                "Put the images into one folder per class: root/train/<class>/.",
                                w.evidence(ds, "imagefolder.no_class_folders")))
    fix = "Delete empty and hidden folders (.ipynb_checkpoints) from the class folders."
    for ex in (w.issue(ds, "imagefolder.empty_class") or {}).get("examples", []):
        problems.append(Problem(FAIL, "imagefolder-empty-class",
                                f"{ex['detail']} in {w.rel(ds, ex['file'])}", fix,
                                {"empty_classes": ex.get("classes"), "split": ex.get("split")}))
    if w.count(ds, "imagefolder.hidden_class"):
        problems.append(Problem(FAIL, "imagefolder-empty-class",
                                w.describe(ds, "imagefolder.hidden_class", "hidden folder",
                                           detail=False, tail="taken as a class"), fix,
                                w.evidence(ds, "imagefolder.hidden_class")))
    for ex in (w.issue(ds, "imagefolder.class_mismatch") or {}).get("examples", []):
        differ = (ex.get("missing") or []) + (ex.get("extra") or [])
        if differ and all(c.startswith(".") for c in differ):
            continue  # only hidden folders differ: the hidden-class finding says it
        problems.append(Problem(FAIL, "imagefolder-class-mismatch",
                                f"{ex['detail']} ({w.rel(ds, ex['file'])})",
                                "Give every split the same class folders (an empty class "
                                "folder is not enough: add its images).",
                                {"mismatch": ex}))
    parts = [f"{split}: {plural(len(info['classes']), 'class', 'classes')}, "
             f"{plural(info['images'], 'image')}" if "unlabelled" not in info else
             f"{split}: {plural(info['unlabelled'], 'image')} and no class folders, so "
             "ImageFolder cannot read labels from it (fine for unlabelled test images; train "
             "and validation have classes)" for split, info in ds["splits"].items()]
    return report_problems(FOLDER_TITLE, problems, "; ".join(parts),
                           classes={s: i["classes"] for s, i in ds["splits"].items()})
