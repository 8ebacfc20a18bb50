"""YOLO (ultralytics) training set-ups in `cvdoctor model`.

A target is `ultralytics:yolov8n.yaml` (any model yaml: random weights, nothing downloaded),
`ultralytics:yolov8n.pt` or a path to a `.pt`, or a Python file that builds a `YOLO(...)` object;
the dataset comes from `--data` or a `data = "..."` line (or a `.train(data=...)` call) in the file.

ultralytics never runs in cvdoctor's own process: importing it patches `PIL.Image.open`,
`torch.save` and `cv2.imread` process-wide and may try to pip-install packages. Everything that
needs it runs in one contained subprocess (`cvdoctor.yolo.probe`, see `cvdoctor.yolo.contain`):
offline, no auto-install, settings in a temporary folder, every socket connection and download
refused and recorded, and the dataset seen through a temporary copy of a few images and labels
(ultralytics writes `labels/*.cache` beside the labels and may rewrite JPEGs in place).

- ``target``: what the target names, read without importing anything (paths, yaml names, the
  literal settings a file passes to `YOLO(...)` and `.train(...)`).
- ``contain``: the containment of the probe process (network, downloads, writes).
- ``probe``: the subprocess: builds the trainer ultralytics would build and runs one step.
- ``plan``: the arithmetic the checks share (workers, shared memory, device memory).
- ``facts`` / ``context``: the fact graph and the `cvdoctor model` context for these targets.
"""
