"""pytest plugin for cvdoctor: fixtures, assertion helpers, a requirements marker, generated model
test items and explanations of known failures (the plugin itself is `pytest_cvdoctor.plugin`,
registered through the pytest11 entry point).

Importing this package is cheap on purpose (standard library only): it happens in every pytest
run of every project that installs cvdoctor. torch is imported when a helper runs.

    from pytest_cvdoctor import assert_gradients_flow

    def test_gradients_reach_every_layer():
        assert_gradients_flow(build_model(), get_batch())
"""
from __future__ import annotations

from pytest_cvdoctor.assertions import (
    CvdoctorWarning,
    assert_amp_safe,
    assert_batch_independent,
    assert_checkpoint_fits,
    assert_dataset_ok,
    assert_ddp_ready,
    assert_frozen,
    assert_gradients_flow,
    assert_healthy,
    assert_initial_loss_ok,
    assert_optimizer_covers_model,
    assert_overfits_one_batch,
    assert_sam_ready,
    assert_yolo_ready,
)

__all__ = [
    "CvdoctorWarning",
    "assert_amp_safe",
    "assert_batch_independent",
    "assert_checkpoint_fits",
    "assert_dataset_ok",
    "assert_ddp_ready",
    "assert_frozen",
    "assert_gradients_flow",
    "assert_healthy",
    "assert_initial_loss_ok",
    "assert_optimizer_covers_model",
    "assert_overfits_one_batch",
    "assert_sam_ready",
    "assert_yolo_ready",
]
