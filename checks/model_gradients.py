"""model.gradients: do gradients reach every trainable parameter, finite and at a usable scale?

Reads the shared base pass (the "base" fact). Extra passes run only when the base pass shows
something to explain: a forward with hooks to tell unused modules from detached ones, a few
optimizer steps on a copy to tell zero-init (alive after one step) from dead gradients, an
anomaly-mode re-run to locate an in-place modification.
"""
from __future__ import annotations

import re
import statistics
import warnings

import torch

from cvdoctor.catalog import recipe_for_error
from cvdoctor.finding import Finding, failed, passed, skipped, warned
from cvdoctor.model.context import rng_guard
from cvdoctor.model.design import idle_by_design
from cvdoctor.model.modules import (all_trainable_in, collapse_modules, held_by_optimizer,
                                    module_names, no_gradient, param_owners)
from cvdoctor.registry import register
from cvdoctor.text import fmt_int, plural, quoted_names as name_list

TITLE = "Gradient flow"
RECIPES = [
    "no-trainable-parameters", "tensor-does-not-require-grad", "inplace-modification",
    "unused-parameters", "detached-features", "nonfinite-gradients", "dead-gradients",
    "vanishing-gradients", "exploding-gradients", "backward-error",
]

# Other backward errors (OOM, dtype, device) go through the explain matcher: any recipe with
# error patterns may come out of it (error_recipes=True); `backward-error` when none does.

INPLACE_RE = re.compile(r"modified by an inplace operation", re.I)
NO_GRAD_RE = re.compile(r"does not require grad|does not have a grad_fn", re.I)

# Optimizer steps after which a gradient that is still exactly zero is called dead. timm ResNets
# zero-init the last BN gamma of each block: everything upstream in the block has a zero
# gradient at step 0 and a live one after the first step.
DEAD_STEPS = 3
# ||grad|| / ||param|| per tensor. Healthy models at init measured here: SmallCNN 0.2, U-Net 0.5,
# timm resnet18 3.4, torchvision resnet18 conv1 20 (BN-scaled stem, grad norm ~50), timm ViT
# cls_token ~1e5 without the floor below (it is initialized at 1e-6). Warn three orders of
# magnitude above that, fail at six.
EXPLODING_WARN = 1e3
EXPLODING_FAIL = 1e6
# Parameters initialized near zero (cls tokens, LayerScale) must not make the ratio explode:
# their norm counts as at least an RMS of 0.01 per element.
PARAM_RMS_FLOOR = 1e-2
# Median relative gradient of the first fifth of weight tensors vs the last fifth. Healthy: 0.1 to
# 10; a 20-layer sigmoid chain: ~1e-10.
VANISHING_RATIO = 1e-4


@register("model.gradients", order=60, title=TITLE, recipes=RECIPES,
          needs=["base", "module_trace"], error_recipes=True)
def check(ctx) -> Finding | list[Finding]:
    """Reads the gradients of the shared backward pass. Fails when nothing is trainable, when
    backward raises (in-place modification located with anomaly mode), on NaN/inf gradients
    (naming the first module with non-finite outputs), on modules that ran but get no gradient
    (detached, no_grad), on tensors whose gradient is exactly zero and stays zero after 3 Adam
    steps on a copy when they are 10%+ of the parameters, and on |grad|/|param| above 1e6.
    Warns on modules that never run (unused: DDP stops on them), smaller dead shares,
    |grad|/|param| above 1e3, and first-layer gradients 1e4x smaller than the last layers'
    relative to their size (vanishing). Parameters an architecture leaves without a gradient
    by its own design (SAM's mask decoder: the MLPs of the mask tokens it slices away, an IoU
    head the loss does not read) are named in the note, not failed; so are parameters the
    user's optimizer leaves out that get no gradient (a backbone under `torch.no_grad()` next
    to an optimizer over the head): frozen in effect."""
    model = ctx.spec.model
    named = list(model.named_parameters())
    total = sum(p.numel() for _, p in named)
    trainable = {n: p for n, p in named if p.requires_grad}
    n_trainable = sum(p.numel() for p in trainable.values())
    base = ctx.fact("base")

    if not trainable:
        bwd = base.backward_error
        recipe = ("tensor-does-not-require-grad" if bwd and NO_GRAD_RE.search(bwd.text)
                  else "no-trainable-parameters")
        what = (f"0 of {fmt_int(total)} parameters require grad" if total
                else "the model has no parameters at all")
        return failed(TITLE, f"{what}: nothing can train"
                      + (f" (backward raised {bwd.text[:160]})" if bwd else ""),
                      "Unfreeze what should train: `p.requires_grad_(True)` on the head and any "
                      "layers to fine-tune (not `module.requires_grad = True`).",
                      recipe, total_parameters=total, trainable_parameters=0,
                      backward_error=bwd.text if bwd else None)

    if base.forward_error or base.loss_error:
        err = base.forward_error or base.loss_error
        stage = "forward" if base.forward_error else "loss"
        return skipped(TITLE, f"no gradients to judge: the {stage} raised {err.type} "
                       f"(see model.forward)", error=err.text)

    frozen_note = ""
    if n_trainable < total:
        frozen_note = (f"; {fmt_int(total - n_trainable)} of {fmt_int(total)} parameters are "
                       f"frozen (requires_grad=False), taken as intentional")

    if base.backward_error:
        return _backward_error(ctx, base.backward_error)

    return _judge_grads(ctx, trainable, n_trainable, frozen_note)


