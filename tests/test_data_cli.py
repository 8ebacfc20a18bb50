"""`cvdoctor data` end to end through the command line (CliRunner): healthy sets pass, each
broken variant gives its check's finding with the recipe, bad input is one line and exit 2."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from PIL import Image

from cvdoctor.cli import cli
from datasets import imagefolder_dataset, make_image, mask_dataset, snapshot, yolo_dataset


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["data", *map(str, args)])
    return result.exit_code, result.stdout, result.stderr


def run_json(*args: str) -> tuple[int, dict]:
    code, out, err = run(*args, "--json")
    assert code in (0, 1), (code, out, err)
    return code, json.loads(out)


def findings(report: dict, check: str) -> list[dict]:
    return [f for f in report["findings"] if f["check"] == check]


# --- healthy sets: every check passes or says why it does not apply ----------------------------

def roboflow_export(p):
    """Roboflow's layout: data.yaml beside train/ valid/ (test/ not exported), splits relative
    to the yaml with a leading ../ (ultralytics drops it when nothing is there)."""
    yolo_dataset(p / "src")
    for split, name in (("train", "train"), ("val", "valid")):
        (p / name).mkdir()
        (p / "src" / "images" / split).rename(p / name / "images")
        (p / "src" / "labels" / split).rename(p / name / "labels")
    (p / "data.yaml").write_text("train: ../train/images\nval: ../valid/images\n"
                                 "test: ../test/images\nnc: 3\nnames: ['c0', 'c1', 'c2']\n"
                                 "roboflow:\n  workspace: x\n  version: 1\n")
    return p / "data.yaml"


def kaggle_tree(p):
    """train/ and val/ class folders, an unlabelled test/, and what people's machines add."""
    root = imagefolder_dataset(p)
    for i in range(2):
        make_image(root / "test" / f"{i}.jpg", 900 + i)
    for folder in (root, root / "train", root / "train" / "cat", root / "test"):
        for name in (".DS_Store", "Thumbs.db", "desktop.ini"):
            (folder / name).write_bytes(b"\x00\x00\x00\x01Bud1")
    (root / "README.txt").write_text("from kaggle\n")
    (root / "train" / "dog" / "source.txt").write_text("scraped\n")
    return root


HEALTHY = [
    ("detect", lambda p: yolo_dataset(p, "detect") / "data.yaml", []),
    ("roboflow-no-test", roboflow_export, []),
    ("kaggle-imagefolder", kaggle_tree, []),
    ("segment", lambda p: yolo_dataset(p, "segment") / "data.yaml", ["--task", "segment"]),
    ("pose", lambda p: yolo_dataset(p, "pose"), []),
    ("obb", lambda p: yolo_dataset(p, "obb") / "data.yaml", ["--task", "obb"]),
    ("imagefolder", lambda p: imagefolder_dataset(p), []),
    ("classify", lambda p: imagefolder_dataset(p), ["--task", "classify"]),
    ("masks", lambda p: mask_dataset(p), ["--num-classes", "3"]),
    ("masks-no-n", lambda p: mask_dataset(p), []),
]


@pytest.mark.parametrize("name,build,args", HEALTHY, ids=[h[0] for h in HEALTHY])
def test_healthy_sets_pass(tmp_path, name, build, args):
    code, report = run_json(build(tmp_path), *args)
    bad = [(f["check"], f["status"], f["message"]) for f in report["findings"]
           if f["status"] not in ("pass", "skip")]
    assert code == 0 and bad == []
    assert report["schema_version"] and report["command"] == "data"
    assert all(f["message"] for f in report["findings"] if f["status"] == "skip")


def test_missing_test_split_is_said_in_the_passing_message(tmp_path):
    code, report = run_json(roboflow_export(tmp_path))
    (f,) = findings(report, "data.yaml")
    assert code == 0 and f["status"] == "pass"
    assert "test -> test/images (does not exist: only `yolo val split=test` reads it)" in \
        f["message"]


def test_unlabelled_test_and_side_files_are_notes_not_warnings(tmp_path):
    code, report = run_json(kaggle_tree(tmp_path))
    (folder,) = findings(report, "data.imagefolder")
    assert "test: 2 images and no class folders, so ImageFolder cannot read labels" in \
        folder["message"]
    (images,) = findings(report, "data.images")
    assert "1 other file (not images) left out by ImageFolder: train/dog/source.txt" in \
        images["message"]
    assert not any(x in json.dumps(report) for x in ("DS_Store", "Thumbs", "desktop.ini"))


