"""model.gradcheck: do the model's custom autograd Functions compute the right gradients?

A hand-written `backward()` that is wrong trains anyway, just toward the wrong place, and nothing
else reports it. The shared pass lists the torch.autograd.Function classes in the loss's graph;
each is checked against finite differences on the arguments it gets inside the model
(cvdoctor.model.gradcheck).
"""
from __future__ import annotations

from cvdoctor.finding import Finding, failed, passed, skipped
from cvdoctor.model.gradcheck import check_functions
from cvdoctor.model.tensors import batch_size
from cvdoctor.registry import register
from cvdoctor.text import plural

TITLE = "Custom autograd functions"
RECIPES = ["custom-function-gradient"]


@register("model.gradcheck", order=62, title=TITLE, recipes=RECIPES, needs=["base"])
def check(ctx) -> Finding:
    """Finds the custom torch.autograd.Function classes whose backward the loss runs and calls
    torch.autograd.gradcheck (float64, fast mode, the first 2 samples) on the arguments each
    gets inside the model. Fails when a backward disagrees with finite differences on two
    nearby inputs; passes when all agree. Skips when the model uses no custom Function, and
    names those it could not check (float32-only, not called again)."""
    base = ctx.fact("base")
    if not base.custom_functions:
        if not base.ok:
            return skipped(TITLE, "the shared forward/backward failed (see model.forward): no "
                           "graph to look for custom autograd functions in")
        return skipped(TITLE, "the model uses no custom torch.autograd.Function (nothing to "
                       "gradcheck)")
    inputs, _ = ctx.batch()
    results = check_functions(ctx, base.custom_functions, batch_size(inputs))
    evidence = {"functions": {r.name: {"status": r.status, "detail": r.detail,
                                       "input_shapes": [list(s) for s in r.inputs]}
                              for r in results}}
    bad = [r for r in results if r.status == "mismatch"]
    ok = [r for r in results if r.status == "ok"]
    unchecked = [r for r in results if r.status in ("not-called", "not-checked")]
    note = "; not checked: " + "; ".join(f"`{r.name}` ({r.detail})" for r in unchecked) \
        if unchecked else ""
    if bad:
        first = bad[0]
        return failed(
            TITLE, f"{_names(bad)} {'returns' if len(bad) == 1 else 'return'} gradients that "
            f"disagree with finite differences (float64, on its own "
            f"inputs from the model, twice): {first.detail}{note}",
            f"Fix `{first.name}.backward()` (one gradient per forward input, the chain rule with "
            "grad_output, the saved tensors it needs); torch.autograd.gradcheck on small "
            "double inputs verifies it.", "custom-function-gradient", **evidence)
    if not ok:
        return skipped(TITLE, "no custom autograd Function could be checked" + note, **evidence)
    return passed(TITLE, f"{_names(ok)} {'matches' if len(ok) == 1 else 'match'} finite "
                  f"differences "
                  f"(torch.autograd.gradcheck, float64){note}", **evidence)


def _names(results) -> str:
    return (f"{plural(len(results), 'custom autograd Function')} "
            f"({', '.join(f'`{r.name}`' for r in results)})")
