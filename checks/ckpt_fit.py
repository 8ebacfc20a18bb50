"""ckpt.fit: does the checkpoint fit the --model, and the lines that load it; with --fix OUT, the
repaired file written and verified."""
from __future__ import annotations

from typing import Any

from cvdoctor.checkpoint.verdicts import (HEAD, LOAD_FAILED, MISMATCH, PARTIAL, UNSAFE, VARIANT,
                                           FIT_RECIPES, fit_problems)
from cvdoctor.finding import Finding, failed, passed, report_problems, skipped
from cvdoctor.registry import register
from cvdoctor.text import plural, quoted_names

TITLE = "Fits the model"


def fix_finding(fx: dict[str, Any]) -> Finding:
    title = "Repaired copy written"
    out = fx.get("out")
    if fx.get("refused"):
        recipe = {"unsafe": UNSAFE, "damaged": "checkpoint-truncated", "variant": VARIANT,
                  "unrelated": MISMATCH, "empty": MISMATCH, "partial": PARTIAL,
                  "head": HEAD}.get(fx.get("refused_kind"), MISMATCH)
        return failed(title, f"--fix {out} not written: {fx['refused']}",
                      "Fix what the other findings say first; the input was not changed", recipe,
                      **{k: fx[k] for k in ("out", "input") if k in fx})
    if not fx.get("ok"):
        why = fx.get("error") or "; ".join(
            f"{k.replace('_', ' ')} {quoted_names(fx[k], 3)}" for k in
            ("missing", "unexpected", "wrong_shape") if fx.get(k)) or fx.get("load_state_dict")
        return failed(title, f"--fix {out} not written: the repaired state dict does not "
                      f"verify ({why})", "Report this file to cvdoctor; the input was not changed",
                      LOAD_FAILED, **fx)
    how = []
    if fx.get("container"):
        how.append(f"unwrapped {fx['container']!r}")
    if fx.get("strip"):
        how.append(f"removed {fx['strip']!r}")
    if fx.get("add"):
        how.append(f"added {fx['add']!r}")
    if fx.get("dropped"):
        how.append(f"left out the head ({quoted_names(fx['dropped'], 2)})")
    verified = ("loads strictly into the model" if not fx.get("dropped")
                else "loads with exactly the head missing")
    kind = "safetensors" if fx.get("format") == "safetensors" else "torch.save"
    return passed(title, f"wrote {out} ({kind}, {plural(fx.get('tensors', 0), 'tensor')}"
                  f"{'; ' + ', '.join(how) if how else ''}); it {verified}", **fx)


@register("ckpt.fit", order=60, title=TITLE,
          recipes=[*FIT_RECIPES, LOAD_FAILED, UNSAFE, "checkpoint-truncated"],
          needs=["ckpt_files", "ckpt_fit", "ckpt_fix"], opt_in="model")
def check_fit(ctx):
    """With --model: finds the state dict inside each file (Lightning's state_dict, {'model',
    'optimizer', 'epoch'}, EMA copies, a pickled module), aligns key prefixes (module.,
    _orig_mod., model., backbone., ... whichever matches most), and classifies what is left.
    Passes when every model key loads (only num_batches_tracked missing is fine; half-precision
    tensors are noted); warns for a prefix, a head of another size, or under 90% of the
    parameters loading; fails for another variant or family (resnet50 into resnet18, SAM vit_l
    into vit_b) or unrelated weights. Every diagnosis shows the lines that load the file into
    the model. With --fix OUT: writes the repaired state dict and verifies it against the model
    (passes) or says why not (fails)."""
    fits = ctx.fact("ckpt_fit")
    recs = ctx.fact("ckpt_files")
    if not ctx.option("model_specs"):
        return skipped(TITLE, "no --model: give one (e.g. --model torchvision:resnet18) to check "
                       "that the file fits it")
    out: list[Finding] = []
    for rec in recs:
        d = fits.get(rec["path"])
        if (rec.get("safety") or {}).get("verdict") == "denied":
            out.append(skipped(TITLE, f"{rec.get('name')}: not checked, it fails the safety scan "
                               "(ckpt.safety)", path=rec["path"]))
            continue
        if d is None:
            out.append(skipped(TITLE, f"{rec.get('name')}: no tensors could be read (see "
                               "ckpt.format and ckpt.integrity)", path=rec["path"]))
            continue
        problems, ok = fit_problems(d, rec.get("name") or rec["path"])
        out.extend(report_problems(TITLE, problems, ok, path=rec["path"], code=d.get("code")))
    fx = ctx.fact("ckpt_fix")
    if fx is not None:
        out.append(fix_finding(fx))
    return out