UNRESOLVED = {"data.files", "data.labels", "data.label_format", "data.class_ids",
              "data.coordinates", "data.images", "data.duplicates", "data.classes", "data.cache"}


@pytest.mark.parametrize("changes,reason", [
    ({"train": "nope/train", "val": "nope/val"}, "no split of data.yaml resolves"),
    ({"train": "empty", "val": "empty"}, "the splits list no images"),
])
def test_checks_with_nothing_to_look_at_skip_saying_why(tmp_path, changes, reason):
    """No split resolved (or none holds an image): data.yaml fails, and the checks that would
    look at files skip instead of passing with '0 label rows checked'."""
    root = yolo_dataset(tmp_path)
    (root / "empty").mkdir()
    _yaml(root, **changes)
    code, report = run_json(root)
    assert code == 1 and findings(report, "data.yaml")[0]["status"] == "fail"
    by_check = {f["check"]: f for f in report["findings"]}
    for check in UNRESOLVED - ({"data.files"} if "empty" in changes["train"] else set()):
        assert by_check[check]["status"] == "skip", by_check[check]
        assert by_check[check]["message"], check
    for check in ("data.labels", "data.label_format", "data.images", "data.duplicates"):
        assert reason in by_check[check]["message"], by_check[check]


def test_label_rows_checks_skip_when_every_label_file_is_empty(tmp_path):
    root = yolo_dataset(tmp_path)
    for lbl in (root / "labels").rglob("*.txt"):
        lbl.write_text("")
    code, report = run_json(root)
    for check in ("data.label_format", "data.class_ids", "data.coordinates"):
        (f,) = findings(report, check)
        assert f["status"] == "skip" and "the 8 label files hold no rows" in f["message"]


def test_text_report_names_relative_files_and_the_recipe(tmp_path):
    root = yolo_dataset(tmp_path)
    (root / "labels" / "train" / "im001.txt").write_text("0 0.5 0.5 0.2 0.2\n7 0.5 0.5 0.2 0.2\n")
    code, out, err = run(root / "data.yaml")
    assert code == 1
    line = next(ln for ln in out.splitlines() if "data.class_ids" in ln)
    assert "labels/train/im001.txt:2" in line and "class 7" in line
    assert "cvdoctor explain yolo-class-out-of-range" in out
    assert str(tmp_path) not in line  # relative to the dataset root


def test_progress_goes_to_stderr_only(tmp_path):
    root = yolo_dataset(tmp_path)
    code, out, err = run(root / "data.yaml", "-v")
    assert code == 0
    assert "labels and image headers [" in err and "labels and image headers" not in out


# --- each finding, from one broken variant -----------------------------------------------------

def _yaml(root: Path, **changes) -> None:
    data = yaml.safe_load((root / "data.yaml").read_text())
    data.update(changes)
    (root / "data.yaml").write_text(yaml.safe_dump(data))


def _label(root: Path, name: str, text: str, split: str = "train") -> Path:
    path = root / "labels" / split / f"{name}.txt"
    path.write_text(text)
    return root


def fifo_in_images(p):
    root = yolo_dataset(p)
    os.mkfifo(root / "images" / "train" / "pipe.jpg")
    return root


def broken_link(p):
    root = yolo_dataset(p)
    os.symlink(root / "gone.jpg", root / "images" / "train" / "gone.jpg")
    return root


def nc_mismatch(p):
    root = yolo_dataset(p)
    _yaml(root, nc=5)
    return root


def split_missing(p):
    root = yolo_dataset(p)
    _yaml(root, path="somewhere/else")
    return root


def no_labels(p):
    root = yolo_dataset(p)
    for f in (root / "labels" / "train").iterdir():
        f.unlink()
    return root


def labels_beside(p):
    root = yolo_dataset(p)
    for f in (root / "labels" / "train").iterdir():
        f.rename(root / "images" / "train" / f.name)
    return root


def orphan_label(p):
    return _label(yolo_dataset(p), "ghost", "0 0.5 0.5 0.2 0.2\n")


def list_missing(p):
    root = yolo_dataset(p)
    (root / "train.txt").write_text("./images/train/im000.jpg\n./images/train/nope.jpg\n")
    _yaml(root, train="train.txt")
    return root


