"""Error-text patterns of the YOLO recipes model.yolo_* emits: ultralytics' own log and error
lines (current and older wordings, with and without the emoji a console may drop) rank their
recipe first; unrelated ultralytics lines match none of them."""
from __future__ import annotations

import pytest

from cvdoctor.catalog import load_catalog, match_text

MINE = ("yolo-weights-missing", "yolo-imgsz-stride", "yolo-head-frozen", "yolo-freeze-ignored",
        "yolo-class-order", "yolo-class-count")

FIRST = [
    ("yolo-weights-missing",
     "Downloading https://github.com/ultralytics/assets/releases/download/v8.4.0/yolov8n.pt to "
     "'yolov8n.pt'...\nConnectionError: ❌  Download failure for https://github.com/ultralytics/"
     "assets/releases/download/v8.4.0/yolov8n.pt. Environment may be offline."),
    ("yolo-weights-missing",
     "ConnectionError: Download failure for https://github.com/ultralytics/assets/releases/"
     "download/v8.3.0/yolo11s.pt. Retry limit reached."),
    ("yolo-weights-missing",
     "  File \"/opt/conda/lib/python3.10/site-packages/ultralytics/utils/downloads.py\", line "
     "494, in safe_download\n    raise ConnectionError(emojis(f\"❌  Download failure for {uri}. "
     "Retry limit reached.\"))\nConnectionError: ❌  Download failure for https://github.com/"
     "ultralytics/assets/releases/download/v8.2.0/yolov8s-seg.pt. Retry limit reached."),
    ("yolo-imgsz-stride",
     "WARNING ⚠️ imgsz=[100] must be multiple of max stride 32, updating to [128]"),
    ("yolo-imgsz-stride", "WARNING imgsz=[1000] must be multiple of max stride 64, updating to "
     "[1024]"),
    ("yolo-imgsz-stride", "WARNING ⚠️ imgsz=[300, 300] must be multiple of max stride 32, "
     "updating to [320, 320]"),
    ("yolo-head-frozen",
     "RuntimeError: 'freeze=23' froze the entire model with no trainable parameters left. "
     "Reduce 'freeze' or pass a list of specific layer indices."),
    ("yolo-head-frozen",
     "  File \"/usr/local/lib/python3.11/site-packages/ultralytics/engine/trainer.py\", line 406, "
     "in _setup_train\n    raise RuntimeError(\nRuntimeError: 'freeze=[0, 1, 2, 3, 4, 5, 6, 7, "
     "8, 9, 22]' froze the entire model with no trainable parameters left."),
    ("yolo-head-frozen",
     "'freeze=30' froze the entire model with no trainable parameters left. Reduce 'freeze' or "
     "pass a list of specific layer indices."),
    ("yolo-freeze-ignored",
     "WARNING ⚠️ setting 'requires_grad=True' for frozen layer 'model.0.conv.weight'. See "
     "ultralytics.engine.trainer for customization of frozen layers."),
    ("yolo-freeze-ignored",
     "WARNING setting 'requires_grad=True' for frozen layer 'model.9.cv2.bn.bias'. See "
     "ultralytics.engine.trainer for customization of frozen layers."),
    ("yolo-freeze-ignored",
     "Freezing layer 'model.22.dfl.conv.weight'\nWARNING ⚠️ setting 'requires_grad=True' for "
     "frozen layer 'model.1.conv.weight'. See ultralytics.engine.trainer for customization of "
     "frozen layers."),
]

UNRELATED = [
    "Freezing layer 'model.22.dfl.conv.weight'",
    "Overriding model.yaml nc=80 with nc=2",
    "Transferred 355/355 items from pretrained weights",
    "AMP: checks skipped. Offline and unable to download YOLO26n for AMP checks.",
    "train: Scanning /data/labels/train... 120 images, 0 backgrounds, 0 corrupt: 100%",
    "ConnectionError: Download failure for https://example.com/data.zip. Retry limit reached.",
    "imgsz=640 is fine",
]


@pytest.mark.parametrize("recipe_id,text", FIRST, ids=[f"{r}-{i}" for i, (r, _) in
                                                       enumerate(FIRST)])
def test_realistic_message_ranks_its_recipe_first(recipe_id, text):
    matches = match_text(text)
    assert matches and matches[0].recipe == recipe_id, [(m.recipe, m.score) for m in matches]


@pytest.mark.parametrize("text", UNRELATED)
def test_unrelated_lines_match_none_of_these(text):
    assert [m.recipe for m in match_text(text) if m.recipe in MINE] == []


def test_every_pattern_is_exercised():
    catalog = load_catalog()
    unused = [(rid, p.pattern) for rid in MINE for p in catalog[rid].compiled
              if not any(p.search(t) for r, t in FIRST if r == rid)]
    assert not unused
