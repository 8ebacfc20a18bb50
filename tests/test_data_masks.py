"""cvdoctor.data on semantic segmentation pairs (images/ + masks/)."""
from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from cvdoctor.data import inspect_dataset
from datasets import codes, examples, make_image, mask_dataset


def inspect(root: Path, **kw) -> dict:
    return inspect_dataset(str(root), **kw)


@pytest.mark.parametrize("num_classes", [3, None])
def test_healthy_pairs(tmp_path, num_classes):
    result = inspect(mask_dataset(tmp_path), num_classes=num_classes)
    assert result["kind"] == "masks" and result["issues"] == {}
    assert result["images"] == result["masks"] == 6 and result["values"] == [0, 1, 2]
    assert result["num_classes_guess"] == 3


def test_palette_and_16_bit_masks_are_index_masks(tmp_path):
    root = mask_dataset(tmp_path)
    p = Image.new("P", (64, 64), 1)
    p.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
    p.save(root / "masks" / "s0.png")
    Image.new("I;16", (64, 64), 2).save(root / "masks" / "s1.png")
    assert inspect(root, num_classes=3)["issues"] == {}


def test_missing_and_orphan_masks(tmp_path):
    root = mask_dataset(tmp_path)
    (root / "masks" / "s0.png").unlink()
    Image.new("L", (64, 64)).save(root / "masks" / "ghost.png")
    result = inspect(root, num_classes=3)
    assert examples(result, "mask.missing")[0]["file"].endswith("images/s0.jpg")
    assert examples(result, "mask.orphan")[0]["file"].endswith("masks/ghost.png")


def test_size_mismatch(tmp_path):
    root = mask_dataset(tmp_path)
    Image.new("L", (32, 64)).save(root / "masks" / "s2.png")
    ex = examples(inspect(root, num_classes=3), "mask.size_mismatch")[0]
    assert ex["file"].endswith("s2.png") and "mask 32x64, image 64x64" in ex["detail"]


def test_values_past_num_classes(tmp_path):
    root = mask_dataset(tmp_path)
    Image.new("L", (64, 64), 7).save(root / "masks" / "s3.png")
    ex = examples(inspect(root, num_classes=3), "mask.values_out_of_range")[0]
    assert ex["values"] == [7]


def test_255_is_the_ignore_index_and_said_so(tmp_path):
    root = mask_dataset(tmp_path)
    m = Image.open(root / "masks" / "s4.png").copy()
    m.paste(255, (0, 0, 64, 2))
    m.save(root / "masks" / "s4.png")
    result = inspect(root, num_classes=3)
    assert codes(result) == {"mask.ignore_255"}
    assert "ignore_index=255" in examples(result, "mask.ignore_255")[0]["detail"]


def test_binary_masks_stored_as_0_and_255(tmp_path):
    root = mask_dataset(tmp_path)
    for p in (root / "masks").iterdir():
        m = Image.new("L", (64, 64), 0)
        m.paste(255, (10, 10, 30, 30))
        m.save(p)
    result = inspect(root, num_classes=2)
    assert "mask.binary_0_255" in codes(result) and "mask.ignore_255" not in codes(result)


def test_jpeg_masks(tmp_path):
    root = mask_dataset(tmp_path)
    m = Image.open(root / "masks" / "s1.png").copy()
    (root / "masks" / "s1.png").unlink()
    m.save(root / "masks" / "s1.jpg", quality=75)
    result = inspect(root, num_classes=3)
    assert examples(result, "mask.jpeg")[0]["file"].endswith("s1.jpg")


def test_rgb_colour_and_gray_rgb_masks(tmp_path):
    root = mask_dataset(tmp_path)
    colour = Image.new("RGB", (64, 64), (128, 0, 0))
    colour.paste((0, 128, 0), (0, 0, 20, 20))
    colour.save(root / "masks" / "s0.png")
    Image.open(root / "masks" / "s1.png").convert("RGB").save(root / "masks" / "s1.png")
    result = inspect(root, num_classes=3)
    assert examples(result, "mask.rgb_colour")[0]["file"].endswith("s0.png")
    assert examples(result, "mask.rgb_gray")[0]["file"].endswith("s1.png")
    assert "mask.values_out_of_range" not in codes(result)


def test_voc_layout(tmp_path):
    for i in range(3):
        make_image(tmp_path / "JPEGImages" / f"{i}.jpg", i)
        (tmp_path / "SegmentationClass").mkdir(exist_ok=True)
        Image.new("P", (64, 64), 1).save(tmp_path / "SegmentationClass" / f"{i}.png")
    result = inspect(tmp_path, num_classes=21)
    assert result["kind"] == "masks" and result["masks"] == 3 and result["issues"] == {}


def test_unreadable_mask(tmp_path):
    root = mask_dataset(tmp_path)
    (root / "masks" / "s5.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    assert examples(inspect(root, num_classes=3), "mask.unreadable")[0]["file"].endswith("s5.png")