def five_columns_in_obb(p):
    return _label(yolo_dataset(p, "obb"), "im000", "0 0.5 0.5 0.2 0.2\n")


def duplicate_rows(p):
    return _label(yolo_dataset(p), "im000", "0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2 0.2\n")


def class_past_nc(p):
    return _label(yolo_dataset(p), "im000", "3 0.5 0.5 0.2 0.2\n")


def pixel_coords(p):
    return _label(yolo_dataset(p), "im000", "0 320 240 64 48\n")


def box_past_frame(p):
    return _label(yolo_dataset(p), "im000", "0 0.95 0.5 0.3 0.2\n")


def lfs_pointer(p):
    root = yolo_dataset(p)
    (root / "images" / "train" / "im000.jpg").write_text(
        "version https://git-lfs.github.com/spec/v1\noid sha256:1\nsize 9\n")
    return root


def trailing_bytes(p):
    root = yolo_dataset(p)
    img = root / "images" / "train" / "im000.jpg"
    img.write_bytes(img.read_bytes() + b"\0" * 16)
    return root


def tiny_yolo(p):
    root = yolo_dataset(p)
    make_image(root / "images" / "train" / "im000.jpg", 1, size=(8, 8))
    return root


def tiny_folder(p):
    root = imagefolder_dataset(p)
    make_image(root / "train" / "cat" / "cat0.jpg", 1, size=(8, 8))
    return root


def exif_rotated(p):
    root = yolo_dataset(p)
    exif = Image.Exif()
    exif[0x0112] = 6
    make_image(root / "images" / "train" / "im000.jpg", 1, exif=exif.tobytes())
    return root


def gif_in_images(p):
    root = yolo_dataset(p)
    make_image(root / "images" / "train" / "anim.gif", 3, fmt="GIF")
    return root


def mixed_modes(p):
    root = imagefolder_dataset(p)
    make_image(root / "train" / "cat" / "gray.png", 5, mode="L")
    return root


def flat_folder(p):
    for i in range(3):
        make_image(p / f"img{i}.jpg", i)
    return p


def empty_class(p):
    root = imagefolder_dataset(p)
    (root / "train" / ".ipynb_checkpoints").mkdir()
    return root


def _val_lacks(p):
    root = imagefolder_dataset(p)
    for f in (root / "val" / "dog").iterdir():
        f.unlink()
    (root / "val" / "dog").rmdir()
    return root


def mask_missing(p):
    root = mask_dataset(p)
    (root / "masks" / "s0.png").unlink()
    return root


def mask_size(p):
    root = mask_dataset(p)
    Image.new("L", (32, 32)).save(root / "masks" / "s1.png")
    return root


def mask_values(p):
    root = mask_dataset(p)
    Image.new("L", (64, 64), 9).save(root / "masks" / "s1.png")
    return root


def mask_binary(p):
    root = mask_dataset(p)
    for f in (root / "masks").iterdir():
        m = Image.new("L", (64, 64), 0)
        m.paste(255, (4, 4, 30, 30))
        m.save(f)
    return root


def mask_jpeg(p):
    root = mask_dataset(p)
    Image.open(root / "masks" / "s1.png").save(root / "masks" / "s1.jpg", quality=70)
    (root / "masks" / "s1.png").unlink()
    return root


def mask_rgb(p):
    root = mask_dataset(p)
    img = Image.new("RGB", (64, 64), (128, 0, 0))
    img.paste((0, 128, 0), (0, 0, 10, 10))
    img.save(root / "masks" / "s2.png")
    return root