def _backward_error(ctx, err) -> Finding:
    if INPLACE_RE.search(err.message):
        where = _locate_inplace(ctx)
        produced = re.search(r"which is output \d+ of (\w+)", err.message)
        what = f"the output of {produced.group(1)}" if produced else "a tensor"
        msg = (f"backward failed: {what} needed for the gradient was modified in place "
               f"afterwards" + (f"; it was produced at {where['location']}: "
                                f"`{where['code']}`" if where else ""))
        return failed(TITLE, msg,
                      "Replace the in-place op after that line with its out-of-place form "
                      "(`x = x + y` for `x += y`, `relu(inplace=False)`, `x = x.clamp(...)`).",
                      "inplace-modification", error=err.text, forward_location=where)
    if NO_GRAD_RE.search(err.message):
        return failed(TITLE, f"backward failed: the loss does not depend on any trainable "
                      f"parameter through autograd ({err.text[:200]})",
                      "Remove the `.detach()`, `torch.no_grad()`, `.item()` or `.numpy()` "
                      "between the model's parameters and the loss.",
                      "tensor-does-not-require-grad", error=err.text)
    match = recipe_for_error(err.text, err.traceback)
    first_line = err.message.splitlines()[0] if err.message else ""
    if match:
        return failed(TITLE, f"backward raised {err.type}: {first_line[:240]}",
                      f"See `cvdoctor explain {match.recipe}`; the traceback in the "
                      f"evidence (-v) shows the line.", match.recipe, error=err.text,
                      matched=match.matched_text, traceback=err.traceback)
    return failed(TITLE, f"backward raised {err.type}: {first_line[:240]} (no known recipe "
                  "matches it; the traceback is in the evidence, -v)",
                  "Read the last frames of the traceback (-v): the op named there has no "
                  "working backward for these inputs.", "backward-error",
                  error=err.text, traceback=err.traceback)


def _locate_inplace(ctx) -> dict | None:
    """Re-run with anomaly detection: its warning carries the forward traceback of the tensor."""
    with rng_guard(ctx.seed), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with torch.autograd.detect_anomaly(check_nan=False):
                model = ctx.copy_model(train=True)
                x, y = ctx.batch()
                _, loss = ctx.compute_loss(model, x, y)
                loss.backward()
        except Exception:  # noqa: BLE001 - the error is expected; we want the warning
            pass
    for w in caught:
        text = str(w.message)
        if "Traceback of forward call" not in text:
            continue
        frames = re.findall(r'File "([^"]+)", line (\d+), in (\S+)\n\s+(.*)', text)
        user = [f for f in frames if "/torch/" not in f[0].replace("\\", "/")]
        if user:
            path, line, func, code = user[-1]
            return {"location": f"{path.rsplit('/', 1)[-1]}:{line} in {func}",
                    "file": path, "line": int(line), "code": code.strip()}
    return None


