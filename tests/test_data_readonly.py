"""cvdoctor.data never writes into a dataset: every byte, mode and name is the same after a run
(default and --deep), including the files ultralytics would rewrite (a JPEG without its end
marker) or recreate (a stale .cache). Also: the library imports neither ultralytics nor torch."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cvdoctor.data import inspect_dataset
from datasets import imagefolder_dataset, make_image, mask_dataset, snapshot, yolo_dataset


def broken_yolo(root):
    yolo_dataset(root, "segment")
    img = root / "images" / "train" / "im000.jpg"
    img.write_bytes(img.read_bytes()[:-2])  # ultralytics would "restore and save" this one
    (root / "labels" / "train" / "im001.txt").write_text("7 0.5 0.5 2 2\n")
    (root / "labels" / "train.cache").write_bytes(b"\x93NUMPY" + b"\0" * 50)
    os.utime(root / "labels" / "train.cache", ns=(10**9, 10**9))
    make_image(root / "images" / "val" / "odd.png", 5, mode="RGBA")
    return root


def broken_folder(root):
    imagefolder_dataset(root)
    (root / "train" / "empty").mkdir()
    (root / "val" / "cat" / "cat0.jpg").write_bytes(b"not an image")
    return root


def broken_masks(root):
    mask_dataset(root)
    (root / "masks" / "s0.png").unlink()
    return root


@pytest.mark.parametrize("deep", [False, pytest.param(True, marks=pytest.mark.slow)])
@pytest.mark.parametrize("build", [broken_yolo, broken_folder, broken_masks])
def test_nothing_in_the_dataset_changes(tmp_path, build, deep):
    root = build(tmp_path / "ds")
    before = snapshot(tmp_path)
    result = inspect_dataset(str(root), deep=deep, workers=2, num_classes=3)
    assert result["issues"]  # the broken set was really inspected
    assert snapshot(tmp_path) == before


def test_import_pulls_in_neither_ultralytics_nor_torch():
    code = ("import sys, cvdoctor.data, cvdoctor.data.deep, cvdoctor.data.stats; "
            "print(sorted(m for m in ('ultralytics', 'torch', 'cv2', 'numpy')"
            " if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
