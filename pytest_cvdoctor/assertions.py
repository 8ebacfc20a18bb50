"""Assertions over cvdoctor reports, for users' own tests.

Standard library only at import time: `import pytest_cvdoctor` happens in every pytest run of a
project that installs cvdoctor, so cvdoctor's API (and with it torch) is imported inside the
functions, when a test actually calls one.

Outcomes: a `fail` or `error` finding fails the assertion; a `warn` passes with a
`CvdoctorWarning` (pytest lists it in the warnings summary; `strict=True` or `--cvdoctor-strict`
makes it fail); a check that could not run (`skip`) skips the test with the check's reason, since
an assertion that passes without having looked would be a false comfort.
"""
from __future__ import annotations

import warnings
from typing import Any

from pytest_cvdoctor._state import ACTIVE


def _session_value(name: str) -> Any:
    """This pytest run's --cvdoctor-<name> (strict, budget, ...) while a test runs, else None."""
    state = ACTIVE.get()
    if state is None:
        return None
    return state.strict if name == "strict" else state.values.get(name)


class CvdoctorWarning(UserWarning):
    """A cvdoctor check warned: suspicious, but it can be legitimate (the message says when)."""


def describe_finding(finding: Any, indent: str = "  ") -> list[str]:
    """The lines that tell one finding: mark, id, title and measured message, fix, recipe (the
    report's own layout; an error shows the last lines of its traceback)."""
    from cvdoctor.render import MARKS, finding_lines  # on use: only failing assertions pay

    lines = finding_lines(finding, label=f"{finding.check}:", sep=" ", indent=indent,
                          marks=MARKS)
    if finding.status == "error":
        tb = (finding.evidence or {}).get("traceback")
        if tb:
            lines.extend(f"{indent}  {ln}" for ln in str(tb).rstrip().splitlines()[-6:])
    return lines


def problems(report: Any, strict: bool = False) -> list[Any]:
    bad = ("fail", "error", "warn") if strict else ("fail", "error")
    return [f for f in report.findings if f.status in bad]


def failure_message(report: Any, strict: bool = False) -> str:
    """A readable assertion message: each failing finding with its message, fix and recipe."""
    found = problems(report, strict)
    target = f" for {report.target}" if report.target else ""
    head = (f"cvdoctor {report.command}{target}: {len(found)} of {len(report.findings)} "
            f"check(s) {'failed or warned' if strict else 'failed'}")
    lines = [head]
    for f in found:
        lines.extend(describe_finding(f))
    return "\n".join(lines)


def _strict(strict: bool | None) -> bool:
    return bool(_session_value("strict")) if strict is None else strict


def assert_healthy(report: Any, *, strict: bool | None = None) -> Any:
    """Fail the test when `report` has a failing (or, strict, warning) finding; return it."""
    __tracebackhide__ = True
    return _assert_healthy(report, strict, stacklevel=3)


def _assert_healthy(report: Any, strict: bool | None, stacklevel: int) -> Any:
    __tracebackhide__ = True
    strict = _strict(strict)
    if problems(report, strict):
        raise AssertionError(failure_message(report, strict))
    for f in report.warnings:
        # stacklevel: the warning points at the user's test line.
        warnings.warn(CvdoctorWarning("\n".join(describe_finding(f))), stacklevel=stacklevel)
    return report


def _run_one(check_id: str, model: Any, batch: Any, strict: bool | None,
             kwargs: dict[str, Any]) -> Any:
    __tracebackhide__ = True
    from cvdoctor import check_model

    if kwargs.get("budget") is None and _session_value("budget") is not None:
        kwargs["budget"] = _session_value("budget")
    report = check_model(model, batch, select=[check_id], **kwargs)
    findings = report.get_all(check_id)
    if findings and all(f.status == "skip" for f in findings):
        import pytest

        pytest.skip(f"cvdoctor {check_id} could not run: {findings[0].message}")
    _assert_healthy(report, strict, stacklevel=4)
    return findings[0] if len(findings) == 1 else findings


def assert_overfits_one_batch(model: Any, batch: Any = None, *, strict: bool | None = None,
                              **kwargs: Any) -> Any:
    """A copy of `model` memorizes one batch with the user's optimizer (check model.overfit_batch).

    kwargs go to `cvdoctor.check_model` (loss_fn, optimizer, num_classes, budget, ...). Running
    out of budget is a warning, never a failure. Returns the finding.
    """
    __tracebackhide__ = True
    return _run_one("model.overfit_batch", model, batch, strict, kwargs)


