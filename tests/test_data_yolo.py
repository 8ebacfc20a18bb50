"""cvdoctor.data on YOLO datasets: one healthy set per task, one broken variant per problem."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from cvdoctor.data import inspect_dataset
from datasets import codes, examples, make_image, yolo_dataset

TASKS = ("detect", "segment", "pose", "obb")


def inspect(root: Path, **kw) -> dict:
    return inspect_dataset(str(root / "data.yaml"), **kw)


@pytest.mark.parametrize("task", TASKS)
def test_healthy_set_has_no_issues(tmp_path, task):
    result = inspect(yolo_dataset(tmp_path, task), task=task)
    assert result["issues"] == {}
    assert result["kind"] == "yolo" and result["task"] == task
    assert result["splits"]["train"]["images"] == 6 and result["splits"]["val"]["images"] == 2
    assert result["splits"]["train"]["class_counts"] == [3, 3, 3]
    assert result["content"]["leakage"] == {} and result["content"]["duplicates"] == {}


@pytest.mark.parametrize("seed", range(8))
def test_healthy_sets_over_seeds_stay_clean(tmp_path, seed):
    """No false alarm on random healthy boxes, polygons, sizes and class counts."""
    import random
    rng = random.Random(seed)
    task = rng.choice(TASKS)
    root = yolo_dataset(tmp_path, task, n_train=rng.randint(3, 8), n_val=rng.randint(1, 3),
                        nc=rng.randint(1, 5), names_as_dict=rng.random() < 0.5)
    # the task is inferred (pose from kpt_shape, else detect, which accepts every row shape)
    result = inspect(root)
    assert result["issues"] == {}, result["issues"]


def test_folder_holding_the_yaml_is_accepted(tmp_path):
    result = inspect_dataset(str(yolo_dataset(tmp_path)))
    assert result["kind"] == "yolo" and result["issues"] == {}


def test_pose_task_inferred_from_kpt_shape(tmp_path):
    result = inspect(yolo_dataset(tmp_path, "pose"))
    assert result["task"] == "pose" and result["kpt_shape"] == [4, 3]


def write_label(root: Path, split: str, name: str, text: str) -> Path:
    path = root / "labels" / split / f"{name}.txt"
    path.write_text(text)
    return path


ROW_CASES = [
    # (task, label text, issue code)
    ("detect", "5 0.5 0.5 0.2 0.2\n", "row.class_out_of_range"),
    ("detect", "-1 0.5 0.5 0.2 0.2\n", "row.class_out_of_range"),
    ("detect", "1.5 0.5 0.5 0.2 0.2\n", "row.class_not_int"),
    ("detect", "0 0.5 0.5 0.2\n", "row.columns"),
    ("detect", "0 0.5 0.5 0.2 0.2 0.1\n", "row.columns"),
    ("detect", "0 320 240 64 48\n", "row.not_normalized"),
    ("detect", "0 1.05 0.5 0.2 0.2\n", "row.not_normalized"),
    ("detect", "0 -0.2 0.5 0.2 0.2\n", "row.negative"),
    ("detect", "0 0.5 0.5 0 0.2\n", "row.zero_size"),
    ("detect", "0 0.95 0.5 0.3 0.2\n", "row.box_past_frame"),
    ("detect", "0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2 0.2\n", "row.duplicate"),
    ("detect", "0 0.5 abc 0.2 0.2\n", "row.not_number"),
    ("detect", "0 0.5 nan 0.2 0.2\n", "row.not_number"),
    ("segment", "0 0.5 0.5 0.2 0.2\n1 0.1 0.1 0.3 0.1 0.2 0.4\n", "row.mixed"),
    ("detect", "0 0.5 0.5 0.2 0.2\n1 0.1 0.1 0.3 0.1 0.2 0.4\n", "row.mixed"),
    ("segment", "0 0.5 0.5 0.2 0.2\n", "row.box_for_segment"),
    ("segment", "0 0.1 0.1 0.3 0.1 0.2 0.2 0.5\n", "row.columns"),
    ("segment", "0 0.1 0.1 0.2 0.2 0.3 0.3\n", "row.zero_size"),
    ("segment", "0 10 10 30 10 20 40\n", "row.not_normalized"),
    ("obb", "0 0.5 0.5 0.2 0.2\n", "row.columns"),
    ("obb", "0 0.1 0.1 0.4 0.1 0.4 0.4 0.1 0.4 0.2\n", "row.columns"),
    ("pose", "0 0.5 0.5 0.2 0.2\n", "row.columns"),
    ("pose", "0 0.5 0.5 0.2 0.2 " + "0.5 0.5 2 " * 3 + "0.5 0.5 7\n", "row.kpt_visibility"),
    ("pose", "0 0.5 0.5 0.2 0.2 " + "0.5 0.5 2 " * 3 + "400 300 2\n", "row.not_normalized"),
]


@pytest.mark.parametrize("task,text,code", ROW_CASES)
def test_each_bad_row_is_found_with_file_and_line(tmp_path, task, text, code):
    root = yolo_dataset(tmp_path, task)
    good = (root / "labels" / "train" / "im001.txt").read_text()
    bad = write_label(root, "train", "im001", good + text)
    result = inspect(root, task=task)
    assert code in codes(result), result["issues"]
    ex = examples(result, code)[0]
    assert ex["file"] == str(bad)
    if code != "row.mixed":
        assert ex["line"] > good.count("\n")  # the appended line, 1-based
    assert codes(result) - {code, "row.box_for_segment", "row.mixed"} == set()


def test_boxes_and_polygons_in_separate_files_are_fine_for_detect(tmp_path):
    root = yolo_dataset(tmp_path)
    write_label(root, "train", "im001", "1 0.1 0.1 0.3 0.1 0.2 0.4\n2 0.5 0.5 0.7 0.5 0.6 0.8\n")
    result = inspect(root)
    assert result["issues"] == {} and result["splits"]["train"]["row_shapes"]["polygon"] == 2


# Label files and ultralytics' verdict on each under detect (dropped or kept), as its own
# verify_image_label gives it (checked against ultralytics by the slow test below).
ULTRALYTICS_VERDICTS = [
    ("0 0.5 0.5 0.2 0.2\n1 0.1 0.1 0.3 0.1 0.2 0.4\n", "labels mix segment and detection rows"),
    ("1 0.1 0.1 0.3 0.1 0.2 0.4\n0 0.5 0.5 0.2 0.2\n", "labels mix segment and detection rows"),
    ("0 0.5 0.5 0.2 0.2\n1 0.1 0.1 0.4 0.1 0.4 0.4 0.1 0.4\n",
     "labels mix segment and detection rows"),
    ("1 0.1 0.1 0.3 0.1 0.2 0.4\n2 0.1 0.1 0.4 0.1 0.4 0.4 0.1 0.4\n", None),
    ("0 0.5 0.5 0.2 0.2\n1 0.4 0.4 0.1 0.1\n", None),
]


@pytest.mark.parametrize("text,dropped", ULTRALYTICS_VERDICTS)
def test_rows_ultralytics_drops_fail_and_rows_it_keeps_pass(tmp_path, text, dropped):
    root = yolo_dataset(tmp_path)
    write_label(root, "train", "im001", text)
    result = inspect(root)
    assert ("row.mixed" in codes(result)) == bool(dropped), result["issues"]
    if dropped:
        assert dropped in examples(result, "row.mixed")[0]["detail"]


@pytest.mark.slow
def test_ultralytics_gives_those_verdicts(tmp_path):
    """ultralytics' own verify_image_label on the files above (in a subprocess: importing it
    patches PIL.Image.open for the whole process)."""
    import json
    import subprocess
    import sys
    pytest.importorskip("ultralytics")
    make_image(tmp_path / "images" / "a.jpg", 1)
    for i, (text, _) in enumerate(ULTRALYTICS_VERDICTS):
        (tmp_path / f"{i}.txt").write_text(text)
    code = ("import json, sys\n"
            "from ultralytics.data.utils import verify_image_label\n"
            "out = []\n"
            f"for i in range({len(ULTRALYTICS_VERDICTS)}):\n"
            "    r = verify_image_label((sys.argv[1] + '/images/a.jpg', f'{sys.argv[1]}/{i}.txt',"
            " '', False, 3, 0, 0, False))\n"
            "    out.append(r[-1] if r[8] else None)\n"
            "print(json.dumps(out))\n")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                          text=True, timeout=300)
    verdicts = json.loads(proc.stdout.strip().splitlines()[-1])
    for (text, dropped), theirs in zip(ULTRALYTICS_VERDICTS, verdicts):
        assert (theirs is not None) == bool(dropped), (text, theirs)
        assert dropped is None or dropped in theirs


def test_many_bad_rows_keep_a_count_and_the_first_few(tmp_path):
    root = yolo_dataset(tmp_path)
    write_label(root, "train", "im000", "".join(f"9 0.5 0.5 0.1 0.{i + 1}\n" for i in range(40)))
    issue = inspect(root)["issues"]["row.class_out_of_range"]
    assert issue["count"] == 40 and len(issue["examples"]) == 5
    assert [e["line"] for e in issue["examples"]] == [1, 2, 3, 4, 5]


def test_class_counts_and_classes_missing_from_train(tmp_path):
    root = yolo_dataset(tmp_path, nc=3)
    for p in (root / "labels" / "train").glob("*.txt"):
        p.write_text("0 0.5 0.5 0.2 0.2\n")
    result = inspect(root)
    assert result["splits"]["train"]["class_counts"] == [6, 0, 0]
    assert result["issues"] == {}  # judging coverage is the check's job; the data is here


def test_label_discovery(tmp_path):
    root = yolo_dataset(tmp_path)
    # an image without a label, a label placed beside its image, a label without an image
    make_image(root / "images" / "train" / "extra.jpg", 99)
    make_image(root / "images" / "train" / "beside.jpg", 98)
    (root / "images" / "train" / "beside.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (root / "labels" / "train" / "ghost.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (root / "labels" / "train" / "classes.txt").write_text("c0\nc1\nc2\n")
    (root / "labels" / "train" / "im002.txt").write_text("")
    result = inspect(root)
    train = result["splits"]["train"]
    assert train["images"] == 8 and train["missing_labels"] == 2 and train["empty_labels"] == 1
    assert examples(result, "label.missing")[0]["file"].endswith("extra.jpg")
    assert examples(result, "label.beside_image")[0]["file"].endswith("images/train/beside.txt")
    assert [e["file"] for e in examples(result, "label.orphan")] == \
        [str(root / "labels" / "train" / "ghost.txt")]


def test_all_labels_missing(tmp_path):
    root = yolo_dataset(tmp_path)
    for p in (root / "labels" / "train").glob("*.txt"):
        p.unlink()
    result = inspect(root)
    assert result["splits"]["train"]["labels"] == 0
    assert result["issues"]["label.missing"]["count"] == 6


def test_labels_beside_images_without_images_folder_are_found(tmp_path):
    """No /images/ in the path: ultralytics then looks beside the image, and so does cvdoctor."""
    root = tmp_path / "flat"
    for i in range(3):
        make_image(root / "train" / f"a{i}.jpg", i)
        (root / "train" / f"a{i}.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (root / "data.yaml").write_text("train: train\nval: train\nnames: [x]\n")
    result = inspect(root)
    assert result["splits"]["train"]["labels"] == 3 and "label.missing" not in result["issues"]


def test_split_given_as_list_file(tmp_path):
    root = yolo_dataset(tmp_path)
    (root / "train.txt").write_text("./images/train/im000.jpg\n./images/train/im001.jpg\n"
                                    "./images/train/nope.jpg\n")
    data = yaml.safe_load((root / "data.yaml").read_text())
    data["train"] = "train.txt"
    (root / "data.yaml").write_text(yaml.safe_dump(data))
    result = inspect(root)
    assert result["splits"]["train"]["images"] == 2
    ex = examples(result, "list.missing_image")[0]
    assert ex["file"] == str(root / "train.txt") and ex["line"] == 3


# --- data.yaml ---------------------------------------------------------------------------------

def rewrite_yaml(root: Path, **changes) -> None:
    data = yaml.safe_load((root / "data.yaml").read_text())
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    (root / "data.yaml").write_text(yaml.safe_dump(data))


@pytest.mark.parametrize("changes,code", [
    ({"nc": 5}, "yaml.nc_names_mismatch"),
    ({"nc": "three"}, "yaml.nc_not_int"),
    ({"names": None}, "yaml.no_names"),
    ({"names": {0: "a", 2: "b"}}, "yaml.names_bad_ids"),
    ({"val": None}, "yaml.missing_key"),
    ({"val": "images/nope"}, "yaml.split_missing"),
    ({"names": "a,b"}, "yaml.bad_type"),
    ({"names": [["a", "b"], "c", "d"]}, "yaml.names_not_scalar"),
    ({"names": ["a", None, "c"]}, "yaml.names_not_scalar"),
    ({"names": {0: "a", 1: {"x": 1}, 2: "c"}}, "yaml.names_not_scalar"),
    ({"val": ["images/val", 7]}, "yaml.bad_type"),
    ({"nc": 10 ** 12, "names": None}, "yaml.nc_not_int"),
    ({"nc": -2, "names": None}, "yaml.nc_not_int"),
])
def test_yaml_problems(tmp_path, changes, code):
    root = yolo_dataset(tmp_path)
    rewrite_yaml(root, **changes)
    assert code in codes(inspect(root))


def test_names_that_are_numbers_are_names(tmp_path):
    root = yolo_dataset(tmp_path)
    rewrite_yaml(root, names=[1, 2.5, "c"])
    result = inspect(root)
    assert result["issues"] == {} and result["names"] == ["1", "2.5", "c"]


def test_a_name_that_is_a_list_is_said_without_stringifying_it(tmp_path):
    root = yolo_dataset(tmp_path)
    rewrite_yaml(root, names=[list(range(1000)), "b", "c"])
    result = inspect(root)
    detail = examples(result, "yaml.names_not_scalar")[0]["detail"]
    assert detail.startswith("names[0] is a list ([0, 1, 2, 3, ...])") and len(detail) < 120
    assert result["nc"] == 3  # the other checks still know the class count


def test_missing_test_split_is_noted_not_reported(tmp_path):
    """A Roboflow export: test: ../test/images with no test folder. ultralytics requires val
    (and train to train); test is read by `yolo val split=test` alone."""
    root = yolo_dataset(tmp_path)
    rewrite_yaml(root, test="../test/images")
    result = inspect(root)
    assert result["issues"] == {}
    assert result["yaml"]["splits"]["test"]["missing"] == [str(root / "test" / "images")]
    assert "test" not in result["splits"]


def test_empty_train_or_val_fails_an_empty_test_does_not(tmp_path):
    root = yolo_dataset(tmp_path)
    (root / "images" / "empty").mkdir()
    rewrite_yaml(root, test="images/empty")
    assert inspect(root)["issues"] == {}
    rewrite_yaml(root, val="images/empty")
    ex = examples(inspect(root), "yaml.split_empty")[0]
    assert ex["split"] == "val" and "No images found" in ex["detail"]


def test_os_and_side_files_in_image_folders_are_not_reported(tmp_path):
    """ultralytics lists images by suffix: Thumbs.db, desktop.ini, a README are skipped without
    harm (hidden files it never lists at all)."""
    root = yolo_dataset(tmp_path)
    train = root / "images" / "train"
    for name in ("Thumbs.db", "desktop.ini", ".DS_Store", "README.txt", "notes.pdf"):
        (train / name).write_bytes(b"\x00\x01 not an image")
    assert inspect(root)["issues"] == {}


def test_an_image_without_an_image_suffix_is_reported(tmp_path):
    root = yolo_dataset(tmp_path)
    make_image(root / "images" / "train" / "photo", 5, fmt="PNG")
    ex = examples(inspect(root), "image.ignored_suffix")[0]
    assert ex["file"].endswith("photo") and ex["detail"] == "a PNG image without an extension"


def test_names_dict_form_and_nc_agreeing(tmp_path):
    root = yolo_dataset(tmp_path, names_as_dict=True)
    rewrite_yaml(root, nc=3)
    result = inspect(root)
    assert result["issues"] == {} and result["names"] == ["c0", "c1", "c2"]


def test_num_classes_option_disagreeing_with_yaml(tmp_path):
    result = inspect(yolo_dataset(tmp_path), num_classes=5)
    assert "yaml.nc_option_mismatch" in codes(result)


def test_pose_without_kpt_shape(tmp_path):
    root = yolo_dataset(tmp_path, "pose")
    rewrite_yaml(root, kpt_shape=None)
    assert "yaml.kpt_shape" in codes(inspect(root, task="pose"))


def test_relative_path_resolves_against_cwd_not_the_yaml_folder(tmp_path, monkeypatch):
    """ultralytics: a relative `path:` is tried in the current directory, then datasets_dir."""
    root = yolo_dataset(tmp_path / "proj" / "ds")
    rewrite_yaml(root, path="ds")  # right only when run from proj/
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path / "cfg"))  # no settings: default dir
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = inspect(root, cwd=str(elsewhere))
    res = result["yaml"]["root"]
    assert res["via"] == "datasets_dir"
    assert "yaml.split_missing" in codes(result)
    assert res["yaml_relative"] == str((root / "ds").resolve())
    from_proj = inspect(root, cwd=str(tmp_path / "proj"))
    assert from_proj["yaml"]["root"]["via"] == "current directory"
    assert from_proj["issues"] == {}


def test_datasets_dir_from_ultralytics_settings(tmp_path, monkeypatch):
    store = tmp_path / "store"
    yolo_dataset(store / "mine")
    root = tmp_path / "cfgds"
    root.mkdir()
    (root / "data.yaml").write_text("path: mine\ntrain: images/train\nval: images/val\n"
                                    "names: [a, b, c]\n")
    (tmp_path / "cfg" / "Ultralytics").mkdir(parents=True)
    (tmp_path / "cfg" / "Ultralytics" / "settings.json").write_text(
        '{"datasets_dir": "%s"}' % store)
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path / "cfg"))
    result = inspect(root, cwd=str(tmp_path))
    assert result["yaml"]["root"]["via"] == "datasets_dir"
    assert result["yaml"]["root"]["resolved"] == str(store / "mine")
    assert result["issues"] == {}


# --- images ------------------------------------------------------------------------------------

def test_image_problems(tmp_path):
    root = yolo_dataset(tmp_path)
    train = root / "images" / "train"
    full = (train / "im000.jpg").read_bytes()
    (train / "im000.jpg").write_bytes(full[: len(full) // 2])  # truncated: no end marker
    (train / "im001.jpg").write_text("version https://git-lfs.github.com/spec/v1\noid sha256:ab\n")
    (train / "im002.jpg").write_bytes(os.urandom(300))  # random bytes, not an image
    make_image(train / "im003.jpg", 3, size=(8, 64))  # too small
    im = __import__("PIL.Image", fromlist=["Image"])
    exif = im.Exif()
    exif[0x0112] = 6
    make_image(train / "im004.jpg", 4, exif=exif.tobytes())
    (train / "im005.jpg").write_bytes(full + b"\0" * 64)  # trailing bytes after FF D9
    make_image(train / "anim.gif", 7, fmt="GIF")  # an extension ultralytics does not list
    result = inspect(root)
    by_file = {c: os.path.basename(examples(result, c)[0]["file"]) for c in codes(result)}
    assert by_file["image.truncated"] == "im000.jpg"
    assert by_file["image.not_image"] == "im001.jpg"
    assert "Git LFS" in examples(result, "image.not_image")[0]["detail"]
    assert by_file["image.unreadable"] == "im002.jpg"
    assert by_file["image.too_small"] == "im003.jpg"
    assert by_file["image.exif_rotated"] == "im004.jpg"
    assert by_file["image.jpeg_trailing_bytes"] == "im005.jpg"
    assert by_file["image.ignored_suffix"] == "anim.gif"


def test_unsupported_format_under_an_image_suffix(tmp_path):
    root = yolo_dataset(tmp_path)
    make_image(root / "images" / "train" / "im000.jpg", 1, fmt="GIF")
    result = inspect(root)
    assert "image.unsupported_format" in codes(result)


def test_png_with_broken_crc_fails_verify(tmp_path):
    root = yolo_dataset(tmp_path)
    png = make_image(root / "images" / "train" / "im000.png", 5)
    (root / "images" / "train" / "im000.jpg").unlink()
    data = bytearray(png.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside IDAT: its CRC no longer matches
    png.write_bytes(bytes(data))
    result = inspect(root)
    assert examples(result, "image.corrupt")[0]["file"] == str(png)


# --- duplicates, leakage, caches ---------------------------------------------------------------

def test_duplicates_and_train_val_leakage(tmp_path):
    root = yolo_dataset(tmp_path)
    train, val = root / "images" / "train", root / "images" / "val"
    (train / "im005.jpg").write_bytes((train / "im004.jpg").read_bytes())
    (val / "im000.jpg").write_bytes((train / "im001.jpg").read_bytes())
    content = inspect(root)["content"]
    assert content["duplicates"]["train"]["count"] == 1
    assert {content["duplicates"]["train"]["examples"][0]["file"],
            content["duplicates"]["train"]["examples"][0]["same_as"]} == \
        {str(train / "im004.jpg"), str(train / "im005.jpg")}
    leak = content["leakage"]["train/val"]
    assert leak["count"] == 1 and leak["examples"][0] == {"file": str(val / "im000.jpg"),
                                                          "same_as": str(train / "im001.jpg")}


def test_same_size_different_content_is_not_a_duplicate(tmp_path):
    root = yolo_dataset(tmp_path)
    a = root / "images" / "train" / "im000.png"
    b = root / "images" / "val" / "im000.png"
    from PIL import Image
    Image.new("L", (64, 64), 10).save(a)
    Image.new("L", (64, 64), 20).save(b)
    assert a.stat().st_size == b.stat().st_size
    content = inspect(root)["content"]
    assert content["hashed"] >= 2 and content["leakage"] == {}


def test_label_cache_stale_and_unreadable(tmp_path):
    root = yolo_dataset(tmp_path)
    cache = root / "labels" / "train.cache"
    cache.write_bytes(b"\x93NUMPY\x01\x00" + b"\0" * 100)
    old = 1_000_000_000
    os.utime(cache, ns=(old, old))
    result = inspect(root)
    assert examples(result, "cache.stale")[0]["file"] == str(cache)
    assert result["splits"]["train"]["cache"]["exists"] is True
    (root / "labels" / "val.cache").write_text("not numpy")
    ex = examples(inspect(root), "cache.unreadable")[0]
    assert ex["file"] == str(root / "labels" / "val.cache")


def test_fresh_cache_is_fine(tmp_path):
    root = yolo_dataset(tmp_path)
    (root / "labels" / "train.cache").write_bytes(b"\x93NUMPY\x01\x00" + b"\0" * 100)
    result = inspect(root)
    assert result["issues"] == {}


def test_unwritable_cache_folder(tmp_path, monkeypatch):
    # root may write anywhere, so the permission answer is replaced (a recorded fact)
    from cvdoctor.data import walk
    root = yolo_dataset(tmp_path)
    labels = str(root / "labels")
    monkeypatch.setattr(walk, "is_writable_dir", lambda p: os.path.normpath(p) != labels)
    result = inspect(root)
    assert examples(result, "cache.unwritable")[0]["file"] == labels
