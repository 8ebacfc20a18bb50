"""model.batch_independence: in eval mode, output i must not depend on input j != i.

Perturb one sample and look at the other rows of the output. Every forward is reseeded with the
same seed (dropout wired on in eval draws the same mask each time) and runs on an eval copy, so
BatchNorm uses running statistics and the difference is exactly zero on a healthy model; a rerun
of the unchanged batch gives the noise floor.
"""
from __future__ import annotations

from cvdoctor.finding import Finding, failed, passed, skipped, warned
from cvdoctor.model.facts import eval_forward_failed
from cvdoctor.model.perturb import (batch_rows, first_mixing_module, measure_dependence,
                                    row_change, traced_forward)
from cvdoctor.model.tensors import batch_size
from cvdoctor.model.trace import ROOT
from cvdoctor.registry import register
from cvdoctor.text import quoted_names

TITLE = "Samples stay independent in eval mode"
RECIPES = ["batch-mixing", "eval-batch-dependent"]


def _prepare(ctx):
    """An eval copy and the inputs, or a skip finding."""
    if ctx.spec.training_step is not None and ctx.spec.inputs is None:
        return None, None, skipped(TITLE, "no model inputs to perturb (training_step only)")
    inputs, _ = ctx.batch()
    n = batch_size(inputs)
    if n is None:
        return None, None, skipped(TITLE, "the inputs carry no tensor with a batch axis")
    if n < 2:
        return None, None, skipped(TITLE, "batch of 1: there is no other sample to mix with")
    model = ctx.copy_model(train=False)
    return model, inputs, None


@register("model.batch_independence", order=85, title=TITLE, recipes=RECIPES,
          needs=["eval_pass"])
def check(ctx) -> Finding:
    """Perturbs sample 0 of the batch on an eval-mode copy and measures how far the other
    rows of the output move (beyond 1e-4 of their size and 10x a rerun's noise), confirmed by
    perturbing the last sample. Fails when samples mix (a view/permute over the batch axis,
    naming the first module where they do); warns when they mix through batch statistics in
    eval mode (model.train_eval reports that cause). Skips a batch of one."""
    model, inputs, skip = _prepare(ctx)
    if skip:
        return skip
    n = batch_size(inputs)
    seed = ctx.seed
    first = ctx.fact("eval_pass")  # the unchanged batch, forwarded once for several checks
    if first.error is not None:
        return skipped(TITLE, eval_forward_failed(first.error, ctx.spec), error=first.error)
    base = first.rows
    if not base:
        return skipped(TITLE, f"no floating-point output with the batch ({n}) on its first axis "
                       f"to compare")

    # Perturb the first sample; only if other rows move, measure the noise floor (a rerun of the
    # same batch) and confirm with the last sample: a real mix shows in both.
    noise = 0.0
    dep = measure_dependence(model, inputs, n, 0, seed, baseline=base)
    if dep.mixed:
        again, _ = traced_forward(model, inputs, seed)
        noise, _ = row_change(base, batch_rows(again, n), list(range(n)))
        dep.noise = noise
    if dep.mixed:
        confirm = measure_dependence(model, inputs, n, n - 1, seed, baseline=base, noise=noise)
        if not confirm.mixed:
            return passed(TITLE, f"changing sample 0 moved other outputs by {dep.change:.2g} "
                          f"but changing sample {n - 1} did not: taken as numerical noise",
                          change=dep.change, noise=noise, unconfirmed=True)
    else:
        if dep.self_change == 0:
            return passed(TITLE, f"changing sample 0 leaves the other {n - 1} outputs exactly "
                          f"as they were (it does not change its own output either: the model "
                          f"may ignore its input)", change=dep.change, noise=noise)
        return passed(TITLE, f"changing sample 0 leaves the other {n - 1} outputs unchanged "
                      f"(max change {dep.change:.2g}, noise {noise:.2g})",
                      change=dep.change, noise=noise)

    module, input_mixed = first_mixing_module(model, inputs, n, 0, seed)
    rel = dep.change / max(dep.scale, 1e-12)
    evidence = dict(change=dep.change, relative_change=rel, noise=noise, first_module=module,
                    input_already_mixed=input_mixed, batch_stat_modules=first.batch_stats)
    measured = (f"changing only sample 0 moves the other outputs by up to {dep.change:.3g} "
                f"({rel:.0%} of their size)")
    if first.batch_stats and (module is None or _related(module, first.batch_stats)):
        return warned(
            TITLE, f"{measured}, through batch statistics in eval mode "
            f"({quoted_names(first.batch_stats)}); model.train_eval reports the cause",
            "Let BatchNorm use its running statistics in eval (no `training=True` in "
            "F.batch_norm, keep track_running_stats=True).", "eval-batch-dependent", **evidence)
    if module is None:
        where = "in the model's own forward code (a view/reshape/permute over the batch axis)"
    elif input_mixed:
        where = (f"samples are already mixed when they reach `{module}`: a view/reshape/permute "
                 f"over the batch axis in the forward code before it")
    else:
        where = f"`{module}` ({type(model.get_submodule(module)).__name__}) mixes them"
    return failed(
        TITLE, f"{measured}: {where}",
        "Flatten per sample: `x.flatten(1)` or `x.reshape(x.shape[0], -1)`, and permute only "
        "non-batch axes.", "batch-mixing", **evidence)


def _related(module: str, names: list[str]) -> bool:
    """`module` is, contains or sits inside one of `names` (the root's own forward code
    contains every module)."""
    return any(m == ROOT or module == m or module.startswith(m + ".") or m.startswith(module + ".")
               for m in names)