def assert_gradients_flow(model: Any, batch: Any = None, *, strict: bool | None = None,
                          **kwargs: Any) -> Any:
    """Every trainable parameter gets a finite, non-vanishing gradient (check model.gradients)."""
    __tracebackhide__ = True
    return _run_one("model.gradients", model, batch, strict, kwargs)


def assert_initial_loss_ok(model: Any, batch: Any = None, *, strict: bool | None = None,
                           **kwargs: Any) -> Any:
    """The loss at init is what an untrained model should give, e.g. ln C for cross-entropy
    (check model.initial_loss). A loss with no known expectation skips the test."""
    __tracebackhide__ = True
    return _run_one("model.initial_loss", model, batch, strict, kwargs)


def assert_batch_independent(model: Any, batch: Any = None, *, strict: bool | None = None,
                             **kwargs: Any) -> Any:
    """In eval mode, output i does not depend on input j != i (check model.batch_independence)."""
    __tracebackhide__ = True
    return _run_one("model.batch_independence", model, batch, strict, kwargs)


def assert_optimizer_covers_model(model: Any, batch: Any = None, *, optimizer: Any = None,
                                  strict: bool | None = None, **kwargs: Any) -> Any:
    """Every trainable parameter is in the optimizer's param groups and moves after a step
    (check model.optimizer). Pass the optimizer you built, by keyword."""
    __tracebackhide__ = True
    kwargs["optimizer"] = optimizer
    return _run_one("model.optimizer", model, batch, strict, kwargs)


def assert_dataset_ok(path: Any, *, task: str | None = None, num_classes: int | None = None,
                      deep: bool = False, strict: bool | None = None, **kwargs: Any) -> Any:
    """The dataset at `path` (a data.yaml, an ImageFolder root or an images/ + masks/ folder)
    passes `cvdoctor data`: labels found and well-formed, images readable, no train/val leakage.
    Nothing in the dataset is written. kwargs go to `cvdoctor.check_data` (select, ignore).
    --cvdoctor-task / --cvdoctor-num-classes fill in what is not given. Returns the report."""
    __tracebackhide__ = True
    from cvdoctor import check_data

    if task is None:
        task = _session_value("task")
    if num_classes is None:
        num_classes = _session_value("num_classes")
    report = check_data(str(path), task=task, num_classes=num_classes, deep=deep, **kwargs)
    return _assert_healthy(report, strict, stacklevel=3)


def assert_checkpoint_fits(model: Any, path: Any, *, deep: bool = False,
                           strict: bool | None = None, **kwargs: Any) -> Any:
    """The checkpoint at `path` is whole, loading it runs no code, and its state dict fits
    `model` (an nn.Module, never modified; or a TARGET string such as "torchvision:resnet18"):
    `cvdoctor ckpt PATH --model ...` without loading the file. A prefix or a head of another
    size warns (the message holds the lines that load it); another variant fails. kwargs go to
    `cvdoctor.check_ckpt` (select, ignore, num_classes). Returns the report."""
    __tracebackhide__ = True
    from cvdoctor import check_ckpt

    kwargs.setdefault("select", ["ckpt.format", "ckpt.safety", "ckpt.integrity", "ckpt.fit"])
    report = check_ckpt(str(path), model=model, deep=deep, **kwargs)
    return _assert_healthy(report, strict, stacklevel=3)


def assert_ddp_ready(model_or_file: Any, batch: Any = None, *, world_size: int = 2,
                     timeout: float | None = None, strict: bool | None = None,
                     **kwargs: Any) -> Any:
    """`model_or_file` trains under DistributedDataParallel on `world_size` processes (checks
    model.ddp*): cvdoctor starts a real torch.distributed process group (gloo on CPU, NCCL with
    one GPU per rank), every rank wraps the model in DDP and takes two steps; every trainable
    parameter must get a gradient on every rank, the replicas must stay in sync, the loader must
    split the data, and BatchNorm should see enough samples per rank.

    A model file (or "package.module:attr") is loaded by every rank itself, as under torchrun. An
    nn.Module (with `batch` = (inputs, targets), or input_shape=...) reaches the ranks pickled:
    its class must be importable (defined at module level, not inside the test), and a script
    that calls this needs an `if __name__ == "__main__":` guard. `timeout` (seconds, default 60)
    bounds every collective and any rank without progress. kwargs go to cvdoctor.check_model
    (loss_fn, optimizer, training_step, ...). A run that could not start skips the test with the
    reason. Returns the report."""
    __tracebackhide__ = True
    import os

    select = kwargs.pop("select", ["model.ddp*"])
    if isinstance(model_or_file, (str, os.PathLike)):
        from cvdoctor.api import make_context, run_context
        from cvdoctor.commands import all_commands

        values = {"ddp": world_size, "ddp_timeout": timeout, **kwargs}
        ctx = make_context(all_commands()["model"], os.fspath(model_or_file), values)
        report = run_context("model", ctx, select=select)
    else:
        from cvdoctor import check_model

        report = check_model(model_or_file, batch, ddp=world_size, ddp_timeout=timeout,
                             select=select, **kwargs)
    runs = report.get_all("model.ddp")
    if runs and all(f.status == "skip" for f in runs):
        import pytest

        pytest.skip(f"cvdoctor model.ddp could not run: {runs[0].message}")
    return _assert_healthy(report, strict, stacklevel=3)