def _judge_grads(ctx, trainable, n_trainable, frozen_note) -> list[Finding]:
    grads = ctx.fact("base").grads
    count = f"{len(trainable)} trainable tensors ({fmt_int(n_trainable)} parameters)"

    nonfinite = [n for n, g in grads.items() if g is not None and not torch.isfinite(g).all()]
    if nonfinite:
        return [_nonfinite(ctx, nonfinite, trainable)]

    findings: list[Finding] = []
    by_design = idle_by_design(ctx.spec.model, grads)
    # Parameters the user's optimizer leaves out and that get no gradient are frozen in effect
    # (a backbone run under torch.no_grad(), an optimizer over the decoder only): on purpose.
    held = held_by_optimizer(ctx.spec.model, ctx.spec.optimizer)
    outside = set() if held is None else {
        n for n, g in grads.items() if n not in held and n not in by_design and no_gradient(g)}
    missing = [n for n, g in grads.items() if g is None and n not in by_design
               and n not in outside]
    if missing:
        findings.extend(_missing(ctx, missing, trainable, n_trainable))

    zero = [n for n, g in grads.items() if g is not None and not g.any() and n not in by_design
            and n not in outside]
    dead: list[str] = []
    if zero:
        dead = _still_zero_after_steps(ctx, zero)
        if dead:
            findings.append(_dead(ctx, dead, trainable, n_trainable))

    ratios = _relative_grads(trainable, grads, skip=set(zero) | set(by_design) | outside)
    explode = _exploding(ratios, grads)
    if explode:
        findings.append(explode)
    vanish = _vanishing(ctx.spec.model, ratios, trainable)
    if vanish and not explode:
        findings.append(vanish)

    if findings:
        return findings
    top = max(ratios.items(), key=lambda kv: kv[1], default=(None, 0.0))
    revived = len(zero) - len(dead)
    note = (f"; {revived} tensors with zero gradient at init (zero-init) are alive after one "
            f"step" if revived else "")
    if by_design:
        n = sum(trainable[d].numel() for d in by_design)
        reasons = sorted(set(by_design.values()))
        note += (f"; {plural(len(by_design), 'tensor')} ({fmt_int(n)} parameters) get no "
                 f"gradient by the architecture's design ({'; '.join(reasons[:3])}"
                 f"{'; ...' if len(reasons) > 3 else ''}): `requires_grad_(False)` on them "
                 f"keeps them out of the optimizer")
    if outside:
        names = module_names(ctx.spec.model, outside)
        note += (f"; {name_list(names)} ({plural(len(outside), 'tensor')}, "
                 f"{fmt_int(sum(trainable[n].numel() for n in outside))} parameters) get no "
                 f"gradient and are not in the optimizer: frozen in effect (run under "
                 f"`torch.no_grad()` or unused), `requires_grad_(False)` would say so")
    live = len(trainable) - len(by_design) - len(outside)
    if top[0] is None:
        return [passed(TITLE, f"every trainable tensor is accounted for{note}"
                       f"{frozen_note}", zero_at_init=len(zero), idle_by_design=by_design,
                       outside_optimizer=sorted(outside))]
    judged = count if live == len(trainable) else f"{live} other trainable tensors"
    return [passed(TITLE, f"all {judged} get finite gradients; largest |grad|/|param| "
                   f"{top[1]:.3g} (`{top[0]}`){note}{frozen_note}",
                   max_relative_grad=top[1], max_relative_grad_param=top[0],
                   zero_at_init=len(zero), relative_grads=_rounded(ratios),
                   idle_by_design=by_design, outside_optimizer=sorted(outside))]


def _rounded(ratios: dict[str, float]) -> dict[str, float]:
    return {n: float(f"{r:.3g}") for n, r in ratios.items()}


def _nonfinite(ctx, names, trainable) -> Finding:
    first = names[0]
    loss = ctx.fact("base").loss
    origin = ctx.fact("module_trace").first_nonfinite()
    where = f"; the first non-finite activation is the output of `{origin}`" if origin else ""
    if loss is None:
        loss_note = ""
    elif not torch.isfinite(torch.tensor(loss)):
        loss_note = f" (the loss itself is {loss})"
    else:
        loss_note = f" (the loss {loss:.4g} is finite)"
    return failed(TITLE, f"{len(names)} of {len(trainable)} trainable tensors get NaN/Inf "
                  f"gradients, first `{first}`{loss_note}{where}",
                  "Find the op that makes NaN (log/sqrt/division of values <= 0, overflow) and "
                  "guard it (`clamp(min=eps)`, `log1p`, stable losses); then lower the lr.",
                  "nonfinite-gradients", parameters=names, first_parameter=first,
                  first_nonfinite_module=origin, loss=loss)