def mask_unreadable(p):
    root = mask_dataset(p)
    (root / "masks" / "s3.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    return root


def class_absent(p):
    root = yolo_dataset(p)
    for f in (root / "labels" / "train").iterdir():
        f.write_text("0 0.5 0.5 0.2 0.2\n")
    return root


def imbalanced(p):
    root = imagefolder_dataset(p, per_class=1)
    for i in range(60):
        make_image(root / "train" / "cat" / f"more{i}.jpg", 700 + i)
    return root


def leak(p):
    root = yolo_dataset(p)
    src = root / "images" / "train" / "im002.jpg"
    (root / "images" / "val" / "im000.jpg").write_bytes(src.read_bytes())
    return root


def same_folder(p):
    root = yolo_dataset(p)
    _yaml(root, val="images/train")
    return root


def dup_in_train(p):
    root = imagefolder_dataset(p)
    (root / "train" / "cat" / "cat1.jpg").write_bytes((root / "train" / "cat" / "cat0.jpg")
                                                      .read_bytes())
    return root


def mixed_rows_detect(p):
    return _label(yolo_dataset(p), "im000", "0 0.5 0.5 0.2 0.2\n1 0.1 0.1 0.3 0.1 0.2 0.4\n")


def empty_train(p):
    root = yolo_dataset(p)
    (root / "images" / "none").mkdir()
    _yaml(root, train="images/none")
    return root


def names_nested(p):
    root = yolo_dataset(p)
    (root / "data.yaml").write_text("train: images/train\nval: images/val\n"
                                    "names: [[c0, c1], c1, c2]\n")
    return root


def image_without_extension(p):
    root = imagefolder_dataset(p)
    make_image(root / "train" / "cat" / "download", 5, fmt="JPEG")
    return root


def fifo_and_device(p):
    root = yolo_dataset(p)
    os.symlink("/dev/null", root / "images" / "train" / "a_null.jpg")
    os.mkfifo(root / "images" / "train" / "b_pipe.jpg")
    return root


BROKEN = [
    # (builder, extra args, check, status, recipe, text the message must contain)
    (fifo_and_device, [], "data.files", "fail", "dataset-special-files",
     "images/train/b_pipe.jpg (a FIFO (named pipe))"),
    (mixed_rows_detect, [], "data.label_format", "fail", "yolo-label-format",
     "labels mix segment and detection rows"),
    (empty_train, [], "data.yaml", "fail", "yolo-dataset-path",
     "'train:' -> images/none lists no images"),
    (names_nested, [], "data.yaml", "fail", "yolo-data-yaml",
     "names[0] is a list (['c0', 'c1']), not a class name"),
    (image_without_extension, [], "data.images", "warn", "dataset-ignored-files",
     "a JPEG image without an extension"),
    (fifo_in_images, [], "data.files", "fail", "dataset-special-files",
     "1 FIFO (named pipe): images/train/pipe.jpg"),
    (broken_link, [], "data.files", "warn", "dataset-special-files", "gone.jpg"),
    (nc_mismatch, [], "data.yaml", "fail", "yolo-data-yaml", "'nc: 5' must match"),
    (lambda p: yolo_dataset(p), ["--num-classes", "4"], "data.yaml", "warn", "yolo-data-yaml",
     "--num-classes says 4"),
    (split_missing, [], "data.yaml", "fail", "yolo-dataset-path", "does not exist"),
    (no_labels, [], "data.labels", "fail", "yolo-labels-not-found", "none of the 6 train"),
    (labels_beside, [], "data.labels", "fail", "yolo-labels-not-found", "beside the images"),
    (orphan_label, [], "data.labels", "warn", "yolo-labels-not-found", "labels/train/ghost.txt"),
    (list_missing, [], "data.labels", "fail", "yolo-dataset-path", "train.txt:2"),
    (five_columns_in_obb, ["--task", "obb"], "data.label_format", "fail", "yolo-label-format",
     "found 5"),
    (duplicate_rows, [], "data.label_format", "warn", "yolo-duplicate-labels",
     "labels/train/im000.txt:2"),
    (class_past_nc, [], "data.class_ids", "fail", "yolo-class-out-of-range", "class 3"),
    (pixel_coords, [], "data.coordinates", "fail", "yolo-coordinates", "pixel coordinates"),
    (box_past_frame, [], "data.coordinates", "warn", "yolo-coordinates", "past the frame"),
    (lfs_pointer, [], "data.images", "fail", "image-corrupt", "Git LFS pointer"),
    (trailing_bytes, [], "data.images", "warn", "image-corrupt", "rewrites in place"),
    (tiny_yolo, [], "data.images", "fail", "image-too-small", "8x8"),
    (tiny_folder, [], "data.images", "warn", "image-too-small", "8x8"),
    (exif_rotated, [], "data.images", "warn", "image-exif-orientation", "orientation 6"),
    (gif_in_images, [], "data.images", "warn", "dataset-ignored-files", "anim.gif"),
    (mixed_modes, [], "data.images", "warn", "image-mode-not-rgb", "L 1"),
    (flat_folder, [], "data.imagefolder", "fail", "imagefolder-no-class-folders",
     "Couldn't find any class folder"),
    (empty_class, [], "data.imagefolder", "fail", "imagefolder-empty-class",
     ".ipynb_checkpoints"),
    (_val_lacks, [], "data.imagefolder", "fail", "imagefolder-class-mismatch", "val lacks dog"),
    (mask_missing, ["--num-classes", "3"], "data.masks", "fail", "mask-missing", "s0.jpg"),
    (mask_size, ["--num-classes", "3"], "data.masks", "fail", "mask-size-mismatch", "32x32"),
    (mask_values, ["--num-classes", "3"], "data.masks", "fail", "mask-values-exceed-classes",
     "[9]"),
    (mask_binary, ["--num-classes", "2"], "data.masks", "fail", "mask-values-exceed-classes",
     "0 and 255"),
    (mask_binary, [], "data.masks", "warn", "mask-values-exceed-classes", "0 and 255"),
    (mask_jpeg, ["--num-classes", "3"], "data.masks", "fail", "mask-jpeg", "s1.jpg"),
    (mask_rgb, ["--num-classes", "3"], "data.masks", "fail", "mask-rgb-colour", "s2.png"),
    (mask_unreadable, ["--num-classes", "3"], "data.masks", "fail", "image-corrupt", "s3.png"),
    (class_absent, [], "data.classes", "warn", "dataset-class-balance", "`c1`, `c2`"),
    (imbalanced, [], "data.classes", "warn", "dataset-class-balance", "61x"),
    (leak, [], "data.duplicates", "fail", "dataset-duplicate-images", "val/im000.jpg"),
    (same_folder, [], "data.duplicates", "warn", "dataset-duplicate-images", "same images"),
    (dup_in_train, [], "data.duplicates", "warn", "dataset-duplicate-images", "cat1.jpg"),
]


@pytest.mark.parametrize("build,args,check,status,recipe,text", BROKEN,
                         ids=[f"{b[2]}-{b[4]}-{b[0].__name__}" for b in BROKEN])
def test_each_broken_variant_gives_its_finding(tmp_path, build, args, check, status, recipe, text):
    target = build(tmp_path)
    code, report = run_json(target, *args)
    mine = [f for f in findings(report, check) if f["recipe"] == recipe]
    assert mine, [(f["check"], f["status"], f["recipe"], f["message"])
                  for f in report["findings"] if f["status"] != "pass"]
    assert mine[0]["status"] == status and text in mine[0]["message"], mine[0]["message"]
    assert mine[0]["fix"]
    assert code == (1 if any(f["status"] == "fail" for f in report["findings"]) else 0)


def test_unwritable_cache_folder_warns(tmp_path, monkeypatch):
    from cvdoctor.data import walk
    root = yolo_dataset(tmp_path)
    labels = str(root / "labels")
    monkeypatch.setattr(walk, "is_writable_dir", lambda p: os.path.normpath(p) != labels)
    code, report = run_json(root)
    (f,) = findings(report, "data.cache")
    assert (f["status"], f["recipe"]) == ("warn", "yolo-label-cache") and "labels" in f["message"]


def test_normalization_line_for_imagefolder(tmp_path):
    code, report = run_json(imagefolder_dataset(tmp_path))
    (f,) = findings(report, "data.normalization")
    assert f["status"] == "pass" and "transforms.Normalize(mean=[" in f["message"]
    assert f["evidence"]["imagenet"]["std"] == [0.229, 0.224, 0.225]


@pytest.mark.slow
def test_deep_run_changes_nothing_and_finds_what_headers_miss(tmp_path):
    root = imagefolder_dataset(tmp_path / "ds")
    bad = make_image(root / "train" / "dog" / "dog9.png", 9)
    from test_data_inputs import png_with_garbage_pixels
    png_with_garbage_pixels(bad)
    before = snapshot(tmp_path)
    code, report = run_json(root, "--deep")
    assert snapshot(tmp_path) == before
    (f,) = [f for f in findings(report, "data.images") if f["recipe"] == "image-corrupt"]
    assert "dog9.png" in f["message"] and code == 1


# --- bad input: one line on stderr, exit 2 -----------------------------------------------------

@pytest.mark.parametrize("make,needle", [
    (lambda p: p / "missing", "no such file or directory"),
    (lambda p: (p / "x.yaml").write_text("train: [\n") and p / "x.yaml", "not valid YAML"),
    (lambda p: (p / "notes.txt").write_text("x") and p / "notes.txt", "not a data.yaml"),
    (lambda p: (p / "empty").mkdir() or p / "empty", "nothing recognizable"),
    (lambda p: os.mkfifo(p / "pipe.yaml") or p / "pipe.yaml", "FIFO"),
    (lambda p: (p / "x.yaml").write_text("a: &a [x, x]\nb: &b [*a, *a]\nnames: *b\n" + "".join(
        f"{c}: &{c} [{', '.join([f'*{prev}'] * 64)}]\n" for prev, c in zip("bcdef", "cdefg")))
     and p / "x.yaml", "alias bomb"),
])
def test_bad_targets_exit_2_with_one_line(tmp_path, make, needle):
    target = make(tmp_path)
    code, out, err = run(target)
    assert code == 2 and out == ""
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("cvdoctor: loading")]
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in err, err


