"""model.overfit_batch: can a copy of the model memorize the one batch? If not, why not.

Karpathy's first sanity check: a model that cannot drive the loss down on a single batch cannot
learn from the dataset either. We train a copy with the user's optimizer settings, judge in
train mode (BatchNorm on batch statistics, dropout off for the judging pass only), stop as soon
as the verdict is clear, and confirm a diagnosis with one cheap differential re-run (10x lower
learning rate, weight decay 0, a higher learning rate).
"""
from __future__ import annotations

import math

from cvdoctor.finding import failed, passed, skipped, warned
from cvdoctor.model.context import rng_guard
from cvdoctor.model.overfit import (MAIN_CAP_S, MAX_STEPS, MIN_JUDGE_STEPS, MIN_STEPS, Run, Task,
                                    converged, evidence, num, pct, rerun_cap,
                                    run_evidence, start_from_shared_step, task_for, train)
from cvdoctor.registry import register

TITLE = "Overfit one batch"

# A learning rate that one batch of a small model tolerates, per optimizer family (used to
# confirm "too low"); adaptive optimizers normalize the step, SGD-like ones do not.
_ADAPTIVE = ("Adam", "AdamW", "NAdam", "RAdam", "Adamax", "Adagrad", "Adadelta", "RMSprop",
             "SparseAdam", "Adafactor", "Lion")
REFERENCE_LR = {"adaptive": 1e-3, "sgd": 0.05}

RECIPES = ["overfit-lr-too-high", "overfit-lr-too-low", "overfit-weight-decay", "overfit-plateau",
           "overfit-no-progress", "overfit-budget-exhausted", "nan-loss"]


@register("model.overfit_batch", order=100, title=TITLE, recipes=RECIPES,
          needs=["base", "one_step"])
def check(ctx):
    """Trains a copy on the one batch with the user's optimizer (time-capped, judged in train
    mode with dropout off) and stops as soon as the verdict is certain. Passes when it memorizes
    the batch (full accuracy and 45%+ of the way to the lowest reachable loss) or is clearly
    learning when the cap ends it. Fails, with one differential re-run as confirmation, when it
    diverges (lr too high: learns at 10x/100x lower; numerical: diverges at all), when it is
    dead (90%+ of parameters get zero gradient), when weight decay holds it (learns with
    weight_decay=0), when probabilities or clipped logits cap the loss, or when nothing moves
    and no cause is confirmed. Warns when a higher lr learns (lr too low), on an unconfirmed
    plateau, when every run lowers the loss by 1-5% (too slowly to tell, not flat), and when
    the --budget runs out before a verdict."""
    base = ctx.fact("base")
    if not base.ok or base.model is None:
        return skipped(TITLE, "the forward/loss/backward pass failed, so there is nothing to "
                              "train (model.forward reports why)")
    trainable = sum(p.numel() for p in base.model.parameters() if p.requires_grad)
    if trainable == 0:
        return skipped(TITLE, "no parameter requires grad, so there is nothing to train "
                              "(model.gradients reports it)")
    if base.loss is None or not math.isfinite(base.loss):
        return skipped(TITLE, f"the loss at init is {base.loss}, not a finite number "
                              "(model.output reports it)")
    left = ctx.time_left()
    if left is not None and left < 0.05:
        return warned(TITLE, f"no time left of the --budget {ctx.budget_s:g} s when this check "
                             "started: the batch was not trained on",
                      "raise --budget (the overfit run needs a few seconds)",
                      "overfit-budget-exhausted", steps=0, budget_s=ctx.budget_s)

    task = task_for(ctx, base)
    with rng_guard(ctx.seed):
        return _diagnose(ctx, task, base)


# --- diagnosis ---------------------------------------------------------------------------------

