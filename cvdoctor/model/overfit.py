"""The training engine of the overfit-one-batch check: train a copy of the model on the one batch
with the user's optimizer settings, judge it in train mode (BatchNorm on batch statistics, dropout
off for the judging pass only), and stop as soon as the verdict is clear.

What "memorized" means depends on the loss (`Task`); a run ends memorized, diverged, stalled,
flat, or out of steps or time (`Run`). Verdicts and wording are the check's
(checks/model_overfit_batch.py); every threshold here is named and says what it was measured on.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from cvdoctor.model.facts import clipped_zero_fraction, probability_kind

# Without --budget: the main run stops after this many seconds or steps, each re-run after
# RERUN_CAP_S. Fixture models memorize well inside these on a 2-core CPU; slower models that are
# clearly learning when the cap hits still pass.
MAIN_CAP_S = 2.0
RERUN_CAP_S = 1.5
MAX_STEPS = 200
MIN_JUDGE_STEPS = 20  # fewer steps than this cannot call a run flat or stuck
MIN_MEMORIZED_STEPS = 3
EVIDENCE_STEPS = 100  # outputs that cap the loss and not memorized after this many steps: stop
MIN_STEPS = 30  # without --budget, a run goes past its time cap until this many steps...
HARD_CAP_FACTOR = 3  # ...but never past this many times the cap
PROBE_EVERY = 10

# Verdict thresholds. progress = (initial loss - loss) / (initial loss - lowest reachable loss).
# tests/test_model_seeds.py holds them to zero failures over 10 seeds on six tiny healthy set-ups
# (CE, a small-init single-logit BCE head, multi-label BCE, a U-Net, MSE regression, a zero-init
# head); tests/test_model_overfit.py to the verdict of every broken fixture.
MEMORIZED_PROGRESS = 0.45  # with 100% accuracy; softmax-twice cannot pass this for C >= 5
MEMORIZED_PROGRESS_NO_ACC = 0.9  # tasks without an accuracy (regression, training_step)
LEARNING_PROGRESS = 0.05  # with accuracy gaining LEARNING_ACC_GAIN of the room to its target
LEARNING_ACC_GAIN = 0.3
LEARNING_PROGRESS_NO_ACC = 0.3
FLAT_PROGRESS = 0.05  # and accuracy gaining less than FLAT_ACC_GAIN: "the loss does not move"
FLAT_ACC_GAIN = 0.1
STALL_WINDOW = 40  # steps
STALL_PROGRESS = 0.01  # progress gained over STALL_WINDOW below this = stalled
# Without --budget the run stops as soon as "learning" is certain, instead of at the cap: at
# least EARLY_STEPS steps, and two judging passes PROBE_EVERY steps apart that both show
# EARLY_PROGRESS of the way to the lowest loss and accuracy gained by half the room to its
# target (or within 90% of it), the later one no worse than the earlier. Healthy fixtures that
# ran to the cap before (SmallCNN: 187 steps, TinyUNet: 200) meet it by step 40-70, and no
# broken set-up of tests/broken_models_*.py does before its failing verdict (a run that learns
# first and diverges later does so within its first steps: the lr fixtures blow up by step 5).
EARLY_STEPS = 30
EARLY_PROGRESS = 0.15
EARLY_ACC_GAIN = 0.5


# --- what "memorized" means for this loss -----------------------------------------------------

@dataclass
class Task:
    kind: str  # class | dense | binary | loss-only
    floor: float = 0.0  # lowest loss reachable (label smoothing, soft targets)
    logit_threshold: float = 0.0  # binary: 0 for logits, 0.5 for probabilities
    acc_target: float = 1.0
    ignore_index: int | None = None
    num_classes: int | None = None
    evidence: dict = field(default_factory=dict)  # outputs that cap the loss (softmax twice...)

    @property
    def has_acc(self) -> bool:
        return self.kind != "loss-only"


def task_for(ctx, base) -> Task:
    _, targets = ctx.batch()
    out = base.outputs
    spec = ctx.spec
    if spec.training_step is not None or not isinstance(out, torch.Tensor) \
            or not isinstance(targets, torch.Tensor) or not out.is_floating_point():
        return Task("loss-only")
    loss_fn = ctx.loss_fn()
    out = out.float()
    if isinstance(loss_fn, nn.BCEWithLogitsLoss) or isinstance(loss_fn, nn.BCELoss):
        if targets.is_floating_point() and targets.numel() == out.numel():
            t = targets.float().clamp(0, 1)
            ent = -(t * t.clamp_min(1e-12).log() + (1 - t) * (1 - t).clamp_min(1e-12).log())
            thr = 0.5 if isinstance(loss_fn, nn.BCELoss) else 0.0
            return Task("binary", floor=float(ent.mean()), logit_threshold=thr)
        return Task("loss-only")
    is_ce = isinstance(loss_fn, (nn.CrossEntropyLoss, nn.NLLLoss))
    if out.dim() >= 2 and out.shape[1] >= 2 and targets.shape[0] == out.shape[0]:
        c = out.shape[1]
        smoothing = float(getattr(loss_fn, "label_smoothing", 0.0) or 0.0)
        ignore = getattr(loss_fn, "ignore_index", None)
        evidence = (_capping_evidence(base.origin, out, c)
                    if isinstance(loss_fn, nn.CrossEntropyLoss) else {})
        if not targets.is_floating_point() and targets.dim() == out.dim() - 1 \
                and tuple(targets.shape[1:]) == tuple(out.shape[2:]):
            kind = "class" if out.dim() == 2 else "dense"
            if not is_ce and not _labels_in_range(targets, c, ignore):
                return Task("loss-only")
            return Task(kind, floor=_smoothed_floor(smoothing, c) if is_ce else 0.0,
                        acc_target=1.0 if kind == "class" else 0.98,
                        ignore_index=ignore if is_ce else None, num_classes=c, evidence=evidence)
        if is_ce and targets.is_floating_point() and targets.shape == out.shape and out.dim() == 2:
            t = targets.float()
            t = (1 - smoothing) * t + smoothing / c
            floor = float(-(t * t.clamp_min(1e-12).log()).sum(1).mean())
            return Task("class", floor=floor, num_classes=c, evidence=evidence)
    return Task("loss-only")


def _labels_in_range(targets, c, ignore) -> bool:
    t = targets if ignore is None else targets[targets != ignore]
    return t.numel() > 0 and int(t.min()) >= 0 and int(t.max()) < c


def _smoothed_floor(eps: float, c: int) -> float:
    """Cross-entropy against label-smoothed targets cannot go below their entropy."""
    if eps <= 0:
        return 0.0
    on, off = 1 - eps + eps / c, eps / c
    return float(-(on * math.log(on) + (c - 1) * off * math.log(off)))


def _capping_evidence(origin, out: torch.Tensor, c: int) -> dict:
    """Outputs that keep cross-entropy above a floor: probabilities or ReLU-clipped logits, as
    the op that produced them says (model.output's reading, facts.probability_kind)."""
    kind = probability_kind(origin, out, 1)
    if kind is not None:
        # softmax(p) with p one-hot is the best values in [0, 1] can do under cross-entropy
        bound = math.log(1 + (c - 1) / math.e)
        return {"cause": "probabilities", "activation": kind, "loss_bound": round(bound, 4),
                "row_sum": round(float(out.sum(1).mean()), 4)}
    zeros = clipped_zero_fraction(origin, out)
    if zeros is not None:
        return {"cause": "clipped", "zero_fraction": round(zeros, 3)}
    return {}


def _accuracy(task: Task, out: Any, targets: torch.Tensor) -> float | None:
    if not task.has_acc or not isinstance(out, torch.Tensor):
        return None
    out = out.detach().float()
    if task.kind == "binary":
        pred = out > task.logit_threshold
        return float((pred == (targets.reshape(out.shape) > 0.5)).float().mean())
    pred = out.argmax(1)
    t = targets.argmax(1) if targets.is_floating_point() else targets
    if task.ignore_index is not None:
        keep = t != task.ignore_index
        if not bool(keep.any()):
            return None
        return float((pred[keep] == t[keep]).float().mean())
    return float((pred == t).float().mean())


# --- one training run on a copy ---------------------------------------------------------------

@dataclass
class Run:
    label: str
    task: Task
    lr: float | None
    overrides: dict
    optimizer: str = ""
    weight_decay: float = 0.0
    steps: int = 0
    seconds: float = 0.0
    stop: str = "cap"  # memorized | diverged | stalled | flat | cap | budget | steps | error
    loss0: float = float("nan")  # judging pass before the first step
    acc0: float | None = None
    loss: float = float("nan")  # last judging pass
    acc: float | None = None
    best_loss: float = float("inf")
    train_losses: list = field(default_factory=list)
    probes: list = field(default_factory=list)  # (step, loss, acc)
    update_ratio: float = 0.0  # median |step| / |weights|
    weight_ratio: float = 1.0  # |weights| end / start
    error: str | None = None
    streak: int = 0  # consecutive judging passes that found the batch memorized
    verdict: str = "unclear"  # memorized | learning | diverged | flat | stalled | unclear
    progress: float = 0.0

    def summary(self, task: Task) -> str:
        acc = ""
        if self.acc is not None and self.acc0 is not None:
            acc = f", accuracy {pct(self.acc0)} -> {pct(self.acc)}"
        return (f"loss {num(self.loss0)} -> {num(self.loss)}{acc} in {self.steps} steps "
                f"({self.seconds:.1f} s)")


def _dropout_modules(model: nn.Module) -> list[nn.Module]:
    """Modules that add noise in train mode (dropout with p > 0, stochastic depth)."""
    found = []
    for m in model.modules():
        name = type(m).__name__
        if isinstance(m, nn.modules.dropout._DropoutNd) or "DropPath" in name or "Dropout" in name:
            p = getattr(m, "p", getattr(m, "drop_prob", None))
            if p is None or float(p) > 0:
                found.append(m)
    return found


def _judge(ctx, task, model, inputs, targets, noisy) -> tuple[float, float | None]:
    """Loss and accuracy in train mode with dropout off: BatchNorm keeps batch statistics (its
    running statistics lag behind, so eval mode would misjudge), dropout noise does not hide
    what was memorized."""
    for m in noisy:
        m.eval()
    try:
        with torch.no_grad():
            out, loss = ctx.compute_loss(model, inputs, targets)
    finally:
        for m in noisy:
            m.train()
    return float(loss.detach()), _accuracy(task, out, targets)


def progress_of(run: Run, loss: float) -> float:
    return _progress(run.task, run.loss0, loss)


def _progress(task: Task, loss0: float, loss: float) -> float:
    span = loss0 - task.floor
    if not math.isfinite(loss):
        return -math.inf
    if span <= 1e-6 * max(1.0, abs(loss0)):
        return 1.0 if loss <= loss0 + 1e-6 else -1.0
    return (loss0 - loss) / span


def _memorized(task: Task, loss0: float, loss: float, acc: float | None) -> bool:
    prog = _progress(task, loss0, loss)
    if task.has_acc and acc is not None:
        return acc >= task.acc_target - 1e-9 and prog >= MEMORIZED_PROGRESS
    return prog >= MEMORIZED_PROGRESS_NO_ACC


@dataclass
class Start:
    """A run's first step, already taken by the shared facts: the base pass (the judged loss
    and outputs at init, train mode) and one_step (the model after one step of the user's
    optimizer, with that optimizer's state)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    loss0: float
    acc0: float | None
    w0: float


def start_from_shared_step(task: Task, base, step, targets) -> Start | None:
    """The main run's first step from the facts, when it is the same step: no dropout (the
    base pass ran with it on, judging runs with it off) and a plain optimizer step."""
    if step.model is None or base.loss is None or not math.isfinite(base.loss) \
            or _dropout_modules(step.model) or isinstance(step.optimizer, torch.optim.LBFGS):
        return None
    if task.has_acc and base.outputs is None:
        return None
    model, opt = copy.deepcopy((step.model, step.optimizer))
    names = {id(p): n for n, p in step.model.named_parameters()}
    before = [step.before[names[id(p)]] for g in step.optimizer.param_groups for p in g["params"]
              if p.requires_grad and id(p) in names]
    acc0 = _accuracy(task, base.outputs, targets) if task.has_acc else None
    return Start(model, opt, float(base.loss), acc0, _norm(before))


def train(ctx, task, *, label, overrides, cap_s, max_steps, budget_capped, min_steps=0,
          stop_when_learning=False, start_from: Start | None = None) -> Run:
    """Train a fresh copy until memorized, diverged, stalled, or out of steps or time (with
    `stop_when_learning`, also as soon as it is certainly learning). `start_from`: the first
    step, already taken (start_from_shared_step).

    Past `cap_s` the run still goes on to `min_steps` (fewer cannot support a verdict) unless
    the --budget is what capped it, up to HARD_CAP_FACTOR x `cap_s`.
    """
    if start_from is not None:
        model, opt = start_from.model, start_from.optimizer
    else:
        model = ctx.copy_model(train=True)
        opt = ctx.build_optimizer(model, **overrides)
    inputs, targets = ctx.batch()
    run = Run(label=label, task=task, lr=_lr(opt), overrides=overrides, optimizer=type(opt).__name__,
              weight_decay=max((float(g.get("weight_decay", 0) or 0) for g in opt.param_groups),
                               default=0.0))
    params = [p for g in opt.param_groups for p in g["params"] if p.requires_grad]
    start = time.perf_counter()
    # Without dropout the training forward pass is the judging pass (train mode, batch
    # statistics): judge every state from it, before its update, at no extra cost.
    noisy = _dropout_modules(model)
    if start_from is not None:
        run.steps = 1
        run.loss0 = run.loss = run.best_loss = start_from.loss0
        run.acc0 = run.acc = start_from.acc0
        run.probes.append((0, run.loss0, run.acc0))
        run.train_losses.append(run.loss0)
    try:
        w0 = start_from.w0 if start_from is not None else _norm(params)
        ratios = []
        last_progress_msg = start
        closure_needed = isinstance(opt, torch.optim.LBFGS)
        while True:
            elapsed = time.perf_counter() - start
            if run.steps >= max_steps:
                run.stop = "steps"
                break
            if run.steps and elapsed >= cap_s and (budget_capped or run.steps >= min_steps
                                                   or elapsed >= HARD_CAP_FACTOR * cap_s):
                run.stop = "budget" if budget_capped else "cap"
                break
            before = [p.detach().clone() for p in params] if run.steps % PROBE_EVERY == 0 else None
            opt.zero_grad(set_to_none=True)
            out, loss = ctx.compute_loss(model, inputs, targets)
            loss_value = float(loss.detach())
            run.train_losses.append(loss_value)
            if not math.isfinite(loss_value):
                run.stop = "diverged"
                run.loss = loss_value
                break
            judged = None
            if not noisy:
                judged = loss_value, _accuracy(task, out, targets)
            elif run.steps == 0 or _should_judge(task, run, _accuracy(task, out, targets)):
                judged = _judge(ctx, task, model, inputs, targets, noisy)
            if judged is not None:
                run.loss, run.acc = judged
                if run.steps == 0:
                    run.loss0, run.acc0, run.best_loss = run.loss, run.acc, run.loss
                run.best_loss = min(run.best_loss, run.loss)
                run.probes.append((run.steps, run.loss, run.acc))
                if not math.isfinite(run.loss):
                    run.stop = "diverged"
                    break
                if run.steps and _memorized(task, run.loss0, run.loss, run.acc):
                    # twice in a row and not in the first steps: a lucky step that blows up
                    # right after (momentum at a huge learning rate) is not memorization
                    run.streak += 1
                    if run.streak >= 2 and run.steps >= MIN_MEMORIZED_STEPS:
                        run.stop = "memorized"
                        break
                else:
                    run.streak = 0
                if _exploded(run):
                    run.stop = "diverged"
                    break
                if _stalled(task, run) or (task.evidence and run.steps >= EVIDENCE_STEPS):
                    run.stop = "stalled"
                    break
                if stop_when_learning and _certainly_learning(task, run):
                    run.stop = "learning"
                    break
            loss.backward()
            if closure_needed:
                def closure():
                    opt.zero_grad(set_to_none=True)
                    _, again = ctx.compute_loss(model, inputs, targets)
                    again.backward()
                    return again
                opt.step(closure)
            else:
                opt.step()
            run.steps += 1
            if before is not None:
                ratios.append(_delta(params, before) / max(_norm(before), 1e-12))
            now = time.perf_counter()
            if now - last_progress_msg >= 0.5:
                last_progress_msg = now
                acc = f" acc {run.acc:.2f}" if run.acc is not None else ""
                ctx.progress(f"overfit{'' if label == 'main' else ' (' + label + ')'} step "
                             f"{run.steps}/{max_steps} loss {run.loss:.3g}{acc}")
        if run.stop not in ("memorized", "diverged", "stalled") and run.probes \
                and run.probes[-1][0] != run.steps:
            run.loss, run.acc = _judge(ctx, task, model, inputs, targets, noisy)
            run.best_loss = min(run.best_loss, run.loss)
            run.probes.append((run.steps, run.loss, run.acc))
        run.update_ratio = _median(ratios)
        run.weight_ratio = _norm(params) / max(w0, 1e-12)
    except Exception as exc:  # noqa: BLE001 - a step that raises is a verdict, not a crash
        run.stop = "error"
        run.error = f"{type(exc).__name__}: {str(exc).strip()[:300]}"
    run.seconds = time.perf_counter() - start
    run.progress = _progress(task, run.loss0, run.loss) if math.isfinite(run.loss0) else 0.0
    run.verdict = _verdict(task, run)
    return run


def _should_judge(task: Task, run: Run, train_acc: float | None) -> bool:
    if run.steps % PROBE_EVERY == 0 or run.streak:
        return True
    # Judge early when the training pass itself already looks memorized (cheap early exit).
    return train_acc is not None and train_acc >= 0.9 * task.acc_target and run.steps % 2 == 0


def _learning_at(task: Task, run: Run, probe) -> bool:
    _, loss, acc = probe
    if _progress(task, run.loss0, loss) < EARLY_PROGRESS:
        return False
    if not task.has_acc or acc is None or run.acc0 is None:
        return _progress(task, run.loss0, loss) >= LEARNING_PROGRESS_NO_ACC
    room = max(task.acc_target - run.acc0, 1e-6)
    return acc - run.acc0 >= EARLY_ACC_GAIN * room or acc >= 0.9 * task.acc_target


def _certainly_learning(task: Task, run: Run) -> bool:
    """Two judging passes PROBE_EVERY+ steps apart both learning, the later no worse."""
    if run.steps < EARLY_STEPS or task.evidence or len(run.probes) < 2:
        return False
    last = run.probes[-1]
    earlier = [p for p in run.probes[:-1] if p[0] <= last[0] - PROBE_EVERY]
    if not earlier:
        return False
    prev = earlier[-1]
    return (last[1] <= prev[1] and _learning_at(task, run, last)
            and _learning_at(task, run, prev))


def _exploded(run: Run) -> bool:
    """Loss blown far past where it started and not coming back."""
    recent = run.train_losses[-5:]
    limit = max(10 * abs(run.loss0), run.loss0 + 10)
    return len(recent) == 5 and min(recent) > limit


def _stalled(task: Task, run: Run) -> bool:
    """No measurable progress over the last STALL_WINDOW steps (and not memorized)."""
    if run.steps < max(MIN_JUDGE_STEPS, STALL_WINDOW) + PROBE_EVERY:
        return False
    then = [p for p in run.probes if p[0] <= run.steps - STALL_WINDOW]
    if not then:
        return False
    old = min(p[1] for p in then)
    gained = _progress(task, run.loss0, run.best_loss) - _progress(task, run.loss0, old)
    acc_then = then[-1][2]
    acc_gain = (run.acc - acc_then) if run.acc is not None and acc_then is not None else 0.0
    return gained < STALL_PROGRESS and acc_gain <= 0


def _verdict(task: Task, run: Run) -> str:
    if run.stop == "error":
        return "error"
    if run.stop == "memorized":
        return "memorized"
    if run.stop == "learning":
        return "learning"
    if run.stop == "diverged" or not math.isfinite(run.loss):
        return "diverged"
    prog = run.progress
    if prog < -1.0 and run.steps >= 5:  # loss ended more than twice as far from the floor
        return "diverged"
    acc_gain = (run.acc - run.acc0) if run.acc is not None and run.acc0 is not None else None
    if task.evidence and run.steps >= MIN_JUDGE_STEPS:
        return "stalled"  # the outputs cap the loss; whatever progress there was, it stops
    if acc_gain is not None:
        room = max(task.acc_target - (run.acc0 or 0.0), 1e-6)
        learning = prog >= LEARNING_PROGRESS and (acc_gain >= LEARNING_ACC_GAIN * room
                                                  or run.acc >= 0.9 * task.acc_target)
    else:
        learning = prog >= LEARNING_PROGRESS_NO_ACC
    if learning and run.stop != "stalled":
        return "learning"
    if run.steps < MIN_JUDGE_STEPS:
        return "unclear"
    if prog < FLAT_PROGRESS and (acc_gain is None or acc_gain < FLAT_ACC_GAIN):
        return "flat"
    if run.stop == "stalled":
        return "stalled"
    return "unclear"


def converged(r: Run | None, main: Run) -> bool:
    """The re-run learns where the main run did not (compared at the same step count)."""
    if r is None or r.verdict in ("diverged", "error"):
        return False
    if r.verdict in ("memorized", "learning"):
        return True
    main_then = [p for p in main.probes if p[0] <= r.steps]
    main_prog = progress_of(main, main_then[-1][1]) if main_then else 0.0
    acc_ok = r.acc is None or r.acc0 is None or r.acc - r.acc0 >= 0.2
    return r.progress >= 0.1 and r.progress >= main_prog + 0.1 and acc_ok


# --- helpers -----------------------------------------------------------------------------------

def rerun_cap(ctx, main: Run) -> float | None:
    left = ctx.time_left()
    if left is None:
        return max(RERUN_CAP_S, main.seconds)
    cap = min(left * 0.5, max(main.seconds, RERUN_CAP_S))
    return cap if cap >= 0.05 else None


def _lr(opt) -> float | None:
    lrs = [g.get("lr") for g in opt.param_groups if g.get("lr") is not None]
    lrs = [float(x) for x in lrs if isinstance(x, (int, float)) or torch.is_tensor(x)]
    return max(lrs) if lrs else None


def _norm(tensors) -> float:
    return math.sqrt(sum(float(t.detach().float().pow(2).sum()) for t in tensors))


def _delta(params, before) -> float:
    return math.sqrt(sum(float((p.detach() - b).float().pow(2).sum())
                         for p, b in zip(params, before)))


def _median(xs) -> float:
    xs = sorted(xs)
    return xs[len(xs) // 2] if xs else 0.0


def num(x) -> str:
    if x is None:
        return "?"
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return f"{x:.3g}"


def pct(x) -> str:
    return f"{100 * x:.0f}%"


def run_evidence(r: Run) -> dict:
    return {"label": r.label, "lr": r.lr, "overrides": {k: v for k, v in r.overrides.items()},
            "verdict": r.verdict, "stop": r.stop, "steps": r.steps,
            "seconds": round(r.seconds, 3), "loss0": _round(r.loss0), "loss": _round(r.loss),
            "acc0": r.acc0, "acc": r.acc, "progress": _round(r.progress),
            "update_ratio": _round(r.update_ratio), "weight_ratio": _round(r.weight_ratio),
            "error": r.error}


def evidence(task: Task, main: Run) -> dict:
    return {"task": task.kind, "loss_floor": _round(task.floor), "main": run_evidence(main),
            "output_evidence": task.evidence or None,
            "loss_curve": [_round(x) for x in main.train_losses[:: max(1, len(main.train_losses)
                                                                        // 20)]]}


def _round(x):
    if x is None:
        return None
    return round(x, 5) if math.isfinite(x) else str(x)
