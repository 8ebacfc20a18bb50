"""model.checkpoint: the weights file the model is meant to load, checked against the model."""
from __future__ import annotations

import cvdoctor.checkpoint.modelfacts  # noqa: F401 - registers the checkpoint_fit fact
from cvdoctor.checkpoint import verdicts as v
from cvdoctor.finding import FAIL, Problem, report_problems, skipped
from cvdoctor.registry import register

TITLE = "Checkpoint fits the model"


@register("model.checkpoint", order=5, title=TITLE,
          recipes=[*v.FIT_RECIPES, v.UNSAFE, v.TRUNCATED, v.NOT_A_CHECKPOINT,
                   "sam-checkpoint-missing"],
          needs=["checkpoint_fit"], opt_in=("checkpoint", "weights"))
def check(ctx):
    """When the model file names a checkpoint (a `checkpoint` or `weights` path) or
    --checkpoint PATH is given: the same questions as `cvdoctor ckpt FILE --model`: the file
    exists and is a whole checkpoint, loading it runs no code, and its state dict fits the model
    (prefixes, head size, variant, share of parameters loaded), with the lines that load it.
    Skips when no checkpoint is named."""
    found = ctx.fact("checkpoint_fit")
    if found is None:
        return skipped(TITLE, "no checkpoint named (--checkpoint PATH, or checkpoint = "
                       "\"path.pt\" in the model file)")
    rec = found["record"]
    if rec.get("kind") in ("missing", "unreadable", "directory", "special"):
        sam = "sam_vit_" in rec.get("name", "")
        return report_problems(TITLE, [Problem(
            FAIL, "sam-checkpoint-missing" if sam else v.NOT_A_CHECKPOINT,
            f"{found['named']}: {rec.get('error', rec.get('kind'))}",
            "Download the checkpoint or fix the path (relative paths start at the current "
            "directory)")], "")
    problems = []
    fmt = v.format_problem(rec)
    if fmt:
        problems.append(fmt)
    problems += [p for p in v.safety_problems(rec) if p.recipe == v.UNSAFE]
    problems += [p for p in v.integrity_problems(rec) if p.status == FAIL]
    ok = f"{rec['name']}: no tensors to compare"
    if not problems and found.get("fit"):
        fit_probs, ok = v.fit_problems(found["fit"], rec["name"])
        problems += fit_probs
    return report_problems(TITLE, problems, ok, path=rec["path"],
                           code=(found.get("fit") or {}).get("code"))
