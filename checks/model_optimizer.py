"""model.optimizer: does the optimizer hold every trainable parameter, and does a step move them?

Coverage is judged on the user's optimizer instance by identity (`id()` of each parameter); the
step runs on a copy with the optimizer rebuilt by `ctx.build_optimizer`.
"""
from __future__ import annotations

import torch

from cvdoctor.finding import Finding, failed, passed, skipped, warned
from cvdoctor.model.modules import (held_by_optimizer, module_names, no_gradient, param_owners,
                                    run_before_all)
from cvdoctor.registry import register
from cvdoctor.text import fmt_int, plural, quoted_names as name_list

TITLE = "Optimizer covers and moves the parameters"
RECIPES = ["optimizer-missing-params", "optimizer-stale-params", "params-not-updating"]


@register("model.optimizer", order=70, title=TITLE, recipes=RECIPES,
          needs=["one_step", "base", "module_trace"])
def check(ctx) -> Finding | list[Finding]:
    """Matches the optimizer's parameters with the model's by identity and takes one step with
    the rebuilt optimizer on a copy of the shared pass. Fails when trainable parameters that get
    gradients are missing from the optimizer (a head replaced after it was built) and when no
    parameter with a gradient moves because every group has lr=0. Warns instead when the
    missing ones all run before everything the optimizer holds (a feature extractor left out of
    the optimizer but not frozen: its gradients are computed for nothing). Trainable
    parameters outside the optimizer that get no gradient (run under `torch.no_grad()`) are
    frozen in effect and only named in the note. Warns on tensors the optimizer holds that are
    not in the model, and on parameters with a gradient that stay bit-identical after the step
    (lost below float precision, or one lr=0 group)."""
    spec = ctx.spec
    model = spec.model
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if not trainable:
        return skipped(TITLE, "the model has no trainable parameters (model.gradients reports it)")

    findings: list[Finding] = []
    idle = _outside_without_gradient(ctx, trainable)
    if spec.optimizer is not None:
        source = f"the given {type(spec.optimizer).__name__}"
        findings.extend(_coverage(ctx, trainable, idle))
    elif spec.optimizer_factory is not None:
        source = "the optimizer built by the given factory (it gets all parameters)"
    else:
        source = "no optimizer given: the default Adam(lr=1e-3)"

    missing = {p for f in findings if f.recipe == "optimizer-missing-params"
               for p in f.evidence.get("parameters", [])}
    moved = _step_moves(ctx, trainable, skip=missing)
    if isinstance(moved, Finding):
        if moved.is_problem or not findings:  # a pass/skip note adds nothing next to a problem
            findings.append(moved)
    if findings:
        for f in findings:
            f.evidence.setdefault("optimizer_source", source)
        return findings
    held = len(trainable) - len(idle)
    note = ""
    if idle:
        names = module_names(model, idle)
        note = (f"; {name_list(names)} ({plural(len(idle), 'tensor')}) "
                f"{'is' if len(names) == 1 else 'are'} outside it and get no gradient "
                f"(run under `torch.no_grad()` or unused): frozen in effect, "
                f"`requires_grad_(False)` would say so")
    return passed(TITLE, f"{source}: holds all {held} {'other ' if idle else ''}trainable "
                  f"tensors and one step moves every one that has a gradient ({moved}){note}",
                  optimizer_source=source, outside_without_gradient=sorted(idle))


def _outside_without_gradient(ctx, trainable) -> set[str]:
    """Trainable parameters the user's optimizer does not hold and that get no gradient."""
    held = held_by_optimizer(ctx.spec.model, ctx.spec.optimizer)
    base = ctx.fact("base")
    if held is None or not base.ok:  # without a backward, no gradient is known to be missing
        return set()
    return {n for n in trainable if n not in held and no_gradient(base.grads.get(n))}


