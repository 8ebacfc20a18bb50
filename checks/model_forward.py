"""model.forward: do the forward pass and the loss run at all?

Any exception is a `fail` naming the module that was running, matched to a recipe by the same
matcher `cvdoctor explain` uses; errors no recipe knows get the generic `forward-error` recipe.
"""
from __future__ import annotations

from cvdoctor.catalog import recipe_for_error
from cvdoctor.finding import failed, passed
from cvdoctor.model.context import DEEPCOPY_FAILED, TO_DEVICE_FAILED
from cvdoctor.model.facts import main_output
from cvdoctor.registry import register

TITLE = "Forward pass and loss"
GENERIC = "forward-error"
RECIPES = [GENERIC, "device-mismatch"]


# The explain matcher can land on any recipe with error patterns: error_recipes=True.
@register("model.forward", order=30, title=TITLE, recipes=RECIPES, needs=["base"],
          error_recipes=True)
def check(ctx):
    """Runs (through the shared pass) the forward and the loss on a train-mode copy. Fails when
    either raises, naming the module that was running and the recipe the error text matches
    (the explain matcher), or when the model cannot be copied or moved to the device; passes
    with the output shape, the loss and the time."""
    base = ctx.fact("base")
    err, stage = ((base.forward_error, "forward") if base.forward_error is not None
                  else (base.loss_error, "loss") if base.loss_error is not None else (None, None))
    if err is None:
        out = main_output(base)
        shape = f"outputs {tuple(out.shape)}, " if out is not None else ""
        how = "training_step" if ctx.spec.training_step is not None else "forward and loss"
        loss = f"loss {base.loss:.4g}" if base.loss is not None else "loss not a number"
        compiled = ("; the model came torch.compile'd: every check runs the module it wraps "
                    "(same parameters, eager mode)" if ctx.spec.compiled else "")
        return passed(TITLE, f"{how} ran: {shape}{loss} in {base.seconds:.2f} s{compiled}",
                      seconds=round(base.seconds, 4), compiled=ctx.spec.compiled)
    if err.module == DEEPCOPY_FAILED:
        return failed(TITLE, f"cvdoctor cannot copy the model (copy.deepcopy raised {err.text}); "
                      "it never touches the original, so no check can run",
                      "Make the model deep-copyable (no open files, locks or generators as "
                      "attributes).", GENERIC, error=err.text, traceback=err.traceback)
    if err.module == TO_DEVICE_FAILED:
        return failed(TITLE, f"the model or the batch cannot be moved to {ctx.device}: "
                      f"{err.text[:240]}",
                      f"Put the model and every batch on one device: model.to('{ctx.device}'), "
                      f"x.to('{ctx.device}'); meta tensors need real weights first.",
                      "device-mismatch", error=err.text, traceback=err.traceback)
    recipe, matched = _recipe_for(err)
    if stage == "loss":
        where = "in the loss"
        if ctx.spec.loss_fn is not None:
            where += f" ({getattr(ctx.spec.loss_fn, '__name__', type(ctx.spec.loss_fn).__name__)})"
    elif err.module and err.module != "<root>":
        where = f"in module `{err.module}` ({_module_type(ctx, err.module)})"
    else:
        where = "in the model's forward" if ctx.spec.training_step is None else "in training_step"
    first_line = err.message.splitlines()[0] if err.message else ""
    fix = (f"See `cvdoctor explain {recipe}`; the traceback in the evidence (-v) shows the line."
           if recipe != GENERIC else
           "Read the last frames of the traceback (-v) and fix that line; run "
           "`cvdoctor explain` on the full error text.")
    return failed(TITLE, f"{stage} raised {err.type} {where}: {first_line}", fix, recipe,
                  stage=stage, error=err.text, module=err.module, matched=matched,
                  traceback=err.traceback)


def _recipe_for(err) -> tuple[str, str | None]:
    match = recipe_for_error(err.text, err.traceback)
    return (match.recipe, match.matched_text) if match else (GENERIC, None)


def _module_type(ctx, name: str) -> str:
    try:
        return type(ctx.spec.model.get_submodule(name)).__name__
    except Exception:  # noqa: BLE001
        return "?"
