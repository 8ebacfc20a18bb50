"""Error-text patterns of the dataset recipes: the messages ultralytics, torchvision, Pillow and
albumentations print (old and new wordings, different paths), each ranks its recipe first;
unrelated errors and errors other recipes own match none of them."""
from __future__ import annotations



from cvdoctor.catalog import match_text
from pattern_tables import pattern_table_tests

MINE = (
    "yolo-labels-not-found", "yolo-data-yaml", "yolo-dataset-path", "yolo-class-out-of-range",
    "yolo-coordinates", "yolo-label-format", "yolo-duplicate-labels", "yolo-label-cache",
    "image-corrupt", "image-too-small", "imagefolder-empty-class", "imagefolder-no-class-folders",
    "image-mode-not-rgb", "mask-size-mismatch",
)
W = "WARNING ⚠️ "
HELP = " See https://docs.ultralytics.com/datasets for dataset formatting guidance."

FIRST = [
    ("yolo-labels-not-found", f"ValueError: train: No labels found in /data/shapes/labels/train.cache.{HELP}"),
    ("yolo-labels-not-found", "AssertionError: train: No labels found in D:\\Yolo\\v5\\myData\\dataSet\\train.cache, "
                              "can not start training. See https://docs.ultralytics.com/yolov5/tutorials/train_custom_data"),
    ("yolo-labels-not-found", f"{W}No labels found in /home/u/datasets/armor/labels/train2017.cache.{HELP}"),
    ("yolo-labels-not-found", f"{W}Labels are missing or empty in /content/ds/labels/train.cache, training may "
                              f"not work correctly.{HELP}"),
    ("yolo-labels-not-found", "AssertionError: train: All labels empty in /data/logos/train.cache, can not start "
                              "training."),
    ("yolo-labels-not-found", "No labels in F:\\yolov7-main\\data\\train.cache. Can not train without labels."),
    ("yolo-data-yaml", "SyntaxError: data.yaml 'names' length 3 and 'nc: 5' must match."),
    ("yolo-data-yaml", "SyntaxError: /content/custom.yaml key missing ❌.\n either 'names' or 'nc' are required "
                       "in all data YAMLs."),
    ("yolo-data-yaml", "SyntaxError: custom.yaml 'val:' key missing ❌.\n'train' and 'val' are required in all "
                       "data YAMLs."),
    ("yolo-data-yaml", "KeyError: '3-class dataset requires class indices 0-2, but you have invalid class "
                       "indices 1-3 defined in your dataset YAML.'"),
    ("yolo-data-yaml", "SyntaxError: data.yaml 'nc: three' must be an integer ❌."),
    ("yolo-data-yaml", "ValueError: 'kpt_shape' in data.yaml missing or incorrect. Should be a list with "
                       "[number of keypoints, number of dims (2 for x,y or 3 for x,y,visible)], i.e. "
                       "'kpt_shape: [17, 3]'"),
    ("yolo-dataset-path", "FileNotFoundError: Dataset 'custom_data.yaml' images not found, missing path "
                          "'/content/datasets/valid/images'\nNote dataset download directory is "
                          "'/content/datasets'. You can update this in '/root/.config/Ultralytics/settings.json'"),
    ("yolo-dataset-path", "RuntimeError: Dataset 'yolo_bvn.yaml' error ❌ \nDataset 'yolo_bvn.yaml' images not "
                          "found ⚠️, missing path 'D:\\Program\\datasets\\bvn\\images\\val'"),
    ("yolo-dataset-path", "Dataset 'coco.yaml' images not found ⚠️, missing path "
                          "'/home/deep/yolov12/datasets/coco/val2017.txt'"),
    ("yolo-dataset-path", "FileNotFoundError: train: Error loading data from /content/ds/images/train\n"
                          "AssertionError: train: No images found in /content/ds/images/train. Supported "
                          "formats are:\nimages: {'bmp', 'jpg', 'png'}"),
    ("yolo-class-out-of-range", f"train: {W}/data/plates/images/train/9.jpg: ignoring corrupt image/label: Label "
                                "class 15 exceeds dataset class count 1. Possible class labels are 0-0"),
    ("yolo-class-out-of-range", "train: WARNING  C:\\YOLO\\train\\images\\Screenshot_12.png: ignoring corrupt "
                                "image/label: Label class 3 exceeds dataset class count 1. Possible class "
                                "labels are 0-0"),
    ("yolo-class-out-of-range", "AssertionError: Label class 79 exceeds nc=16 in flir.yaml. Possible class "
                                "labels are 0-15"),
    ("yolo-class-out-of-range", f"{W}/d/images/train/a.jpg: ignoring corrupt image/label: non-integer class "
                                "labels [        1.5]"),
    ("yolo-coordinates", f"train: {W}/data/dota/images/train/P0001.jpg: ignoring corrupt image/label: "
                         "non-normalized or out of bounds coordinates [1.0371]"),
    ("yolo-coordinates", "WARNING: Ignoring corrupted image and/or label /widerface/train/12_994.jpg: "
                         "non-normalized or out of bounds coordinate labels"),
    ("yolo-coordinates", f"{W}/data/faces/images/train/12.jpg: ignoring corrupt image/label: negative label "
                         "values [   -0.10312]"),
    ("yolo-coordinates", f"train: {W}/home/u/yolo/images/train/9_829.jpg: ignoring corrupt image/label: "
                         "non-normalized or out of bounds coordinates [ 1.0710385 1.0634356 1.857923 ]"),
    ("yolo-label-format", f"train: {W}/data/ds/images/train/a.jpg: ignoring corrupt image/label: labels "
                          "require 5 columns, 6 columns detected"),
    ("yolo-label-format", f"{W}/data/ds/images/train/b.jpg: ignoring corrupt image/label: labels mix segment "
                          "and detection rows"),
    ("yolo-label-format", "ValueError: Segment dataset requires equal numbers of boxes and segments, but got "
                          "len(segments) = 0, len(boxes) = 120. Please supply a segment dataset, not a "
                          "detect dataset."),
    ("yolo-label-format", f"{W}/data/pose/images/train/p1.jpg: ignoring corrupt image/label: labels require "
                          "56 columns each"),
    ("yolo-label-format", f"{W}/data/ds/images/train/c.jpg: ignoring corrupt image/label: could not convert "
                          "string to float: 'person'"),
    ("yolo-duplicate-labels", f"train: {W}/data/ds/images/train/0042.jpg: 2 duplicate labels removed"),
    ("yolo-duplicate-labels", "WARNING: Ignoring corrupted image and/or label /path/to/widerface/val/1060.jpg: "
                              "duplicate labels"),
    ("yolo-duplicate-labels", f"val: {W}C:\\data\\images\\val\\x.png: 1 duplicate labels removed"),
    ("yolo-label-cache", f"train: {W}Cache directory /kaggle/input/ds/labels is not writeable, cache not saved."),
    ("yolo-label-cache", f"{W}Cache directory /root/dataset/labels is not writable, cache not saved."),
    ("yolo-label-cache", f"train: {W}Cache directory /home/u/datasets/armor/labels is not writeable: [Errno 2] "
                         "No such file or directory: '/home/u/datasets/armor/labels/train2017.cache.npy'"),
    ("yolo-label-cache", f"{W}Failed to save cache to /mnt/ro/labels/train.cache: [Errno 30] Read-only file "
                         "system"),
    ("image-corrupt", "PIL.UnidentifiedImageError: cannot identify image file '/data/train/cat/._cat01.jpg'"),
    ("image-corrupt", "OSError: image file is truncated (22 bytes not processed)"),
    ("image-corrupt", f"train: {W}/data/ds/images/train/0107.jpg: corrupt JPEG restored and saved"),
    ("image-corrupt", f"{W}/data/ds/images/train/0042.jpg: ignoring corrupt image/label: cannot identify image "
                      "file '/data/ds/images/train/0042.jpg'"),
    ("image-corrupt", "OSError: broken data stream when reading image file"),
    ("image-corrupt", "RuntimeError: No valid images found in /data/ds/labels/train.cache.\n  "
                      "/data/ds/images/train/a.jpg: ignoring corrupt image/label: [Errno 2] No such file"),
    ("image-corrupt", f"{W}/d/images/train/anim.jpg: ignoring corrupt image/label: Invalid image format GIF. "
                      "Supported formats are:\nimages: {'bmp', 'jpg'}"),
    ("image-corrupt", "Premature end of JPEG file\nCorrupt JPEG data: premature end of data segment"),
    ("image-too-small", f"train: {W}/data/crops/images/train/c_0193.jpg: ignoring corrupt image/label: image "
                        "size (3, 41) <10 pixels"),
    ("image-too-small", f"{W}/d/images/val/x.png: ignoring corrupt image/label: image size (640, 8) <10 pixels"),
    ("image-too-small", "AssertionError: image size (9, 9) <10 pixels"),
    ("imagefolder-empty-class", "FileNotFoundError: Found no valid file for the classes .ipynb_checkpoints. "
                                "Supported extensions are: .jpg, .jpeg, .png, .ppm, .bmp, .pgm, .tif, .tiff, "
                                ".webp"),
    ("imagefolder-empty-class", "FileNotFoundError: Found no valid file for the classes 1057, 1100, 1116. "
                                "Supported extensions are: .jpg, .jpeg, .png"),
    ("imagefolder-empty-class", "FileNotFoundError: Found no valid file for the classes cat, fish."),
    ("imagefolder-no-class-folders", "FileNotFoundError: Couldn't find any class folder in /content/data/train."),
    ("imagefolder-no-class-folders", "FileNotFoundError: Couldn't find any class folder in ./ps_data/data."),
    ("imagefolder-no-class-folders", "  File \"/usr/lib/python3/site-packages/torchvision/datasets/folder.py\", "
                                     "line 41, in find_classes\n    raise FileNotFoundError(f\"Couldn't find any "
                                     "class folder in {directory}.\")\nFileNotFoundError: Couldn't find any class "
                                     "folder in C:\\data\\flat."),
    ("image-mode-not-rgb", "RuntimeError: output with shape [1, 224, 224] doesn't match the broadcast shape "
                           "[3, 224, 224]"),
    ("image-mode-not-rgb", "RuntimeError: The size of tensor a (4) must match the size of tensor b (3) at "
                           "non-singleton dimension 0"),
    ("image-mode-not-rgb", "RuntimeError: stack expects each tensor to be equal size, but got [3, 224, 224] "
                           "at entry 0 and [1, 224, 224] at entry 7"),
    ("image-mode-not-rgb", "RuntimeError: stack expects each tensor to be equal size, but got [3, 32, 32] at "
                           "entry 0 and [4, 32, 32] at entry 3"),
    ("mask-size-mismatch", "ValueError: Height and Width of image, mask or masks should be equal. You can "
                           "disable shapes check by setting a parameter is_check_shapes=False of Compose "
                           "class (do it only if you are sure about your data consistency)."),
    ("mask-size-mismatch", f"train: {W}/data/seg/images/train/0007.jpg: ignoring corrupt image/mask: mask size "
                           "(480, 640) does not match image size (640, 480)"),
    ("mask-size-mismatch", "ValueError: Height and Width of image, mask or masks should be equal."),
    # older wordings added with issue 11 (YOLOv5's check_dataset, torchvision < 0.10)
    ("yolo-dataset-path", "WARNING: Dataset not found, nonexistent paths: ['/data/coco128/images/val']"
                          "\nException: Dataset not found."),
    ("imagefolder-empty-class", "RuntimeError: Found 0 files in subfolders of: /data/flowers/train\n"
                                "Supported extensions are: .jpg,.jpeg,.png,.ppm,.bmp,.pgm,.tif"),
]

