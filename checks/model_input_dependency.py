"""model.input_dependency: does the output depend on the input, sample by sample?

A network that returns the same answer whatever it is shown cannot learn: a dead layer, an
input that is overwritten or never read, a wrong slice. Measured in eval mode (dropout off,
BatchNorm on running statistics) on copies: zero the input, roll the samples, compare the rows
of the output; and, through the gradient of a fixed random projection of the outputs, find input
channels that reach nothing. A model whose last layer starts at zero (torchvision's ViT heads)
is constant at init and fine after one optimizer step, so a constant output is judged again
after one step of the user's optimizer before anything is reported; and a network whose fresh
BatchNorm layers (running variance 1) shrink its eval-mode output to a constant is judged again
with those layers holding the batch's statistics.
"""
from __future__ import annotations

import copy

from cvdoctor.finding import Finding, Problem, passed, report_problems, skipped
from cvdoctor.model.facts import eval_forward_failed
from cvdoctor.model.perturb import (batch_rows, calibrate_batchnorm, dead_input_channels,
                                    input_use, traced_forward)
from cvdoctor.model.tensors import iter_tensors
from cvdoctor.registry import register
from cvdoctor.text import plural

TITLE = "Outputs depend on the inputs"
RECIPES = ["output-ignores-input", "dead-gradients"]


@register("model.input_dependency", order=65, title=TITLE, recipes=RECIPES,
          needs=["eval_pass", "one_step", "module_trace", "first_conv"])
def check(ctx) -> Finding | list[Finding]:
    """Zeroes the inputs (rolls integer ones) and rolls the samples along the batch on an
    eval-mode copy and compares the outputs; sends the gradient of a fixed random projection of
    the outputs back to image-like inputs. A constant or input-blind output is judged again
    after one optimizer step (zero-initialized heads). Fails when the output ignores the input
    (named as dead layers when a module outputs all zeros for the whole batch) and when every
    sample of a batch of different samples gets the same output (within 1e-4 of its size).
    Warns when some input channels have exactly zero influence on the output (a wrong slice;
    fine if the model reads only some channels on purpose). Skips when the eval forward fails."""
    ep = ctx.fact("eval_pass")
    if ep.error is not None:
        return skipped(TITLE, eval_forward_failed(ep.error, ctx.spec), error=ep.error)
    n = ep.n
    if n is None or not ep.rows:
        return skipped(TITLE, "no floating-point output with the batch on its first axis")
    inputs, _ = ctx.batch()
    seed = ctx.seed
    model = ctx.copy_model(train=False)
    use = input_use(model, inputs, n, seed, ep.rows)
    evidence = {"zero_change": use.zero_change, "roll_change": use.roll_change,
                "output_scale": use.scale, "constant": use.constant}
    note = ""
    if use.ignores_input or use.constant:
        use, model, calibrated = _with_batchnorm_calibrated(use, model, inputs, n, seed)
        if calibrated:
            evidence["batchnorm_calibrated"] = calibrated[:20]
            if not (use.ignores_input or use.constant):
                note = (f"; at init the eval-mode output is the same for every input because "
                        f"{plural(len(calibrated), 'BatchNorm layer')} still "
                        f"{'has' if len(calibrated) == 1 else 'have'} untrained running "
                        f"statistics (mean 0, variance 1); with this batch's statistics the "
                        f"samples get different outputs")
    if use.ignores_input or use.constant:
        step = ctx.fact("one_step")
        if step.model is not None:
            stepped = copy.deepcopy(step.model).eval()
            rows = batch_rows(traced_forward(stepped, inputs, seed)[0], n)
            after = input_use(stepped, inputs, n, seed, rows)
            after, stepped, _ = _with_batchnorm_calibrated(after, stepped, inputs, n, seed)
            evidence.update(after_step={"zero_change": after.zero_change,
                                        "roll_change": after.roll_change,
                                        "constant": after.constant})
            if not (after.ignores_input or after.constant):
                note = (f"; at init every sample gets the same output, after one "
                        f"{type(step.optimizer).__name__} step they differ (a zero-initialized "
                        f"last layer)")
                use, model = after, stepped
        if use.ignores_input or use.constant:
            return report_problems(TITLE, [_blind(ctx, use, n, step)], "", **evidence)
    problems = []
    conv = ctx.fact("first_conv")
    try:
        # A first convolution that reads the batch as given mixes every channel into each of
        # its outputs: no channel can go unread, no gradient pass needed to show it.
        dead = [] if conv is not None and conv.reads_batch else \
            dead_input_channels(model, inputs, n, seed)
    except Exception as exc:  # noqa: BLE001 - e.g. a model that cannot backward in eval mode
        dead = []
        evidence["channel_probe_error"] = f"{type(exc).__name__}: {exc}"
    if dead:
        shapes = [tuple(t.shape) for t in iter_tensors(inputs)]
        what = "; ".join(f"channel{'s' if len(ch) > 1 else ''} {', '.join(map(str, ch[:8]))} "
                         f"of input {i} {shapes[i] if i < len(shapes) else ''}"
                         for i, ch in dead)
        problems.append(Problem(
            "warn", "output-ignores-input",
            f"{what} never reach the output: their gradient is exactly zero for every sample "
            "and position (a wrong slice such as x[:, :1], or a channel overwritten before use; "
            "fine only if the model reads those channels on purpose)",
            "Check the slicing and channel order where forward first touches the input; give "
            "the model only the channels it uses.",
            {"dead_channels": {str(i): ch for i, ch in dead}}))
        evidence["dead_channels"] = {str(i): ch for i, ch in dead}
    ok = (f"zeroing the input moves the outputs by up to {use.zero_change:.3g} (outputs up to "
          f"{use.scale:.3g}); the {n} samples get different outputs{note}")
    if problems:
        return report_problems(TITLE, problems, ok, **evidence)
    return passed(TITLE, ok, **evidence)


