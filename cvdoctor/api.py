"""Python API: the same checks as the command line, returning a Report."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable

from cvdoctor.report import Report


def check_env(*, select: Iterable[str] | None = None, ignore: Iterable[str] | None = None,
              deep: bool = False, require_gpu: bool = False,
              checkpoint_dirs: Iterable[str | Path] = (), recorded: dict[str, Any] | None = None,
              progress: Callable[[str], None] | None = None) -> Report:
    """Run the `env` checks. `recorded` replaces gathered facts by name (tests, replays)."""
    from cvdoctor import runner
    from cvdoctor.facts import EnvContext, EnvOptions

    options = EnvOptions(deep=deep, require_gpu=require_gpu,
                         checkpoint_dirs=[Path(d) for d in checkpoint_dirs])
    ctx = EnvContext(options, recorded=recorded)
    try:
        return runner.run("env", ctx, select=select, ignore=ignore, target=None,
                          progress=progress)
    finally:
        ctx.close()


def check_model(model, batch=None, *, loss_fn=None, optimizer=None, num_classes=None,
                select: Iterable[str] | None = None, ignore: Iterable[str] | None = None,
                budget: float | None = None, device=None, training_step=None,
                optimizer_factory=None, input_shape=None, name: str | None = None,
                progress: Callable[[str], None] | None = None) -> Report:
    """Run the model checks on `model` with one `batch` = (inputs, targets).

    Nothing passed in is modified: every pass and every training step runs on copies, and the
    global RNG states are restored. Without a batch, one is synthesized from `input_shape`
    (C, H, W) and `num_classes`: normalized random images and balanced labels.
    """
    from cvdoctor.model.context import ModelSpec
    from cvdoctor.model.synth import synthesize_batch

    source = "given"
    if batch is None:
        if input_shape is None:
            raise ValueError("check_model needs a batch (inputs, targets) or input_shape=(C, H, W)")
        batch = synthesize_batch(input_shape, num_classes or 10)
        source = "synthesized"
    inputs, targets = batch
    spec = ModelSpec(model=model, inputs=inputs, targets=targets, loss_fn=loss_fn,
                     training_step=training_step, optimizer=optimizer,
                     optimizer_factory=optimizer_factory, num_classes=num_classes,
                     input_shape=tuple(input_shape) if input_shape else None,
                     name=name or type(model).__name__, batch_source=source,
                     loss_source="training_step" if training_step else
                     ("given" if loss_fn is not None else "default"))
    return run_model_spec(spec, select=select, ignore=ignore, budget=budget, device=device,
                          progress=progress)


def run_model_spec(spec, *, select=None, ignore=None, budget=None, device=None, progress=None,
                   target=None) -> Report:
    """Run the model checks on a loaded `ModelSpec` (what `cvdoctor model` loads from a file)."""
    ctx = model_context(spec, budget=budget, device=device, progress=progress)
    return run_model_context(ctx, select=select, ignore=ignore, target=target)


def model_context(spec, *, budget=None, device=None, progress=None):
    """A context whose shared forward/backward pass serves every later run on it: for callers
    that run checks one at a time (the pytest plugin's generated items)."""
    from cvdoctor.model.context import ModelContext

    return ModelContext(spec, device=device, budget_s=budget, progress=progress)


def run_model_context(ctx, *, select=None, ignore=None, target=None) -> Report:
    from cvdoctor import runner

    return runner.run("model", ctx, select=select, ignore=ignore,
                      target=target if target is not None else ctx.spec.name,
                      progress=ctx.progress)
