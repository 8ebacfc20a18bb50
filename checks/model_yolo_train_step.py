"""model.yolo_train_step: one real training step through ultralytics' own trainer and loss."""
from __future__ import annotations

from cvdoctor.catalog import recipe_for_error
from cvdoctor.finding import Problem, report_problems, skipped
from cvdoctor.registry import register
from cvdoctor.text import plural
from cvdoctor.yolo.report import (data_missing, error_text, log_lines, model_missing, rel,
                                  skip_unless_yolo)

TITLE = "YOLO training step"
OUT_OF_RANGE = "yolo-class-out-of-range"
NO_LABELS = "yolo-labels-not-found"
HEAD_FROZEN = "yolo-head-frozen"
FREEZE_IGNORED = "yolo-freeze-ignored"
RECIPES = [OUT_OF_RANGE, NO_LABELS, "nan-loss", HEAD_FROZEN, FREEZE_IGNORED, "forward-error"]
STAGES = {"trainer": "creating the trainer", "get_model": "building the model for the dataset",
          "setup": "setting up training (freezing, dataset, loader)",
          "batch": "loading the first batch", "loss": "the forward pass and loss",
          "backward": "the backward pass"}


@register("model.yolo_train_step", targets=["yolo"], order=32, title=TITLE, recipes=RECIPES,
          needs=["yolo_probe"], error_recipes=True)
def check(ctx):
    """Builds the trainer ultralytics' `model.train()` would build (your settings, augmentations
    off, a temporary copy of a few training images with their labels, images whose label rows
    have out-of-range class ids first) and runs one step: its dataset and collate code,
    `preprocess_batch`, the model's own loss, backward.

    Fails when the trainer or the step raises (the error, matched to a recipe), when ultralytics
    drops sampled images for class ids outside 0..nc-1, when the loss or a gradient is NaN/inf,
    and when the detection head is frozen or gets no gradient. Warns when the batch holds no box
    at all (training on backgrounds only) or most training images have no label file, and when
    parameters frozen on the YOLO object with requires_grad=False are unfrozen again by the
    trainer (use freeze=N)."""
    skip = skip_unless_yolo(ctx, TITLE)
    if skip:
        return skip
    probe = ctx.fact("yolo_probe")
    why = model_missing(probe) or data_missing(probe)
    if why:
        return skipped(TITLE, why)
    trainer = probe.get("trainer") or {}
    problems: list[Problem] = []
    problems += _dropped(ctx, probe)
    if trainer.get("error"):
        err = trainer["error"]
        if not (problems and "No valid images" in err["message"] + err.get("traceback", "")):
            match = recipe_for_error(err["message"], err.get("traceback", ""))
            recipe = match.recipe if match else "forward-error"
            stage = STAGES.get(trainer.get("stage"), trainer.get("stage") or "the step")
            problems.append(Problem(
                "fail", recipe, f"ultralytics raised {error_text(err)} during {stage}",
                f"See `cvdoctor explain {recipe}`; -v shows the traceback.",
                {"error": err["message"], "traceback": err.get("traceback"),
                 "stage": trainer.get("stage")}))
        return report_problems(TITLE, problems, "")
    step = probe.get("step") or {}
    labels = probe.get("labels") or {}
    sample = probe.get("sample") or {}
    problems += _labels(labels, sample, step)
    problems += _numbers(step)
    problems += _frozen(probe)
    return report_problems(TITLE, problems, _summary(probe), loss=step.get("loss"),
                           loss_items=step.get("loss_items"), seconds=step.get("seconds"))


def _dropped(ctx, probe: dict) -> list[Problem]:
    labels = probe.get("labels") or {}
    sample = probe.get("sample") or {}
    picked = len(sample.get("picked") or [])
    kept = labels.get("images")
    corrupt = log_lines(probe, "ignoring corrupt image/label")
    if kept is not None and kept >= picked and not corrupt:
        return []
    if not corrupt and kept is None:
        return []
    dropped = picked - (kept or 0)
    scan = sample.get("label_files_with_bad_class") or 0
    bad = sample.get("bad_rows") or []
    class_lines = [ln for ln in corrupt if "class" in ln.lower()]
    if class_lines or bad:
        where = ", ".join(f"{rel(b['file'], ctx.cwd)}:{b['line']} class {b['class']}"
                          for b in bad[:3])
        total = sample.get("train_images")
        scanned = "" if sample.get("complete_scan") else " (of those scanned)"
        return [Problem(
            "fail", OUT_OF_RANGE,
            f"ultralytics drops {dropped} of the {picked} sampled images for class ids outside "
            f"0..{int((probe.get('data') or {}).get('nc') or 1) - 1} ({where}); the label "
            f"scan found such rows in {plural(scan, 'file')} of {total}{scanned}, and each of "
            "those images goes with one log line while training carries on",
            "Remap those class ids to 0..nc-1 or add the missing names to data.yaml; "
            f"`cvdoctor data {(probe.get('data') or {}).get('yaml')}` lists every row.",
            {"dropped": dropped, "bad_rows": bad, "log": class_lines[:5]})]
    text = corrupt[0] if corrupt else ""
    match = recipe_for_error(text) if text else None
    recipe = match.recipe if match else NO_LABELS
    return [Problem("fail", recipe, f"ultralytics drops {dropped} of the {picked} sampled images: "
                    f"{text[:300]}", f"See `cvdoctor explain {recipe}`.", {"log": corrupt[:5]})]