def _diagnose(ctx, task: Task, base):
    left = ctx.time_left()
    budgeted = left is not None
    main_cap = min(left * 0.6, 60.0) if budgeted else MAIN_CAP_S
    max_steps = MAX_STEPS * (4 if budgeted else 1)
    _, targets = ctx.batch()
    first = start_from_shared_step(task, base, ctx.fact("one_step"), targets)
    main = train(ctx, task, label="main", overrides={}, cap_s=main_cap, max_steps=max_steps,
                 budget_capped=budgeted, min_steps=MIN_STEPS, stop_when_learning=not budgeted,
                 start_from=first)
    ev = evidence(task, main)

    if main.verdict == "error":
        return failed(TITLE, f"a training step raised {main.error} after {main.steps} steps",
                      "make one optimizer step work: loss.backward(); optimizer.step()",
                      "overfit-no-progress", **ev)
    if main.verdict == "memorized":
        return passed(TITLE, f"memorized the batch: {main.summary(task)}", **ev)
    if main.verdict == "learning" and main.stop == "learning":
        return passed(TITLE, f"learning the batch steadily (stopped as soon as that was "
                             f"certain; --budget runs on to memorization): {main.summary(task)}",
                      **ev)
    if main.verdict == "learning":
        cap = {"steps": f"the {max_steps}-step cap", "budget": "the --budget"}.get(
            main.stop, f"the {MAIN_CAP_S:g} s cap")
        return passed(TITLE, f"learning the batch (not yet memorized when {cap} ended the run): "
                             f"{main.summary(task)}", **ev)

    def rerun(label, overrides):
        cap = rerun_cap(ctx, main)
        if cap is None:
            return None
        r = train(ctx, task, label=label, overrides=overrides, cap_s=cap,
                   max_steps=max(main.steps, 2 * MIN_JUDGE_STEPS), budget_capped=budgeted,
                   min_steps=min(main.steps, MIN_STEPS))
        ev.setdefault("reruns", []).append(run_evidence(r))
        return r

    if main.verdict == "diverged":
        return _diverged(ctx, task, main, ev, rerun)
    if main.verdict == "flat":
        return _flat(ctx, task, main, ev, rerun, base)
    if main.verdict == "stalled":
        return _stalled_finding(task, main, ev, rerun)
    # unclear: ran out of time with some but not enough movement
    if not budgeted and (main.progress > 0 or main.steps < MIN_JUDGE_STEPS):
        # The default cap is wall time: a slow model or a busy machine ends the run before any
        # verdict, while the loss goes down or after too few steps to call it flat (a VGG on
        # the CPU takes one step in the cap; Adam's first step often raises the loss). Not
        # being asked for a long run, say so without an alarm; with --budget the user asked for
        # the time, and a run still undecided warns.
        how = ("while the loss went down" if main.progress > 0 else
               f"after {main.steps} step{'s' if main.steps != 1 else ''}, too few to judge")
        return skipped(TITLE, f"not judged: the default {MAIN_CAP_S:g} s cap ended the run "
                              f"before a verdict (a slow model or a busy machine), {how}: "
                              f"{main.summary(task)}; --budget 30 (or "
                              f"check_model(..., budget=30)) trains until it can tell", **ev)
    why = (f"the --budget ({ctx.budget_s:g} s)" if budgeted
           else f"the default {MAIN_CAP_S:g} s cap")
    return warned(TITLE, f"no verdict before {why} ran out: {main.summary(task)}; "
                         f"{pct(max(main.progress, 0))} of the way to the lowest loss",
                  "give it more time: --budget 30 (or check_model(..., budget=30))",
                  "overfit-budget-exhausted", **ev)


def _diverged(ctx, task, main, ev, rerun):
    what = ("the loss became " + num(main.loss) if not math.isfinite(main.loss)
            else f"the loss blew up to {num(max(main.train_losses[-5:] or [main.loss]))}")
    head = f"diverged at lr {num(main.lr)}: {what} after {main.steps} steps (from {num(main.loss0)})"
    if main.lr:
        for factor in (10, 100):
            r = rerun(f"lr/{factor}", {"lr": main.lr / factor})
            if r is None:
                break
            if converged(r, main):
                return failed(TITLE, f"{head}; at lr {num(r.lr)} ({factor}x lower) it learns: "
                                     f"{r.summary(task)}: the learning rate is too high",
                              f"lower the learning rate to {num(r.lr)} (or add warmup / "
                              "gradient clipping)", "overfit-lr-too-high", **ev)
            if r.verdict != "diverged":
                return failed(TITLE, f"{head}; at lr {num(r.lr)} ({factor}x lower) it no longer "
                                     f"diverges but does not learn either: {r.summary(task)}",
                              f"lower the learning rate to {num(r.lr)}, then run cvdoctor again",
                              "overfit-lr-too-high", **ev)
        else:
            return failed(TITLE, f"{head}; it diverges at 10x and 100x lower learning rates too: "
                                 "a numerical problem in the model or loss, not the step size",
                          "find the first non-finite value (torch.autograd.detect_anomaly) and "
                          "guard it (log of 0, division by 0, exp overflow)",
                          "nan-loss", **ev)
    why = "no time left" if main.lr else "the optimizer has no learning rate"
    return failed(TITLE, f"{head} (a lower learning rate was not tried: {why})",
                  "lower the learning rate 10x (or add warmup / gradient clipping)",
                  "overfit-lr-too-high", **ev)


# Below FLAT_PROGRESS but above this in every run (main and re-runs): the loss falls, slowly.
SLOW_PROGRESS = 0.01