def test_bad_options_exit_2(tmp_path):
    root = yolo_dataset(tmp_path)
    assert run(root, "--num-classes", "0")[0] == 2
    assert run(root, "--task", "classification")[0] == 2
    code, out, err = run(root / "data.yaml", "--task", "classify")
    assert code == 2 and "ImageFolder" in err


def test_select_and_the_python_api(tmp_path):
    import cvdoctor
    root = yolo_dataset(tmp_path)
    code, report = run_json(root, "--select", "data.yaml,data.labels")
    assert {f["check"] for f in report["findings"]} == {"data.yaml", "data.labels"}
    api = cvdoctor.check_data(str(root), select=["data.class_ids"])
    assert api.ok and [f.check for f in api.findings] == ["data.class_ids"]


def test_recorded_dataset_fact_replaces_the_scan(tmp_path):
    """--facts: a recorded inspection (e.g. from a machine with the real dataset) is judged
    without touching the disk."""
    from cvdoctor.data import inspect_dataset
    root = yolo_dataset(tmp_path)
    _label(root, "im000", "9 0.5 0.5 0.2 0.2\n")
    facts = tmp_path / "facts.json"
    facts.write_text(json.dumps({"dataset": inspect_dataset(str(root))}))
    code, report = run_json("/nowhere/data.yaml", "--facts", facts)
    assert code == 1 and findings(report, "data.class_ids")[0]["status"] == "fail"