def _missing(ctx, missing, trainable, n_trainable) -> list[Finding]:
    model = ctx.spec.model
    owners = param_owners(model)
    trace = ctx.fact("module_trace")
    missing_set = set(missing)
    detached, unused = set(), set()
    no_grad_modules = set()
    for name in missing:
        owner = owners.get(name, "")
        key = owner or "<root>"
        ran = trace.ran(key)
        siblings = [f"{owner}.{p}" if owner else p
                    for p, q in model.get_submodule(owner).named_parameters(recurse=False)
                    if q.requires_grad]
        all_missing = all(s in missing_set for s in siblings)
        if ran and owner and all_missing and not trace.error:
            detached.add(owner)
            if not trace.requires_grad(key):
                no_grad_modules.add(owner)
        else:
            unused.add(name if not owner or (ran and not all_missing) else owner)

    def all_trainable_missing(prefix: str) -> bool:
        return all_trainable_in(model, prefix, missing_set)

    def size(prefix: str) -> int:
        if prefix in trainable:
            return trainable[prefix].numel()
        return sum(p.numel() for p in model.get_submodule(prefix).parameters() if p.requires_grad)

    findings = []
    if detached:
        top = collapse_modules(detached, all_trainable_missing)
        n = sum(size(t) for t in top)
        under_no_grad = [t for t in top
                         if any(d == t or d.startswith(t + ".") for d in no_grad_modules)]
        how = ("its output does not require grad: it ran under `torch.no_grad()`"
               if under_no_grad and len(under_no_grad) == len(top) else
               "its output is cut from the loss (`.detach()`, `torch.no_grad()`, or computed "
               "and not used)")
        findings.append(failed(
            TITLE, f"{name_list(top)} ({fmt_int(n)} of {fmt_int(n_trainable)} trainable "
            f"parameters) ran in the forward but get no gradient: {how}",
            "Remove the `.detach()` / `torch.no_grad()` around it, or freeze it on purpose "
            "with `requires_grad_(False)`.", "detached-features",
            modules=top, parameters=sorted(p for p in missing if any(
                p.startswith(t + ".") for t in top)), no_grad_modules=sorted(no_grad_modules)))
    if unused:
        modules = {u for u in unused if u not in trainable}
        params = {u for u in unused if u in trainable}
        top = collapse_modules(modules, all_trainable_missing) + sorted(params)
        n = sum(size(t) for t in top)
        findings.append(warned(
            TITLE, f"{name_list(top)} ({fmt_int(n)} of {fmt_int(n_trainable)} trainable "
            f"parameters) never take part in the forward, so they get no gradient; "
            f"DistributedDataParallel stops on them",
            "Delete the unused modules or freeze them (`requires_grad_(False)`); if they are "
            "used only on some steps, pass `find_unused_parameters=True` to DDP.",
            "unused-parameters", modules=top,
            parameters=sorted(set(missing) - {p for f in findings for p in
                                               f.evidence.get("parameters", [])}),
            trace_error=trace.error))
    return findings


def _still_zero_after_steps(ctx, zero: list[str]) -> list[str]:
    """Names among `zero` whose gradient is still exactly zero after DEAD_STEPS Adam steps.

    Adam at lr=1e-3 rather than the user's optimizer: the question is about the model, and an
    lr of 0 (model.optimizer's finding) would keep every zero-init parameter dead.
    """
    still = set(zero)
    with rng_guard(ctx.seed):
        model = ctx.copy_model(train=True)
        params = dict(model.named_parameters())
        for n, g in ctx.fact("base").grads.items():
            if g is not None:
                params[n].grad = g.clone()
        opt = torch.optim.Adam([p for p in params.values() if p.requires_grad], lr=1e-3)
        x, y = ctx.batch()
        for _ in range(DEAD_STEPS):
            opt.step()
            opt.zero_grad(set_to_none=True)
            _, loss = ctx.compute_loss(model, x, y)
            loss.backward()
            still = {n for n in still if params[n].grad is None or not params[n].grad.any()}
            if not still:
                break
    # A bias in front of BatchNorm has a ~zero gradient by construction: judge the module by its
    # weight, and report its bias only with a dead weight.
    owners = param_owners(ctx.spec.model)
    dead = []
    for n in zero:
        if n not in still:
            continue
        if params[n].dim() <= 1:
            siblings = [s for s, o in owners.items() if o == owners[n] and s != n
                        and params[s].dim() >= 2 and params[s].requires_grad]
            if siblings and not all(s in still for s in siblings):
                continue
        dead.append(n)
    return dead


