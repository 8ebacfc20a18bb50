"""`cvdoctor model TARGET`: load the user's model and batch, run the model checks, print a report.

Imports nothing heavy at module level: `cvdoctor explain` shares the command group and must stay
torch-free. torch is imported inside the command.
"""
from __future__ import annotations

import contextlib
import sys

import click

from cvdoctor import exitcodes
from cvdoctor.cli import Progress, _emit_report, _stderr, common_options


@click.command("model")
@click.argument("target")
@common_options
@click.option("--input-shape", metavar="C,H,W",
              help="Input size for a synthesized batch (e.g. 3,32,32); also sizes zoo models.")
@click.option("--num-classes", type=click.IntRange(min=1), metavar="N",
              help="Number of classes in your data (head size for zoo models).")
@click.option("--batch-size", type=click.IntRange(min=1), metavar="B",
              help="Samples per batch: size of a synthesized batch, or keep the first B of yours.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None,
              help="Where to run the checks (default: where the model's parameters are).")
@click.option("--budget", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="Time cap for the slow checks (overfitting one batch).")
@click.option("--model", "model_name", metavar="NAME",
              help="Attribute or factory in the file that gives the model (default: build_model, "
                   "get_model, create_model, model).")
def model(target, select, ignore, as_json, verbose, strict, input_shape, num_classes,
          batch_size, device, budget, model_name):
    """Check a model before training: data, dtypes, forward, outputs, loss at init, gradients,
    optimizer, batch independence, train/eval, and overfitting one batch.

    \b
    TARGET is one of:
      path/to/train.py            a file with build_model()/model, get_batch()/train_loader,
                                  loss_fn/criterion or training_step, build_optimizer/optimizer
      package.module:attr         the same, from an importable module (attr: the model)
      torchvision:resnet18        a zoo model with random weights and its own input size
      timm:vit_tiny_patch16_224
    """
    from cvdoctor.model.loader import LoadOptions, TargetError, load_target, parse_input_shape
    from cvdoctor.registry import SelectionError

    progress = Progress(verbose or sys.stderr.isatty())
    # The user's code may print: keep stdout for the report alone.
    with contextlib.redirect_stdout(sys.stderr):
        try:
            options = LoadOptions(input_shape=parse_input_shape(input_shape),
                                  num_classes=num_classes, batch_size=batch_size,
                                  model_name=model_name)
            if device == "cuda":
                import torch

                if not torch.cuda.is_available():
                    raise TargetError("--device cuda: torch sees no CUDA device here "
                                      "(see `cvdoctor env`)")
            progress(f"loading {target} ...")
            spec = load_target(target, options)
        except TargetError as exc:
            # Loader messages that already start with the target need not repeat it.
            detail = str(exc).removeprefix(f"{target}: ")
            _stderr(f"cvdoctor: cannot load {target}: {detail}")
            sys.exit(exitcodes.USAGE)
        from cvdoctor.api import run_model_spec

        try:
            report = run_model_spec(spec, select=select, ignore=ignore, budget=budget,
                                    device=device, progress=progress, target=target)
        except SelectionError as exc:
            raise click.UsageError(str(exc))
    sys.exit(_emit_report(report, as_json=as_json, verbose=verbose, strict=strict))
