"""Device mismatches for real on a CPU-only machine: the `meta` device is a second device.

(The GPU variants of the same rules are table-tested with recorded devices in
test_model_checks_basic.py.)
"""
from __future__ import annotations

import cvdoctor
from modelzoo import SmallCNN, image_batch


def test_model_split_across_devices_is_named():
    model = SmallCNN()
    model.head.to("meta")
    report = cvdoctor.check_model(model, image_batch(), select=["model.dtype", "model.forward"])
    dtype, forward = report["model.dtype"], report["model.forward"]
    assert (dtype.status, dtype.recipe) == ("fail", "device-mismatch")
    assert "cpu, meta" in dtype.message and "head.weight" in dtype.message
    assert (forward.status, forward.recipe) == ("fail", "device-mismatch")
    assert "cannot be moved to cpu" in forward.message
    assert "deepcopy" not in forward.message  # the copy worked; moving it did not


def test_batch_on_another_device_is_a_finding_not_a_broken_check():
    x, y = image_batch()
    report = cvdoctor.check_model(SmallCNN(), (x.to("meta"), y),
                                  select=["model.dtype", "model.forward"])
    assert report["model.dtype"].status in ("warn", "fail")
    assert report["model.dtype"].recipe == "device-mismatch"
    assert "batch is on meta" in report["model.dtype"].message
    assert report["model.forward"].recipe == "device-mismatch"
    assert not [f for f in report.findings if f.status == "error"], str(report)


def test_healthy_model_on_one_device_passes():
    report = cvdoctor.check_model(SmallCNN(), image_batch(), select=["model.dtype"])
    assert report["model.dtype"].status == "pass", str(report)