UNRELATED = [
    "KeyError: 'lr'",
    "FileNotFoundError: [Errno 2] No such file or directory: 'data.yaml'",
    "ValueError: could not convert string to float: 'abc'",
    "RuntimeError: stack expects each tensor to be equal size, but got [3, 224, 224] at entry 0 and "
    "[3, 256, 256] at entry 1",
    "train: Scanning /data/ds/labels/train.cache... 128 images, 2 backgrounds, 0 corrupt: 100%",
    "RuntimeError: The size of tensor a (10) must match the size of tensor b (12) at non-singleton "
    "dimension 1",
    "OSError: [Errno 28] No space left on device",
    "yaml.scanner.ScannerError: mapping values are not allowed here",
]

# Messages other recipes own: none of ours may rank first.
OWNED_ELSEWHERE = [
    ("mask-values-exceed-classes", "IndexError: Target 255 is out of bounds."),
    ("unet-shape-mismatch", "RuntimeError: only batches of spatial targets supported (3D tensors) but got "
                            "targets of dimension: 4"),
    ("checkpoint-truncated", "RuntimeError: PytorchStreamReader failed reading zip archive: failed finding "
                             "central directory"),
]


globals().update(pattern_table_tests(MINE, FIRST, UNRELATED, OWNED_ELSEWHERE))


def test_a_long_ultralytics_log_with_one_bad_line_names_it():
    scan = "train: Scanning /d/labels/train... 4000 images, 12 backgrounds, 1 corrupt: 100%|█| 4000/4000\n"
    bad = (f"train: {W}/d/images/train/7.jpg: ignoring corrupt image/label: Label class 9 exceeds "
           "dataset class count 3. Possible class labels are 0-2\n")
    assert match_text(scan * 200 + bad + scan * 200)[0].recipe == "yolo-class-out-of-range"
