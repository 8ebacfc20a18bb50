"""cvdoctor.data on ImageFolder trees: torchvision's own rules, and what it lets through."""
from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from PIL import Image

from cvdoctor.data import inspect_dataset
from datasets import codes, examples, imagefolder_dataset, make_image


def inspect(root: Path, **kw) -> dict:
    return inspect_dataset(str(root), **kw)


def test_healthy_tree(tmp_path):
    result = inspect(imagefolder_dataset(tmp_path))
    assert result["kind"] == "imagefolder" and result["issues"] == {}
    assert list(result["splits"]) == ["train", "val"]
    assert result["splits"]["train"]["class_counts"] == {"cat": 3, "dog": 3, "fish": 3}
    stats = result["stats"]
    assert stats["images"] == 9 and stats["normalize"].startswith("transforms.Normalize(mean=[")
    assert stats["imagenet"]["mean"] == [0.485, 0.456, 0.406]


@pytest.mark.parametrize("seed", range(6))
def test_healthy_trees_over_seeds(tmp_path, seed):
    rng = random.Random(seed)
    classes = [f"k{i}" for i in range(rng.randint(2, 5))]
    root = imagefolder_dataset(tmp_path, classes=classes, per_class=rng.randint(1, 4),
                               splits=rng.choice([("train", "val"), ("train", "val", "test")]))
    assert inspect(root)["issues"] == {}


def test_single_split_root_of_class_folders(tmp_path):
    root = imagefolder_dataset(tmp_path, splits=("train",)) / "train"
    result = inspect(root)
    assert list(result["splits"]) == ["(root)"] and result["issues"] == {}


def test_torchvision_agrees_on_the_healthy_tree(tmp_path):
    from torchvision.datasets import ImageFolder
    root = imagefolder_dataset(tmp_path)
    ours = inspect(root)["splits"]["train"]
    theirs = ImageFolder(str(root / "train"))
    assert ours["classes"] == theirs.classes and ours["images"] == len(theirs)


def test_empty_class_folder_is_torchvisions_error(tmp_path):
    from torchvision.datasets import ImageFolder
    root = imagefolder_dataset(tmp_path)
    (root / "train" / "zebra").mkdir()
    (root / "train" / "zebra" / "notes.txt").write_text("todo")
    result = inspect(root)
    ex = examples(result, "imagefolder.empty_class")[0]
    assert ex["classes"] == ["zebra"]
    with pytest.raises(FileNotFoundError) as err:
        ImageFolder(str(root / "train"))
    assert ex["detail"] in str(err.value)  # same words as torchvision's own message
    assert "imagefolder.other_file" in codes(result)  # notes.txt: noted, not an ignored image
    assert "imagefolder.ignored_file" not in codes(result)
    assert "imagefolder.class_mismatch" in codes(result)  # val has no zebra: indices differ


def test_hidden_folder_becomes_a_class(tmp_path):
    root = imagefolder_dataset(tmp_path)
    (root / "train" / ".ipynb_checkpoints").mkdir()
    result = inspect(root)
    assert examples(result, "imagefolder.hidden_class")[0]["file"].endswith(".ipynb_checkpoints")
    assert examples(result, "imagefolder.empty_class")[0]["classes"] == [".ipynb_checkpoints"]


def test_flat_folder_has_no_class_folders(tmp_path):
    for i in range(4):
        make_image(tmp_path / f"img{i}.jpg", i)
    result = inspect(tmp_path)
    ex = examples(result, "imagefolder.no_class_folders")[0]
    assert ex["detail"].startswith("Couldn't find any class folder in") and ex["images"] == 4


def test_class_mismatch_between_splits_names_the_index_shift(tmp_path):
    root = imagefolder_dataset(tmp_path)
    for p in (root / "val" / "dog").iterdir():
        p.unlink()
    (root / "val" / "dog").rmdir()
    result = inspect(root)
    ex = examples(result, "imagefolder.class_mismatch")[0]
    assert ex["missing"] == ["dog"] and ex["shifted"] == 1
    assert "'fish' is 2 in train, 1 in val" in ex["detail"]


def test_unsupported_extension_and_macos_resource_forks(tmp_path):
    root = imagefolder_dataset(tmp_path)
    make_image(root / "train" / "cat" / "x.gif", 50, fmt="GIF")
    (root / "train" / "cat" / "._cat0.jpg").write_bytes(b"\x00\x05\x16\x07" + b"\0" * 80)
    result = inspect(root)
    assert examples(result, "imagefolder.ignored_file")[0]["file"].endswith("x.gif")
    ex = examples(result, "image.not_image")[0]
    assert ex["file"].endswith("._cat0.jpg") and "resource fork" in ex["detail"]