def _labels(labels: dict, sample: dict, step: dict) -> list[Problem]:
    out = []
    if labels.get("images") and not labels.get("boxes"):
        out.append(Problem(
            "warn", NO_LABELS,
            f"none of the {labels['images']} sampled training images has a box: ultralytics "
            "trains on backgrounds only and the model learns to find nothing",
            "Put the label files where ultralytics looks (images/ -> labels/, same name, .txt) "
            "and check they are not empty.", {"labels": labels}))
        return out
    total = sample.get("train_images") or 0
    unlabelled = sample.get("unlabelled") or 0
    if total >= 4 and unlabelled * 2 > total:
        out.append(Problem(
            "warn", NO_LABELS,
            f"{unlabelled} of {total} training images have no label file where ultralytics "
            "looks (images/ -> labels/); it counts them as backgrounds",
            "Move or generate the missing .txt label files (an image without objects needs no "
            "file; most images without one is a layout problem).",
            {"unlabelled": unlabelled, "train_images": total}))
    return out


def _numbers(step: dict) -> list[Problem]:
    if step.get("finite") is False or step.get("nonfinite_count"):
        what = (f"the loss is {step.get('loss')}" if step.get("finite") is False else
                f"{plural(step['nonfinite_count'], 'gradient')} hold NaN/inf "
                f"({', '.join(step.get('nonfinite_grads', [])[:3])})")
        return [Problem("fail", "nan-loss",
                        f"{what} after one step ({step.get('loss_items')})",
                        "Check the checkpoint's weights for NaN/inf, the label coordinates, "
                        "and use amp=False to rule out fp16 overflow.", {"step": step})]
    return []


def _frozen(probe: dict) -> list[Problem]:
    frozen = probe.get("frozen") or {}
    step = probe.get("step") or {}
    model = probe.get("model") or {}
    trainer = probe.get("trainer") or {}
    out = []
    head_trainable = frozen.get("head_params", 0) - 1  # the DFL conv is always frozen
    if frozen and (frozen.get("head_frozen", 0) >= max(head_trainable, 1)):
        out.append(Problem(
            "fail", HEAD_FROZEN,
            f"freeze={trainer.get('freeze')} freezes the detection head (layer "
            f"{frozen.get('head_index')}, {frozen.get('head_type')}) too: it cannot learn the "
            "dataset's classes",
            f"Freeze the backbone only: freeze=10 for YOLOv8 (layers 0-9), never layer "
            f"{frozen.get('head_index')}.", {"frozen": frozen}))
    elif step and step.get("head_trainable") and not step.get("head_with_grad") and \
            step.get("finite") and not step.get("nonfinite_count"):
        out.append(Problem(
            "fail", HEAD_FROZEN,
            f"no gradient reaches the detection head's {step['head_trainable']} trainable "
            "tensors after one step", "Check custom modules between the neck and the head.",
            {"step": step}))
    user = model.get("user_frozen_count") or 0
    if user:
        layers = [str(i) for i in model.get("user_frozen_layers") or []]
        upto = int(layers[-1]) + 1 if layers else 10
        out.append(Problem(
            "warn", FREEZE_IGNORED,
            f"{plural(user, 'parameter tensor')} of the YOLO object have requires_grad=False "
            f"(layers {_span(layers)}); ultralytics' trainer builds its own model and trains them "
            "anyway ('setting requires_grad=True for frozen layer')",
            f"Pass freeze=N to train() instead (freeze={upto} covers those layers).",
            {"user_frozen": model.get("user_frozen")}))
    return out


def _span(layers: list[str]) -> str:
    """'0-9' for a run of consecutive layer indices, else the first few."""
    nums = [int(x) for x in layers]
    if nums and nums == list(range(nums[0], nums[-1] + 1)) and len(nums) > 2:
        return f"{nums[0]}-{nums[-1]}"
    return ", ".join(layers[:6]) + (f" and {len(layers) - 6} more" if len(layers) > 6 else "")


def _summary(probe: dict) -> str:
    step = probe.get("step") or {}
    labels = probe.get("labels") or {}
    frozen = probe.get("frozen") or {}
    shape = step.get("img_shape") or []
    size = f"{shape[-2]}x{shape[-1]}" if len(shape) == 4 else "?"
    items = ", ".join(f"{k.replace('_loss', '')} {v:.3g}" for k, v in
                      (step.get("loss_items") or {}).items())
    classes = step.get("class_range")
    frozen_layers = frozen.get("frozen_layers") or []
    frozen_txt = (f"layers {frozen_layers[0]}-{frozen_layers[-1]} frozen" if frozen_layers
                  else "only the DFL conv frozen (always)")
    return (f"one step through ultralytics' trainer on {step.get('images')} images at {size} "
            f"({plural(labels.get('boxes') or 0, 'box', 'boxes')}"
            + (f", classes {classes[0]}-{classes[1]}" if classes else "") + "): "
            f"loss {step.get('loss', 0):.4g} ({items}); gradients reach "
            f"{step.get('head_with_grad')} of {step.get('head_trainable')} head tensors"
            + (f" ({step['head_zero_grad']} of them zero: no box assigned to their scale yet)"
               if step.get("head_zero_grad") else "") + "; "
            f"{frozen_txt}; {step.get('seconds')} s")

