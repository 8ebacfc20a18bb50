"""Tiny YOLO set-ups for the model.yolo_* tests: 64 px datasets, ultralytics checkpoints made in a
contained subprocess (ultralytics never imported by the test process), and the CLI run as a
user would run it, with the report parsed from --json."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import yaml
from click.testing import CliRunner

from datasets import make_image

SIZE = 64


def make_dataset(root: Path, names=("cat", "dog"), n_train: int = 4, n_val: int = 2,
                 bad_class: int | None = None, empty_labels: bool = False,
                 yaml_extra: dict | None = None) -> Path:
    """root/data.yaml with an absolute `path:`, images/{train,val}/*.jpg, labels/{...}/*.txt:
    one or two boxes per image, classes cycling through `names`. `bad_class` adds a row with that
    class id to the third training label; `empty_labels` writes every training label empty."""
    nc = len(names)
    seed = 0
    for split, n in (("train", n_train), ("val", n_val)):
        for i in range(n):
            seed += 1
            make_image(root / "images" / split / f"im{i}.jpg", seed)
            rows = [f"{i % nc} 0.50 0.50 0.30 0.40", f"{(i + 1) % nc} 0.30 0.30 0.20 0.20"]
            if split == "train" and bad_class is not None and i == 2:
                rows.append(f"{bad_class} 0.60 0.60 0.20 0.20")
            if split == "train" and empty_labels:
                rows = []
            label = root / "labels" / split / f"im{i}.txt"
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text("".join(r + "\n" for r in rows))
    data = {"path": str(root), "train": "images/train", "val": "images/val",
            "names": dict(enumerate(names))}
    data.update(yaml_extra or {})
    (root / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return root / "data.yaml"


_MAKE_PT = textwrap.dedent("""
    import json, os, sys, tempfile
    tmp = tempfile.mkdtemp()
    os.environ.update(YOLO_OFFLINE="1", YOLO_AUTOINSTALL="False", YOLO_CONFIG_DIR=tmp,
                      MPLCONFIGDIR=tmp, YOLO_VERBOSE="False")
    from ultralytics import YOLO
    from ultralytics.nn.tasks import DetectionModel
    for path, names, nan in json.loads(sys.argv[1]):
        y = YOLO("yolov8n.yaml")
        m = DetectionModel("yolov8n.yaml", nc=len(names), verbose=False)
        m.names = dict(enumerate(names))
        if nan:
            m.model[0].conv.weight.data.fill_(float("nan"))
        y.model = m
        y.save(path)
""")


def make_checkpoints(specs: list[tuple[Path, list[str], bool]]) -> None:
    """ultralytics checkpoints (path, class names, NaN weights in layer 0), saved the way
    `YOLO.save` saves them, from random yolov8n weights; made in a contained subprocess."""
    arg = json.dumps([[str(p), list(n), nan] for p, n, nan in specs])
    subprocess.run([sys.executable, "-c", _MAKE_PT, arg], check=True, capture_output=True,
                   timeout=300, env={**os.environ, "PYTHONWARNINGS": "ignore"})


def run_model(target: str, *args: str) -> tuple[int, dict]:
    """`cvdoctor model TARGET ARGS --json` in this process; (exit code, parsed report)."""
    from cvdoctor.cli import cli

    result = CliRunner().invoke(cli, ["model", target, *args, "--json"])
    assert result.exit_code in (0, 1), (result.exit_code, result.output, result.exception)
    return result.exit_code, json.loads(result.stdout)


def findings(report: dict) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for f in report["findings"]:
        out.setdefault(f["check"], []).append(f)
    return out


def statuses(report: dict) -> dict[str, list[tuple[str, str | None]]]:
    return {c: [(f["status"], f["recipe"]) for f in fs] for c, fs in findings(report).items()}