def _with_batchnorm_calibrated(use, model, inputs, n: int, seed: int):
    """(use, model, calibrated layers): judged again on a copy whose untrained BatchNorm layers
    hold this batch's statistics, when there are any; otherwise what was given."""
    calibrated_model = copy.deepcopy(model)
    try:
        calibrated = calibrate_batchnorm(calibrated_model, inputs, seed)
        if not calibrated:
            return use, model, []
        rows = batch_rows(traced_forward(calibrated_model, inputs, seed)[0], n)
        return input_use(calibrated_model, inputs, n, seed, rows), calibrated_model, calibrated
    except Exception:  # noqa: BLE001 - the train-mode pass failed: keep the eval judgement
        return use, model, []


def _blind(ctx, use, n: int, step) -> Problem:
    stepped = " (at init and after one optimizer step)" if step.model is not None else ""
    if use.ignores_input:
        rolled = " or rolling its samples" if use.roll_change is not None else ""
        what = f"zeroing the input{rolled} leaves every output as it was{stepped}"
    else:
        what = (f"all {n} samples get the same output although they differ{stepped} "
                f"(zeroing the input moves it by {use.zero_change:.3g})")
    dead = ctx.fact("module_trace").all_zero()
    if dead:
        return Problem(
            "fail", "dead-gradients",
            f"the output does not depend on the input: {what}; `{dead[0]}` outputs all zeros "
            f"for the whole batch (dead ReLUs), so nothing after it sees the input"
            + (f" ({plural(len(dead), 'module')} all zero)" if len(dead) > 1 else ""),
            "Re-initialize what feeds the dead layer (default init, no large negative bias), "
            "use LeakyReLU/GELU, or normalize the input.",
            {"all_zero_modules": dead[:10]})
    return Problem(
        "fail", "output-ignores-input",
        f"the output does not tell the samples apart: {what}"
        + (" (forward reads another tensor than its argument, overwrites it, or a layer "
           "collapses it to a constant)" if use.ignores_input else
           ": activations collapse (saturated tanh/sigmoid, a huge init) or one value is "
           "broadcast over the batch"),
        "Make forward compute each sample's output from that sample (no cached or global "
        "tensor in place of its argument); check init scales and normalization axes.",
        {})
