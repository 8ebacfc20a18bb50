"""model.sam_finetune: mask-decoder fine-tuning keeps the image encoder frozen and out of the
optimizer."""
from __future__ import annotations

from cvdoctor.finding import Problem, report_problems, skipped
from cvdoctor.registry import register
from cvdoctor.text import fmt_int, plural

TITLE = "SAM fine-tuning: frozen image encoder"
RECIPE = "sam-encoder-not-frozen"
ENCODER = "image_encoder."


@register("model.sam_finetune", targets=["sam"], order=75, title=TITLE, recipes=[RECIPE],
          needs=["base"])
def check(ctx):
    """For a set-up with a `training_step` (mask-decoder fine-tuning): after one training step on
    a copy, which image-encoder parameters require gradients, which received one, and which the
    optimizer holds.

    Fails when the encoder is meant to be frozen (some of its parameters have
    requires_grad=False, or the file calls image_encoder.eval()/requires_grad_(False) or runs it
    under no_grad) but parameters of it still get gradients. Warns when encoder gradients are
    computed but the optimizer does not hold them (memory and time for nothing). Passes for a
    frozen encoder and for a deliberate full fine-tune (every encoder parameter trainable and in
    the optimizer)."""
    if ctx.setup.spec is None:
        return skipped(TITLE, "no training_step in the set-up: an inference set-up")
    base = ctx.fact("base")
    if base.model is None or not base.ok:
        return skipped(TITLE, "the training step did not run (see model.forward)")
    model = base.model
    enc = {n: p for n, p in model.named_parameters() if n.startswith(ENCODER)}
    if not enc:
        return skipped(TITLE, "the model has no image_encoder")
    frozen = [n for n, p in enc.items() if not p.requires_grad]
    got_grad = [n for n, p in enc.items() if p.requires_grad and base.grads.get(n) is not None
                and bool(base.grads[n].abs().sum() > 0)]
    try:
        opt = ctx.build_optimizer(model)
        held = {id(p) for g in opt.param_groups for p in g["params"]}
    except Exception:  # noqa: BLE001 - model.optimizer reports a broken optimizer
        held = None
    in_opt = [n for n, p in enc.items() if held is not None and id(p) in held]
    numel = sum(p.numel() for p in enc.values())
    grad_numel = sum(enc[n].numel() for n in got_grad)
    hints = list(ctx.sam_target.source.encoder_freeze_hints)
    meant_frozen = bool(frozen) or bool(hints)
    problems: list[Problem] = []
    if got_grad and meant_frozen:
        why = (f"{plural(len(frozen), 'tensor')} of it have requires_grad=False" if frozen
               else hints[0])
        problems.append(Problem(
            "fail", RECIPE,
            f"the image encoder is meant to be frozen ({why}) but {len(got_grad)} of its "
            f"{len(enc)} tensors ({fmt_int(grad_numel)} parameters) got gradients, e.g. "
            f"{got_grad[0]}" + (f"; {len(set(got_grad) & set(in_opt))} of them are in the "
                                "optimizer and train" if held is not None else ""),
            "Freeze it for real: sam.image_encoder.requires_grad_(False) (eval() does not "
            "freeze), and build the optimizer from sam.mask_decoder.parameters().",
            {"got_grad": got_grad[:20], "frozen": len(frozen), "hints": hints}))
    elif got_grad and held is not None and not set(got_grad) & set(in_opt):
        problems.append(Problem(
            "warn", RECIPE,
            f"gradients for {fmt_int(grad_numel)} image-encoder parameters are computed every "
            "step, but the optimizer does not hold them: memory and time for nothing",
            "sam.image_encoder.requires_grad_(False), or run it under torch.no_grad() and "
            "train the decoder on its output.", {"got_grad": got_grad[:20]}))
    if problems:
        return report_problems(TITLE, problems, "")
    if got_grad:
        note = (f"full fine-tuning: all {fmt_int(numel)} image-encoder parameters train "
                "(deliberate when the encoder is not frozen anywhere)")
    else:
        note = f"the image encoder ({fmt_int(numel)} parameters) is frozen: no gradient reaches it"
        if in_opt:
            note += (f"; {len(in_opt)} of its tensors are in the optimizer but get no gradient, "
                     "so they do not move (an optimizer over mask_decoder.parameters() is "
                     "cleaner)")
    trainable = [n for n, p in model.named_parameters() if p.requires_grad
                 and not n.startswith(ENCODER)]
    return report_problems(TITLE, [], f"{note}; {len(trainable)} other tensors train",
                           encoder_tensors=len(enc), frozen=len(frozen), got_grad=len(got_grad))
