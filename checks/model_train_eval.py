"""model.train_eval: the mode the model came in, and whether eval mode really is eval mode.

Eval mode must be deterministic (dropout off) and per-sample (BatchNorm on running statistics).
Two eval forwards with different seeds expose dropout wired on; a spy on F.batch_norm/F.dropout
names the module that runs them in training mode. Mixing through `view`/`permute` is
model.batch_independence's finding; batch statistics are this check's.
"""
from __future__ import annotations

from torch import nn

from cvdoctor.finding import Finding, failed, passed, skipped, warned
from cvdoctor.model.facts import eval_forward_failed
from cvdoctor.model.perturb import (batch_rows, first_random_module, measure_dependence, moved,
                                    row_change, traced_forward)
from cvdoctor.model.tensors import batch_size
from cvdoctor.registry import register
from cvdoctor.text import quoted_names

TITLE = "Train/eval mode behaviour"
RECIPES = ["model-in-eval-mode", "eval-nondeterministic", "eval-batch-dependent"]


@register("model.train_eval", order=80, title=TITLE, recipes=RECIPES,
          needs=["eval_pass", "base"])
def check(ctx) -> Finding | list[Finding]:
    """Reads the mode the model came in and runs two eval-mode forwards of the same batch
    under different seeds with a spy on F.dropout/F.batch_norm. Warns when the model was
    handed over in eval mode; fails when eval outputs differ between the two runs (dropout
    with training=True, random ops ungated) and when a module normalizes with batch statistics
    in eval mode (outputs depend on the rest of the batch). Notes, without a finding, when
    train and eval outputs are identical despite dropout/BatchNorm modules."""
    user_model = ctx.spec.model
    findings: list[Finding] = []
    notes: list[str] = []

    if not user_model.training:
        findings.append(warned(
            TITLE, "the model was handed over in eval mode (model.training is False): "
            "training it like this keeps BatchNorm statistics frozen and dropout off; harmless "
            "only if the training loop calls model.train() first",
            "Call `model.train()` at the start of every training epoch (and `model.eval()` "
            "before validation).", "model-in-eval-mode"))
    else:
        in_eval = [n for n, m in user_model.named_modules() if n and not m.training
                   and _is_mode_dependent(m)]
        if in_eval:
            notes.append(f"{len(in_eval)} dropout/norm modules are kept in eval mode inside a "
                         f"training model ({quoted_names(in_eval)}; frozen BatchNorm, taken as "
                         f"intentional)")

    inputs, _ = ctx.batch()
    n = batch_size(inputs)
    if n is None:
        return findings or skipped(TITLE, "the inputs carry no tensor with a batch axis")
    model = ctx.copy_model(train=False)
    seed = ctx.seed
    first = ctx.fact("eval_pass")  # the batch under ctx.seed, forwarded once for several checks
    try:
        if first.error is not None:
            raise RuntimeError(first.error)
        out2, _ = traced_forward(model, inputs, seed + 1)
    except Exception as exc:  # noqa: BLE001 - model.forward reports forward errors
        error = first.error or f"{type(exc).__name__}: {exc}"
        return findings or skipped(TITLE, eval_forward_failed(error, ctx.spec), error=error)
    out1, out2 = first.rows, batch_rows(out2, n)
    if not out1:
        return findings or skipped(TITLE, f"no floating-point output with the batch ({n}) on "
                                   f"its first axis to compare")

    change, scale = row_change(out1, out2, list(range(n)))
    if moved(change, scale) or first.dropout:
        findings.append(_nondeterministic(model, inputs, n, seed, first, change, scale))

    if first.batch_stats:
        findings.append(_batch_dependent(ctx, model, inputs, n, seed, first))

    if findings:
        return findings
    notes.append(_train_vs_eval(ctx, inputs, n, seed, out1))
    return passed(TITLE, "; ".join(x for x in ["eval mode is deterministic and uses running "
                                               "statistics"] + notes if x),
                  eval_change_between_seeds=change)


def _is_mode_dependent(m: nn.Module) -> bool:
    return isinstance(m, (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._BatchNorm))


def _nondeterministic(model, inputs, n, seed, first, change, scale) -> Finding:
    if first.dropout:
        where = ", ".join(f"`{m}` (p={p:g})" for m, p in first.dropout[:3])
        cause = f"dropout runs with training=True in eval mode in {where}"
    else:
        culprit = first_random_module(model, inputs, seed)
        cause = (f"`{culprit}` gives a different output for the same input"
                 if culprit else "random ops run in the forward code")
    return failed(
        TITLE, f"two eval-mode forwards of the same batch differ by up to {change:.3g} "
        f"({change / max(scale, 1e-12):.0%} of the output): {cause}",
        "Pass `training=self.training` to F.dropout (its default is True) or use nn.Dropout; "
        "gate custom noise on `if self.training:`.", "eval-nondeterministic",
        change=change, dropout_modules=[m for m, _ in first.dropout])


def _batch_dependent(ctx, model, inputs, n, seed, first) -> Finding:
    kinds = []
    for name in first.batch_stats:
        m = model.get_submodule(name) if name != "<root>" else model
        detail = type(m).__name__
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not m.track_running_stats:
            detail += ", track_running_stats=False"
        kinds.append(f"`{name}` ({detail})")
    measured = ""
    evidence = dict(modules=first.batch_stats)
    if n >= 2:
        dep = measure_dependence(model, inputs, n, 0, seed)
        evidence.update(change=dep.change, scale=dep.scale)
        if dep.mixed:
            measured = (f"; changing only sample 0 moves the other outputs by up to "
                        f"{dep.change:.3g}")
    return failed(
        TITLE, f"eval-mode outputs depend on the rest of the batch: {', '.join(kinds[:3])} "
        f"normalize with batch statistics in eval mode{measured}",
        "Keep `track_running_stats=True` and call F.batch_norm with `training=self.training`; "
        "for tiny batches use GroupNorm instead.", "eval-batch-dependent", **evidence)


def _train_vs_eval(ctx, inputs, n, seed, eval_rows) -> str:
    model = ctx.spec.model
    dropouts = [m for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd)
                and m.p > 0]
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not dropouts and not norms:
        return ""
    base = ctx.fact("base")  # the shared train-mode forward of this batch, same seed
    try:
        if base.outputs is not None:
            train_rows = batch_rows(base.outputs, n)
        else:
            train_rows = batch_rows(traced_forward(ctx.copy_model(train=True), inputs, seed)[0], n)
    except Exception:  # noqa: BLE001 - a train-mode-only failure is model.forward's business
        return ""
    change, scale = row_change(eval_rows, train_rows, list(range(n)))
    if moved(change, scale):
        return f"train and eval outputs differ by up to {change:.3g}, as they should"
    return (f"note: train and eval outputs are identical although the model has "
            f"{len(dropouts)} Dropout and {len(norms)} BatchNorm modules: check that forward "
            f"uses them")