def test_modes_and_tiny_and_corrupt_images(tmp_path):
    root = imagefolder_dataset(tmp_path)
    make_image(root / "train" / "cat" / "rgba.png", 1, mode="RGBA")
    make_image(root / "train" / "cat" / "gray.png", 2, mode="L")
    make_image(root / "train" / "dog" / "cmyk.jpg", 3, mode="CMYK")
    make_image(root / "train" / "dog" / "tiny.png", 4, size=(6, 6))
    (root / "train" / "fish" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")
    result = inspect(root)
    modes = {e["mode"] for e in examples(result, "image.mode_not_rgb")}
    assert modes == {"RGBA", "L", "CMYK"}
    assert result["splits"]["train"]["modes"]["RGB"] >= 9
    assert examples(result, "image.too_small")[0]["file"].endswith("tiny.png")
    assert {"image.unreadable", "image.truncated"} & codes(result)


def test_leakage_between_train_and_val(tmp_path):
    root = imagefolder_dataset(tmp_path)
    same = (root / "train" / "cat" / "cat2.jpg").read_bytes()
    (root / "val" / "cat" / "cat0.jpg").write_bytes(same)
    leak = inspect(root)["content"]["leakage"]["train/val"]
    assert leak["count"] == 1 and leak["examples"][0]["file"].endswith("val/cat/cat0.jpg")


def test_imbalance_is_in_the_counts(tmp_path):
    root = imagefolder_dataset(tmp_path, per_class=1)
    for i in range(30):
        make_image(root / "train" / "cat" / f"more{i}.jpg", 500 + i)
    counts = inspect(root)["splits"]["train"]["class_counts"]
    assert counts == {"cat": 31, "dog": 1, "fish": 1}


def test_mean_std_of_known_images(tmp_path):
    for split in ("train",):
        for cls, value in (("a", 0), ("b", 255)):
            for i in range(2):
                (tmp_path / split / cls).mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (32, 32), (value, value, value)).save(
                    tmp_path / split / cls / f"{i}.png")
    stats = inspect(tmp_path)["stats"]
    assert stats["mean"] == [0.5, 0.5, 0.5] and stats["std"] == [0.5, 0.5, 0.5]
    assert stats["grayscale"] is True
    assert stats["normalize"] == "transforms.Normalize(mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5])"


def test_classify_task_forces_imagefolder(tmp_path):
    root = imagefolder_dataset(tmp_path)
    (root / "notes.yaml").write_text("a: 1\n")
    assert inspect(root, task="classify")["kind"] == "imagefolder"


def test_symlinked_class_folder_is_followed_once(tmp_path):
    root = imagefolder_dataset(tmp_path)
    os.symlink(root / "train", root / "train" / "cat" / "loop")
    result = inspect(root)
    assert examples(result, "fs.symlink_loop")[0]["file"].endswith("loop/cat")
    # walked once through the link (torchvision's os.walk(followlinks=True) would never stop)
    assert result["splits"]["train"]["class_counts"]["cat"] == 9


OS_FILES = ("Thumbs.db", "desktop.ini", ".DS_Store", ".hidden", "._notes.txt")


def test_os_metadata_files_are_not_reported(tmp_path):
    """torchvision skips every file without an image extension; what the OS leaves in folders
    is not worth a word, and torchvision agrees on the count."""
    from torchvision.datasets import ImageFolder
    root = imagefolder_dataset(tmp_path)
    for folder in (root, root / "train", root / "train" / "cat", root / "val" / "dog"):
        for name in OS_FILES:
            (folder / name).write_bytes(b"\x00\x05\x16\x07 Bud1 metadata")
    result = inspect(root)
    assert result["issues"] == {}
    assert result["splits"]["train"]["images"] == len(ImageFolder(str(root / "train")))


def test_a_readme_is_noted_an_image_under_another_name_is_warned(tmp_path):
    root = imagefolder_dataset(tmp_path)
    (root / "train" / "cat" / "README.txt").write_text("cats from the shelter\n")
    (root / "train" / "cat" / "labels.csv").write_text("file,label\n")
    make_image(root / "train" / "dog" / "dog_extra", 9, fmt="JPEG")  # no extension
    make_image(root / "train" / "dog" / "dog_big.jpg_large", 10, fmt="JPEG")
    result = inspect(root)
    assert codes(result) == {"imagefolder.other_file", "imagefolder.ignored_file"}
    assert result["issues"]["imagefolder.other_file"]["count"] == 2
    details = {os.path.basename(e["file"]): e["detail"]
               for e in examples(result, "imagefolder.ignored_file")}
    assert details == {"dog_extra": "a JPEG image without an extension: the file is skipped",
                       "dog_big.jpg_large": "a JPEG image named .jpg_large: the file is skipped"}


def kaggle_tree(root: Path, splits=("train", "val")) -> Path:
    """train/ and val/ with class folders, test/ of unlabelled images (Kaggle's layout)."""
    imagefolder_dataset(root, splits=splits)
    for i in range(3):
        make_image(root / "test" / f"{i}.jpg", 3000 + i)
    return root


def test_unlabelled_test_folder_beside_train_and_val_is_noted(tmp_path):
    result = inspect(kaggle_tree(tmp_path))
    assert result["issues"] == {}
    assert result["splits"]["test"]["unlabelled"] == 3
    assert result["splits"]["test"]["classes"] == []


def test_unlabelled_test_folder_without_a_val_split_still_fails(tmp_path):
    """With no val/, ultralytics validates on test/: its missing classes then matter."""
    result = inspect(kaggle_tree(tmp_path, splits=("train",)))
    assert examples(result, "imagefolder.no_class_folders")[0]["split"] == "test"
