"""`--cvdoctor-data PATH` in pytest: one generated item per data check; `assert_dataset_ok`."""
from __future__ import annotations

import sys

import pytest

from cvdoctor.registry import all_checks
from datasets import yolo_dataset

pytestmark = pytest.mark.slow  # real pytest runs in subprocesses
# Read once at import: pytester drops modules imported during a test, and importing the check
# modules again would register their ids twice.
DATA_IDS = [s.id for s in all_checks("data")]
YOLO_IDS = [s.id for s in all_checks("data") if not s.targets or "yolo" in s.targets]


def test_one_item_per_data_check(pytester):
    yolo_dataset(pytester.path / "ds")
    result = pytester.runpytest_subprocess("-v", "-p", "no:randomly", "--cvdoctor-data",
                                           "ds/data.yaml")
    ids = YOLO_IDS  # only the checks that apply to a YOLO set become items
    result.assert_outcomes(passed=len(ids))
    result.stdout.fnmatch_lines_random(
        [f"cvdoctor-data:ds/data.yaml::{i} *" for i in ids])


def test_broken_set_fails_its_item_with_file_line_and_recipe(pytester):
    root = yolo_dataset(pytester.path / "ds")
    (root / "labels" / "train" / "im001.txt").write_text("7 0.5 0.5 0.2 0.2\n")
    pytester.makeini("[pytest]\ncvdoctor_data = ds/data.yaml\n")
    result = pytester.runpytest_subprocess("-k", "class_ids", "-p", "no:randomly")
    result.assert_outcomes(failed=1, deselected=len(YOLO_IDS) - 1)
    result.stdout.fnmatch_lines_random([
        "*data.class_ids*labels/train/im001.txt:1*",
        "*cvdoctor explain yolo-class-out-of-range*",
    ])
    assert "Traceback" not in result.stdout.str()


def test_assert_dataset_ok(pytester):
    good = yolo_dataset(pytester.path / "good")
    bad = yolo_dataset(pytester.path / "bad")
    (bad / "labels" / "val" / "im000.txt").write_text("0 640 480 20 20\n")
    pytester.makepyfile(f'''
from pytest_cvdoctor import assert_dataset_ok

def test_good():
    report = assert_dataset_ok({str(good / "data.yaml")!r})
    assert report.ok

def test_bad():
    assert_dataset_ok({str(bad)!r})
''')
    result = pytester.runpytest_subprocess("-p", "no:randomly")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines_random(["*data.coordinates*labels/val/im000.txt:1*",
                                        "*cvdoctor explain yolo-coordinates*"])


def test_plugin_options_reach_the_items(pytester):
    """--cvdoctor-task segment makes the detect-shaped labels a failure of the item."""
    yolo_dataset(pytester.path / "ds")
    result = pytester.runpytest_subprocess("-k", "label_format", "-p", "no:randomly",
                                           "--cvdoctor-data", "ds", "--cvdoctor-task", "segment")
    result.assert_outcomes(failed=1, deselected=len(YOLO_IDS) - 1)
    assert sys.executable  # the subprocess uses this interpreter's cvdoctor
