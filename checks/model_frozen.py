"""model.frozen: do the parameters that must stay frozen stay frozen?

Fine-tuning with a frozen backbone fails quietly when the backbone is not frozen after all: its
parameters still require grad and sit in the optimizer, or its BatchNorm layers keep updating
their running statistics in train mode. The user names what must stay frozen (`frozen = [...]`
globs, see cvdoctor.model.frozen); parameters with requires_grad=False count as frozen as well.
"""
from __future__ import annotations

from cvdoctor.finding import Finding, Problem, report_problems, skipped
from cvdoctor.model.frozen import frozen_set, moved_after_step, norm_drift, parse_frozen
from cvdoctor.registry import register
from cvdoctor.text import fmt_int, plural, quoted_names

TITLE = "Frozen parameters stay frozen"
RECIPES = ["frozen-params-moved", "frozen-bn-drift", "frozen-name-unmatched"]


@register("model.frozen", order=75, title=TITLE, recipes=RECIPES, needs=["one_step"])
def check(ctx) -> Finding | list[Finding]:
    """Compares every frozen parameter (named by the `frozen` globs, or requires_grad=False)
    of the user's model with a copy after the shared pass and one step of the user's optimizer,
    and runs one train-time forward (the user's module modes) to watch the running statistics
    of BatchNorm layers under the globs. Fails when a frozen parameter changes (still trainable
    and in the optimizer, or modified in place) and when a BatchNorm layer named frozen updates
    its statistics; warns on a glob that matches no parameter or module. Skips when nothing is
    frozen."""
    patterns = parse_frozen(ctx.option("frozen"))
    model = ctx.spec.model
    fs = frozen_set(model, patterns)
    problems: list[Problem] = []
    if fs.unmatched:
        problems.append(Problem(
            "warn", "frozen-name-unmatched",
            f"frozen {quoted_names(fs.unmatched)} match{'es' if len(fs.unmatched) == 1 else ''} "
            f"no parameter or module name (a typo, or a renamed module; names look like "
            f"{quoted_names([n for n, _ in model.named_parameters()][:2], 2)})",
            "Use the names model.named_parameters() prints, e.g. frozen = [\"backbone.*\"].",
            {"unmatched": fs.unmatched}))
    if not fs.all:
        if problems:
            return report_problems(TITLE, problems, "")
        return skipped(TITLE, "nothing is frozen: no parameter has requires_grad=False and no "
                       "`frozen` names were given (frozen = [\"backbone.*\"] in the model file, "
                       "--frozen, or check_model(..., frozen=[...]))")
    sizes = dict((n, p.numel()) for n, p in model.named_parameters())
    evidence: dict = {"declared": len(fs.declared), "requires_grad_false": len(fs.no_grad),
                      "patterns": list(patterns or ())}
    step = ctx.fact("one_step")
    stepped = step.model
    note = ""
    if stepped is None:
        note = f"; not stepped ({step.error})"
    else:
        moved = moved_after_step(model, stepped, fs.all)
        if moved:
            problems.append(_moved(model, step, moved, fs, sizes))
    named_norms = fs.norms
    drift_note = ""
    if named_norms:
        drifts, how = norm_drift(ctx, named_norms)
        if drifts:
            mods = list(dict.fromkeys(d.module for d in drifts))
            worst = max(drifts, key=lambda d: d.change)
            problems.append(Problem(
                "fail", "frozen-bn-drift",
                f"{plural(len(mods), 'BatchNorm layer')} named frozen ({quoted_names(mods)}) "
                f"update their running statistics in one training forward ({how}): "
                f"`{worst.module}.{worst.buffer}` moves by {worst.change:.3g}, so the frozen "
                "part still changes and its outputs drift from what it was trained with",
                "Put the frozen BatchNorm layers in eval mode after every model.train(): "
                "`model.train(); model.backbone.eval()` (or replace them with "
                "torchvision.ops.FrozenBatchNorm2d).",
                {"drifting_norms": mods[:20], "modes": how}))
        else:
            drift_note = (f"; {plural(len(named_norms), 'BatchNorm layer')} named frozen keep "
                          f"their running statistics")
    else:
        drift_note = _unnamed_norms_note(model, fs)
    total = sum(sizes[n] for n in fs.all)
    ok = (f"{plural(len(fs.all), 'frozen parameter tensor')} ({fmt_int(total)} parameters: "
          f"{len(fs.declared)} named frozen, {len(fs.no_grad)} with requires_grad=False) "
          f"{'are' if len(fs.all) != 1 else 'is'} bit-identical after one optimizer step"
          f"{drift_note}{note}")
    return report_problems(TITLE, problems, ok, **evidence)


def _moved(model, step, moved: list[str], fs, sizes) -> Problem:
    in_opt = {id(p) for g in step.optimizer.param_groups for p in g["params"]}
    params = dict(step.model.named_parameters())
    trainable = [n for n in moved if params[n].requires_grad and id(params[n]) in in_opt]
    why = (f"{'it' if len(moved) == 1 else 'they'} still require grad and sit in the optimizer"
           if len(trainable) == len(moved) else
           "changed in place outside the optimizer (forward, a hook or a buffer update)"
           if not trainable else
           f"{len(trainable)} still require grad and sit in the optimizer, the others changed "
           "in place")
    n = sum(sizes[m] for m in moved)
    declared = set(fs.declared)
    named = [m for m in moved if m in declared]
    what = "named frozen" if len(named) == len(moved) else (
        "with requires_grad=False" if not named else "frozen")
    return Problem(
        "fail", "frozen-params-moved",
        f"{plural(len(moved), 'parameter tensor')} {what} ({fmt_int(n)} parameters, "
        f"{quoted_names(moved)}) changed after one {type(step.optimizer).__name__} step: {why}",
        "Freeze them before building the optimizer: `for p in model.backbone.parameters(): "
        "p.requires_grad_(False)`, then pass only trainable parameters to the optimizer.",
        {"moved": moved[:50], "trainable_in_optimizer": trainable[:50]})


def _unnamed_norms_note(model, fs) -> str:
    """BatchNorm layers whose parameters are all requires_grad=False still update their
    statistics in train mode; that is a choice (statistics adapting to new data), so it is
    named, not judged, unless the user declares them frozen."""
    no_grad = set(fs.no_grad)
    frozen_bn = [n for n, m in model.named_modules() if n and m.training
                 and getattr(m, "track_running_stats", False)
                 and any(True for _ in m.parameters(recurse=False))
                 and all(f"{n}.{p}" in no_grad for p, _ in m.named_parameters(recurse=False))
                 and type(m).__name__.startswith("BatchNorm")]
    if not frozen_bn:
        return ""
    return (f"; note: {plural(len(frozen_bn), 'BatchNorm layer')} with frozen weights "
            f"({quoted_names(frozen_bn, 2)}) still update their running statistics in train "
            "mode (name them in frozen = [...] to have that checked)")