def _coverage(ctx, trainable, idle: set[str]) -> list[Finding]:
    model, opt = ctx.spec.model, ctx.spec.optimizer
    in_opt = {id(p): (gi, p) for gi, g in enumerate(opt.param_groups) for p in g["params"]}
    by_id = {id(p): n for n, p in model.named_parameters()}
    loss_params = set()
    loss_fn = ctx.spec.loss_fn
    if isinstance(loss_fn, torch.nn.Module):  # learnable loss terms belong in the optimizer too
        loss_params = {id(p) for p in loss_fn.parameters()}

    # A trainable parameter outside the optimizer that gets no gradient cannot train either way
    # (a backbone run under torch.no_grad()): frozen in effect, the pass note names it.
    missing = [n for n, p in trainable.items() if id(p) not in in_opt and n not in idle]
    stale = [(gi, p) for pid, (gi, p) in in_opt.items() if pid not in by_id and
             pid not in loss_params]
    n_trainable = sum(p.numel() for p in trainable.values())
    out: list[Finding] = []
    stale_desc = [f"group {gi}: {tuple(p.shape)}" for gi, p in stale]
    n_stale = sum(p.numel() for _, p in stale)

    if missing:
        owners = param_owners(model)
        names = module_names(model, set(missing))
        n_missing = sum(trainable[n].numel() for n in missing)
        replaced = (f"; the optimizer instead holds {plural(len(stale), 'tensor')} "
                    f"({fmt_int(n_stale)} parameters) that are no longer in the model: "
                    f"replaced after the optimizer was built" if stale else "")
        held = {owners.get(n, "") for n, p in trainable.items() if id(p) in in_opt}
        # Parameters held by the root itself (a ViT's cls_token and pos_embed) are read somewhere
        # in its forward, not at a place the module trace shows: they count only when nothing
        # else is missing.
        missing_owners = {owners.get(n, "") for n in missing}
        if len(missing_owners) > 1:
            missing_owners.discard("")
        trace = ctx.fact("module_trace")
        if not stale and not trace.error and run_before_all(trace.order, missing_owners, held):
            out.append(warned(
                TITLE, f"{name_list(names)} ({plural(len(missing), 'tensor')}, "
                f"{fmt_int(n_missing)} of {fmt_int(n_trainable)} trainable parameters) "
                f"{'is' if len(names) == 1 else 'are'} not in the optimizer but get gradients "
                f"every step: the optimizer trains only what runs after "
                f"{'it' if len(names) == 1 else 'them'}, so the gradients are computed for "
                f"nothing (a feature extractor left trainable)",
                "If only the later layers should train, freeze the rest: "
                "`requires_grad_(False)` (or run it under `torch.no_grad()`); if everything "
                "should train, build the optimizer from `model.parameters()`.",
                "optimizer-missing-params", modules=names, parameters=missing,
                missing_parameters=n_missing, upstream=True))
            return out
        out.append(failed(
            TITLE, f"{name_list(names)} ({plural(len(missing), 'tensor')}, "
            f"{fmt_int(n_missing)} of {fmt_int(n_trainable)} trainable parameters) "
            f"{'is' if len(names) == 1 else 'are'} not in the optimizer: they get gradients "
            f"but never change{replaced}",
            "Build the optimizer after the last change to the model (replacing the head, "
            "unfreezing): `optimizer = Adam(model.parameters(), ...)` at the end.",
            "optimizer-missing-params", modules=names, parameters=missing,
            missing_parameters=n_missing, stale=stale_desc, stale_parameters=n_stale))
    elif stale:
        out.append(warned(
            TITLE, f"the optimizer holds {plural(len(stale), 'tensor')} "
            f"({fmt_int(n_stale)} parameters) that are not in the model "
            f"({', '.join(stale_desc[:3])}); fine only if it also trains another module on "
            f"purpose (a discriminator, a learnable loss)",
            "Rebuild the optimizer from the model you train: `Adam(model.parameters(), ...)`.",
            "optimizer-stale-params", stale=stale_desc, stale_parameters=n_stale))
    return out


def _step_moves(ctx, trainable, skip: set[str]) -> Finding | str:
    """One step on a copy: trainable params with a non-zero gradient must change.

    The copy starts from the shared base pass (its weights and gradients), so the step costs no
    extra forward/backward unless the optimizer needs a closure (the "one_step" fact).
    """
    step = ctx.fact("one_step")
    if step.model is None:
        return skipped(TITLE, f"no step to judge: {step.error}")
    opt, before = step.optimizer, step.before
    params = dict(step.model.named_parameters())
    with_grad = {n for n in step.with_grad if n in trainable}
    lr_of = {}
    for gi, g in enumerate(opt.param_groups):
        for p in g["params"]:
            lr_of[id(p)] = (gi, g.get("lr"), g.get("initial_lr"))
    judged = [n for n in with_grad if n not in skip]
    frozen_moves = [n for n in judged if torch.equal(before[n], params[n].detach())]
    if not judged:
        return skipped(TITLE, "no trainable parameter has a non-zero finite gradient "
                       "(model.gradients says why)")
    if not frozen_moves:
        return f"{len(judged)} of {len(judged)}"

    warmup = [n for n in frozen_moves if lr_of.get(id(params[n]), (0, None, None))[1] == 0
              and (lr_of[id(params[n])][2] or 0) > 0]
    stuck = [n for n in frozen_moves if n not in warmup]
    groups = sorted({lr_of[id(params[n])][0] for n in stuck if id(params[n]) in lr_of})
    lrs = {gi: opt.param_groups[gi].get("lr") for gi in groups}
    n_stuck = sum(params[n].numel() for n in stuck)
    n_all = sum(params[n].numel() for n in judged)
    if not stuck:
        return passed(TITLE, f"{len(warmup)} tensors do not move at step 0 because a scheduler "
                      f"warmup starts at lr=0 (initial_lr > 0); they will move once it ramps up",
                      warmup_parameters=warmup)
    zero_lr = [gi for gi in groups if lrs[gi] == 0]
    first = sorted(stuck, key=list(trainable).index)[0]
    msg = (f"{len(stuck)} of {len(judged)} tensors with a non-zero gradient "
           f"({fmt_int(n_stuck)} of {fmt_int(n_all)} parameters), first `{first}`, "
           f"are bit-identical after one {type(opt).__name__} step")
    evidence = dict(parameters=sorted(stuck), group_lrs={str(k): v for k, v in lrs.items()},
                    optimizer=type(opt).__name__)
    if not zero_lr:
        return warned(TITLE, msg + f" although lr={lrs[groups[0]] if groups else '?'} > 0: "
                      f"the update is lost below float precision (tiny gradients, see "
                      f"model.gradients) or cancelled by the optimizer's settings",
                      "Fix the gradient scale first (model.gradients); with SGD, a larger lr or "
                      "Adam makes small gradients count.", "params-not-updating", **evidence)
    msg += " (" + ", ".join(f"param group {gi} has lr=0" for gi in zero_lr) + ")"
    fix = ("Give every param group a learning rate > 0 (`lr=1e-3`); freeze on purpose with "
           "`requires_grad_(False)`, not with lr=0.")
    if len(stuck) == len(judged):
        return failed(TITLE, msg + ": nothing trains", fix, "params-not-updating", **evidence)
    return warned(TITLE, msg + " (fine only if that group is meant to stay fixed)", fix,
                  "params-not-updating", **evidence)
