"""model.dtype: do parameters, buffers and inputs agree on dtype and device?

The rules are pure functions over what was measured (`dtype_problems`, `device_problems`), so
the GPU cases this CPU machine cannot produce are table-tested with recorded devices.
"""
from __future__ import annotations

from collections import Counter

import torch

from cvdoctor.finding import Problem, report_problems
from cvdoctor.model.context import call_model, rng_guard
from cvdoctor.model.tensors import first_tensor, to_device
from cvdoctor.model.trace import Tracer
from cvdoctor.registry import register

TITLE = "Dtypes and devices"
RECIPES = ["mixed-param-dtypes", "dtype-mismatch", "device-mismatch"]
_DTYPE_WORDS = ("should be the same", "scalar type", "dtype", "Half", "BFloat16", "Double")
_DEVICE_WORDS = ("same device", "Expected all tensors to be on", "device type", "cuda:",
                 "should be on")


def _name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


@register("model.dtype", order=20, title=TITLE, recipes=RECIPES, needs=["base"])
def check(ctx):
    """Reads the dtypes and devices of every parameter, buffer and the batch. Fails when the
    parameters mix floating dtypes and the forward fails on it, when a floating batch of another
    dtype than the parameters makes the forward fail (float64 from NumPy), when the model sits
    on devices of different kinds, or (on a GPU) when forward creates a tensor on another
    device. Warns on mixed dtypes or devices that still run (fine when deliberate) and on a
    batch on another device than the model."""
    model = ctx.spec.model
    tensors = [(f"param {n}", t) for n, t in model.named_parameters()]
    tensors += [(f"buffer {n}", t) for n, t in model.named_buffers()]
    x = first_tensor(ctx.spec.inputs)
    base = ctx.fact("base")
    err = base.forward_error or base.loss_error
    error_text = err.text if err else ""
    problems = dtype_problems(tensors, x, error_text)
    problems += device_problems([(n, t.device) for n, t in tensors],
                                x.device if x is not None else None, error_text)
    inner, note = _forward_device_probe(ctx)
    problems += inner
    float_dtypes = Counter(_name(t.dtype) for _, t in tensors if t.is_floating_point())
    devices = sorted({str(t.device) for _, t in tensors})
    msg = (f"parameters and buffers {'/'.join(float_dtypes) or 'none floating'} on "
           f"{', '.join(devices) or 'no device'}")
    if x is not None:
        msg += f"; inputs {_name(x.dtype)} on {x.device}"
    if note:
        msg += f"; {note}"
    return report_problems(TITLE, problems, msg, param_dtypes=dict(float_dtypes), devices=devices,
                forward_device_check=note or "ran")


def dtype_problems(tensors, x, error_text: str) -> list[Problem]:
    """Mixed floating dtypes among parameters/buffers; floating input of another dtype."""
    out: list[Problem] = []
    counts = Counter(t.dtype for _, t in tensors if t.is_floating_point())
    crashed = any(w in error_text for w in _DTYPE_WORDS)
    dominant = counts.most_common(1)[0][0] if counts else None
    if len(counts) > 1:
        minority = [n for n, t in tensors if t.is_floating_point() and t.dtype != dominant]
        summary = ", ".join(f"{c:,} {_name(d)}" for d, c in counts.most_common())
        out.append(Problem(
            "fail" if crashed else "warn", "mixed-param-dtypes",
            f"parameters/buffers mix dtypes ({summary}); first of the minority: `{minority[0]}`"
            + (f" and forward fails: {error_text}" if crashed else
               " (fine only if kept that way on purpose, e.g. norm layers in float32)"),
            "Convert the whole model once (model.float()) and use torch.autocast for reduced "
            "precision.",
            {"dtype_counts": {_name(d): c for d, c in counts.items()},
             "minority": minority[:5]}))
    # Input against "the" parameter dtype only when the parameters agree on one: with mixed
    # parameters the crash is theirs, reported above, not a second cause.
    if x is not None and x.is_floating_point() and len(counts) == 1 and x.dtype != dominant:
        if error_text:  # a model that casts its input itself is fine
            out.append(Problem(
                "fail", "dtype-mismatch",
                f"inputs are {_name(x.dtype)} but the parameters are {_name(dominant)}: "
                f"{error_text or 'forward fails'}",
                f"Convert the batch: x = x.to(torch.{_name(dominant)}) (float64 usually comes "
                "from NumPy: torch.from_numpy(a).float()).",
                {"input_dtype": _name(x.dtype), "param_dtype": _name(dominant)}))
    return out


def err_mentions_any(text: str, words) -> bool:
    return any(w in text for w in words)


def device_problems(named_devices, input_device, error_text: str) -> list[Problem]:
    """Parameters/buffers on several devices; a batch on another device than the model."""
    out: list[Problem] = []
    devices = Counter(torch.device(d) for _, d in named_devices)
    crashed = err_mentions_any(error_text, _DEVICE_WORDS)
    if len(devices) > 1:
        main = devices.most_common(1)[0][0]
        strays = [n for n, d in named_devices if torch.device(d) != main]
        mixed_kinds = len({d.type for d in devices}) > 1
        out.append(Problem(
            "fail" if crashed or mixed_kinds else "warn", "device-mismatch",
            f"the model sits on {len(devices)} devices ({', '.join(str(d) for d in devices)}); "
            f"`{strays[0]}` is not on {main}"
            + ("" if crashed or mixed_kinds else " (fine for deliberate model parallelism)"),
            f"Move the whole model once: model.to('{main}') after building it (and after "
            "replacing any layer).",
            {"devices": {str(d): c for d, c in devices.items()}, "strays": strays[:5]}))
    elif devices and input_device is not None:
        model_device = next(iter(devices))
        if torch.device(input_device).type != model_device.type:
            out.append(Problem(
                "fail" if crashed else "warn", "device-mismatch",
                f"the batch is on {input_device} but the model on {model_device} (cvdoctor "
                "moved it; your loop has to)",
                f"Move each batch: x, y = x.to('{model_device}'), y.to('{model_device}')",
                {"input_device": str(input_device), "model_device": str(model_device)}))
    return out


def _forward_device_probe(ctx) -> tuple[list[Problem], str | None]:
    """Tensors created inside forward on a fixed device only break on a GPU: run there."""
    if not torch.cuda.is_available():
        return [], "devices of tensors created inside forward not checked (no GPU here)"
    base = ctx.fact("base")
    if ctx.device.type == "cuda":
        err = base.forward_error
        if err is not None and err_mentions_any(err.message, _DEVICE_WORDS):
            return [_inner_device(err.message, err.module)], None
        return [], None
    try:
        model = ctx.copy_model(train=False).to("cuda")
    except Exception as exc:  # noqa: BLE001
        return [], f"forward on the GPU not tried: {type(exc).__name__}: {exc}"
    tracer = Tracer(model)
    try:
        with rng_guard(ctx.seed), torch.no_grad(), tracer:
            call_model(model, to_device(ctx.spec.inputs, "cuda"))
    except Exception as exc:  # noqa: BLE001
        if err_mentions_any(str(exc), _DEVICE_WORDS):
            return [_inner_device(str(exc), tracer.innermost())], None
    finally:
        del model
    return [], None


def _inner_device(message: str, module: str | None) -> Problem:
    where = f" in `{module}`" if module else ""
    return Problem(
        "fail", "device-mismatch",
        f"forward creates or keeps a tensor on another device{where}: {message.splitlines()[0]}",
        "Create tensors inside forward on the input's device: torch.zeros(..., "
        "device=x.device), or register constants as buffers.",
        {"module": module})