def _dead(ctx, dead, trainable, n_trainable) -> Finding:
    n = sum(trainable[d].numel() for d in dead)
    zero_out = ctx.fact("module_trace").all_zero()
    where = (f"; `{zero_out[0]}` outputs all zeros for the whole batch (dead ReLUs?)"
             if zero_out else "")
    share = n / max(n_trainable, 1)
    msg = (f"{plural(len(dead), 'trainable tensor')} ({fmt_int(n)} of {fmt_int(n_trainable)} "
           f"parameters), first {name_list(dead, 2)}, get exactly zero gradient and still do after "
           f"{DEAD_STEPS} Adam steps on a copy{where}")
    fix = ("Re-initialize what feeds the dead layer (default init, no large negative bias), use "
           "LeakyReLU/GELU, or normalize the input; don't zero-init whole weight matrices.")
    evidence = dict(parameters=dead, dead_parameters=n, all_zero_outputs=zero_out[:10],
                    steps=DEAD_STEPS)
    if share >= 0.1:
        return failed(TITLE, msg, fix, "dead-gradients", **evidence)
    return warned(TITLE, msg + " (fine only if these are masked or gated on purpose)", fix,
                  "dead-gradients", **evidence)


def _relative_grads(trainable, grads, skip) -> dict[str, float]:
    out = {}
    for n, p in trainable.items():
        g = grads.get(n)
        if g is None or n in skip:
            continue
        floor = PARAM_RMS_FLOOR * p.numel() ** 0.5
        out[n] = float(g.float().norm()) / max(float(p.detach().float().norm()), floor)
    return out


def _exploding(ratios: dict[str, float], grads) -> Finding | None:
    if not ratios:
        return None
    name, r = max(ratios.items(), key=lambda kv: kv[1])
    if r < EXPLODING_WARN:
        return None
    big = sorted((n for n, v in ratios.items() if v >= EXPLODING_WARN), key=list(ratios).index)
    gnorm = float(grads[name].float().norm())
    msg = (f"gradient norm of `{name}` is {r:.3g}x its parameter norm (|grad| = {gnorm:.3g}); "
           f"{plural(len(big), 'tensor')} above {EXPLODING_WARN:.0e}x: one SGD step at lr=1e-3 "
           f"would change them by more than their own size")
    fix = ("Check the init scale and the loss reduction (mean, not sum); add normalization, "
           "lower the lr and clip: `clip_grad_norm_(model.parameters(), 1.0)`.")
    evidence = dict(parameter=name, ratio=r, grad_norm=gnorm, parameters=big[:20])
    if r >= EXPLODING_FAIL:
        finding = failed(TITLE, msg, fix, "exploding-gradients", **evidence)
    else:
        finding = warned(TITLE, msg + " (Adam and clipping can absorb this; SGD cannot)", fix,
                         "exploding-gradients", **evidence)
    # Huge logits at init (an over-confident head, raw pixels) make huge gradients: when
    # model.initial_loss reports that, this finding is its consequence, shown under it.
    finding.follows = ("initial-loss-too-high", "unnormalized-input")
    return finding


def _vanishing(model, ratios, trainable) -> Finding | None:
    weights = [n for n in trainable if trainable[n].dim() >= 2 and n in ratios]
    if len(weights) < 4:
        return None
    k = max(1, len(weights) // 5)
    early = statistics.median(ratios[n] for n in weights[:k])
    late = statistics.median(ratios[n] for n in weights[-k:])
    if late <= 0 or early / late >= VANISHING_RATIO:
        return None
    return warned(
        TITLE, f"the first {k} weight tensors (from `{weights[0]}`) get gradients "
        f"{early / late:.2g}x as large, relative to their size, as the last {k} "
        f"(median |grad|/|param| {early:.2g} vs {late:.2g}): the earliest layers will barely "
        f"learn (Adam rescales small gradients, so this can still train, slowly)",
        "Use ReLU/GELU instead of sigmoid/tanh in deep stacks, add BatchNorm or residual "
        "connections, and He (kaiming) init.", "vanishing-gradients",
        early_median=early, late_median=late, ratio=early / late, early=weights[:k],
        late=weights[-k:])
