"""`cvdoctor data`: a dataset before training."""
from cvdoctor.commands import Command, Option, Target

COMMAND = Command(
    name="data",
    summary="check a dataset before training: labels, images, classes, leakage...",
    help="""Check a dataset before training: label files and rows, data.yaml, image files,
class coverage, duplicates and train/val leakage, ultralytics' caches, ImageFolder rules,
segmentation masks. Reads label text and image headers (--deep decodes every image); never
writes into the dataset.

\\b
PATH is one of:
  path/to/data.yaml          a YOLO dataset (detect, segment, pose, obb), or the folder
                             holding its data.yaml
  path/to/root               an ImageFolder tree: train/ and val/ with one folder per class
  path/to/root               a semantic segmentation set: images/ and masks/ (same names)""",
    context="cvdoctor.data.facts:data_context",
    target=Target("PATH", "a data.yaml, an ImageFolder root or an images/ + masks/ folder"),
    options=(
        Option("task", "What the labels are for (default: pose when data.yaml has kpt_shape, "
               "else detect, which accepts box and polygon rows; classify for ImageFolder).",
               kind="choice", choices=("detect", "segment", "pose", "obb", "classify"),
               plugin=True),
        Option("num_classes", "Number of classes: checks mask values (and class ids against "
               "data.yaml).", kind="int", min=1, metavar="N", plugin=True),
        Option("deep", "Decode every image in worker processes (slow; finds damage that "
               "headers do not show).", kind="bool", default=False),
    ),
    api_doc="Run the dataset checks on PATH. Nothing in the dataset is written or changed.",
    plugin_items=True,
)