def _flat(ctx, task, main, ev, rerun, base):
    head = f"the loss does not move: {main.summary(task)}"
    total = sum(p.numel() for p in base.model.parameters() if p.requires_grad)
    zero = sum(p.numel() for n, p in base.model.named_parameters() if p.requires_grad and (
        base.grads.get(n) is None or not bool(base.grads[n].any())))
    ev["zero_grad_fraction"] = round(zero / max(total, 1), 4)
    if zero >= 0.9 * total:
        return _follows(failed(
            TITLE, f"{head}; {zero:,} of {total:,} trainable parameters get exactly zero "
                   "gradient: the network is dead (ReLUs that never fire, zero init) or cut off "
                   "from the loss",
            "find where the gradient stops (model.gradients names the modules)",
            "overfit-no-progress", **ev), "dead-gradients", "detached-features",
            "tensor-does-not-require-grad", "no-trainable-parameters")
    tried, runs = [], []
    wd = main.weight_decay
    if wd:
        r = rerun("weight_decay=0", {"weight_decay": 0.0})
        if r is not None:
            runs.append(r)
            tried.append(f"weight_decay 0: {r.summary(task)}")
            if converged(r, main):
                return failed(TITLE, f"{head}; weights shrank to {pct(main.weight_ratio)} of "
                                     f"their size; with weight_decay 0 it learns: "
                                     f"{r.summary(task)}: weight decay {num(wd)} is too strong",
                              f"lower weight_decay from {num(wd)} to 1e-4..5e-2",
                              "overfit-weight-decay", **ev)
    if main.lr:
        higher = max(main.lr * 10, REFERENCE_LR[_family(main)])
        if higher > main.lr:
            r = rerun(f"lr={num(higher)}", {"lr": higher})
            if r is not None:
                runs.append(r)
                tried.append(f"lr {num(higher)}: {r.summary(task)}")
                if converged(r, main):
                    factor = higher / main.lr
                    return warned(TITLE, f"{head} at lr {num(main.lr)}; at lr {num(higher)} "
                                         f"({num(factor)}x higher) it learns: {r.summary(task)}: "
                                         "the learning rate is too low (fine only for a warmup "
                                         "start or a deliberately slow fine-tune)",
                                  f"raise the learning rate toward {num(higher)}",
                                  "overfit-lr-too-low", **ev)
    if not tried or any(r.verdict == "unclear" and r.stop == "budget" for r in runs):
        return warned(TITLE, f"{head}; no time left to find out why"
                             + (f" ({'; '.join(tried)})" if tried else ""),
                      "give it more time: --budget 30 (or check_model(..., budget=30))",
                      "overfit-budget-exhausted", **ev)
    if any(r.verdict == "unclear" for r in runs):
        # a re-run moved somewhat: not flat, not clearly learning; say so, do not fail
        return warned(TITLE, f"{head}; the re-runs move a little but do not settle it "
                             f"({'; '.join(tried)})",
                      "check that the loss and gradients reach the weights (model.gradients), "
                      "then tune the learning rate", "overfit-no-progress", **ev)
    if min([main.progress, *(r.progress for r in runs)]) > SLOW_PROGRESS:
        # Every run lowers the loss, just too little to count as learning (a DeepLab on random
        # per-pixel labels: 3% in 30 steps at both learning rates). Gradients reach the weights
        # and the optimizer moves them; "does not move" would be a false alarm.
        return warned(TITLE, f"the loss falls too slowly to tell: {main.summary(task)}; "
                             f"neither a higher learning rate nor weight decay explains it "
                             f"({'; '.join(tried)}): a batch that is hard to memorize (noisy "
                             f"or per-pixel labels) or a slow start",
                      "check that the labels match the outputs, then give it more time: "
                      "--budget 30 (or check_model(..., budget=30))", "overfit-no-progress",
                      **ev)
    return failed(TITLE, f"{head}; cause not confirmed ({'; '.join(tried)})",
                  "check that the loss and gradients reach the weights (model.gradients) and "
                  "that the labels match the outputs", "overfit-no-progress", **ev)


def _stalled_finding(task, main, ev, rerun):
    head = (f"not memorized: {main.summary(task)}" if task.evidence
            else f"stuck on a plateau: {main.summary(task)}")
    cause = task.evidence.get("cause")
    if cause == "probabilities":
        what = (f"rows sum to {task.evidence['row_sum']}"
                if task.evidence.get("activation") != "sigmoid" else "sigmoid, all in [0, 1]")
        return _follows(failed(
            TITLE, f"{head}; the outputs are already probabilities ({what}), so cross-entropy "
                   f"cannot go below {task.evidence['loss_bound']} (softmax applied twice)",
            "return raw logits from forward(); CrossEntropyLoss applies log-softmax",
            "overfit-plateau", **ev), "softmax-twice")
    if cause == "clipped":
        return _follows(failed(
            TITLE, f"{head}; {pct(task.evidence['zero_fraction'])} of the logits are exactly 0 "
                   "(clipped by a final ReLU), so wrong classes cannot be pushed down",
            "remove the activation after the last layer", "overfit-plateau", **ev),
            "clipped-logits")
    if main.lr:
        r = rerun("lr/10", {"lr": main.lr / 10})
        if converged(r, main) and r.progress > main.progress + 0.1:
            return failed(TITLE, f"{head}; at lr {num(r.lr)} (10x lower) it gets further: "
                                 f"{r.summary(task)}: the learning rate is too high to settle",
                          f"lower the learning rate to {num(r.lr)}", "overfit-lr-too-high", **ev)
    return warned(TITLE, f"{head}; cause not confirmed (a 10x lower learning rate did not help)",
                  "check the output activation, the loss and the labels against each other",
                  "overfit-plateau", **ev)


def _family(main: Run) -> str:
    return "adaptive" if main.optimizer in _ADAPTIVE else "sgd"


def _follows(finding, *recipes: str):
    """The verdict explained by another check's finding when that one is in the report."""
    finding.follows = recipes
    return finding