def assert_frozen(model: Any, batch: Any = None, *, frozen: Any = None,
                  strict: bool | None = None, **kwargs: Any) -> Any:
    """The parameters named in `frozen` (names or globs such as "backbone.*") and every
    parameter with requires_grad=False stay bit-identical after one step of your optimizer, and
    BatchNorm layers named frozen keep their running statistics in train mode (check
    model.frozen). kwargs go to `cvdoctor.check_model` (optimizer, loss_fn, ...)."""
    __tracebackhide__ = True
    kwargs["frozen"] = frozen
    return _run_one("model.frozen", model, batch, strict, kwargs)


def assert_amp_safe(model: Any, batch: Any = None, *, amp: str = "bfloat16",
                    grad_scaler: bool | None = None, strict: bool | None = None,
                    **kwargs: Any) -> Any:
    """Training under torch.autocast(dtype=`amp`) ("bfloat16" or "float16") gives finite
    outputs, loss and gradients within what the precision explains of float32, and, for float16,
    `grad_scaler` says whether a GradScaler keeps gradients from underflowing (check model.amp).
    kwargs go to `cvdoctor.check_model`."""
    __tracebackhide__ = True
    kwargs.update(amp=amp, grad_scaler=grad_scaler)
    return _run_one("model.amp", model, batch, strict, kwargs)


def _model_target_report(target: Any, values: dict[str, Any], kwargs: dict[str, Any]) -> Any:
    """`cvdoctor model TARGET` with option values, as the command line runs it."""
    from cvdoctor.api import make_context, run_context
    from cvdoctor.commands import all_commands

    ctx = make_context(all_commands()["model"], str(target),
                       {k: v for k, v in values.items() if v is not None})
    return run_context("model", ctx, select=kwargs.get("select"), ignore=kwargs.get("ignore"))


def assert_yolo_ready(target: Any, data: Any = None, *, imgsz: int | None = None,
                      batch: int | None = None, workers: int | None = None,
                      strict: bool | None = None, **kwargs: Any) -> Any:
    """The YOLO set-up `target` ("ultralytics:yolov8n.yaml", a .pt, or a file that builds
    YOLO(...)) trains on `data` (a data.yaml; default: the file's data=): weights present,
    classes consistent with the dataset and a fine-tuned checkpoint, settings that fit the
    machine, and one real step through ultralytics' own trainer and loss (in a contained
    subprocess: offline, nothing written to the dataset). kwargs: select, ignore. Returns the
    report."""
    __tracebackhide__ = True
    values = {"data": str(data) if data is not None else None, "imgsz": imgsz,
              "batch_size": batch, "workers": workers}
    report = _model_target_report(target, values, kwargs)
    return _assert_healthy(report, strict, stacklevel=3)


def assert_sam_ready(target: Any, checkpoint: Any = None, *, deep: bool = False,
                     strict: bool | None = None, **kwargs: Any) -> Any:
    """The SAM set-up `target` ("segment_anything:vit_b" with `checkpoint`, or a file that sets
    SAM up with optional get_image()/get_prompts()/training_step) is ready: the checkpoint fits
    the model type, the image and prompts meet SamPredictor's contract, the encoder fits the
    device's memory, and a fine-tuned encoder is really frozen. `deep` runs the real encoder.
    kwargs: select, ignore. Returns the report."""
    __tracebackhide__ = True
    values = {"checkpoint": str(checkpoint) if checkpoint is not None else None,
              "deep": deep or None}
    report = _model_target_report(target, values, kwargs)
    return _assert_healthy(report, strict, stacklevel=3)
