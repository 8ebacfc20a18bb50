"""Write a toy YOLO detection dataset (coloured rectangles on noise, 128 px) to try the YOLO
examples without downloading anything:

    python examples/yolo_make_data.py yolo_shapes        # writes yolo_shapes/data.yaml
    cvdoctor model examples/yolo_train.py --data yolo_shapes/data.yaml
"""
import random
import sys
from pathlib import Path

from PIL import Image, ImageDraw

NAMES = ["square", "bar"]
SIZE = 128


def make(root: Path, n_train: int = 8, n_val: int = 4) -> Path:
    rng = random.Random(0)
    for split, n in (("train", n_train), ("val", n_val)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            im = Image.frombytes("RGB", (SIZE, SIZE), rng.randbytes(SIZE * SIZE * 3))
            draw = ImageDraw.Draw(im)
            rows = []
            for cls in range(len(NAMES)):
                w = rng.randint(20, 40) * (2 if cls else 1)
                h = rng.randint(20, 40)
                x, y = rng.randint(0, SIZE - w), rng.randint(0, SIZE - h)
                draw.rectangle([x, y, x + w, y + h], fill=(255, 40 + 160 * cls, 40))
                rows.append(f"{cls} {(x + w / 2) / SIZE:.6f} {(y + h / 2) / SIZE:.6f} "
                            f"{w / SIZE:.6f} {h / SIZE:.6f}")
            im.save(root / "images" / split / f"{i:03d}.jpg")
            (root / "labels" / split / f"{i:03d}.txt").write_text("\n".join(rows) + "\n")
    names = "\n".join(f"  {i}: {n}" for i, n in enumerate(NAMES))
    (root / "data.yaml").write_text(f"path: {root.resolve()}\ntrain: images/train\n"
                                    f"val: images/val\nnames:\n{names}\n")
    return root / "data.yaml"


if __name__ == "__main__":
    print(make(Path(sys.argv[1] if len(sys.argv) > 1 else "yolo_shapes")))