def test_checks_and_explain_know_the_data_checks():
    result = CliRunner().invoke(cli, ["checks", "data"])
    assert result.exit_code == 0 and "data.class_ids" in result.stdout
    result = CliRunner().invoke(cli, ["explain", "train: WARNING ⚠️ /d/images/train/a.jpg: "
                                      "ignoring corrupt image/label: Label class 5 exceeds "
                                      "dataset class count 3. Possible class labels are 0-2"])
    assert result.exit_code == 0 and "yolo-class-out-of-range" in result.stdout


@pytest.mark.parametrize("seed", range(10))
def test_random_healthy_sets_raise_no_warning(tmp_path, seed):
    """Thresholds (backgrounds share, class balance, duplicates) stay quiet on healthy sets of
    random size, class count and task."""
    import random
    rng = random.Random(seed)
    kind = rng.choice(["yolo", "imagefolder", "masks"])
    if kind == "yolo":
        nc = rng.randint(1, 5)
        task = rng.choice(["detect", "segment", "pose", "obb"])
        root = yolo_dataset(tmp_path, task, n_train=rng.randint(nc, 8), n_val=rng.randint(1, 3),
                            nc=nc, kpt=(rng.randint(1, 5), rng.choice([2, 3])),
                            names_as_dict=rng.random() < 0.5)
        args = ["--task", task] if rng.random() < 0.5 else []
    elif kind == "imagefolder":
        root = imagefolder_dataset(tmp_path, classes=[f"k{i}" for i in range(rng.randint(2, 5))],
                                   per_class=rng.randint(1, 4))
        args = []
    else:
        n = rng.randint(2, 5)
        root = mask_dataset(tmp_path, n=rng.randint(2, 6), num_classes=n)
        args = ["--num-classes", str(n)] if rng.random() < 0.5 else []
    code, report = run_json(root, *args)
    noisy = [(f["check"], f["status"], f["message"]) for f in report["findings"]
             if f["status"] not in ("pass", "skip")]
    assert code == 0 and noisy == []
